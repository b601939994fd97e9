//! The session state churnstile tracks for a PostgreSQL client and replays
//! on whichever server connection it lands on: the settings its startup
//! packet asks for (`params`), the settings it has now, learned by probing
//! the server and moved as a difference (`settings`), and the parameter
//! values the server reports and the client was told (`reported`).

mod params;
mod reported;
mod settings;

pub(super) use params::{apply_settings_query, literal, session_settings};
pub use reported::ReportedParams;
pub(super) use settings::{
    MAX_CUSTOM_SETTINGS, Probe, Settings, parse_probe, probe_query, transition_query,
};
