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

mod cause;
mod failover;
mod nodes;
mod outcome;
mod promote;
mod rebase;
mod switchover;

use crate::config::Config;
use crate::observed::{NodeState, Observed};
use nodes::{is_primary, is_standby, managed_elsewhere};

pub use cause::{Method, NoRewind, Rebase, RebaseCause};
pub use outcome::{FailoverRisk, NotReady, Obstacle, OldPrimary, Topology};

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
