//! Session state under transaction pooling: a client's settings are moved
//! to whichever server connection it lands on as a difference from what
//! that connection already has, and after statements that may change
//! session state the server is asked what the state really is (so rolled
//! back SETs, SET LOCAL and failed statements are never replayed).

use std::collections::{BTreeMap, BTreeSet};

use super::params::{apply_settings_query, literal};
use crate::postgres::backend::Row;
use crate::postgres::sql::PinReason;

/// Session settings by name, as `pg_settings` spells them.
pub type Settings = BTreeMap<String, String>;

/// Asks the server for its session settings, the state that pins, and the
/// protocol-level prepared statements it holds. `pg_settings` leaves out
/// `role` (SET ROLE), so it is asked for by name. The client's own
/// statement and lock timeouts are read first and then lifted for the rest,
/// so they cannot cut the probe short.
const PROBE_TIMEOUTS: &str = "SELECT 's', name, pg_catalog.current_setting(name) \
     FROM pg_catalog.pg_settings \
     WHERE source = 'session' AND name IN ('statement_timeout', 'lock_timeout'); \
     BEGIN; SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0; ";

const PROBE_STATE: &str = "SELECT 's', name, pg_catalog.current_setting(name) FROM pg_catalog.pg_settings \
     WHERE source = 'session' AND name NOT LIKE 'transaction\\_%' \
     AND name NOT IN ('statement_timeout', 'lock_timeout') \
     UNION ALL SELECT 's', 'role', pg_catalog.current_setting('role') \
     WHERE pg_catalog.current_setting('role') <> 'none' \
     UNION ALL SELECT 'p', 'listen', count(*)::text FROM pg_catalog.pg_listening_channels() \
     UNION ALL SELECT 'p', 'advisory_lock', count(*)::text FROM pg_catalog.pg_locks \
     WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid() \
     UNION ALL SELECT 'p', 'temp_table', count(*)::text FROM pg_catalog.pg_class \
     WHERE relpersistence = 't' AND relnamespace = pg_catalog.pg_my_temp_schema() \
     UNION ALL SELECT 'p', 'hold_cursor', count(*)::text FROM pg_catalog.pg_cursors WHERE is_holdable \
     UNION ALL SELECT 'p', 'sql_prepare', count(*)::text FROM pg_catalog.pg_prepared_statements WHERE from_sql \
     UNION ALL SELECT 'q', name, '' FROM pg_catalog.pg_prepared_statements WHERE NOT from_sql";

/// Most custom settings asked for by name in one probe.
pub const MAX_CUSTOM_SETTINGS: usize = 64;

/// The probe, also asking for the custom settings (`myapp.tenant`) named in
/// `custom`, which `pg_settings` does not list; a custom setting that is
/// empty counts as not set, as RESET leaves it empty.
pub fn probe_query(custom: &BTreeSet<String>) -> String {
    let mut query = format!("{PROBE_TIMEOUTS}{PROBE_STATE}");
    for name in custom.iter().take(MAX_CUSTOM_SETTINGS) {
        let name = literal(name);
        query.push_str(&format!(
            " UNION ALL SELECT 's', {name}, v FROM \
             (SELECT pg_catalog.current_setting({name}, true) AS v) AS custom WHERE v <> ''"
        ));
    }
    query.push_str("; COMMIT");
    query
}

/// What the server reported about a session.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Probe {
    pub settings: Settings,
    pub pins: BTreeSet<PinReason>,
    /// Protocol-level prepared statements on the server connection.
    pub statements: BTreeSet<String>,
}

/// Reads the rows of [`probe_query`].
pub fn parse_probe(rows: &[Row]) -> Probe {
    let mut probe = Probe::default();
    for row in rows {
        let [Some(kind), Some(name), value] = row.as_slice() else {
            continue;
        };
        match kind.as_str() {
            "s" => {
                probe
                    .settings
                    .insert(name.clone(), value.clone().unwrap_or_default());
            }
            "p" if value.as_deref().is_some_and(|count| count != "0") => {
                if let Some(reason) = PinReason::ALL.into_iter().find(|r| r.as_str() == name) {
                    probe.pins.insert(reason);
                }
            }
            "q" => {
                probe.statements.insert(name.clone());
            }
            _ => {}
        }
    }
    probe
}

/// The statements turning a server connection whose session settings are
/// `applied` into one with `wanted`; `None` when nothing differs. Settings
/// the server already reports with the wanted value (`reported`) are left.
pub fn transition_query(
    applied: &Settings,
    wanted: &Settings,
    reported: &BTreeMap<String, String>,
) -> Option<String> {
    let mut changes: Vec<(String, String)> = wanted
        .iter()
        .filter(|(name, value)| {
            applied.get(*name) != Some(value) && reported.get(*name) != Some(value)
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    // The role changes last and is reset first, so the other settings are
    // changed with the login role's privileges.
    changes.sort_by_key(|(name, _)| name == "role");
    let reset = |name: &String| format!("RESET \"{}\"", name.replace('"', "\"\""));
    let mut statements: Vec<String> = applied
        .keys()
        .filter(|name| *name == "role" && !wanted.contains_key(*name))
        .map(reset)
        .collect();
    statements.extend(apply_settings_query(&changes));
    statements.extend(
        applied
            .keys()
            .filter(|name| *name != "role" && !wanted.contains_key(*name))
            .map(reset),
    );
    (!statements.is_empty()).then(|| statements.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(items: &[(&str, &str)]) -> Settings {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn probe_rows_become_settings_pins_and_statements() {
        let row = |a: &str, b: &str, c: Option<&str>| {
            vec![Some(a.to_owned()), Some(b.to_owned()), c.map(str::to_owned)]
        };
        let rows = vec![
            row("s", "search_path", Some("a, b")),
            row("p", "listen", Some("1")),
            row("p", "temp_table", Some("0")),
            row("q", "churnstile_ps_3", Some("")),
        ];
        let probe = parse_probe(&rows);
        assert_eq!(probe.settings, settings(&[("search_path", "a, b")]));
        assert_eq!(probe.pins, BTreeSet::from([PinReason::Listen]));
        assert_eq!(
            probe.statements,
            BTreeSet::from(["churnstile_ps_3".to_owned()])
        );
    }

    #[test]
    fn transition_sets_what_differs_and_resets_what_is_gone() {
        let applied = settings(&[("search_path", "a"), ("work_mem", "8MB")]);
        let wanted = settings(&[("search_path", "a"), ("statement_timeout", "5s")]);
        assert_eq!(
            transition_query(&applied, &wanted, &BTreeMap::new()).unwrap(),
            "SELECT pg_catalog.set_config(E'statement_timeout', E'5s', false); RESET \"work_mem\""
        );
        assert_eq!(transition_query(&wanted, &wanted, &BTreeMap::new()), None);
    }

    #[test]
    fn the_role_is_reset_first_and_set_last() {
        let applied = settings(&[("role", "reader"), ("work_mem", "8MB")]);
        let wanted = settings(&[("role", "writer"), ("search_path", "a")]);
        assert_eq!(
            transition_query(&applied, &wanted, &BTreeMap::new()).unwrap(),
            "SELECT pg_catalog.set_config(E'search_path', E'a', false), \
             pg_catalog.set_config(E'role', E'writer', false); RESET \"work_mem\""
        );
        assert_eq!(
            transition_query(
                &applied,
                &settings(&[("work_mem", "8MB")]),
                &BTreeMap::new()
            )
            .unwrap(),
            "RESET \"role\""
        );
    }

    #[test]
    fn custom_settings_are_probed_by_name() {
        let query = probe_query(&BTreeSet::from(["myapp.tenant".to_owned()]));
        assert!(query.starts_with(PROBE_TIMEOUTS));
        assert!(query.ends_with(
            "SELECT 's', E'myapp.tenant', v FROM \
             (SELECT pg_catalog.current_setting(E'myapp.tenant', true) AS v) AS custom \
             WHERE v <> ''; COMMIT"
        ));
    }

    #[test]
    fn reported_values_need_no_round_trip() {
        let wanted = settings(&[("client_encoding", "UTF8")]);
        let reported = settings(&[("client_encoding", "UTF8")]);
        assert_eq!(transition_query(&Settings::new(), &wanted, &reported), None);
    }
}
