//! What topology planning yields: its steps, and what keeps a role change
//! or a re-base from being planned, and what a failover risks, as types
//! that decisions read and the plan's text renders.

use std::collections::HashSet;
use std::fmt;

use super::cause::Rebase;
use crate::observed::Lsn;
use crate::plan::{Step, Warning};
use crate::space::Shortfall;
use crate::text::human_bytes;

#[derive(Debug, Default)]
pub struct Topology {
    /// Before the role change (slots on the candidate), then the role change,
    /// then re-bases.
    pub steps: Vec<Step>,
    /// Nodes whose ordinary diff waits for the next round (their role changes now).
    pub deferred: HashSet<String>,
    /// The nodes re-based by `steps`, and why.
    pub rebases: Vec<Rebase>,
    /// What keeps a role change or a re-base from being planned.
    pub obstacles: Vec<Obstacle>,
    pub warnings: Vec<Warning>,
    /// A failover is planned: what it discards (apply needs --force).
    pub failover: Option<FailoverRisk>,
}

impl Topology {
    /// The obstacles as the plan lists its blocked nodes.
    pub fn blocked(&self) -> Vec<Warning> {
        self.obstacles
            .iter()
            .map(|o| Warning {
                node: Some(o.node().to_string()),
                message: o.to_string(),
            })
            .collect()
    }

    /// Why apply needs --force: a failover.
    pub fn needs_force(&self) -> Option<String> {
        self.failover.as_ref().map(FailoverRisk::to_string)
    }

    /// Why apply needs --allow-data-loss too: the candidate lags.
    pub fn data_loss(&self) -> Option<String> {
        self.obstacles
            .iter()
            .find(|o| o.loses_data())
            .map(Obstacle::to_string)
    }

    /// Why apply refuses the plan even with --force.
    pub fn refused(&self) -> Option<String> {
        self.obstacles
            .iter()
            .find(|o| o.refuses())
            .map(Obstacle::to_string)
    }
}

/// A node that cannot be planned now, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Obstacle {
    /// The file names an unreachable node primary and no primary runs:
    /// a failover to it would promote nothing. Refused even with --force.
    CandidateUnreachable {
        candidate: String,
        /// The most advanced reachable standby and what it received.
        best: Option<(String, Lsn)>,
    },
    /// The old primary runs, but the candidate cannot take over cleanly.
    NotReady { candidate: String, why: NotReady },
    /// The candidate is a standby and there is no old primary to replace.
    NoOldPrimary { candidate: String },
    /// A failover candidate further behind than `max_lag_on_failover`:
    /// apply needs --allow-data-loss.
    CandidateBehind {
        candidate: String,
        behind: u64,
        best: String,
        max_lag: u64,
    },
    /// A re-base by base backup whose copy does not fit beside the old
    /// data directory.
    NoRoomToRebase { rebase: Rebase, short: Shortfall },
}

/// Why a running standby cannot be switched over to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// Its system identifier differs from the old primary's.
    OtherInitdb,
    NotStreaming,
    Behind {
        lag: u64,
        primary: String,
        max_lag: u64,
    },
}

impl Obstacle {
    /// The node the plan reports it on.
    pub fn node(&self) -> &str {
        match self {
            Obstacle::CandidateUnreachable { candidate, .. }
            | Obstacle::NotReady { candidate, .. }
            | Obstacle::NoOldPrimary { candidate }
            | Obstacle::CandidateBehind { candidate, .. } => candidate,
            Obstacle::NoRoomToRebase { rebase, .. } => &rebase.node,
        }
    }

    /// Apply refuses the plan even with --force.
    pub fn refuses(&self) -> bool {
        matches!(self, Obstacle::CandidateUnreachable { .. })
    }

    /// Applying anyway discards committed data: --allow-data-loss.
    pub fn loses_data(&self) -> bool {
        matches!(self, Obstacle::CandidateBehind { .. })
    }
}

impl fmt::Display for Obstacle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Obstacle::CandidateUnreachable {
                candidate: want,
                best: Some((name, lsn)),
            } => write!(
                f,
                "cannot fail over to {want}: it cannot be reached and no primary runs; the most advanced reachable standby is {name} (received up to {lsn}): name {name} as primary, or bring {want} back, and plan again"
            ),
            Obstacle::CandidateUnreachable {
                candidate: want,
                best: None,
            } => write!(
                f,
                "cannot fail over to {want}: it cannot be reached, and neither a primary nor a standby can be reached; bring the nodes back and plan again"
            ),
            Obstacle::NotReady {
                candidate: want,
                why,
            } => write!(
                f,
                "cannot switch over to {want}: {why}; wait, or fix it, and plan again"
            ),
            Obstacle::NoOldPrimary { candidate: want } => write!(
                f,
                "{want} runs as a standby and no primary is running, stopped or unreachable to fail over from; check the nodes and plan again"
            ),
            Obstacle::CandidateBehind {
                candidate: want,
                behind,
                best,
                max_lag,
            } => write!(
                f,
                "{want} is {} behind {best} (max_lag_on_failover {}): promoting it would lose committed data; name {best} as primary, or use --allow-data-loss",
                human_bytes(*behind),
                human_bytes(*max_lag),
            ),
            Obstacle::NoRoomToRebase { rebase, short } => write!(
                f,
                "{} {}, and is re-based by {}; that copy needs about {} (databases, the WAL written during the copy, a margin) but its file system has {} free; free some space and plan again",
                rebase.node,
                rebase.why(),
                rebase.how(),
                human_bytes(short.needs),
                human_bytes(short.free)
            ),
        }
    }
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotReady::OtherInitdb => {
                f.write_str("it comes from another initdb (system identifier differs)")
            }
            NotReady::NotStreaming => f.write_str("it is not streaming"),
            NotReady::Behind {
                lag,
                primary,
                max_lag,
            } => write!(
                f,
                "it is {} behind {primary} (max_lag_on_failover {})",
                human_bytes(*lag),
                human_bytes(*max_lag)
            ),
        }
    }
}

/// A planned failover: promoting `candidate` discards whatever the old
/// primary committed after what the candidate received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverRisk {
    pub old: String,
    pub old_state: OldPrimary,
    pub candidate: String,
    pub received: Lsn,
}

/// What became of the primary a failover replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldPrimary {
    Unreachable,
    NotRunning,
}

impl OldPrimary {
    /// As the `before` column names it.
    pub fn label(self) -> &'static str {
        match self {
            OldPrimary::Unreachable => "unreachable",
            OldPrimary::NotRunning => "not running",
        }
    }

    /// As a sentence says it: "the old primary {state}".
    pub fn state(self) -> &'static str {
        match self {
            OldPrimary::Unreachable => "cannot be reached",
            OldPrimary::NotRunning => "is not running",
        }
    }
}

impl fmt::Display for FailoverRisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "failover: {old} {}; promoting {} discards whatever {old} committed after {}",
            self.old_state.state(),
            self.candidate,
            self.received,
            old = self.old,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{Method, RebaseCause};

    #[test]
    fn apply_gates_read_the_kind_of_obstacle() {
        let mut t = Topology {
            obstacles: vec![Obstacle::NoOldPrimary {
                candidate: "db2".into(),
            }],
            ..Topology::default()
        };
        assert_eq!(
            (t.data_loss(), t.refused(), t.needs_force()),
            (None, None, None)
        );
        t.obstacles.push(Obstacle::CandidateBehind {
            candidate: "db2".into(),
            behind: 3 << 20,
            best: "db3".into(),
            max_lag: 1 << 20,
        });
        t.failover = Some(FailoverRisk {
            old: "db1".into(),
            old_state: OldPrimary::Unreachable,
            candidate: "db2".into(),
            received: Lsn(0x3000000),
        });
        assert_eq!(
            t.data_loss().as_deref(),
            Some(
                "db2 is 3.0 MB behind db3 (max_lag_on_failover 1.0 MB): promoting it would lose committed data; name db3 as primary, or use --allow-data-loss"
            )
        );
        assert_eq!(
            t.needs_force().as_deref(),
            Some(
                "failover: db1 cannot be reached; promoting db2 discards whatever db1 committed after 0/3000000"
            )
        );
        assert_eq!(t.refused(), None);
        t.obstacles.push(Obstacle::CandidateUnreachable {
            candidate: "db1".into(),
            best: None,
        });
        assert!(
            t.refused()
                .is_some_and(|r| r.starts_with("cannot fail over to db1"))
        );
        let blocked = t.blocked();
        assert_eq!(blocked.len(), 3);
        assert_eq!(blocked[1].node.as_deref(), Some("db2"));
    }

    #[test]
    fn a_rebase_blocked_for_room_says_why_and_how() {
        let rebase = Rebase {
            node: "db3".into(),
            source: "db1".into(),
            cause: RebaseCause::OtherCluster {
                system_identifier: "7".into(),
            },
            method: Method::BaseBackup(None),
            keep_as: "/d.pgrepl-old-T".into(),
            after_promotion: false,
        };
        assert!(!rebase.cause.rewindable());
        assert_eq!(rebase.cause.label(), "another cluster");
        let o = Obstacle::NoRoomToRebase {
            rebase,
            short: Shortfall {
                size: 1 << 30,
                needs: 2 << 30,
                free: 1 << 20,
            },
        };
        assert_eq!(o.node(), "db3");
        assert_eq!(
            o.to_string(),
            "db3 its system identifier 7 differs from db1's: another cluster, and is re-based by a fresh base backup; the old data directory is kept at /d.pgrepl-old-T; that copy needs about 2.0 GB (databases, the WAL written during the copy, a margin) but its file system has 1.0 MB free; free some space and plan again"
        );
    }
}
