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
use crate::gather::{Lsn, NodeState, Observed};
use crate::plan::{Op, Step, Warning, step};
use crate::space;
use crate::text::human_bytes;
use crate::timeline::{self, Divergence};

#[derive(Debug, Default)]
pub struct Topology {
    /// Before the role change (slots on the candidate), then the role change,
    /// then re-bases.
    pub steps: Vec<Step>,
    /// Nodes whose ordinary diff waits for the next round (their role changes now).
    pub deferred: HashSet<String>,
    /// Nodes re-based only because of the promotion this plan makes (a
    /// standby holding WAL past the failover candidate's): they have not
    /// diverged before it happens.
    pub after_promotion: HashSet<String>,
    pub blocked: Vec<Warning>,
    pub warnings: Vec<Warning>,
    /// A failover is planned: apply needs --force.
    pub needs_force: Option<String>,
    /// The candidate lags: apply needs --allow-data-loss too.
    pub data_loss: bool,
    /// Nothing may be applied, not even with --force (a failover to a
    /// candidate that cannot be reached).
    pub refused: Option<String>,
}

/// Why a node is re-based; the text is rendered from it, decisions read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebaseCause {
    /// Another initdb: only a base backup helps.
    OtherCluster,
    /// Its slot on the primary lost WAL it needs.
    LostSlot,
    /// A pg_rewind into it started and never finished.
    RewindInterrupted,
    /// Stopped after a crash while a primary: its end of WAL is unknown.
    Crashed,
    /// Wrote WAL past the primary's fork, or is on a branch the primary's
    /// history lacks, or runs as a second primary.
    Diverged,
}

impl RebaseCause {
    /// Whether pg_rewind can repair it at all.
    pub fn rewindable(self) -> bool {
        matches!(self, RebaseCause::Crashed | RebaseCause::Diverged)
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
    let running_primaries: Vec<&NodeState> = obs.nodes.values().filter(|n| is_primary(n)).collect();
    if cand.unreachable.is_some() {
        // A failover to a node nobody can reach promotes nothing and would
        // re-point the standbys at a server that is not there.
        // Only when the file moved the primary there: reachable standbys
        // that follow another node would be re-pointed at nothing.
        let moved_here = obs
            .nodes
            .values()
            .any(|n| n.name != *want && is_standby(n) && !follows(n, &cand.host));
        if moved_here && running_primaries.is_empty() {
            let best = most_advanced_standby(obs, want);
            let msg = match best {
                Some((name, lsn)) => format!(
                    "cannot fail over to {want}: it cannot be reached and no primary runs; the most advanced reachable standby is {name} (received up to {lsn}): name {name} as primary, or bring {want} back, and plan again"
                ),
                None => format!(
                    "cannot fail over to {want}: it cannot be reached, and neither a primary nor a standby can be reached; bring the nodes back and plan again"
                ),
            };
            t.blocked.push(Warning {
                node: Some(want.clone()),
                message: msg.clone(),
            });
            t.refused = Some(msg);
        }
        return t; // otherwise reported as blocked by the ordinary diff
    }
    if managed_elsewhere(cand) {
        return t; // the ordinary diff blocks it
    }
    let mut new_primary_ready = is_primary(cand);

    if is_standby(cand) {
        let old = running_primaries.iter().find(|n| n.name != *want);
        let pre_slots = candidate_slots(cfg, cand);
        let stopped_old = stopped_old_primary(obs, cand);
        match (old, stopped_old) {
            (Some(old), _) => {
                let old_lsn = old.server.as_ref().and_then(|s| s.current_lsn);
                let lag = match (old_lsn, received(cand)) {
                    (Some(a), Some(b)) => a.0.saturating_sub(b.0),
                    _ => u64::MAX,
                };
                // What it has not replayed yet: the promotion replays it
                // first, so it delays the switchover (no data is lost).
                let unreplayed = match (old_lsn, cand.server.as_ref().and_then(|s| s.replay_lsn)) {
                    (Some(a), Some(b)) => a.0.saturating_sub(b.0),
                    _ => lag,
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
                t.steps.extend(pre_slots);
                let mut s = switchover_step(cfg, want, &old.name);
                s.reason = format!(
                    "switchover: CHECKPOINT and fast shutdown of {o}, wait until {want} received its shutdown checkpoint (lag now {} not received, {} not replayed), {}promote {want}; {o} restarts as its standby without pg_rewind. Any failure before the promotion starts {o} again as the primary",
                    human_bytes(lag),
                    human_bytes(unreplayed),
                    sync_note(cfg, want),
                    o = old.name
                );
                t.steps.push(s);
                t.steps.extend(after_switchover(cfg, old));
                t.deferred.insert(old.name.clone());
                t.deferred.insert(want.clone());
                new_primary_ready = true;
            }
            (None, Some((old, control))) => {
                // An interrupted switchover, or a primary stopped by hand:
                // finish it as a switchover, never as a failover.
                let shutdown_lsn = control.checkpoint_lsn.unwrap_or_default();
                let clean = control.state == "shut down";
                let has_it = received(cand).is_some_and(|r| r > shutdown_lsn);
                t.steps.extend(pre_slots);
                let mut s = switchover_step(cfg, want, &old.name);
                s.before = Some(format!("{} (stopped)", old.name));
                s.reason = if clean && has_it {
                    format!(
                        "finishes a switchover: {o} shut down cleanly at {shutdown_lsn} and {want} received its shutdown checkpoint; {}promote {want}; {o} restarts as its standby without pg_rewind; {o}'s slots and settings are checked once it runs (known after apply)",
                        sync_note(cfg, want),
                        o = old.name
                    )
                } else {
                    format!(
                        "switchover: {o} is stopped ({}) and {want} has not received all of its WAL, so {o} starts again as the primary first; then CHECKPOINT and fast shutdown of {o}, wait until {want} received its shutdown checkpoint, {}promote {want}; {o} restarts as its standby without pg_rewind; {o}'s slots and settings are checked once it runs (known after apply)",
                        control.state,
                        sync_note(cfg, want),
                        o = old.name
                    )
                };
                t.steps.push(s);
                t.deferred.insert(old.name.clone());
                t.deferred.insert(want.clone());
                new_primary_ready = true;
            }
            (None, None) => {
                // Failover: nobody reachable is or was the primary.
                let best = most_advanced_standby(obs, "");
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
                    t.data_loss = true;
                }
                t.steps.extend(pre_slots);
                let mut s = step::promote(want, &old_name, sync_names(cfg));
                let gone = obs
                    .nodes
                    .get(&old_name)
                    .is_some_and(|n| n.unreachable.is_some());
                s.before = Some(format!(
                    "{old_name} ({})",
                    if gone { "unreachable" } else { "not running" }
                ));
                let state = if gone {
                    "cannot be reached"
                } else {
                    "is not running"
                };
                s.reason = format!(
                    "failover: the old primary {state}; {}promote {want} (received up to {mine}); whatever {old_name} wrote after that is lost to the cluster (kept on {old_name} when it is re-based); needs --force; {old_name} is re-based when it is back",
                    sync_note(cfg, want)
                );
                t.steps.push(s);
                t.needs_force = Some(format!(
                    "failover: {old_name} {state}; promoting {want} discards whatever {old_name} committed after {mine}"
                ));
                t.deferred.insert(want.clone());
                new_primary_ready = true;
            }
        }
    }
    if !new_primary_ready {
        return t;
    }

    // Re-base whatever cannot follow the primary.
    let Some(cs) = &cand.server else { return t };
    // Just planned a promotion: the candidate's timeline will be one more.
    let (p_tli, p_hist, p_sysid) = (
        cs.timeline,
        timeline::history_of(cand, cs.timeline),
        Some(cs.system_identifier.clone()),
    );
    // Only a failover forks the history at what the candidate has; in a
    // switchover it receives all the old primary wrote, so no standby is
    // ahead. The new timeline starts where the candidate's replay ends (a
    // record received only in part is not replayed): a standby past that
    // may hold WAL the new primary lacks.
    let promoting = t.steps.iter().any(|s| matches!(s.op, Op::Promote { .. }));
    let fork_at = cs.replay_lsn.or(cs.receive_lsn).unwrap_or_default();
    for n in obs.nodes.values() {
        if n.name == *want
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
        let sysid = n
            .server
            .as_ref()
            .map(|s| s.system_identifier.clone())
            .or_else(|| Some(control.system_identifier.clone()));
        let node_cfg = &cfg.nodes[&n.name];
        let keep = keep_as(&node_cfg.postgres.data_dir, now);
        let rewind_possible = cfg.rewind.is_some()
            && (control.wal_log_hints == Some(true) || control.data_checksums == Some(true));
        let lost_slot = n
            .server
            .as_ref()
            .and_then(|s| s.wal_receiver.as_ref())
            .and_then(|w| w.slot_name.as_ref())
            .and_then(|slot| cs.slots.iter().find(|x| &x.name == slot))
            .is_some_and(|x| x.wal_status.as_deref() == Some("lost"));
        let crashed_primary = n.server.is_none() && control.state == "in production";
        let (cause, why) = if sysid.is_some() && sysid != p_sysid {
            (
                RebaseCause::OtherCluster,
                format!(
                    "its system identifier {} differs from {want}'s: another cluster",
                    sysid.unwrap_or_default()
                ),
            )
        } else if files.rewind_interrupted {
            (
                RebaseCause::RewindInterrupted,
                format!(
                    "a pg_rewind into it was interrupted ({}.pgrepl-rewinding exists), which can leave it inconsistent",
                    node_cfg.postgres.data_dir.trim_end_matches('/')
                ),
            )
        } else if lost_slot {
            (
                RebaseCause::LostSlot,
                format!("its slot on {want} lost WAL it still needs (wal_status lost)"),
            )
        } else {
            let Some(end) = timeline::wal_end(n) else {
                continue;
            };
            let by_promotion = promoting && end.timeline == p_tli && end.lsn > fork_at;
            if by_promotion {
                t.after_promotion.insert(n.name.clone());
            }
            let div = if by_promotion {
                Divergence::Diverged {
                    timeline: end.timeline,
                    fork: fork_at,
                    end: end.lsn,
                    discarded_bytes: end.lsn.0 - fork_at.0,
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
                    RebaseCause::Diverged,
                    format!(
                        "runs as a second primary on timeline {} (no WAL past the fork); it becomes a standby of {want}",
                        end.timeline
                    ),
                ),
                // Crash recovery would replay WAL nobody has seen: its end is
                // only known once read, so it never starts before pg_rewind
                // compared it with the primary.
                Divergence::No if crashed_primary => (
                    RebaseCause::Crashed,
                    format!(
                        "it stopped without a clean shutdown while it was a primary (pg_control: in production, last checkpoint {} on timeline {}): its end of WAL is unknown, so it may hold WAL {want} lacks",
                        end.lsn, end.timeline
                    ),
                ),
                Divergence::No => continue,
                Divergence::Diverged {
                    timeline,
                    fork,
                    discarded_bytes,
                    ..
                } => (
                    if crashed_primary {
                        RebaseCause::Crashed
                    } else {
                        RebaseCause::Diverged
                    },
                    format!(
                        "diverged at {fork} on timeline {timeline}: {}{} of WAL written there after the fork are discarded",
                        if end.at_least { "at least " } else { "" },
                        human_bytes(discarded_bytes)
                    ),
                ),
                Divergence::OtherBranch { timeline, end } => (
                    RebaseCause::Diverged,
                    format!(
                        "is on timeline {timeline} (up to {end}), which is not in {want}'s history"
                    ),
                ),
            }
        };
        let rewind = cause.rewindable() && rewind_possible;
        let method = if rewind {
            format!(
                "pg_rewind from {want} (after a CHECKPOINT there, with the WAL it discards copied to {}); if it fails, a fresh base backup with the old data directory kept at {keep}",
                keep.replace(".pgrepl-old-", ".pgrepl-diverged-wal-")
            )
        } else if cause.rewindable() && cfg.rewind.is_none() {
            format!(
                "a fresh base backup (no [rewind] role in the file); the old data directory is kept at {keep}"
            )
        } else if cause.rewindable() {
            format!(
                "a fresh base backup (pg_rewind needs wal_log_hints or data checksums); the old data directory is kept at {keep}"
            )
        } else {
            format!("a fresh base backup; the old data directory is kept at {keep}")
        };
        // The old directory stays beside the new copy: both must fit.
        if !rewind && let Some(short) = space::shortfall(obs, want, files.disk_free_bytes) {
            t.blocked.push(Warning {
                node: Some(n.name.clone()),
                message: format!(
                    "{} {why}, and is re-based by {method}; that copy needs about {} (databases, the WAL written during the copy, a margin) but its file system has {} free; free some space and plan again",
                    n.name,
                    human_bytes(short.needs),
                    human_bytes(short.free)
                ),
            });
            continue;
        }
        let slot_there = cs.slots.iter().any(|x| x.name == n.name);
        let slot_planned = t
            .steps
            .iter()
            .any(|s| matches!(&s.op, Op::CreateSlot { name } if *name == n.name));
        if cfg.replication.slots && !slot_there && !slot_planned {
            let mut s = step::create_slot(want, &n.name);
            s.reason = format!("{} streams through it once re-based", n.name);
            t.steps.push(s);
        }
        let mut s = step::rebase(&n.name, want, rewind, keep);
        s.before = Some(match cause {
            RebaseCause::Crashed => "crashed (end of WAL unknown)".into(),
            RebaseCause::RewindInterrupted => "pg_rewind interrupted".into(),
            RebaseCause::OtherCluster => "another cluster".into(),
            RebaseCause::LostSlot => "slot lost".into(),
            RebaseCause::Diverged => "diverged".into(),
        });
        s.after = Some(format!("standby of {want}"));
        s.reason = format!(
            "{why}; re-base by {method}; its own settings and hba are checked once it streams again (known after apply)"
        );
        t.steps.push(s);
        t.deferred.insert(n.name.clone());
    }
    t
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

/// What the old primary needs once it is a standby, shown in the plan and
/// run right after the switchover: its slots pgrepl made for its former
/// standbys (inactive from then on, they would hold WAL forever), and its
/// synchronous_standby_names, which a standby does not keep.
fn after_switchover(cfg: &Config, old: &NodeState) -> Vec<Step> {
    let mut out = Vec::new();
    let Some(server) = &old.server else {
        return out;
    };
    let desired = crate::desired::desired_state(cfg);
    let Some(want) = desired.nodes.get(&old.name) else {
        return out;
    };
    for slot in &server.slots {
        let managed = cfg.nodes.contains_key(&slot.name) || cfg.extra_slots.contains(&slot.name);
        if managed && !want.slots.contains(&slot.name) {
            let reason = format!(
                "after the switchover {} is a standby: no standby streams from it through it",
                old.name
            );
            out.push(step::drop_slot(
                &old.name,
                &slot.name,
                "physical slot",
                reason,
            ));
        }
    }
    let name = "synchronous_standby_names";
    if let (Some(live), Some(setting), Some(def)) = (
        server.settings.get(name),
        want.settings.get(name),
        crate::guc::lookup(name),
    ) && !live.setting.is_empty()
        && let Some(v) = &setting.normalized
    {
        let mut s = step::set_setting(&old.name, name, v.to_alter_system_value(def));
        s.before = Some(live.setting.clone());
        s.after = Some(v.display_with_unit(def));
        s.reason = "after the switchover: only the primary names synchronous standbys".into();
        out.push(s);
        out.push(step::reload(
            &old.name,
            "pg_reload_conf() makes the setting live",
        ));
    }
    out
}

fn switchover_step(cfg: &Config, want: &str, from: &str) -> Step {
    step::switchover(want, from, sync_names(cfg))
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

/// A reachable, stopped node that was the candidate's primary: pg_control
/// says it stopped as a primary (`shut down`, or `in production` after a
/// crash), no standby.signal, same system identifier, on the timeline the
/// candidate follows. Restarting it cannot make a second primary while the
/// candidate is a standby.
fn stopped_old_primary<'a>(
    obs: &'a Observed,
    cand: &NodeState,
) -> Option<(&'a NodeState, &'a crate::gather::ControlData)> {
    let cs = cand.server.as_ref()?;
    let cand_tli = cs
        .wal_receiver
        .as_ref()
        .and_then(|w| w.received_tli)
        .unwrap_or(cs.timeline);
    obs.nodes.values().find_map(|n| {
        if n.name == cand.name || n.unreachable.is_some() || n.server.is_some() {
            return None;
        }
        let f = n.files.as_ref()?;
        let c = f.control.as_ref()?;
        let was_primary = matches!(c.state.as_str(), "shut down" | "in production");
        (was_primary
            && !f.running
            && !f.standby_signal
            && !f.rewind_interrupted
            && !managed_elsewhere(n)
            && c.system_identifier == cs.system_identifier
            // The candidate's timeline may read older than its WAL (a
            // standby's pg_control shows its last restartpoint's).
            && c.checkpoint_timeline.is_some_and(|t| t >= cand_tli))
        .then_some((n, c))
    })
}

/// Run by another manager (Patroni, repmgrd, pg_auto_failover): never acted on.
fn managed_elsewhere(n: &NodeState) -> bool {
    crate::manager::managed_by(n).is_some()
}
