//! The admin console: a client that logs in to the database `churnstile`
//! as one of `[general] admin_users` gets PgBouncer-style commands (SHOW
//! POOLS, CLIENTS, SERVERS, STATS, DATABASES, CONFIG, VERSION; PAUSE,
//! RESUME, KILL, RELOAD, SHUTDOWN) answered by churnstile itself over the
//! simple query protocol, instead of a pool.

mod command;
mod console;
mod control;
mod settings;
mod show;
mod table;
mod time;

pub use console::serve;
