//! Who is primary, and who must be re-based: switchover, failover and
//! divergence, planned from observed state. Pure.
//!
//! - The file names a running standby as primary and the old primary runs:
//!   a clean switchover (slots for the other nodes are created on the
//!   candidate first).
//! - No primary can be reached: a failover, which apply only does with
//!   `--force`, and never to a candidate further behind than
//!   `max_lag_on_failover` unless `--allow-data-loss`.
//! - A node that wrote WAL past the primary's fork, runs as a second
//!   primary, comes from another initdb, or lost its slot's WAL: re-based
//!   with pg_rewind when possible, else a fresh base backup.

use std::collections::HashSet;

use crate::config::Config;
use crate::diff::{human_bytes, step};
use crate::gather::{Lsn, NodeState, Observed};
use crate::plan::{Action, Op, Step, Warning};
use crate::timeline::{self, Divergence};

#[derive(Debug, Default)]
pub struct Topology {
    /// Before the role change (slots on the candidate), then the role change,
    /// then re-bases.
    pub steps: Vec<Step>,
    /// Nodes whose ordinary diff waits for the next round (their role changes now).
    pub deferred: HashSet<String>,
    pub blocked: Vec<Warning>,
    pub warnings: Vec<Warning>,
    /// A failover is planned: apply needs --force.
    pub needs_force: Option<String>,
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

/// Stands for the time apply runs in a planned path; the executor fills it in.
pub const APPLY_TIME: &str = "<UTC time of apply>";

/// Where a re-based node's old data directory goes if it must be replaced.
pub fn keep_as(data_dir: &str, now: &str) -> String {
    format!("{}.pgrepl-old-{now}", data_dir.trim_end_matches('/'))
}

pub fn plan_topology(cfg: &Config, obs: &Observed, now: &str) -> Topology {
    let mut t = Topology::default();
    let want = &cfg.cluster.primary;
    let Some(cand) = obs.nodes.get(want) else {
        return t;
    };
    if cand.unreachable.is_some() {
        return t; // reported as blocked by the ordinary diff
    }
    let running_primaries: Vec<&NodeState> = obs.nodes.values().filter(|n| is_primary(n)).collect();
    let mut new_primary_ready = is_primary(cand);

    if is_standby(cand) {
        let old = running_primaries.iter().find(|n| n.name != *want);
        // Added only once a role change is actually planned.
        let mut pre_slots = Vec::new();
        // Slots for the candidate's future downstreams, created while it is a standby.
        if cfg.replication.slots {
            let have: HashSet<&str> = cand
                .server
                .as_ref()
                .map(|s| s.slots.iter().map(|x| x.name.as_str()).collect())
                .unwrap_or_default();
            for d in cfg.downstreams(want) {
                if !have.contains(d.name.as_str()) {
                    let mut s = step(
                        want,
                        format!("{want}.slot.{}", d.name),
                        Action::Create,
                        Op::CreateSlot {
                            name: d.name.clone(),
                        },
                    );
                    s.after = Some("physical slot".into());
                    s.reason = format!("{} will stream from the new primary through it", d.name);
                    pre_slots.push(s);
                }
            }
        }
        match old {
            Some(old) => {
                let lag = match (
                    old.server.as_ref().and_then(|s| s.current_lsn),
                    received(cand),
                ) {
                    (Some(a), Some(b)) => a.0.saturating_sub(b.0),
                    _ => u64::MAX,
                };
                let streaming = cand
                    .server
                    .as_ref()
                    .and_then(|s| s.wal_receiver.as_ref())
                    .is_some_and(|w| w.status == "streaming");
                let same_sysid = old.server.as_ref().map(|s| &s.system_identifier)
                    == cand.server.as_ref().map(|s| &s.system_identifier);
                if !streaming || !same_sysid || lag > cfg.replication.max_lag_on_failover {
                    let why = if !same_sysid {
                        "it comes from another initdb (system identifier differs)".to_string()
                    } else if !streaming {
                        "it is not streaming".to_string()
                    } else {
                        format!(
                            "it is {} behind {} (max_lag_on_failover {})",
                            human_bytes(lag),
                            old.name,
                            human_bytes(cfg.replication.max_lag_on_failover)
                        )
                    };
                    t.blocked.push(Warning {
                        node: Some(want.clone()),
                        message: format!(
                            "cannot switch over to {want}: {why}; wait, or fix it, and plan again"
                        ),
                    });
                    return t;
                }
                t.steps.append(&mut pre_slots);
                let mut s = step(
                    want,
                    "cluster.primary".into(),
                    Action::Update,
                    Op::Switchover {
                        from: old.name.clone(),
                    },
                );
                s.before = Some(old.name.clone());
                s.after = Some(want.clone());
                s.reason = format!(
                    "switchover: CHECKPOINT and fast shutdown of {o}, wait until {want} received its shutdown checkpoint (lag now {}), promote {want}, CHECKPOINT; {o} restarts as its standby without pg_rewind",
                    human_bytes(lag),
                    o = old.name
                );
                t.steps.push(s);
                t.deferred.insert(old.name.clone());
                t.deferred.insert(want.clone());
                new_primary_ready = true;
            }
            None => {
                // Failover: nobody reachable is primary.
                let best = obs
                    .nodes
                    .values()
                    .filter(|n| is_standby(n))
                    .filter_map(|n| received(n).map(|l| (n.name.clone(), l)))
                    .max_by_key(|(_, l)| *l);
                let mine = received(cand).unwrap_or_default();
                let behind = best.as_ref().map_or(0, |(_, l)| l.0.saturating_sub(mine.0));
                // The primary being replaced: whom the candidate streamed
                // from, else a node that is down or cannot be reached.
                let upstream = cand
                    .server
                    .as_ref()
                    .and_then(|s| s.wal_receiver.as_ref())
                    .and_then(|w| w.sender_host.as_deref())
                    .and_then(|h| obs.nodes.values().find(|n| n.host == h))
                    .map(|n| n.name.clone());
                let down = obs
                    .nodes
                    .values()
                    .filter(|n| n.name != *want)
                    .find(|n| {
                        n.unreachable.is_some()
                            || (n.server.is_none()
                                && n.files.as_ref().is_some_and(|f| f.control.is_some()))
                    })
                    .map(|n| n.name.clone());
                let Some(old_name) = upstream.or(down) else {
                    t.blocked.push(Warning {
                        node: Some(want.clone()),
                        message: format!(
                            "{want} runs as a standby and no primary is running, stopped or unreachable to fail over from; check the nodes and plan again"
                        ),
                    });
                    return t;
                };
                if behind > cfg.replication.max_lag_on_failover {
                    t.blocked.push(Warning {
                        node: Some(want.clone()),
                        message: format!(
                            "{want} is {} behind {} (max_lag_on_failover {}): promoting it would lose committed data; name {} as primary, or use --allow-data-loss",
                            human_bytes(behind),
                            best.as_ref().map_or("", |(n, _)| n.as_str()),
                            human_bytes(cfg.replication.max_lag_on_failover),
                            best.as_ref().map_or("", |(n, _)| n.as_str()),
                        ),
                    });
                    t.needs_force = Some("data loss".into());
                }
                t.steps.append(&mut pre_slots);
                let mut s = step(
                    want,
                    "cluster.primary".into(),
                    Action::Update,
                    Op::Promote {
                        old: old_name.clone(),
                    },
                );
                s.before = Some(format!("{old_name} (unreachable)"));
                s.after = Some(want.clone());
                s.reason = format!(
                    "failover: the old primary cannot be reached; promote {want} (received up to {mine}); needs --force; {old_name} is re-based when it is back"
                );
                t.steps.push(s);
                t.needs_force
                    .get_or_insert_with(|| format!("failover: {old_name} cannot be reached"));
                t.deferred.insert(want.clone());
                new_primary_ready = true;
            }
        }
    }
    if !new_primary_ready {
        return t;
    }

    // Re-base whatever cannot follow the primary.
    let (p_tli, p_hist, p_sysid) = match &cand.server {
        Some(s) if !s.in_recovery => (
            s.timeline,
            timeline::history_of(cand, s.timeline),
            Some(s.system_identifier.clone()),
        ),
        // Just planned a promotion: the candidate's timeline will be one more.
        Some(s) => (
            s.timeline,
            timeline::history_of(cand, s.timeline),
            Some(s.system_identifier.clone()),
        ),
        None => return t,
    };
    // Only a failover forks the history at what the candidate received; in a
    // switchover it receives all the old primary wrote, so no standby is ahead.
    let promoting = t.steps.iter().any(|s| matches!(s.op, Op::Promote { .. }));
    for n in obs.nodes.values() {
        if n.name == *want || n.unreachable.is_some() || t.deferred.contains(&n.name) {
            continue;
        }
        let Some(files) = &n.files else { continue };
        if files.control.is_none() {
            continue; // empty: the ordinary diff builds it
        }
        let sysid = n
            .server
            .as_ref()
            .map(|s| s.system_identifier.clone())
            .or_else(|| files.control.as_ref().map(|c| c.system_identifier.clone()));
        let node_cfg = &cfg.nodes[&n.name];
        let keep = keep_as(&node_cfg.postgres.data_dir, now);
        let rewind_possible = cfg.rewind.is_some()
            && files
                .control
                .as_ref()
                .is_some_and(|c| c.wal_log_hints == Some(true) || c.data_checksums == Some(true));
        let lost_slot = n
            .server
            .as_ref()
            .and_then(|s| s.wal_receiver.as_ref())
            .and_then(|w| w.slot_name.as_ref())
            .and_then(|slot| {
                cand.server
                    .as_ref()
                    .and_then(|s| s.slots.iter().find(|x| &x.name == slot))
            })
            .is_some_and(|x| x.wal_status.as_deref() == Some("lost"));
        let (why, rewind) = if sysid.is_some() && sysid != p_sysid {
            (
                format!(
                    "its system identifier {} differs from {want}'s: another cluster",
                    sysid.unwrap_or_default()
                ),
                false,
            )
        } else if lost_slot {
            (
                format!("its slot on {want} lost WAL it still needs (wal_status lost)"),
                false,
            )
        } else {
            let Some(end) = timeline::wal_end(n) else {
                continue;
            };
            let div = if promoting {
                // After the promotion the candidate's history forks at what it received.
                if end.timeline == p_tli && end.lsn > received(cand).unwrap_or_default() {
                    Divergence::Diverged {
                        timeline: end.timeline,
                        fork: received(cand).unwrap_or_default(),
                        end: end.lsn,
                        discarded_bytes: end.lsn.0 - received(cand).unwrap_or_default().0,
                    }
                } else {
                    timeline::divergence(p_tli, &p_hist, end)
                }
            } else {
                timeline::divergence(p_tli, &p_hist, end)
            };
            // Before a promotion every node is still on the old timeline:
            // only afterwards can a standby's timeline be in doubt.
            if !end.timeline_known && !promoting && div != Divergence::No {
                // Most likely a standby switching upstreams, seen between its
                // WAL receivers: never re-base on a guess.
                t.warnings.push(Warning {
                    node: Some(n.name.clone()),
                    message: format!(
                        "{} is a standby whose WAL receiver is not running, so the timeline of its WAL (up to {}) is not known and pgrepl cannot tell whether it diverged from {want}; plan again once it streams, or stop it so that pg_control can be read",
                        n.name, end.lsn
                    ),
                });
                continue;
            }
            match div {
                Divergence::No if is_primary(n) => (
                    format!(
                        "runs as a second primary on timeline {} (no WAL past the fork); it becomes a standby of {want}",
                        end.timeline
                    ),
                    rewind_possible,
                ),
                Divergence::No => continue,
                Divergence::Diverged {
                    timeline,
                    fork,
                    discarded_bytes,
                    ..
                } => (
                    format!(
                        "diverged at {fork} on timeline {timeline}: {}{} of WAL written there after the fork are discarded",
                        if end.at_least { "at least " } else { "" },
                        human_bytes(discarded_bytes)
                    ),
                    rewind_possible,
                ),
                Divergence::OtherBranch { timeline, end } => (
                    format!(
                        "is on timeline {timeline} (up to {end}), which is not in {want}'s history"
                    ),
                    rewind_possible,
                ),
            }
        };
        let method = if rewind {
            format!(
                "pg_rewind from {want} (after a CHECKPOINT there, with the WAL it discards copied to {}); if it fails, a fresh base backup with the old data directory kept at {keep}",
                keep.replace(".pgrepl-old-", ".pgrepl-diverged-wal-")
            )
        } else if cfg.rewind.is_none() && !why.contains("another cluster") && !why.contains("lost")
        {
            format!(
                "a fresh base backup (no [rewind] role in the file); the old data directory is kept at {keep}"
            )
        } else if !why.contains("another cluster") && !why.contains("lost") {
            format!(
                "a fresh base backup (pg_rewind needs wal_log_hints or data checksums); the old data directory is kept at {keep}"
            )
        } else {
            format!("a fresh base backup; the old data directory is kept at {keep}")
        };
        // The old directory stays beside the new copy: both must fit.
        if !rewind
            && let (Some(size), Some(free)) =
                (crate::diff::cluster_size(obs, want), files.disk_free_bytes)
            && free < size
        {
            t.blocked.push(Warning {
                node: Some(n.name.clone()),
                message: format!(
                    "{} {why}, and is re-based by {method}; that copy needs about {} but its file system has {} free; free some space and plan again",
                    n.name,
                    human_bytes(size),
                    human_bytes(free)
                ),
            });
            continue;
        }
        let slot_there = cand
            .server
            .as_ref()
            .is_some_and(|s| s.slots.iter().any(|x| x.name == n.name));
        let slot_planned = t
            .steps
            .iter()
            .any(|s| matches!(&s.op, Op::CreateSlot { name } if *name == n.name));
        if cfg.replication.slots && !slot_there && !slot_planned {
            let mut s = step(
                want,
                format!("{want}.slot.{}", n.name),
                Action::Create,
                Op::CreateSlot {
                    name: n.name.clone(),
                },
            );
            s.after = Some("physical slot".into());
            s.reason = format!("{} streams through it once re-based", n.name);
            t.steps.push(s);
        }
        let mut s = step(
            &n.name,
            format!("{}.timeline", n.name),
            Action::Replace,
            Op::Rebase {
                source: want.clone(),
                rewind,
                keep_as: keep,
            },
        );
        s.before = Some("diverged".into());
        s.after = Some(format!("standby of {want}"));
        s.reason = format!("{why}; re-base by {method}");
        t.steps.push(s);
        t.deferred.insert(n.name.clone());
    }
    t
}
