//! Switchover: the file names a running standby primary and the old
//! primary runs, or stopped as a primary (an interrupted switchover, or a
//! primary stopped by hand, is finished as a switchover, never as a
//! failover). The old primary rejoins as a standby without pg_rewind.

use super::nodes::{managed_elsewhere, received};
use super::outcome::{NotReady, Obstacle, Topology};
use super::promote::{candidate_slots, sync_names, sync_note};
use crate::config::Config;
use crate::observed::{ControlData, NodeState, Observed};
use crate::plan::{Step, step};
use crate::text::human_bytes;

/// The old primary runs: a clean switchover, when the candidate streams
/// from the same initdb within `max_lag_on_failover`. Whether it is planned.
pub(super) fn switchover(
    t: &mut Topology,
    cfg: &Config,
    cand: &NodeState,
    old: &NodeState,
) -> bool {
    let want = &cand.name;
    let old_lsn = old.server.as_ref().and_then(|s| s.current_lsn);
    let lag = match (old_lsn, received(cand)) {
        (Some(a), Some(b)) => a.0.saturating_sub(b.0),
        _ => u64::MAX,
    };
    // What it has not replayed yet: the promotion replays it first, so it
    // delays the switchover (no data is lost).
    let unreplayed = match (old_lsn, cand.server.as_ref().and_then(|s| s.replay_lsn)) {
        (Some(a), Some(b)) => a.0.saturating_sub(b.0),
        _ => lag,
    };
    if let Some(why) = not_ready(cfg, cand, old, lag) {
        t.obstacles.push(Obstacle::NotReady {
            candidate: want.clone(),
            why,
        });
        return false;
    }
    t.steps.extend(candidate_slots(cfg, cand));
    let mut s = step::switchover(want, &old.name, sync_names(cfg));
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
    true
}

/// Why the candidate cannot take over from the running `old` primary now.
fn not_ready(cfg: &Config, cand: &NodeState, old: &NodeState, lag: u64) -> Option<NotReady> {
    let streaming = cand
        .server
        .as_ref()
        .and_then(|s| s.wal_receiver.as_ref())
        .is_some_and(|w| w.status == "streaming");
    let same_sysid = old.server.as_ref().map(|s| &s.system_identifier)
        == cand.server.as_ref().map(|s| &s.system_identifier);
    let max_lag = cfg.replication.max_lag_on_failover;
    if !same_sysid {
        Some(NotReady::OtherInitdb)
    } else if !streaming {
        Some(NotReady::NotStreaming)
    } else if lag > max_lag {
        Some(NotReady::Behind {
            lag,
            primary: old.name.clone(),
            max_lag,
        })
    } else {
        None
    }
}

/// The old primary is stopped: finish the switchover, starting it again
/// as the primary first when the candidate lacks some of its WAL.
pub(super) fn finish_switchover(
    t: &mut Topology,
    cfg: &Config,
    cand: &NodeState,
    old: &NodeState,
    control: &ControlData,
) {
    let want = &cand.name;
    let shutdown_lsn = control.checkpoint_lsn.unwrap_or_default();
    let clean = control.state == "shut down";
    let has_it = received(cand).is_some_and(|r| r > shutdown_lsn);
    t.steps.extend(candidate_slots(cfg, cand));
    let mut s = step::switchover(want, &old.name, sync_names(cfg));
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

/// A reachable, stopped node that was the candidate's primary: pg_control
/// says it stopped as a primary (`shut down`, or `in production` after a
/// crash), no standby.signal, same system identifier, on the timeline the
/// candidate follows. Restarting it cannot make a second primary while the
/// candidate is a standby.
pub(super) fn stopped_old_primary<'a>(
    obs: &'a Observed,
    cand: &NodeState,
) -> Option<(&'a NodeState, &'a ControlData)> {
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
