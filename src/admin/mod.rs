//! The admin console: a client that logs in to the database `churnstile`
//! (or PgBouncer's name for it, `pgbouncer`) as one of `[general]
//! admin_users` gets PgBouncer-style commands (SHOW POOLS, CLIENTS, SERVERS,
//! STATS, DATABASES, CONFIG, VERSION, STATE, LISTS, FDS, DNS_HOSTS, DNS_ZONES;
//! PAUSE, RESUME, KILL, RELOAD, SHUTDOWN) answered by churnstile itself over
//! the simple query protocol, instead of a pool; one of `stats_users` may
//! only SHOW.

mod command;
mod console;
mod control;
mod settings;
mod show;
mod show_state;
mod table;
mod time;

pub use console::serve;
