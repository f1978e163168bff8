//! Re-bases: a node that cannot follow the primary (another initdb, a
//! lost slot, an interrupted pg_rewind, WAL past the primary's fork, a
//! second primary) is re-based with pg_rewind when possible, else by a
//! fresh base backup with its old data directory kept aside.

use super::cause::{Method, NoRewind, Rebase, RebaseCause};
use super::nodes::{is_primary, managed_elsewhere};
use super::outcome::{Obstacle, Topology};
use crate::config::Config;
use crate::observed::{ControlData, FileFacts, Lsn, NodeState, Observed, ServerFacts};
use crate::plan::{Op, Warning, step};
use crate::space;
use crate::timeline::{self, Divergence, HistoryEntry, WalEnd};

/// The primary every other node must follow once the planned steps ran.
struct Primary<'a> {
    node: &'a NodeState,
    server: &'a ServerFacts,
    history: Vec<HistoryEntry>,
    /// A failover is planned: its timeline forks where its replay ends.
    promoting: bool,
    fork_at: Lsn,
}

/// Re-base whatever cannot follow the primary `cand`.
pub(super) fn plan_rebases(
    t: &mut Topology,
    cfg: &Config,
    obs: &Observed,
    cand: &NodeState,
    now: &str,
) {
    let Some(cs) = &cand.server else { return };
    // Only a failover forks the history at what the candidate has; in a
    // switchover it receives all the old primary wrote, so no standby is
    // ahead. The new timeline starts where the candidate's replay ends (a
    // record received only in part is not replayed): a standby past that
    // may hold WAL the new primary lacks.
    let primary = Primary {
        node: cand,
        server: cs,
        history: timeline::history_of(cand, cs.timeline),
        promoting: t.failover.is_some(),
        fork_at: cs.replay_lsn.or(cs.receive_lsn).unwrap_or_default(),
    };
    for n in obs.nodes.values() {
        if n.name == cand.name
            || n.unreachable.is_some()
            || t.deferred.contains(&n.name)
            || managed_elsewhere(n)
        {
            continue;
        }
        let Some(files) = &n.files else { continue };
        let Some(control) = &files.control else {
            continue; // empty: the ordinary diff builds it
        };
        let data_dir = &cfg.nodes[&n.name].postgres.data_dir;
        let Some((cause, after_promotion)) = cause(t, &primary, n, files, control, data_dir) else {
            continue;
        };
        let rebase = Rebase {
            node: n.name.clone(),
            source: cand.name.clone(),
            method: method(cfg, &cause, control),
            cause,
            keep_as: keep_as(data_dir, now),
            after_promotion,
        };
        plan_rebase(t, cfg, obs, &primary, files, rebase);
    }
}

/// Why node `n` cannot follow the primary, if it cannot, and whether only
/// the promotion this plan makes is the reason.
fn cause(
    t: &mut Topology,
    p: &Primary,
    n: &NodeState,
    files: &FileFacts,
    control: &ControlData,
    data_dir: &str,
) -> Option<(RebaseCause, bool)> {
    let sysid = n
        .server
        .as_ref()
        .map_or(&control.system_identifier, |s| &s.system_identifier);
    let lost_slot = n
        .server
        .as_ref()
        .and_then(|s| s.wal_receiver.as_ref())
        .and_then(|w| w.slot_name.as_ref())
        .and_then(|slot| p.server.slots.iter().find(|x| &x.name == slot))
        .is_some_and(|x| x.lost_wal());
    let cause = if *sysid != p.server.system_identifier {
        RebaseCause::OtherCluster {
            system_identifier: sysid.clone(),
        }
    } else if files.rewind_interrupted {
        RebaseCause::RewindInterrupted {
            data_dir: data_dir.trim_end_matches('/').to_string(),
        }
    } else if lost_slot {
        RebaseCause::LostSlot
    } else {
        let end = timeline::wal_end(n)?;
        let crashed = n.server.is_none() && control.state == "in production";
        return divergence_cause(t, p, n, end, crashed);
    };
    Some((cause, false))
}

/// The timelines' verdict on a node's WAL that ends at `end`.
fn divergence_cause(
    t: &mut Topology,
    p: &Primary,
    n: &NodeState,
    end: WalEnd,
    crashed: bool,
) -> Option<(RebaseCause, bool)> {
    let by_promotion = p.promoting && end.timeline == p.server.timeline && end.lsn > p.fork_at;
    let div = if by_promotion {
        Divergence::Diverged {
            timeline: end.timeline,
            fork: p.fork_at,
            end: end.lsn,
            discarded_bytes: end.lsn.0 - p.fork_at.0,
        }
    } else {
        timeline::divergence(p.server.timeline, &p.history, end)
    };
    // Before a promotion every node is still on the old timeline: only
    // afterwards can a standby's timeline be in doubt.
    if !end.timeline_known && !p.promoting && div != Divergence::No {
        // Most likely a standby switching upstreams, seen between its WAL
        // receivers: never re-base on a guess.
        t.warnings.push(Warning {
            node: Some(n.name.clone()),
            message: format!(
                "{} is a standby whose WAL receiver is not running, so the timeline of its WAL (up to {}) is not known and pgrepl cannot tell whether it diverged from {}; plan again once it streams, or stop it so that pg_control can be read",
                n.name, end.lsn, p.node.name
            ),
        });
        return None;
    }
    let cause = match div {
        Divergence::No if is_primary(n) => RebaseCause::SecondPrimary {
            timeline: end.timeline,
        },
        Divergence::No if crashed => RebaseCause::Crashed {
            checkpoint: end.lsn,
            timeline: end.timeline,
        },
        Divergence::No => return None,
        Divergence::Diverged {
            timeline,
            fork,
            discarded_bytes,
            ..
        } => RebaseCause::Diverged {
            timeline,
            fork,
            discarded_bytes,
            at_least: end.at_least,
            crashed,
        },
        Divergence::OtherBranch { timeline, end } => RebaseCause::OtherBranch { timeline, end },
    };
    Some((cause, by_promotion))
}

/// pg_rewind when the cause allows it, the file has a `[rewind]` role and
/// the node wal_log_hints or data checksums; else a base backup.
fn method(cfg: &Config, cause: &RebaseCause, control: &ControlData) -> Method {
    let hints = control.wal_log_hints == Some(true) || control.data_checksums == Some(true);
    match (cause.rewindable(), cfg.rewind.is_some(), hints) {
        (true, true, true) => Method::Rewind,
        (true, false, _) => Method::BaseBackup(Some(NoRewind::NoRole)),
        (true, true, false) => Method::BaseBackup(Some(NoRewind::NoHints)),
        (false, _, _) => Method::BaseBackup(None),
    }
}

/// The re-base's steps: the slot it will stream through, then the re-base;
/// or an obstacle when a base backup's copy cannot fit beside the old data
/// directory (both are kept).
fn plan_rebase(
    t: &mut Topology,
    cfg: &Config,
    obs: &Observed,
    p: &Primary,
    files: &FileFacts,
    rebase: Rebase,
) {
    let want = &p.node.name;
    if rebase.method != Method::Rewind
        && let Some(short) = space::shortfall(obs, want, files.disk_free_bytes)
    {
        t.obstacles.push(Obstacle::NoRoomToRebase { rebase, short });
        return;
    }
    let slot_there = p.server.slots.iter().any(|x| x.name == rebase.node);
    let slot_planned = t
        .steps
        .iter()
        .any(|s| matches!(&s.op, Op::CreateSlot { name } if *name == rebase.node));
    if cfg.replication.slots && !slot_there && !slot_planned {
        let mut s = step::create_slot(want, &rebase.node);
        s.reason = format!("{} streams through it once re-based", rebase.node);
        t.steps.push(s);
    }
    t.steps.push(rebase.step());
    t.deferred.insert(rebase.node.clone());
    t.rebases.push(rebase);
}

/// Where a re-based node's old data directory goes if it must be replaced.
fn keep_as(data_dir: &str, now: &str) -> String {
    format!("{}.pgrepl-old-{now}", data_dir.trim_end_matches('/'))
}
