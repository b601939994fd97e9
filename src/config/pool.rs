//! The PgBouncer pool keys: read from `[pool]` on top of PgBouncer's
//! defaults, and again from each `[databases.NAME]` on top of `[pool]`.

use toml::Spanned;

use super::error::Diagnostics;
use super::section::Section;
use super::types::{MAX_MAX_PACKET_SIZE, PinPolicy, PoolMode, PoolSettings};

/// Every key `[pool]` accepts and a database may override.
pub(super) const POOL_KEYS: &[&str] = &[
    "pool_mode",
    "default_pool_size",
    "min_pool_size",
    "server_lifetime",
    "server_idle_timeout",
    "query_wait_timeout",
    "client_idle_timeout",
    "client_login_timeout",
    "server_connect_timeout",
    "server_reset_query",
    "max_prepared_statements",
    "pin_policy",
    "max_packet_size",
];

/// `base` with every pool key present in `section` applied.
pub(super) fn read_pool_settings(
    section: &Section,
    base: &PoolSettings,
    diagnostics: &mut Diagnostics,
) -> PoolSettings {
    let mut pool = base.clone();
    if let Some(mode) = section.choice::<PoolMode>("pool_mode", diagnostics) {
        pool.pool_mode = mode;
    }
    let default_size = section.count("default_pool_size", 1, diagnostics);
    let min_size = section.count("min_pool_size", 0, diagnostics);
    if let Some(size) = &default_size {
        pool.default_pool_size = *size.get_ref();
    }
    if let Some(size) = &min_size {
        pool.min_pool_size = *size.get_ref();
    }
    if let Some(lifetime) = section.seconds("server_lifetime", diagnostics) {
        pool.server_lifetime = lifetime.into_inner();
    }
    let optional_timeouts = [
        ("server_idle_timeout", &mut pool.server_idle_timeout),
        ("query_wait_timeout", &mut pool.query_wait_timeout),
        ("client_idle_timeout", &mut pool.client_idle_timeout),
        ("client_login_timeout", &mut pool.client_login_timeout),
    ];
    for (key, timeout) in optional_timeouts {
        if let Some(seconds) = section.seconds(key, diagnostics) {
            *timeout = Some(seconds.into_inner()).filter(|d| !d.is_zero());
        }
    }
    if let Some(timeout) = section.seconds("server_connect_timeout", diagnostics) {
        if timeout.get_ref().is_zero() {
            diagnostics.error(
                timeout.span(),
                section.field("server_connect_timeout"),
                "must be greater than 0 seconds; it bounds opening one server connection",
            );
        } else {
            pool.server_connect_timeout = timeout.into_inner();
        }
    }
    if let Some(query) = section.string("server_reset_query", diagnostics) {
        pool.server_reset_query = query.into_inner();
    }
    if let Some(count) = section.count("max_prepared_statements", 1, diagnostics) {
        pool.max_prepared_statements = count.into_inner();
    }
    if let Some(policy) = section.choice::<PinPolicy>("pin_policy", diagnostics) {
        pool.pin_policy = policy;
    }
    if let Some(size) = section.count("max_packet_size", 1024, diagnostics) {
        if *size.get_ref() > MAX_MAX_PACKET_SIZE {
            diagnostics.error(
                size.span(),
                section.field("max_packet_size"),
                format!(
                    "must be at most {MAX_MAX_PACKET_SIZE} (PostgreSQL's message limit), got {}",
                    size.get_ref()
                ),
            );
        } else {
            pool.max_packet_size = size.into_inner();
        }
    }
    let sizes = [
        ("min_pool_size", min_size),
        ("default_pool_size", default_size),
    ];
    check_min_within_default(section, &pool, sizes, diagnostics);
    pool
}

/// `min_pool_size` may not exceed `default_pool_size`. The error goes to the
/// size this section set; a violation inherited whole from `[pool]` was
/// already reported there, and a size that failed to parse was too.
fn check_min_within_default(
    section: &Section,
    pool: &PoolSettings,
    sizes: [(&str, Option<Spanned<usize>>); 2],
    diagnostics: &mut Diagnostics,
) {
    if pool.min_pool_size <= pool.default_pool_size
        || sizes
            .iter()
            .any(|(key, size)| section.has(key) && size.is_none())
    {
        return;
    }
    let Some((key, Some(size))) = sizes.into_iter().find(|(_, size)| size.is_some()) else {
        return;
    };
    diagnostics.error(
        size.span(),
        section.field(key),
        format!(
            "min_pool_size ({}) is larger than default_pool_size ({}); \
             a pool cannot keep more idle connections than it may open",
            pool.min_pool_size, pool.default_pool_size
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use toml::de::DeTable;

    fn secs(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    fn read(text: &str, base: &PoolSettings) -> (PoolSettings, Vec<String>) {
        let document = DeTable::parse(text).unwrap();
        let mut diagnostics = Diagnostics::new("t.toml", text);
        let root = Section::root(&document);
        let section = root.section("pool", &mut diagnostics).unwrap();
        let pool = read_pool_settings(&section, base, &mut diagnostics);
        let errors = diagnostics.into_errors().errors;
        let errors = errors.iter().map(ToString::to_string).collect();
        (pool, errors)
    }

    #[test]
    fn empty_section_keeps_the_base() {
        let (pool, errors) = read("[pool]\n", &PoolSettings::default());
        assert!(errors.is_empty());
        assert_eq!(pool, PoolSettings::default());
    }

    #[test]
    fn every_key_is_read() {
        let text = "[pool]\npool_mode = \"transaction\"\ndefault_pool_size = 5\nmin_pool_size = 2\n\
                    server_lifetime = 0\nserver_idle_timeout = 0\nquery_wait_timeout = 1.5\n\
                    client_idle_timeout = 30\nclient_login_timeout = 0\nserver_connect_timeout = 2\n\
                    server_reset_query = \"\"\nmax_prepared_statements = 7\npin_policy = \"reject\"\n\
                    max_packet_size = 1048576\n";
        let (pool, errors) = read(text, &PoolSettings::default());
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            pool,
            PoolSettings {
                pool_mode: PoolMode::Transaction,
                default_pool_size: 5,
                min_pool_size: 2,
                server_lifetime: Duration::ZERO,
                server_idle_timeout: None,
                query_wait_timeout: Some(Duration::from_millis(1500)),
                client_idle_timeout: Some(secs(30)),
                client_login_timeout: None,
                server_connect_timeout: secs(2),
                server_reset_query: String::new(),
                max_prepared_statements: 7,
                pin_policy: PinPolicy::Reject,
                server_tls: Default::default(),
                max_packet_size: 1 << 20,
            }
        );
    }

    #[test]
    fn max_packet_size_is_64_mib_by_default_and_at_most_postgres_limit() {
        let (pool, errors) = read("[pool]\n", &PoolSettings::default());
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(pool.max_packet_size, 64 * 1024 * 1024);
        let (pool, errors) = read(
            "[pool]\nmax_packet_size = 1073741824\n",
            &PoolSettings::default(),
        );
        assert_eq!(pool.max_packet_size, 64 * 1024 * 1024);
        assert_eq!(
            errors,
            [
                "t.toml:2:19: pool.max_packet_size: must be at most 1073741823 (PostgreSQL's message limit), got 1073741824"
            ]
        );
        let (_, errors) = read("[pool]\nmax_packet_size = 100\n", &PoolSettings::default());
        assert_eq!(
            errors,
            ["t.toml:2:19: pool.max_packet_size: must be at least 1024, got 100"]
        );
    }

    #[test]
    fn bad_values_are_errors() {
        let text = "[pool]\npool_mode = \"sessions\"\ndefault_pool_size = 0\n\
                    server_connect_timeout = 0\nserver_lifetime = -1\n";
        let (_, errors) = read(text, &PoolSettings::default());
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with("t.toml:2:13: pool.pool_mode: unknown variant `sessions`, expected one of `session`, `transaction`, `statement`"), "{}", errors[0]);
        assert_eq!(
            errors[1],
            "t.toml:3:21: pool.default_pool_size: must be at least 1, got 0"
        );
        assert!(
            errors[2]
                .starts_with("t.toml:4:26: pool.server_connect_timeout: must be greater than 0")
        );
        assert!(
            errors[3]
                .starts_with("t.toml:5:19: pool.server_lifetime: must be a finite, non-negative")
        );
    }

    #[test]
    fn min_above_default_points_at_the_key_set_here() {
        let (_, errors) = read("[pool]\nmin_pool_size = 30\n", &PoolSettings::default());
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("t.toml:2:17: pool.min_pool_size: min_pool_size (30) is larger than default_pool_size (20)"), "{}", errors[0]);

        let base = PoolSettings {
            min_pool_size: 8,
            ..PoolSettings::default()
        };
        let (_, errors) = read("[pool]\ndefault_pool_size = 5\n", &base);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("t.toml:2:21: pool.default_pool_size: min_pool_size (8)"));
    }
}
