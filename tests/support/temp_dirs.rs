//! Temp directories for servers and proxies, and sweeping up the ones a
//! killed test run (Ctrl-C, SIGKILL) could not remove itself.

use std::fs;
use std::path::Path;
use std::sync::Once;

use tempfile::TempDir;

use super::child::pid_alive;

/// Always /tmp, not $TMPDIR: service accounts must reach the directory, and
/// Unix socket paths in it must stay under the 107-byte limit.
const ROOT: &str = "/tmp";
const PREFIX: &str = "churnstile-";
/// Names the test process that owns the directory.
const OWNER_FILE: &str = "owner.pid";

/// A fresh `/tmp/churnstile-<kind>-XXXXXX`, removed when dropped.
pub fn temp_dir(kind: &str) -> TempDir {
    static SWEEP: Once = Once::new();
    SWEEP.call_once(remove_orphans);
    let dir = tempfile::Builder::new()
        .prefix(&format!("{PREFIX}{kind}-"))
        .tempdir_in(ROOT)
        .unwrap_or_else(|e| panic!("creating a temp dir for {kind} in {ROOT}: {e}"));
    let owner = dir.path().join(OWNER_FILE);
    fs::write(&owner, std::process::id().to_string())
        .unwrap_or_else(|e| panic!("writing {}: {e}", owner.display()));
    dir
}

/// Removes directories whose owning test process is gone; those of other
/// test runs still going (and any without an owner file) are left alone.
fn remove_orphans() {
    let Ok(entries) = fs::read_dir(ROOT) else {
        return;
    };
    for entry in entries.flatten() {
        let is_ours = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(PREFIX));
        if is_ours && owner_is_gone(&entry.path()) {
            // Best effort: another run may be sweeping the same directory.
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn owner_is_gone(dir: &Path) -> bool {
    fs::read_to_string(dir.join(OWNER_FILE))
        .ok()
        .and_then(|pid| pid.trim().parse().ok())
        .is_some_and(|pid| pid != std::process::id() && !pid_alive(pid))
}
