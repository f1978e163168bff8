//! The CLI's one error type, its exit codes, and the one place errors are
//! printed. A command returns `Ok(Exit)` for an outcome (success, changes
//! present, an unhealthy cluster) and `Err(CommandError)` for an error,
//! with a kind that picks the exit code, notes, and hints for what to do.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::ConfigError;
use crate::quote::{terminal, terminal_painted};

/// How a command ended; each is one exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// 0: done; with `plan --detailed-exitcode`, no changes.
    Success,
    /// 1: an error.
    Error,
    /// 2: `plan --detailed-exitcode` found changes.
    Changes,
    /// 3: `status` found a node unhealthy.
    Unhealthy,
    /// 4: the plan is blocked: some node could not be planned.
    Blocked,
    /// 130: cancelled with Ctrl-C (SIGINT).
    Cancelled,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Error => 1,
            Exit::Changes => 2,
            Exit::Unhealthy => 3,
            Exit::Blocked => 4,
            Exit::Cancelled => 130,
        }
    }
}

/// The exit codes, as `pgrepl --help` shows them (and the README).
pub const EXIT_CODES: &str = "\
Exit codes:
  0    success; with plan --detailed-exitcode: no changes
  1    an error (a failed step, a refused apply, a cluster left different from the file)
  2    plan --detailed-exitcode: changes present
  3    status: some node is unhealthy
  4    the plan is blocked: some node could not be planned (plan, apply); nothing was changed
  130  cancelled (Ctrl-C): apply stops at the next step boundary and says what it did";

/// What an error is, which picks its exit code and how it is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The cluster file is wrong: its own report (file, line, caret, hint).
    Config,
    /// A failure or a refusal: exit 1.
    Failed,
    /// Some node could not be planned: exit 4.
    Blocked,
    /// Stopped by Ctrl-C: exit 130.
    Cancelled,
}

/// An error on its way to the one place that prints it.
#[derive(Debug)]
pub struct CommandError {
    pub kind: Kind,
    pub error: anyhow::Error,
    /// Lines printed after the message (what was done, the plan that stopped it).
    pub notes: Vec<String>,
    /// What to do about it, each printed as `hint: ...`.
    pub hints: Vec<String>,
}

impl CommandError {
    pub fn new(kind: Kind, error: impl Into<anyhow::Error>) -> Self {
        CommandError {
            kind,
            error: error.into(),
            notes: Vec::new(),
            hints: Vec::new(),
        }
    }

    pub fn failed(msg: impl fmt::Display) -> Self {
        Self::new(Kind::Failed, anyhow::anyhow!("{msg}"))
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }

    pub fn exit(&self) -> Exit {
        match self.kind {
            Kind::Config | Kind::Failed => Exit::Error,
            Kind::Blocked => Exit::Blocked,
            Kind::Cancelled => Exit::Cancelled,
        }
    }

    /// The text printed on stderr. A server's error or a node's text in
    /// the chain, the notes or the hints has its control characters escaped.
    pub fn render(&self) -> String {
        let mut out = match (self.kind, self.error.downcast_ref::<ConfigError>()) {
            (Kind::Config, Some(config)) => format!("{config}\n"),
            _ => format!("error: {}\n", terminal(&format!("{:#}", self.error))),
        };
        for note in &self.notes {
            // A note may be a plan rendered in colour (its node text
            // already escaped there): its colours stay.
            out.push_str(&terminal_painted(note));
            if !note.ends_with('\n') {
                out.push('\n');
            }
        }
        for hint in &self.hints {
            out.push_str(&format!("hint: {}\n", terminal(hint)));
        }
        out
    }
}

/// Any other error: a config error keeps its report, the rest fail (exit 1).
impl<E: Into<anyhow::Error>> From<E> for CommandError {
    fn from(err: E) -> Self {
        let error = err.into();
        let kind = if error.downcast_ref::<ConfigError>().is_some() {
            Kind::Config
        } else {
            Kind::Failed
        };
        CommandError::new(kind, error)
    }
}

/// Prints a command's error: the one place errors are printed.
pub fn report(err: &CommandError) {
    eprint_text(&err.render());
}

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes to stdout. A reader that went away (`pgrepl plan | head -1`)
/// ends the output quietly, not the command: its exit code still says how
/// it ended. Any other write error is an error.
///
/// This and `eprint_text` are where every command's text reaches the
/// terminal: a control character a node slipped into it (a status line, a
/// setting's value) is escaped here; the colours pgrepl painted stay.
pub fn print_text(text: &str) -> Result<(), CommandError> {
    if STDOUT_CLOSED.load(Ordering::SeqCst) {
        return Ok(());
    }
    let text = terminal_painted(text);
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            STDOUT_CLOSED.store(true, Ordering::SeqCst);
            Ok(())
        }
        Err(e) => Err(anyhow::Error::new(e)
            .context("cannot write to standard output")
            .into()),
    }
}

/// Whether a reader of stdout went away.
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::SeqCst)
}

/// Writes to stderr (control characters escaped, as `print_text`); a
/// closed stderr is not worth a panic.
pub fn eprint_text(text: &str) {
    let text = terminal_painted(text);
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_exit_code_and_the_help_lists_them_all() {
        let failed = CommandError::failed("x");
        assert_eq!(failed.exit().code(), 1);
        assert_eq!(
            CommandError::new(Kind::Blocked, anyhow::anyhow!("b"))
                .exit()
                .code(),
            4
        );
        assert_eq!(
            CommandError::new(Kind::Cancelled, anyhow::anyhow!("c"))
                .exit()
                .code(),
            130
        );
        for exit in [
            Exit::Success,
            Exit::Error,
            Exit::Changes,
            Exit::Unhealthy,
            Exit::Blocked,
            Exit::Cancelled,
        ] {
            let line = format!("\n  {:<4} ", exit.code());
            assert!(EXIT_CODES.contains(&line), "{exit:?} is not in the help");
        }
    }

    #[test]
    fn an_error_prints_its_chain_then_notes_then_hints() {
        let err = CommandError::from(anyhow::anyhow!("inner").context("outer"))
            .note("Done before the failure:\n  + a")
            .hint("do this");
        assert_eq!(
            err.render(),
            "error: outer: inner\nDone before the failure:\n  + a\nhint: do this\n"
        );
    }

    #[test]
    fn a_servers_error_cannot_drive_the_terminal() {
        let err = CommandError::from(
            anyhow::anyhow!("ERROR: bad\x1b[2J\rrole \x07").context("node1: ALTER ROLE"),
        )
        .note("Done:\n  + a\x1b]0;title\x07");
        let text = err.render();
        assert!(
            !text.contains('\x1b') && !text.contains('\r') && !text.contains('\x07'),
            "{text:?}"
        );
        assert!(
            text.starts_with("error: node1: ALTER ROLE: ERROR: bad\\x1b[2J\\x0drole \\x07\n"),
            "{text}"
        );
        assert!(text.contains("Done:\n  + a\\x1b]0;title\\x07\n"), "{text}");
    }
}
