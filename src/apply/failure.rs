//! What a failed apply tells its operator: whether running it again helps.
//!
//! A failure is classified by the types in its error chain, never by its
//! text: a node or link that went away (a lost connection, a timeout, an
//! unreachable node, a killed command) is transient, and a rerun continues
//! once the node answers; anything else (a server refusing a value, a
//! permission denied, a full disk, a command exiting non-zero) fails the
//! same way until its cause is fixed.

use std::error::Error as StdError;
use std::fmt;
use std::io::ErrorKind;

use crate::transport::{self, Cause};

/// The node and step a failure happened in: the context every failed
/// step's error carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailed {
    pub node: String,
    pub address: String,
}

impl fmt::Display for StepFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: step {} failed", self.node, self.address)
    }
}

/// A marker for a failure that goes away by itself: the node could not be
/// reached, or a wait on it ran out. Attach it where no typed cause
/// (`std::io::Error`, an SSH or PostgreSQL error (`transport::cause`),
/// `tokio::time::error::Elapsed`) says so already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transient(pub String);

impl fmt::Display for Transient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Transient {}

/// Whether a failure will happen again on a rerun.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recurrence {
    /// The node or the way to it went away; what happened, in a few words.
    Transient(&'static str),
    /// It fails the same way until its cause is fixed; the server's
    /// SQLSTATE when a server refused.
    Repeats { sqlstate: Option<String> },
}

/// Classifies `err` by the first typed cause in its chain; a failure with
/// none (a command that exited non-zero, a check that refused) repeats.
pub fn recurrence(err: &anyhow::Error) -> Recurrence {
    if err.downcast_ref::<Transient>().is_some() {
        return Recurrence::Transient("the node could not be reached");
    }
    err.chain()
        .find_map(classify)
        .unwrap_or(Recurrence::Repeats { sqlstate: None })
}

fn classify(cause: &(dyn StdError + 'static)) -> Option<Recurrence> {
    if cause.is::<Transient>() {
        return Some(Recurrence::Transient("the node could not be reached"));
    }
    if let Some(c) = transport::cause(cause) {
        return Some(match c {
            Cause::Gone(what) => Recurrence::Transient(what),
            Cause::Refused { sqlstate } => Recurrence::Repeats { sqlstate },
        });
    }
    if cause.is::<tokio::time::error::Elapsed>() {
        return Some(Recurrence::Transient("timed out"));
    }
    cause.downcast_ref::<std::io::Error>().map(|e| io(e.kind()))
}

fn io(kind: ErrorKind) -> Recurrence {
    match kind {
        ErrorKind::ConnectionRefused
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::NotConnected
        | ErrorKind::BrokenPipe
        | ErrorKind::UnexpectedEof
        | ErrorKind::HostUnreachable
        | ErrorKind::NetworkUnreachable
        | ErrorKind::NetworkDown => Recurrence::Transient("the connection was lost"),
        ErrorKind::TimedOut => Recurrence::Transient("timed out"),
        ErrorKind::Interrupted => Recurrence::Transient("interrupted"),
        _ => Recurrence::Repeats { sqlstate: None },
    }
}

/// What to do next after a failed apply, for the operator.
pub fn next_step(err: &anyhow::Error) -> String {
    if err.downcast_ref::<super::Locked>().is_some() {
        return "another apply holds the lock: once it is done, run `pgrepl plan` and `pgrepl apply`"
            .into();
    }
    let step = err.downcast_ref::<StepFailed>();
    match recurrence(err) {
        Recurrence::Transient(what) => {
            let when = step.map_or_else(
                || "once the nodes answer".to_string(),
                |s| format!("once {} answers", s.node),
            );
            format!(
                "this looks transient ({what}): {when}, run `pgrepl apply` again to continue from the state that is now live"
            )
        }
        Recurrence::Repeats { sqlstate } => {
            let refused = sqlstate.map_or_else(String::new, |c| {
                format!(" (the server refused it: SQLSTATE {c})")
            });
            let at = step.map_or_else(String::new, |s| {
                format!(" on {} (step {})", s.node, s.address)
            });
            format!(
                "running apply again would fail the same way{refused}: fix the cause{at} first, then run `pgrepl plan` and `pgrepl apply`"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(e: anyhow::Error) -> anyhow::Error {
        e.context(StepFailed {
            node: "node2".into(),
            address: "node2.standby".into(),
        })
    }

    #[test]
    fn a_lost_connection_a_timeout_and_an_unreachable_node_are_transient() {
        let reset = anyhow::Error::new(std::io::Error::from(ErrorKind::ConnectionReset))
            .context("reading the answer");
        assert_eq!(
            recurrence(&step(reset)),
            Recurrence::Transient("the connection was lost")
        );
        let gone =
            anyhow::anyhow!("no SSH session").context(Transient("node2 is unreachable".into()));
        assert!(matches!(recurrence(&step(gone)), Recurrence::Transient(_)));
        let hint = next_step(&step(anyhow::Error::new(std::io::Error::from(
            ErrorKind::TimedOut,
        ))));
        assert!(
            hint.contains("once node2 answers, run `pgrepl apply` again"),
            "{hint}"
        );
    }

    #[test]
    fn an_elapsed_wait_is_transient() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let elapsed = rt
            .block_on(async {
                tokio::time::timeout(
                    std::time::Duration::from_millis(1),
                    std::future::pending::<()>(),
                )
                .await
            })
            .expect_err("times out");
        let err = anyhow::Error::new(elapsed).context("node2: `pg_ctl` did not finish");
        assert_eq!(recurrence(&err), Recurrence::Transient("timed out"));
    }

    #[test]
    fn a_refusal_a_full_disk_and_a_failed_command_repeat() {
        let denied = anyhow::Error::new(std::io::Error::from(ErrorKind::PermissionDenied));
        assert_eq!(recurrence(&denied), Recurrence::Repeats { sqlstate: None });
        let full = anyhow::Error::new(std::io::Error::from(ErrorKind::StorageFull));
        assert!(matches!(recurrence(&full), Recurrence::Repeats { .. }));
        let exited = anyhow::anyhow!("pg_basebackup failed (exit 1): could not create directory");
        let hint = next_step(&step(exited));
        assert!(
            hint.contains("fail the same way: fix the cause on node2 (step node2.standby) first"),
            "{hint}"
        );
        assert!(!hint.contains("again to continue"), "{hint}");
    }

    #[test]
    fn a_held_lock_says_to_wait_for_the_other_apply() {
        let err = anyhow::Error::new(super::super::Locked("cluster \"c\" is locked".into()));
        assert!(
            next_step(&err).contains("once it is done"),
            "{}",
            next_step(&err)
        );
    }

    #[test]
    fn without_a_step_the_hint_names_no_node() {
        let hint = next_step(&anyhow::Error::new(std::io::Error::from(
            ErrorKind::ConnectionRefused,
        )));
        assert!(hint.contains("once the nodes answer"), "{hint}");
        let hint = next_step(&anyhow::anyhow!("refused"));
        assert!(hint.contains("fix the cause first"), "{hint}");
    }
}
