//! `churnstile top`: a live terminal view of a running churnstile, read from
//! its /metrics every second — client connects per second against upstream
//! connects per second, the reuse ratio, waiters, pins and TIME_WAIT. The
//! parsing and drawing are sans-IO (tested as functions); only `run` and
//! the terminal and HTTP helpers touch the outside world.

mod exposition;
mod scrape;
mod terminal;
mod view;

use std::time::{Duration, Instant};

pub use scrape::{MetricsUrl, UrlError};

use exposition::Samples;
use terminal::{Key, RawTerminal};
use view::{History, Screen};

/// The default `--metrics` URL: the address in config/churnstile.toml.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9127/metrics";

/// How often the view refreshes.
const REFRESH: Duration = Duration::from_secs(1);

/// Why `churnstile top` could not run.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    #[error("--metrics: {0}")]
    Url(#[from] UrlError),
    #[error("churnstile top needs a terminal on standard input and output: {0}")]
    NotATerminal(std::io::Error),
    #[error("writing to the terminal: {0}")]
    Terminal(std::io::Error),
}

/// Runs the view until q, Q or Ctrl-C; the terminal is restored however
/// it ends.
pub fn run(url: &str) -> Result<(), TopError> {
    let url = MetricsUrl::parse(url)?;
    let terminal = RawTerminal::enter().map_err(TopError::NotATerminal)?;
    let mut client = scrape::Client::new(url.clone());
    let mut history = History::default();
    loop {
        let started = Instant::now();
        let outcome = client.fetch().map(|text| Samples::parse(&text));
        let screen = match outcome {
            Ok(samples) => {
                history.record(Instant::now(), samples);
                Screen::Metrics(&history)
            }
            Err(error) => Screen::Unreachable(error.to_string()),
        };
        let (width, height) = terminal.size();
        terminal
            .draw(&view::render(&url.to_string(), &screen, width, height))
            .map_err(TopError::Terminal)?;
        let remaining = REFRESH.saturating_sub(started.elapsed());
        if let Some(Key::Quit) = terminal.wait_key(remaining).map_err(TopError::Terminal)? {
            return Ok(());
        }
    }
}
