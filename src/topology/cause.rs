//! Why a node is re-based and how: the plan's and status's words are
//! rendered from these types, decisions read them.

use crate::observed::Lsn;
use crate::plan::{Step, step};
use crate::text::human_bytes;

/// Why a node is re-based; the plan's and status's words are rendered
/// from it, decisions read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebaseCause {
    /// Another initdb: only a base backup helps.
    OtherCluster { system_identifier: String },
    /// A pg_rewind into it started and never finished.
    RewindInterrupted { data_dir: String },
    /// Its slot on the primary lost WAL it still needs.
    LostSlot,
    /// Runs as a second primary, with no WAL past the fork.
    SecondPrimary { timeline: u32 },
    /// Stopped after a crash while a primary: its end of WAL is unknown.
    Crashed { checkpoint: Lsn, timeline: u32 },
    /// Wrote WAL on `timeline` past the primary's fork from it; `crashed`:
    /// and then stopped without a clean shutdown while a primary.
    Diverged {
        timeline: u32,
        fork: Lsn,
        discarded_bytes: u64,
        at_least: bool,
        crashed: bool,
    },
    /// On a timeline the primary's history lacks.
    OtherBranch { timeline: u32, end: Lsn },
}

impl RebaseCause {
    /// Whether pg_rewind can repair it at all.
    pub fn rewindable(&self) -> bool {
        !matches!(
            self,
            RebaseCause::OtherCluster { .. }
                | RebaseCause::RewindInterrupted { .. }
                | RebaseCause::LostSlot
        )
    }

    /// What the node is, as the plan's before column says it.
    pub fn label(&self) -> &'static str {
        match self {
            RebaseCause::Crashed { .. } | RebaseCause::Diverged { crashed: true, .. } => {
                "crashed (end of WAL unknown)"
            }
            RebaseCause::RewindInterrupted { .. } => "pg_rewind interrupted",
            RebaseCause::OtherCluster { .. } => "another cluster",
            RebaseCause::LostSlot => "slot lost",
            RebaseCause::SecondPrimary { .. }
            | RebaseCause::Diverged { .. }
            | RebaseCause::OtherBranch { .. } => "diverged",
        }
    }

    /// Why, in words; `primary` is the node it must follow.
    pub fn describe(&self, primary: &str) -> String {
        match self {
            RebaseCause::OtherCluster { system_identifier } => format!(
                "its system identifier {system_identifier} differs from {primary}'s: another cluster"
            ),
            RebaseCause::RewindInterrupted { data_dir } => format!(
                "a pg_rewind into it was interrupted ({data_dir}.pgrepl-rewinding exists), which can leave it inconsistent"
            ),
            RebaseCause::LostSlot => {
                format!("its slot on {primary} lost WAL it still needs (wal_status lost)")
            }
            RebaseCause::SecondPrimary { timeline } => format!(
                "runs as a second primary on timeline {timeline} (no WAL past the fork); it becomes a standby of {primary}"
            ),
            // Crash recovery would replay WAL nobody has seen: its end is
            // only known once read, so it never starts before pg_rewind
            // compared it with the primary.
            RebaseCause::Crashed {
                checkpoint,
                timeline,
            } => format!(
                "it stopped without a clean shutdown while it was a primary (pg_control: in production, last checkpoint {checkpoint} on timeline {timeline}): its end of WAL is unknown, so it may hold WAL {primary} lacks"
            ),
            RebaseCause::Diverged {
                timeline,
                fork,
                discarded_bytes,
                at_least,
                ..
            } => format!(
                "diverged at {fork} on timeline {timeline}: {}{} of WAL written there after the fork are discarded",
                if *at_least { "at least " } else { "" },
                human_bytes(*discarded_bytes)
            ),
            RebaseCause::OtherBranch { timeline, end } => format!(
                "is on timeline {timeline} (up to {end}), which is not in {primary}'s history"
            ),
        }
    }
}

/// How a node is re-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// pg_rewind, falling back to a base backup if it fails.
    Rewind,
    /// A fresh base backup; why not pg_rewind, where it could have served.
    BaseBackup(Option<NoRewind>),
}

/// Why pg_rewind cannot repair a cause it could repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRewind {
    /// The file has no `[rewind]` role.
    NoRole,
    /// The node has neither wal_log_hints nor data checksums.
    NoHints,
}

/// A node re-based in this plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebase {
    pub node: String,
    /// The primary it is re-based from.
    pub source: String,
    pub cause: RebaseCause,
    pub method: Method,
    /// Where its old data directory goes if it is replaced.
    pub keep_as: String,
    /// Only the promotion this plan makes calls for it (a standby holding
    /// WAL past the failover candidate's): it has not diverged before.
    pub after_promotion: bool,
}

impl Rebase {
    /// Why it is re-based, in words.
    pub fn why(&self) -> String {
        self.cause.describe(&self.source)
    }

    /// How, in words.
    pub fn how(&self) -> String {
        let keep = &self.keep_as;
        match self.method {
            Method::Rewind => format!(
                "pg_rewind from {} (after a CHECKPOINT there, with the WAL it discards copied to {}); if it fails once connected, a fresh base backup with the old data directory kept at {keep}",
                self.source,
                keep.replace(".pgrepl-old-", ".pgrepl-diverged-wal-")
            ),
            Method::BaseBackup(Some(NoRewind::NoRole)) => format!(
                "a fresh base backup (no [rewind] role in the file); the old data directory is kept at {keep}"
            ),
            Method::BaseBackup(Some(NoRewind::NoHints)) => format!(
                "a fresh base backup (pg_rewind needs wal_log_hints or data checksums); the old data directory is kept at {keep}"
            ),
            Method::BaseBackup(None) => {
                format!("a fresh base backup; the old data directory is kept at {keep}")
            }
        }
    }

    pub(super) fn step(&self) -> Step {
        let mut s = step::rebase(
            &self.node,
            &self.source,
            self.method == Method::Rewind,
            self.keep_as.clone(),
        );
        s.before = Some(self.cause.label().into());
        s.after = Some(format!("standby of {}", self.source));
        s.reason = format!(
            "{}; re-base by {}; its own settings and hba are checked once it streams again (known after apply)",
            self.why(),
            self.how()
        );
        s
    }
}
