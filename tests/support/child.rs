//! Child processes that cannot outlive the test process: spawned with a
//! parent-death signal, waited for with bounds, stopped politely then firmly.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::process::{Pid, Signal};

const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How a child that should start serving turned out.
pub enum Startup {
    Ready,
    Exited(ExitStatus),
    TimedOut,
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `command` so that the kernel SIGKILLs it when the test process
/// dies, however it dies.
///
/// The parent-death signal fires when the *thread* that forked the child
/// exits. Test threads end with each test and tokio's blocking threads when
/// idle, so every child is forked by one thread that lives as long as the
/// process.
pub fn spawn_supervised(mut command: Command) -> io::Result<Child> {
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs between fork and exec and makes only
    // async-signal-safe calls (prctl, signal, getppid).
    unsafe {
        command.pre_exec(move || {
            // std runs these closures after setgid/setuid, so the credential
            // change cannot clear the signal again.
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            // A test run started in the background ignores SIGINT and SIGQUIT,
            // and children inherit that; restore what a terminal would give.
            for ignored in [libc::SIGINT, libc::SIGQUIT] {
                if libc::signal(ignored, libc::SIG_DFL) == libc::SIG_ERR {
                    return Err(io::Error::last_os_error());
                }
            }
            // The parent may have died before the signal was armed.
            if rustix::process::getppid() != Some(parent) {
                // No allocation between fork and exec: a plain errno.
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner()
        .send((command, reply_tx))
        .expect("child-spawner thread is running");
    reply_rx.recv().expect("child-spawner thread replies")
}

fn spawner() -> &'static mpsc::Sender<SpawnRequest> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (requests, incoming) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("child-spawner".into())
            .spawn(move || {
                for (mut command, reply) in incoming {
                    // The requester may have given up; nothing to report to.
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("starting the child-spawner thread");
        requests
    })
}

/// Sends the child's stdout and stderr to the end of `log` (kept across
/// restarts, so one log tells the whole story).
pub fn output_to(command: &mut Command, log: &Path) {
    let file = append(log);
    let copy = file
        .try_clone()
        .unwrap_or_else(|e| panic!("duplicating {}: {e}", log.display()));
    command.stdout(file).stderr(copy);
}

/// Opens `path` for appending, creating it.
pub fn append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
}

/// Polls `probe` until it succeeds, the child exits, or `timeout` passes.
pub fn wait_ready(
    child: &mut Child,
    timeout: Duration,
    mut probe: impl FnMut() -> bool,
) -> Startup {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Startup::Exited(status);
        }
        if probe() {
            return Startup::Ready;
        }
        if Instant::now() >= deadline {
            return Startup::TimedOut;
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Waits up to `timeout` for the child to exit; `None` if it is still running.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(POLL_INTERVAL),
            Ok(None) | Err(_) => return None,
        }
    }
}

/// Sends `signal` to a child that has not been reaped yet.
pub fn send_signal(child: &mut Child, signal: Signal) {
    // A reaped child's PID may already belong to another process.
    if let Ok(None) = child.try_wait() {
        let pid = Pid::from_child(child);
        rustix::process::kill_process(pid, signal)
            .unwrap_or_else(|e| panic!("sending {signal:?} to PID {pid:?}: {e}"));
    }
}

/// Sends `polite` (the server's own shutdown signal), waits up to `grace`,
/// then SIGKILLs; returns once the child is reaped. Never panics, so it is
/// safe in `Drop` during a panic.
pub fn stop(child: &mut Child, polite: Signal, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    // ESRCH here means it exited just now; the wait below reaps it.
    let _ = rustix::process::kill_process(Pid::from_child(child), polite);
    if let Some(status) = wait_exit(child, grace) {
        return Some(status);
    }
    let _ = child.kill();
    child.wait().ok()
}

/// Whether a process with this PID exists (zombies included).
pub fn pid_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(errno) => errno == Errno::PERM,
    }
}

/// `128 + signal` for a child killed by a signal, as shells report it.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}
