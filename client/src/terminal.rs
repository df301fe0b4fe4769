//! The terminal mode of the interactive REPL between two lines.
//!
//! The line editor puts the terminal in raw mode while it reads a line and
//! gives it back, when the line is read, in the mode it found. Were that the
//! terminal's usual (cooked) mode, lines typed while a command runs would be
//! echoed at once, in the middle of the command's output, the kernel's line
//! editing would change them (Ctrl-D typed ahead would become a NUL), and
//! Ctrl-C would kill the client. So the REPL puts the terminal in
//! [`CommandMode`] for its whole run: neither echo nor line editing, so
//! what is typed waits in the kernel byte for byte, as the editor's raw
//! mode would have read it, for the editor's next read, which shows each
//! line after its own prompt; but Ctrl-C still raises SIGINT, which the
//! REPL catches to cancel the running command (as in a shell, the kernel
//! then also drops what was typed ahead of it).

use nix::sys::termios::{
    tcflush, tcgetattr, tcsetattr, FlushArg, InputFlags, LocalFlags, SetArg, Termios,
};

/// While alive, stdin's terminal is in command mode; the mode it had is
/// restored on drop.
#[derive(Debug)]
pub struct CommandMode {
    /// The mode to restore.
    saved: Termios,
}

impl CommandMode {
    /// Switches stdin's terminal to command mode. Fails if stdin is not a
    /// terminal.
    pub fn enter() -> nix::Result<CommandMode> {
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin)?;
        tcsetattr(&stdin, SetArg::TCSANOW, &command_mode(&saved))?;
        Ok(CommandMode { saved })
    }

    /// Sets command mode again (a no-op unless something changed the
    /// terminal's mode meanwhile).
    pub fn reassert(&self) {
        set_mode(&command_mode(&self.saved));
    }

    /// The mode the terminal had before, to restore it from elsewhere (a
    /// signal handler about to exit).
    pub fn saved(&self) -> &Termios {
        &self.saved
    }
}

impl Drop for CommandMode {
    fn drop(&mut self) {
        set_mode(&self.saved);
    }
}

/// Puts stdin's terminal in `mode`, if it still is a terminal.
pub fn set_mode(mode: &Termios) {
    let _ = tcsetattr(std::io::stdin(), SetArg::TCSANOW, mode);
}

/// Drops whatever was typed and not read yet (after Ctrl-C at the prompt,
/// as the kernel itself does for Ctrl-C during a command).
pub fn discard_typed_ahead() {
    let _ = tcflush(std::io::stdin(), FlushArg::TCIFLUSH);
}

/// Whether the line editor (rustyline) edits lines on this terminal: not
/// when `$TERM` names one of the terminals it leaves alone (its own list),
/// where it reads plain lines in the terminal's cooked mode.
pub fn line_editing() -> bool {
    edits_lines_on(&std::env::var("TERM").unwrap_or_default())
}

/// Whether the line editor edits lines on a terminal of type `term`.
fn edits_lines_on(term: &str) -> bool {
    !["dumb", "cons25", "emacs"]
        .iter()
        .any(|t| t.eq_ignore_ascii_case(term))
}

/// `cooked` without echo and line editing (so typed bytes wait unchanged,
/// Enter as CR as in the editor's raw mode), with Ctrl-C as SIGINT.
/// Output processing is kept, so printed lines still end in CR LF.
pub fn command_mode(cooked: &Termios) -> Termios {
    let mut mode = cooked.clone();
    mode.local_flags &= !(LocalFlags::ECHO | LocalFlags::ICANON | LocalFlags::IEXTEN);
    mode.local_flags |= LocalFlags::ISIG;
    mode.local_flags &= !LocalFlags::NOFLSH;
    mode.input_flags &= !InputFlags::ICRNL;
    mode
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::termios::OutputFlags;

    #[test]
    fn command_mode_queues_input_silently_but_keeps_ctrl_c_and_output() {
        // SAFETY: termios is plain old data; all-zero is a valid value.
        let mut cooked: Termios = unsafe { std::mem::zeroed::<nix::libc::termios>() }.into();
        cooked.local_flags = LocalFlags::ECHO
            | LocalFlags::ICANON
            | LocalFlags::IEXTEN
            | LocalFlags::ISIG
            | LocalFlags::ECHOE;
        cooked.input_flags = InputFlags::ICRNL | InputFlags::IXON;
        cooked.output_flags = OutputFlags::OPOST | OutputFlags::ONLCR;
        let mode = command_mode(&cooked);
        assert_eq!(mode.local_flags, LocalFlags::ISIG | LocalFlags::ECHOE);
        assert_eq!(mode.input_flags, InputFlags::IXON);
        assert_eq!(mode.output_flags, cooked.output_flags);
    }

    #[test]
    fn dumb_terminals_get_no_line_editing() {
        assert!(edits_lines_on("xterm"));
        assert!(edits_lines_on(""));
        assert!(!edits_lines_on("DUMB"));
        assert!(!edits_lines_on("emacs"));
    }
}
