//! The plan: ordered steps, built by `step` (one builder per kind, every
//! address), cut down by `--target` (`target.rs`), rendered as text and
//! JSON (`render`). Pure, and a leaf of the core: it imports nothing of
//! pgrepl but `text`.
//!
//! A `Step` is one line of the plan and one action of apply: its address
//! and old -> new value for people, its `Op` for the executor.

mod compare;
pub mod render;
pub mod step;
mod target;

pub use compare::{StepDifference, first_difference, without_sizes};

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

pub const FORMAT_VERSION: &str = "1";

/// Stands for the time apply runs in a planned path (a re-base's
/// `keep_as`); the executor fills it in.
pub const APPLY_TIME: &str = "<UTC time of apply>";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Delete,
    Replace,
}

impl Action {
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Delete => "-",
            Action::Replace => "-/+",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleKind {
    Replication,
    Rewind,
}

/// What apply executes for a step. Never holds a secret: passwords are read
/// from their source when the step runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// `ALTER SYSTEM SET name = sql_value` (`sql_value` already quoted);
    /// with `offline`, the server is stopped and `name = 'offline'` is
    /// written into postgresql.auto.conf instead.
    SetSetting {
        name: String,
        sql_value: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offline: Option<String>,
    },
    Reload,
    /// Restart the node. With `catch_up_with` (a standby, when a
    /// hot-standby-sensitive setting is lowered): first wait until it has
    /// replayed that primary's WAL up to the primary's current position
    /// (past the primary's parameter change) and make a restartpoint
    /// (CHECKPOINT) past it; a standby that restarts before that compares
    /// its lower value with the old one and refuses to start.
    Restart {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        catch_up_with: Option<String>,
    },
    /// Start a stopped node. With `once_with` (a standby whose pg_control
    /// still records its primary's higher values): start it once with
    /// those values (`-c`, not persisted), wait until it replayed
    /// `catch_up_with`'s current position, CHECKPOINT, stop, then start it
    /// normally.
    Start {
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        once_with: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        catch_up_with: Option<String>,
    },
    /// Replace the managed block of pg_hba.conf (file at `path`).
    WriteHba {
        path: String,
        content: String,
    },
    CreateRole {
        name: String,
        kind: RoleKind,
    },
    /// Fix what differs: attributes, password, rewind grants.
    UpdateRole {
        name: String,
        kind: RoleKind,
        password: bool,
        attributes: bool,
        grants: bool,
    },
    CreateSlot {
        name: String,
    },
    /// pg_basebackup from `upstream` into the (empty) data directory.
    BaseBackup {
        upstream: String,
        slot: Option<String>,
    },
    /// primary_conninfo, primary_slot_name, standby.signal, the passfile.
    WriteRecovery {
        primary_conninfo: String,
        primary_slot_name: String,
        passfile: String,
    },
    /// Drop a slot pgrepl made that no standby uses any more.
    DropSlot {
        name: String,
    },
    /// Remove the passfile and lock files this node kept for `cluster`, a
    /// former name of this cluster (a rename leaves them, and the passfile
    /// holds live passwords). `paths` are those files, beside the data
    /// directory; a lock another run holds is left, and the step fails.
    RemoveClusterFiles {
        cluster: String,
        paths: Vec<String>,
    },
    /// Clean switchover, run on the candidate (the step's node): CHECKPOINT
    /// and fast shutdown of `from`, wait until the candidate received the
    /// shutdown checkpoint, promote it, CHECKPOINT; `from` rejoins as its
    /// standby without pg_rewind.
    /// Resumable: an old primary already stopped is not stopped again, and
    /// one stopped before the candidate received all of its WAL is started
    /// again as the primary first. Any failure before the promotion starts
    /// the old primary again as the primary.
    Switchover {
        from: String,
        /// Set on the candidate before the promotion (a standby ignores it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        synchronous_standby_names: Option<String>,
        /// Every pooler: its read-write pools paused before the old
        /// primary's shutdown, re-pointed and resumed after the promotion
        /// (resumed on every exit path).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        poolers: Vec<PoolerRepoint>,
    },
    /// Failover: promote the candidate without the (unreachable) old primary.
    Promote {
        old: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        synchronous_standby_names: Option<String>,
    },
    /// Re-base a diverged node from `source`: pg_rewind (after a CHECKPOINT
    /// on the source) or, when that is impossible or fails, a fresh base
    /// backup with the old data directory renamed to `keep_as`.
    Rebase {
        source: String,
        rewind: bool,
        keep_as: String,
    },
    /// Replace pgrepl's block of `[databases]` lines in a pooler's
    /// pgbouncer.ini at `path` with `block` (markers included); lines
    /// outside it are kept as they are. pgBouncer is never restarted.
    WritePoolerBlock {
        path: String,
        block: String,
    },
    /// The pooler's admin console: RELOAD, then RECONNECT and RESUME of
    /// the named databases.
    PoolerService {
        reload: bool,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        reconnect: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        resume: Vec<String>,
    },
}

/// What a switchover does on one pooler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolerRepoint {
    pub pooler: String,
    /// pgbouncer.ini on the pooler.
    pub path: String,
    /// The managed block that points at the new primary (markers
    /// included); empty when the block needs no change.
    pub block: String,
    /// The read-write databases paused for the switchover.
    pub pause: Vec<String>,
}

impl Op {
    /// Reloads are implied by other steps; they do not count as changes.
    pub fn counts(&self) -> bool {
        !matches!(self, Op::Reload)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub address: String,
    pub node: String,
    pub action: Action,
    pub before: Option<String>,
    pub after: Option<String>,
    pub restart: bool,
    pub reason: String,
    /// before/after render as `(sensitive)`.
    pub sensitive: bool,
    /// A unified diff, for file changes.
    pub diff: Option<String>,
    #[serde(flatten)]
    pub op: Op,
}

impl Step {
    /// Whether the step takes effect at a reload of its node. A change the
    /// node's restart makes live needs no reload of its own.
    pub fn needs_reload(&self) -> bool {
        match self.op {
            Op::WriteHba { .. } => true,
            Op::WriteRecovery { .. } | Op::SetSetting { .. } => !self.restart,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub node: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
    pub replace: usize,
}

/// A node as the plan's headers show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLabel {
    pub name: String,
    pub host: String,
    /// What the file wants it to be: "primary" or "standby".
    pub role: String,
    /// The node a standby streams from.
    pub upstream: Option<String>,
    /// How pgrepl reaches PostgreSQL there (`sudo postgres`); absent for a
    /// node reached directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: String,
    pub cluster: String,
    pub nodes: Vec<NodeLabel>,
    pub changes: Vec<Step>,
    pub warnings: Vec<Warning>,
    /// Nodes that could not be planned (unreachable, unreadable): the plan is incomplete.
    pub blocked: Vec<Warning>,
    pub summary: Summary,
    /// A failover to a candidate behind `max_lag_on_failover`: apply needs
    /// --force and --allow-data-loss.
    #[serde(default)]
    pub data_loss: Option<String>,
    /// A failover: apply needs --force; says what the promotion discards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs_force: Option<String>,
    /// Apply refuses this plan even with --force (a failover to a node that
    /// cannot be reached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// Every observed fact the plan relied on, by name; secrets only as digests.
    pub facts: IndexMap<String, String>,
}

impl Plan {
    pub fn new(
        cluster: String,
        nodes: Vec<NodeLabel>,
        changes: Vec<Step>,
        warnings: Vec<Warning>,
        blocked: Vec<Warning>,
        facts: IndexMap<String, String>,
    ) -> Plan {
        let mut summary = Summary::default();
        for s in changes.iter().filter(|s| s.op.counts()) {
            match s.action {
                Action::Create => summary.add += 1,
                Action::Update => summary.change += 1,
                Action::Delete => summary.destroy += 1,
                Action::Replace => summary.replace += 1,
            }
        }
        Plan {
            format_version: FORMAT_VERSION.to_string(),
            cluster,
            nodes,
            changes,
            warnings,
            blocked,
            data_loss: None,
            needs_force: None,
            refused: None,
            summary,
            facts,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}
