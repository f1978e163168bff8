//! Who is primary, and who must be re-based: switchover, failover and
//! divergence, planned from observed state. Pure.
//!
//! - The file names a running standby as primary and the old primary runs:
//!   a clean switchover (slots for the other nodes are created on the
//!   candidate first); one stopped as a primary finishes it
//!   (`switchover.rs`).
//! - No primary can be reached: a failover, which apply only does with
//!   `--force`, and never to a candidate further behind than
//!   `max_lag_on_failover` unless `--allow-data-loss` (`failover.rs`).
//! - A node that wrote WAL past the primary's fork, runs as a second
//!   primary, comes from another initdb, or lost its slot's WAL: re-based
//!   with pg_rewind when possible, else a fresh base backup (`rebase.rs`).
//!
//! What stands in the way is an [`Obstacle`], what a failover risks a
//! [`FailoverRisk`], why a node is re-based a [`RebaseCause`]: the plan's
//! words are rendered from them, and decisions read them, never the words.

mod failover;
mod obstacle;
mod rebase;
mod switchover;

use std::collections::HashSet;

use crate::config::Config;
use crate::gather::{Lsn, NodeState, Observed};
use crate::plan::{Step, Warning, step};

pub use obstacle::{FailoverRisk, NotReady, Obstacle, OldPrimary};
pub use rebase::{Method, NoRewind, Rebase, RebaseCause};

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

pub fn plan_topology(cfg: &Config, obs: &Observed, now: &str) -> Topology {
    let mut t = Topology::default();
    let want = &cfg.cluster.primary;
    let Some(cand) = obs.nodes.get(want) else {
        return t;
    };
    if cand.unreachable.is_some() {
        failover::refuse_unreachable_candidate(&mut t, obs, cand);
        return t; // otherwise reported as blocked by the ordinary diff
    }
    if managed_elsewhere(cand) {
        return t; // the ordinary diff blocks it
    }
    let primary_ready = if is_standby(cand) {
        role_change(&mut t, cfg, obs, cand)
    } else {
        is_primary(cand)
    };
    if primary_ready {
        rebase::plan_rebases(&mut t, cfg, obs, cand, now);
    }
    t
}

/// The candidate runs as a standby: a switchover from the old primary,
/// running or stopped, else a failover. Whether the candidate is the
/// primary once the planned steps ran.
fn role_change(t: &mut Topology, cfg: &Config, obs: &Observed, cand: &NodeState) -> bool {
    let old = obs
        .nodes
        .values()
        .find(|n| is_primary(n) && n.name != cand.name);
    match (old, switchover::stopped_old_primary(obs, cand)) {
        (Some(old), _) => switchover::switchover(t, cfg, cand, old),
        (None, Some((old, control))) => {
            switchover::finish_switchover(t, cfg, cand, old, control);
            true
        }
        (None, None) => failover::failover(t, cfg, obs, cand),
    }
}

fn is_primary(n: &NodeState) -> bool {
    n.server.as_ref().is_some_and(|s| !s.in_recovery)
}

fn is_standby(n: &NodeState) -> bool {
    n.server.as_ref().is_some_and(|s| s.in_recovery)
}

fn received(n: &NodeState) -> Option<Lsn> {
    n.server
        .as_ref()
        .and_then(|s| s.receive_lsn.max(s.replay_lsn))
}

/// Run by another manager (Patroni, repmgrd, pg_auto_failover): never acted on.
fn managed_elsewhere(n: &NodeState) -> bool {
    crate::manager::managed_by(n).is_some()
}

/// Where a re-based node's old data directory goes if it must be replaced.
fn keep_as(data_dir: &str, now: &str) -> String {
    format!("{}.pgrepl-old-{now}", data_dir.trim_end_matches('/'))
}

/// The file's synchronous_standby_names for the new primary, when the file
/// asks for synchronous replication: set on the candidate before its
/// promotion (a standby ignores it), so no commit is acknowledged without
/// its synchronous standby.
fn sync_names(cfg: &Config) -> Option<String> {
    let names = crate::desired::synchronous_standby_names(cfg);
    (!names.is_empty()).then_some(names)
}

fn sync_note(cfg: &Config, want: &str) -> String {
    sync_names(cfg).map_or(String::new(), |n| {
        format!("set synchronous_standby_names = '{n}' on {want} and reload, ")
    })
}

/// Slots for the candidate's future downstreams, created while it is a standby.
fn candidate_slots(cfg: &Config, cand: &NodeState) -> Vec<Step> {
    let mut out = Vec::new();
    if !cfg.replication.slots {
        return out;
    }
    let have: HashSet<&str> = cand
        .server
        .as_ref()
        .map(|s| s.slots.iter().map(|x| x.name.as_str()).collect())
        .unwrap_or_default();
    for d in cfg.downstreams(&cand.name) {
        if !have.contains(d.name.as_str()) {
            let mut s = step::create_slot(&cand.name, &d.name);
            s.reason = format!("{} will stream from the new primary through it", d.name);
            out.push(s);
        }
    }
    out
}
