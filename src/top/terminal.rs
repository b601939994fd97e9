//! The terminal while `churnstile top` runs: raw mode (no echo, no line
//! buffering, Ctrl-C arrives as a key) on the alternate screen, restored
//! by `Drop` however the view ends.

use std::io::{self, IsTerminal, Read, Write};
use std::time::{Duration, Instant};

use rustix::termios::{
    OptionalActions, SpecialCodeIndex, Termios, tcgetattr, tcgetwinsize, tcsetattr,
};

/// Keys the view acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Key {
    Quit,
    Other,
}

/// q, Q, Ctrl-C and Ctrl-D quit.
fn key(byte: u8) -> Key {
    match byte {
        b'q' | b'Q' | 0x03 | 0x04 => Key::Quit,
        _ => Key::Other,
    }
}

/// Raw mode on the alternate screen, until dropped.
pub(super) struct RawTerminal {
    saved: Termios,
}

/// Deciseconds a read waits for a key before looking at the clock again.
const KEY_POLL: u8 = 1;

impl RawTerminal {
    pub(super) fn enter() -> io::Result<Self> {
        if !io::stdout().is_terminal() {
            return Err(io::Error::other("standard output is not a terminal"));
        }
        let stdin = io::stdin();
        let saved = tcgetattr(&stdin)?;
        let mut raw = saved.clone();
        raw.make_raw();
        raw.special_codes[SpecialCodeIndex::VMIN] = 0;
        raw.special_codes[SpecialCodeIndex::VTIME] = KEY_POLL;
        tcsetattr(&stdin, OptionalActions::Now, &raw)?;
        let terminal = RawTerminal { saved };
        // Alternate screen, cursor hidden.
        terminal.write(b"\x1b[?1049h\x1b[?25l")?;
        Ok(terminal)
    }

    fn write(&self, bytes: &[u8]) -> io::Result<()> {
        let mut stdout = io::stdout().lock();
        stdout.write_all(bytes)?;
        stdout.flush()
    }

    /// Replaces the screen with `text` (lines separated by "\r\n").
    pub(super) fn draw(&self, text: &str) -> io::Result<()> {
        self.write(format!("\x1b[H\x1b[2J{text}").as_bytes())
    }

    /// Columns and rows; 80×24 when the terminal does not say.
    pub(super) fn size(&self) -> (usize, usize) {
        match tcgetwinsize(io::stdout()) {
            Ok(size) if size.ws_col > 0 && size.ws_row > 0 => {
                (usize::from(size.ws_col), usize::from(size.ws_row))
            }
            _ => (80, 24),
        }
    }

    /// Waits up to `limit` for a key; `None` when none was pressed.
    pub(super) fn wait_key(&self, limit: Duration) -> io::Result<Option<Key>> {
        let deadline = Instant::now() + limit;
        let mut byte = [0u8];
        loop {
            // Returns 0 after KEY_POLL deciseconds without input (VTIME).
            if io::stdin().lock().read(&mut byte)? == 1 {
                return Ok(Some(key(byte[0])));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = self.write(b"\x1b[?25h\x1b[?1049l");
        let _ = tcsetattr(io::stdin(), OptionalActions::Now, &self.saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_and_ctrl_c_quit() {
        assert_eq!(key(b'q'), Key::Quit);
        assert_eq!(key(b'Q'), Key::Quit);
        assert_eq!(key(0x03), Key::Quit);
        assert_eq!(key(b' '), Key::Other);
    }
}
