//! Log output: tracing to stderr, quiet by default (`churnstile=info`, or
//! RUST_LOG), as human-readable lines or, with `log_format = "json"`, one
//! JSON object per line for log shippers.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber; call once, before anything logs.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("churnstile=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // Fields stay under "fields": an event's own `message` field must
        // not collide with the log message.
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
}
