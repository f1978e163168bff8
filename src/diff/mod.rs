//! (DesiredState, ObservedState) -> Plan. Pure: no IO, not async.
//!
//! Apply order: the primary's hba, roles and settings
//! first, then its slots; then the running standbys; then restarts, one
//! node at a time, standbys first (the primary first when a
//! hot-standby-sensitive setting is lowered); then new standbys, upstreams
//! before their downstreams.
//!
//! Role changes (switchover, failover, re-base) come from `topology`; each
//! node's own differences from [`Differ`], one file per state a node can
//! be in: running, stopped, without a data directory (a new standby).

mod differ;
mod facts;
mod restart;
mod roles;
mod running;
mod settings;
mod slotsync;
mod standby;
mod stopped;
mod values;

use crate::config::Config;
use crate::desired;
use crate::observed::Observed;
use crate::plan::{APPLY_TIME, NodeLabel, Op, Plan, Step};
use crate::topology::{self, Topology};

use differ::Differ;
pub use facts::facts;

/// The plan that makes `obs` equal to the file.
pub fn plan(cfg: &Config, obs: &Observed) -> Plan {
    let want = desired::desired_state(cfg);
    // Role changes first: switchover, failover, re-bases. Their nodes'
    // ordinary differences are planned in the round after (apply runs it).
    let topo = topology::plan_topology(cfg, obs, APPLY_TIME);
    let mut d = Differ::new(cfg, &want, obs, topo.deferred.clone());
    d.run();
    let (data_loss, needs_force, refused) = (topo.data_loss(), topo.needs_force(), topo.refused());
    let mut blocked = topo.blocked();
    blocked.append(&mut d.blocked);
    let Topology {
        steps: topo_steps,
        mut warnings,
        ..
    } = topo;
    warnings.append(&mut d.warnings);
    let (mut steps, rebases) = role_change_first(topo_steps, d.steps);
    let restarts = d.restarts.into_steps(cfg, obs, &mut steps, &mut warnings);
    // Restarts, then re-bases, go before the first new-standby step.
    for late in [restarts, rebases] {
        let at = steps
            .iter()
            .position(|s| matches!(s.op, Op::BaseBackup { .. }))
            .unwrap_or(steps.len());
        steps.splice(at..at, late);
    }
    add_poolers(cfg, obs, &mut steps, &mut warnings, &mut blocked);
    let mut facts = facts(cfg, obs);
    facts.extend(crate::pooler::facts(obs));
    let mut plan = Plan::new(
        cfg.cluster.name.clone(),
        labels(cfg),
        steps,
        warnings,
        blocked,
        facts,
    );
    plan.data_loss = data_loss;
    plan.needs_force = needs_force;
    plan.refused = refused;
    plan
}

/// The poolers' steps follow the role change, or go last: they point at
/// the primary the steps before made. A switchover carries them too, to run between its promotion and
/// the rest of the plan while the read-write pools are paused.
fn add_poolers(
    cfg: &Config,
    obs: &Observed,
    steps: &mut Vec<Step>,
    warnings: &mut Vec<crate::plan::Warning>,
    blocked: &mut Vec<crate::plan::Warning>,
) {
    let failover = steps.iter().any(|s| matches!(s.op, Op::Promote { .. }));
    let mut p = crate::pooler::plan(cfg, obs, failover);
    // Which standbys stream is known only once the steps before ran.
    let moves_standbys = steps.iter().any(|s| {
        matches!(
            s.op,
            Op::Switchover { .. }
                | Op::Promote { .. }
                | Op::BaseBackup { .. }
                | Op::Rebase { .. }
                | Op::Start { .. }
                | Op::WriteRecovery { .. }
        )
    });
    if moves_standbys && crate::pooler::has_standbys_target(cfg) {
        for s in &mut p.steps {
            if !s.reason.is_empty() {
                s.reason.push_str("; ");
            }
            s.reason
                .push_str("the read-only targets (the standbys that stream) are known after apply");
        }
    }
    warnings.append(&mut p.warnings);
    blocked.append(&mut p.blocked);
    for s in steps.iter_mut() {
        if let Op::Switchover { poolers, .. } = &mut s.op {
            *poolers = crate::pooler::repoints(cfg, &p.steps);
            if let Some(why) = crate::pooler::switchover_note(cfg, poolers) {
                s.reason.push_str(&why);
            }
        }
    }
    // Right after a role change, so that the read-write pools follow the
    // promotion at once; otherwise last.
    let at = steps
        .iter()
        .position(|s| matches!(s.op, Op::Switchover { .. } | Op::Promote { .. }))
        .map_or(steps.len(), |i| i + 1);
    steps.splice(at..at, p.steps);
}

/// The ordinary steps with the topology's: a role change comes first (the
/// other nodes' differences wait for it). Re-bases alone come after the
/// ordinary steps, like new standbys: they copy from the primary, whose
/// roles, hba and slots must be there first; those are returned apart,
/// without the slots the ordinary diff plans too.
fn role_change_first(topo: Vec<Step>, ordinary: Vec<Step>) -> (Vec<Step>, Vec<Step>) {
    let role_change = topo
        .iter()
        .any(|s| matches!(s.op, Op::Switchover { .. } | Op::Promote { .. }));
    if role_change {
        // The old primary's slots go last: its standbys stream from it
        // (it is their upstream again once it runs as a standby) until
        // their re-pointing among the ordinary steps.
        let (drops, mut steps): (Vec<Step>, Vec<Step>) = topo
            .into_iter()
            .partition(|s| matches!(s.op, Op::DropSlot { .. }));
        steps.extend(ordinary);
        steps.extend(drops);
        return (steps, Vec::new());
    }
    let rebases = topo
        .into_iter()
        .filter(|t| !ordinary.iter().any(|o| o.address == t.address))
        .collect();
    (ordinary, rebases)
}

/// Every node of the file as the plan's headers show it.
fn labels(cfg: &Config) -> Vec<NodeLabel> {
    cfg.nodes
        .values()
        .map(|n| NodeLabel {
            name: n.name.clone(),
            host: n.host.clone(),
            role: if n.upstream.is_none() {
                "primary"
            } else {
                "standby"
            }
            .into(),
            upstream: n.upstream.clone(),
            kind: n.exec.kind(),
        })
        .chain(cfg.poolers.values().map(|p| NodeLabel {
            name: p.name.clone(),
            host: p.host.clone(),
            role: "pooler".into(),
            upstream: None,
            kind: None,
        }))
        .collect()
}
