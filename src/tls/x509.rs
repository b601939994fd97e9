//! Just enough DER to read a certificate's validity period: churnstile
//! refuses an expired certificate when it loads one, and rustls does not
//! say when a certificate of our own stops being valid.

/// When a certificate starts and stops being valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validity {
    pub not_before: CertTime,
    pub not_after: CertTime,
}

/// A certificate time: seconds since the Unix epoch, and the same instant
/// written for people (`2031-01-31 12:00:00 UTC`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertTime {
    pub unix: i64,
    pub text: String,
}

const SEQUENCE: u8 = 0x30;
const EXPLICIT_VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The validity of a DER certificate; `None` when it is not well formed.
pub fn validity(certificate: &[u8]) -> Option<Validity> {
    let (certificate, _) = expect(certificate, SEQUENCE)?;
    let (tbs, _) = expect(certificate, SEQUENCE)?;
    let mut rest = tbs;
    if rest.first() == Some(&EXPLICIT_VERSION) {
        rest = element(rest)?.2;
    }
    // serialNumber, signature algorithm, issuer.
    for _ in 0..3 {
        rest = element(rest)?.2;
    }
    let (validity, _) = expect(rest, SEQUENCE)?;
    let (tag, not_before, rest) = element(validity)?;
    let not_before = cert_time(tag, not_before)?;
    let (tag, not_after, _) = element(rest)?;
    let not_after = cert_time(tag, not_after)?;
    Some(Validity {
        not_before,
        not_after,
    })
}

/// The contents of an element with tag `tag`, and what follows it.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (found, contents, rest) = element(input)?;
    (found == tag).then_some((contents, rest))
}

/// One tag-length-value element: its tag, contents and what follows.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 || rest.len() < octets {
            return None;
        }
        let (bytes, rest) = rest.split_at(octets);
        let length = bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b));
        (length, rest)
    };
    (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
}

/// UTCTime `YYMMDDHHMMSSZ` (years 1950 to 2049) or GeneralizedTime
/// `YYYYMMDDHHMMSSZ`, as RFC 5280 requires them.
fn cert_time(tag: u8, text: &[u8]) -> Option<CertTime> {
    let text = std::str::from_utf8(text).ok()?;
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| digits.get(range)?.parse::<i64>().ok();
    let (year, rest) = match (tag, digits.len()) {
        (UTC_TIME, 12) => {
            let year = number(0..2)?;
            (if year >= 50 { 1900 + year } else { 2000 + year }, 2)
        }
        (GENERALIZED_TIME, 14) => (number(0..4)?, 4),
        _ => return None,
    };
    let field = |index: usize| number(rest + 2 * index..rest + 2 * index + 2);
    let (month, day) = (field(0)?, field(1)?);
    let (hour, minute, second) = (field(2)?, field(3)?, field(4)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(CertTime {
        unix: days * 86_400 + hour * 3600 + minute * 60 + second,
        text: format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02} UTC"),
    })
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_count_from_the_epoch() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }

    #[test]
    fn both_time_forms_are_read() {
        let utc = cert_time(UTC_TIME, b"491231235959Z").unwrap();
        assert_eq!(utc.text, "2049-12-31 23:59:59 UTC");
        assert_eq!(utc.unix, 2_524_607_999);
        let old = cert_time(UTC_TIME, b"500101000000Z").unwrap();
        assert_eq!(old.text, "1950-01-01 00:00:00 UTC");
        let generalized = cert_time(GENERALIZED_TIME, b"20500101000000Z").unwrap();
        assert_eq!(generalized.unix, 2_524_608_000);
        assert_eq!(cert_time(UTC_TIME, b"20500101000000Z"), None);
        assert_eq!(cert_time(UTC_TIME, b"491231235959"), None);
        assert_eq!(cert_time(UTC_TIME, b"491331235959Z"), None);
        assert_eq!(cert_time(UTC_TIME, b"4912312359+9Z"), None);
    }

    #[test]
    fn a_generated_certificate_reads_back_its_dates() {
        let mut params = rcgen::CertificateParams::new(vec!["db.test".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2021, 6, 15);
        params.not_after = rcgen::date_time_ymd(2061, 2, 28);
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();
        let validity = validity(certificate.der()).unwrap();
        assert_eq!(validity.not_before.text, "2021-06-15 00:00:00 UTC");
        assert_eq!(validity.not_after.text, "2061-02-28 00:00:00 UTC");
        assert_eq!(validity.not_before.unix, 1_623_715_200);
    }

    #[test]
    fn malformed_input_is_none() {
        assert_eq!(validity(b""), None);
        assert_eq!(validity(&[0x30, 0x82, 0xff]), None);
        assert_eq!(validity(&[0x30, 0x03, 0x30, 0x01, 0x02]), None);
        assert_eq!(validity(&[0x02, 0x00]), None);
    }
}
