//! Failover: no primary can be reached or runs, and the file names a
//! standby primary. Promoted without the old primary, so apply needs
//! --force; a candidate behind the most advanced standby by more than
//! `max_lag_on_failover` needs --allow-data-loss too.

use super::nodes::{is_primary, is_standby, received};
use super::outcome::{FailoverRisk, Obstacle, OldPrimary, Topology};
use super::promote::{candidate_slots, sync_names, sync_note};
use crate::config::Config;
use crate::observed::{Lsn, NodeState, Observed};
use crate::plan::step;

/// The file names an unreachable node primary. A failover to it promotes
/// nothing and would re-point the standbys at a server that is not there:
/// refused when the file moved the primary there and no primary runs
/// (reachable standbys that follow another node would be re-pointed at
/// nothing). Otherwise the ordinary diff reports it as blocked.
pub(super) fn refuse_unreachable_candidate(t: &mut Topology, obs: &Observed, cand: &NodeState) {
    let moved_here = obs
        .nodes
        .values()
        .any(|n| n.name != cand.name && is_standby(n) && !follows(n, &cand.host));
    let primary_runs = obs.nodes.values().any(is_primary);
    if moved_here && !primary_runs {
        t.obstacles.push(Obstacle::CandidateUnreachable {
            candidate: cand.name.clone(),
            best: most_advanced_standby(obs, &cand.name),
        });
    }
}

/// Nobody reachable is or was the primary: promote the candidate. Whether
/// the promotion is planned.
pub(super) fn failover(t: &mut Topology, cfg: &Config, obs: &Observed, cand: &NodeState) -> bool {
    let want = &cand.name;
    let best = most_advanced_standby(obs, "");
    let mine = received(cand).unwrap_or_default();
    let behind = best.as_ref().map_or(0, |(_, l)| l.0.saturating_sub(mine.0));
    let Some(old) = replaced_primary(obs, cand) else {
        t.obstacles.push(Obstacle::NoOldPrimary {
            candidate: want.clone(),
        });
        return false;
    };
    if let Some((best, _)) = best
        && behind > cfg.replication.max_lag_on_failover
    {
        t.obstacles.push(Obstacle::CandidateBehind {
            candidate: want.clone(),
            behind,
            best,
            max_lag: cfg.replication.max_lag_on_failover,
        });
    }
    t.steps.extend(candidate_slots(cfg, cand));
    let old_state = if obs.nodes.get(&old).is_some_and(|n| n.unreachable.is_some()) {
        OldPrimary::Unreachable
    } else {
        OldPrimary::NotRunning
    };
    let mut s = step::promote(want, &old, sync_names(cfg));
    s.before = Some(format!("{old} ({})", old_state.label()));
    s.reason = format!(
        "failover: the old primary {}; {}promote {want} (received up to {mine}); whatever {old} wrote after that is lost to the cluster (kept on {old} when it is re-based); needs --force; {old} is re-based when it is back",
        old_state.state(),
        sync_note(cfg, want)
    );
    t.steps.push(s);
    t.failover = Some(FailoverRisk {
        old,
        old_state,
        candidate: want.clone(),
        received: mine,
    });
    t.deferred.insert(want.clone());
    true
}

/// The primary being replaced: whom the candidate streamed from, else a
/// node that is down or cannot be reached.
fn replaced_primary(obs: &Observed, cand: &NodeState) -> Option<String> {
    let upstream = cand
        .server
        .as_ref()
        .and_then(|s| s.wal_receiver.as_ref())
        .and_then(|w| w.sender_host.as_deref())
        .and_then(|h| obs.nodes.values().find(|n| n.host == h));
    let down = || {
        obs.nodes
            .values()
            .filter(|n| n.name != cand.name)
            .find(|n| {
                n.unreachable.is_some()
                    || (n.server.is_none() && n.files.as_ref().is_some_and(|f| f.control.is_some()))
            })
    };
    upstream.or_else(down).map(|n| n.name.clone())
}

/// Whether standby `n` streams from, or is configured to stream from, `host`.
fn follows(n: &NodeState, host: &str) -> bool {
    let Some(s) = &n.server else { return false };
    s.wal_receiver
        .as_ref()
        .is_some_and(|w| w.sender_host.as_deref() == Some(host))
        || s.settings.get("primary_conninfo").is_some_and(|p| {
            p.setting
                .split_whitespace()
                .any(|kv| kv.strip_prefix("host=") == Some(host))
        })
}

/// The reachable standby that received the most WAL (other than `except`).
fn most_advanced_standby(obs: &Observed, except: &str) -> Option<(String, Lsn)> {
    obs.nodes
        .values()
        .filter(|n| n.name != except && is_standby(n))
        .filter_map(|n| received(n).map(|l| (n.name.clone(), l)))
        .max_by_key(|(_, l)| *l)
}
