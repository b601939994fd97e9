//! One admin console session: greets the client as a server would, then
//! answers simple-protocol queries until the client leaves or churnstile
//! shuts down. The extended protocol is refused politely (ERROR at Sync).

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::command::{self, Command};
use super::control::{self, Failed};
use super::show::show;
use super::table::{command_complete, empty_query_response, notice};
use crate::postgres::ConsoleLogin;
use crate::postgres::wire::codec::{MAX_SMALL_MESSAGE, decode_message, take_cstr};
use crate::postgres::wire::messages::{self, Severity, sqlstate};
use crate::proxy::Proxy;

/// SQLSTATE for a stats user's attempt to change something.
const INSUFFICIENT_PRIVILEGE: &str = "42501";

/// What the console tells a client about itself at login.
const PARAMETERS: &[(&str, &str)] = &[
    ("server_version", "16.0 (churnstile admin console)"),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("DateStyle", "ISO, MDY"),
    ("integer_datetimes", "on"),
    ("standard_conforming_strings", "on"),
    ("application_name", ""),
];

/// Serves an authenticated admin user until the connection ends.
pub async fn serve(proxy: &Proxy, login: ConsoleLogin) {
    let ConsoleLogin {
        mut stream,
        mut buf,
        peer,
        user,
    } = login;
    tracing::info!(%peer, "admin console opened");
    let mut out = BytesMut::new();
    for (name, value) in PARAMETERS {
        messages::parameter_status(&mut out, name, value);
    }
    messages::ready_for_query(&mut out, b'I');
    // After an extended-protocol message, everything up to Sync is skipped.
    let mut skipping_to_sync = false;
    loop {
        loop {
            let message = match decode_message(&mut buf, MAX_SMALL_MESSAGE * 100) {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(error) => {
                    messages::error_response(
                        &mut out,
                        Severity::Fatal,
                        sqlstate::PROTOCOL_VIOLATION,
                        &error.to_string(),
                    );
                    let _ = stream.write_all(&out).await;
                    return;
                }
            };
            match message.tag {
                b'X' => return,
                b'Q' if !skipping_to_sync => {
                    let mut body = &message.body[..];
                    let sql = take_cstr(&mut body).unwrap_or_default().to_owned();
                    run_query(proxy, &user, &sql, &mut out).await;
                    messages::ready_for_query(&mut out, b'I');
                }
                b'S' => {
                    skipping_to_sync = false;
                    messages::ready_for_query(&mut out, b'I');
                }
                b'P' | b'B' | b'D' | b'E' | b'C' | b'H' | b'F' if !skipping_to_sync => {
                    skipping_to_sync = true;
                    messages::error_response(
                        &mut out,
                        Severity::Error,
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        "the admin console speaks the simple query protocol only",
                    );
                }
                _ => {}
            }
        }
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
        tokio::select! {
            () = proxy.shutdown.cancelled() => {
                messages::error_response(&mut out, Severity::Fatal, sqlstate::ADMIN_SHUTDOWN, "terminating connection due to administrator command");
                let _ = stream.write_all(&out).await;
                return;
            }
            read = stream.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
        }
    }
}

/// Runs every command in `sql`, stopping at the first that fails.
async fn run_query(proxy: &Proxy, user: &str, sql: &str, out: &mut BytesMut) {
    let commands = command::parse(sql);
    if commands.is_empty() {
        empty_query_response(out);
        return;
    }
    for parsed in commands {
        let result = match parsed {
            Ok(command) => match may_run(proxy, user, &command) {
                Ok(()) => execute(proxy, command, out).await,
                Err(failed) => Err(failed),
            },
            Err(error) => Err(Failed {
                code: sqlstate::SYNTAX_ERROR,
                message: error.to_string(),
            }),
        };
        if let Err(Failed { code, message }) = result {
            messages::error_response(out, Severity::Error, code, &message);
            return;
        }
    }
}

/// Admin users may run everything; stats users (PgBouncer's split of
/// rights) only SHOW. Read per command, so RELOAD changes it at once.
fn may_run(proxy: &Proxy, user: &str, command: &Command) -> Result<(), Failed> {
    let config = proxy.config.load();
    let admin = config.general.observe.admin_users.iter().any(|u| u == user);
    if admin || matches!(command, Command::Show(_)) {
        return Ok(());
    }
    Err(Failed {
        code: INSUFFICIENT_PRIVILEGE,
        message: format!(
            "user \"{user}\" may only SHOW (in [general] stats_users, not admin_users)"
        ),
    })
}

async fn execute(proxy: &Proxy, command: Command, out: &mut BytesMut) -> Result<(), Failed> {
    let tag = match command {
        Command::Show(listing) => {
            show(proxy, listing).await.encode("SHOW", out);
            return Ok(());
        }
        Command::Pause(database) => {
            control::pause(proxy, database.as_deref()).await?;
            "PAUSE"
        }
        Command::Resume(database) => {
            control::resume(proxy, database.as_deref())?;
            "RESUME"
        }
        Command::Kill(database) => {
            let killed = control::kill(proxy, &database)?;
            notice(
                out,
                &format!(
                    "{killed} clients of {database} disconnected; it stays paused until RESUME"
                ),
            );
            "KILL"
        }
        Command::Reload => {
            for note in control::reload(proxy)? {
                notice(out, &note);
            }
            "RELOAD"
        }
        Command::Suspend => {
            return Err(Failed {
                code: sqlstate::FEATURE_NOT_SUPPORTED,
                message: "SUSPEND is not supported: churnstile does not hand its sockets to a \
                          new process; use PAUSE to drain the pools, or restart with SIGTERM"
                    .to_owned(),
            });
        }
        Command::Shutdown { wait_for_clients } => {
            control::shutdown(wait_for_clients)?;
            "SHUTDOWN"
        }
    };
    command_complete(out, tag);
    Ok(())
}
