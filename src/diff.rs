//! (DesiredState, ObservedState) -> Plan. Pure: no IO, not async.
//!
//! Apply order (SPEC section 3): the primary's hba, roles and settings
//! first, then its slots; then the running standbys; then restarts, one
//! node at a time, standbys first (the primary first when a
//! hot-standby-sensitive setting is lowered); then new standbys, upstreams
//! before their downstreams.

use indexmap::IndexMap;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::desired::{self, DesiredState, HBA_BEGIN, HBA_END, NodeDesired, RoleKind as DRoleKind};
use crate::gather::{DataDir, NodeState, Observed, ServerFacts, digest};
use crate::guc::{self, Normalized};
use crate::plan::{Action, NodeLabel, Op, Plan, RoleKind, Step, Warning};
use crate::scram;

/// The plan that makes `obs` equal to the file.
pub fn plan(cfg: &Config, obs: &Observed) -> Plan {
    let want = desired::desired_state(cfg);
    // Role changes first: switchover, failover, re-bases. Their nodes'
    // ordinary differences are planned in the round after (apply runs it).
    let topo = crate::topology::plan_topology(cfg, obs, crate::topology::APPLY_TIME);
    let mut d = Differ {
        cfg,
        want: &want,
        obs,
        steps: Vec::new(),
        warnings: Vec::new(),
        blocked: Vec::new(),
        restarts: Vec::new(),
        lowering_hot_standby: false,
        raised_hot_standby: Vec::new(),
        lowered_hot_standby: Vec::new(),
        hot_standby_changes: Vec::new(),
        deferred: topo.deferred.clone(),
        late: Vec::new(),
    };
    d.run();
    let Differ {
        steps: ordinary,
        mut warnings,
        mut blocked,
        restarts,
        lowering_hot_standby,
        raised_hot_standby,
        lowered_hot_standby,
        hot_standby_changes,
        ..
    } = d;
    // A role change comes first: the other nodes' differences wait for it.
    // Re-bases alone come after the ordinary steps, like new standbys: they
    // copy from the primary, whose roles, hba and slots must be there first.
    let role_change = topo
        .steps
        .iter()
        .any(|s| matches!(s.op, Op::Switchover { .. } | Op::Promote { .. }));
    let (mut steps, rebases) = if role_change {
        // The old primary's slots go last: its standbys stream from it
        // (it is their upstream again once it runs as a standby) until
        // their re-pointing among the ordinary steps.
        let (drops, mut steps): (Vec<Step>, Vec<Step>) = topo
            .steps
            .into_iter()
            .partition(|s| matches!(s.op, Op::DropSlot { .. }));
        steps.extend(ordinary);
        steps.extend(drops);
        (steps, Vec::new())
    } else {
        let rebases: Vec<Step> = topo
            .steps
            .into_iter()
            .filter(|t| !ordinary.iter().any(|o| o.address == t.address))
            .collect();
        (ordinary, rebases)
    };
    warnings.splice(0..0, topo.warnings);
    blocked.splice(0..0, topo.blocked);
    // Raised, standbys restart first; lowered, the primary first. Both in one
    // round, no order works (a standby refuses to start with a value below
    // its primary's): the raise goes now, the lowering in the next round.
    let mut restarts = restarts;
    let mut lowering_hot_standby = lowering_hot_standby;
    // A name raised on some nodes and lowered on others is not split: its
    // standbys stay at or above the primary in either order.
    let both: Vec<String> = raised_hot_standby
        .iter()
        .filter(|n| lowered_hot_standby.contains(n))
        .cloned()
        .collect();
    let raised_hot_standby: Vec<String> = raised_hot_standby
        .into_iter()
        .filter(|n| !both.contains(n))
        .collect();
    let lowered_hot_standby: Vec<String> = lowered_hot_standby
        .into_iter()
        .filter(|n| !both.contains(n))
        .collect();
    let defer =
        |names: &[String], steps: &mut Vec<Step>, restarts: &mut Vec<(String, Vec<String>)>| {
            steps.retain(|s| !matches!(&s.op, Op::SetSetting { name, .. } if names.contains(name)));
            for (_, why) in restarts.iter_mut() {
                why.retain(|n| !names.contains(n));
            }
            restarts.retain(|(_, why)| !why.is_empty());
        };
    let mut deferred_names: Vec<String> = Vec::new();
    if !raised_hot_standby.is_empty() && !lowered_hot_standby.is_empty() {
        defer(&lowered_hot_standby, &mut steps, &mut restarts);
        deferred_names.extend(lowered_hot_standby.iter().cloned());
        lowering_hot_standby = false;
        warnings.push(Warning {
            node: None,
            message: format!(
                "this change raises {} and lowers {}; a raise restarts the standbys first and a lowering the primary first, so apply lowers {} in a second round, after these restarts (a saved plan stops before it: plan and apply again)",
                raised_hot_standby.join(", "),
                lowered_hot_standby.join(", "),
                lowered_hot_standby.join(", ")
            ),
        });
    }
    let primary = &cfg.cluster.primary;
    // Where each standby's restart goes, from each name's values: a
    // standby below the primary's raised value restarts before the primary
    // (else its recovery pauses at the primary's change); one whose new
    // value is below the primary's old value restarts after it, once it
    // replayed the change. A standby that needs both waits for a second
    // round for the names the primary lowers.
    let sides = |deferred_names: &[String],
                 restarts: &[(String, Vec<String>)]|
     -> Vec<(String, bool, bool)> {
        let changes: Vec<&(String, String, i64, i64)> = hot_standby_changes
            .iter()
            .filter(|c| !deferred_names.contains(&c.1))
            .collect();
        let values = |node: &str, name: &str| -> Option<(i64, i64)> {
            changes
                .iter()
                .find(|c| c.0 == node && c.1 == name)
                .map(|c| (c.2, c.3))
                .or_else(|| live_integer(obs, node, name).map(|v| (v, v)))
        };
        let mut names: Vec<&str> = changes.iter().map(|c| c.1.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        restarts
            .iter()
            .filter(|(n, _)| n != primary)
            .map(|(n, _)| {
                let (mut before, mut after) = (false, false);
                for name in &names {
                    let (Some((p_old, p_new)), Some((s_old, s_new))) =
                        (values(primary, name), values(n, name))
                    else {
                        continue;
                    };
                    before |= s_old < p_new;
                    after |= s_new < p_old;
                }
                (n.clone(), before, after)
            })
            .collect()
    };
    let mut side = sides(&deferred_names, &restarts);
    if side.iter().any(|(_, b, a)| *b && *a) {
        let lowered_by_primary: Vec<String> = hot_standby_changes
            .iter()
            .filter(|c| &c.0 == primary && c.3 < c.2 && !deferred_names.contains(&c.1))
            .map(|c| c.1.clone())
            .collect();
        let stuck: Vec<String> = side
            .iter()
            .filter(|(_, b, a)| *b && *a)
            .map(|(n, _, _)| n.clone())
            .collect();
        defer(&lowered_by_primary, &mut steps, &mut restarts);
        deferred_names.extend(lowered_by_primary.iter().cloned());
        lowering_hot_standby = false;
        warnings.push(Warning {
            node: None,
            message: format!(
                "{} must restart before the primary for one setting and after it for {}; apply lowers {} in a second round, after these restarts (a saved plan stops before it: plan and apply again)",
                stuck.join(", "),
                lowered_by_primary.join(", "),
                lowered_by_primary.join(", ")
            ),
        });
        side = sides(&deferred_names, &restarts);
    }
    let needs_force = topo.needs_force.clone();
    let refused = topo.refused.clone();
    let data_loss = topo.data_loss.then(|| {
        blocked
            .iter()
            .find(|b| b.message.contains("--allow-data-loss"))
            .map_or_else(|| "the candidate lags".to_string(), |b| b.message.clone())
    });
    // Insert restarts before the first new-standby step, one node at a time.
    let insert_at = steps
        .iter()
        .position(|s| matches!(s.op, Op::BaseBackup { .. }))
        .unwrap_or(steps.len());
    let mut ordered: Vec<(String, Vec<String>)> = restarts;
    // 0: before the primary, 1: the primary, 2: after it. Standbys first
    // unless a hot-standby-sensitive setting goes down.
    let place = |node: &str| -> usize {
        if node == primary {
            return 1;
        }
        match side.iter().find(|(n, _, _)| n == node) {
            Some((_, true, _)) => 0,
            Some((_, _, true)) => 2,
            _ if lowering_hot_standby => 2,
            _ => 0,
        }
    };
    ordered.sort_by_key(|(node, _)| {
        let at = place(node);
        // After the primary, upstreams before their downstreams.
        (at, if at == 2 { depth(cfg, node) } else { 0 })
    });
    let restart_steps: Vec<Step> = ordered
        .into_iter()
        .map(|(node, why)| {
            // A lowering: a standby restarted before it replayed the
            // primary's parameter change (and made a restartpoint past it)
            // compares its lower value with the old one and refuses to start.
            let catch_up_with = (place(&node) == 2).then(|| primary.clone());
            let reason = match &catch_up_with {
                Some(p) => format!(
                    "first waits until it has replayed {p}'s WAL up to {p}'s current position (past {p}'s parameter change) and made a restartpoint there (CHECKPOINT): restarted before that, a standby refuses a value below the one {p} ran with"
                ),
                None => "one node at a time; settings that need it take effect".into(),
            };
            Step {
                address: format!("{node}.service"),
                node: node.clone(),
                action: Action::Update,
                before: None,
                after: Some(format!("restart for {}", why.join(", "))),
                restart: true,
                reason,
                sensitive: false,
                diff: None,
                op: Op::Restart { catch_up_with },
            }
        })
        .collect();
    steps.splice(insert_at..insert_at, restart_steps);
    let at = steps
        .iter()
        .position(|s| matches!(s.op, Op::BaseBackup { .. }))
        .unwrap_or(steps.len());
    steps.splice(at..at, rebases);
    let labels = cfg
        .nodes
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
        })
        .collect();
    let mut plan = Plan::new(
        cfg.cluster.name.clone(),
        labels,
        steps,
        warnings,
        blocked,
        facts(cfg, obs),
    );
    plan.data_loss = data_loss;
    plan.needs_force = needs_force;
    plan.refused = refused;
    plan
}

/// A setting's live integer value on a running node.
fn live_integer(obs: &Observed, node: &str, name: &str) -> Option<i64> {
    obs.nodes
        .get(node)?
        .server
        .as_ref()?
        .settings
        .get(name)?
        .setting
        .parse()
        .ok()
}

/// How far down the upstream chain a node is (primary = 0).
fn depth(cfg: &Config, node: &str) -> usize {
    let mut d = 0;
    let mut cur = node;
    while let Some(up) = cfg.nodes.get(cur).and_then(|n| n.upstream.as_deref()) {
        d += 1;
        cur = up;
        if d > cfg.nodes.len() {
            break;
        }
    }
    d
}

struct Differ<'a> {
    cfg: &'a Config,
    want: &'a DesiredState,
    obs: &'a Observed,
    steps: Vec<Step>,
    warnings: Vec<Warning>,
    blocked: Vec<Warning>,
    /// (node, settings that need it), in discovery order.
    restarts: Vec<(String, Vec<String>)>,
    lowering_hot_standby: bool,
    /// Hot-standby-sensitive settings this plan raises, and lowers.
    raised_hot_standby: Vec<String>,
    lowered_hot_standby: Vec<String>,
    /// (node, setting, live, wanted) of every hot-standby-sensitive change.
    hot_standby_changes: Vec<(String, String, i64, i64)>,
    /// Nodes whose role changes in this plan: planned in the next round.
    deferred: std::collections::HashSet<String>,
    /// Steps that wait for the other nodes' steps (a slot whose standby
    /// leaves in this plan).
    late: Vec<Step>,
}

/// `NODE.recovery`: primary_conninfo, primary_slot_name, standby.signal and
/// the passfile, as the file wants them.
fn write_recovery_step(node: &str, action: Action, rec: &desired::RecoveryDesired) -> Step {
    step(
        node,
        format!("{node}.recovery"),
        action,
        Op::WriteRecovery {
            primary_conninfo: rec.primary_conninfo.clone(),
            primary_slot_name: rec.primary_slot_name.clone(),
            passfile: rec.passfile.clone(),
        },
    )
}

/// `NODE.setting.NAME` written into a stopped server's postgresql.auto.conf.
fn offline_setting_step(node: &str, name: &str, action: Action, value: &str) -> Step {
    step(
        node,
        format!("{node}.setting.{name}"),
        action,
        Op::SetSetting {
            name: name.to_string(),
            sql_value: sql_literal(value),
            offline: Some(value.to_string()),
        },
    )
}

/// `- NODE.slot.SLOT`: a slot pgrepl made that no standby will use.
pub(crate) fn drop_slot_step(node: &str, slot: &str, before: &str, reason: String) -> Step {
    let mut s = step(
        node,
        format!("{node}.slot.{slot}"),
        Action::Delete,
        Op::DropSlot {
            name: slot.to_string(),
        },
    );
    s.before = Some(before.to_string());
    s.reason = reason;
    s
}

/// A step with only its address, action and operation filled in.
pub(crate) fn step(node: &str, address: String, action: Action, op: Op) -> Step {
    Step {
        address,
        node: node.to_string(),
        action,
        before: None,
        after: None,
        restart: false,
        reason: String::new(),
        sensitive: false,
        diff: None,
        op,
    }
}

impl Differ<'_> {
    fn warn(&mut self, node: Option<&str>, message: String) {
        self.warnings.push(Warning {
            node: node.map(String::from),
            message,
        });
    }

    fn block(&mut self, node: &str, message: String) {
        self.blocked.push(Warning {
            node: Some(node.to_string()),
            message,
        });
    }

    fn run(&mut self) {
        let primary = self.want.primary.clone();
        // Nodes in dependency order: primary, then by depth, file order within a depth.
        let mut order: Vec<&NodeDesired> = self.want.nodes.values().collect();
        order.sort_by_key(|n| depth(self.cfg, &n.name));
        let mut new_standbys = Vec::new();
        for want in order {
            if self.deferred.contains(&want.name) {
                continue;
            }
            let Some(seen) = self.obs.nodes.get(&want.name) else {
                self.block(&want.name, "not gathered".into());
                continue;
            };
            if let Some(u) = &seen.unreachable {
                self.block(&want.name, format!("unreachable: {}", u.message));
                continue;
            }
            let Some(files) = &seen.files else {
                let why = seen
                    .errors
                    .first()
                    .map_or("no facts", |e| without_node(e, &want.name))
                    .to_string();
                self.block(&want.name, format!("could not be read: {why}"));
                continue;
            };
            // SPEC 10: another manager runs this node; nothing is planned on it.
            if let Some(m) = crate::manager::managed_by(seen) {
                self.block(&want.name, crate::manager::blocked_message(m));
                continue;
            }
            match files.data_dir {
                DataDir::Missing | DataDir::Empty if want.is_primary => {
                    self.block(
                        &want.name,
                        "is the primary but has no data directory; pgrepl does not run initdb: initialise it (or name another node primary)".into(),
                    );
                }
                DataDir::Missing | DataDir::Empty => new_standbys.push(want),
                DataDir::Foreign => self.block(
                    &want.name,
                    format!(
                        "{} is neither empty nor a PostgreSQL data directory; move it aside, pgrepl never deletes it",
                        self.cfg.nodes[&want.name].postgres.data_dir
                    ),
                ),
                DataDir::Initialised => match &seen.server {
                    Some(server) => self.running_node(want, seen, server, want.name == primary),
                    None if files.running => {
                        let why = seen.errors.first().map_or("", |e| without_node(e, &want.name)).to_string();
                        self.block(&want.name, format!("PostgreSQL runs but SQL failed: {why}"));
                    }
                    None => self.stopped_node(want, seen),
                },
            }
        }
        for (name, seen) in &self.obs.nodes {
            self.stale_cluster_files(name, seen);
        }
        let late = std::mem::take(&mut self.late);
        self.steps.extend(late);
        for want in new_standbys {
            self.new_standby(want);
        }
    }

    /// The passfile and lock a former name of the cluster left beside a
    /// node's data directory: removed last, after the node's recovery
    /// settings name the new passfile and were reloaded.
    fn stale_cluster_files(&mut self, name: &str, seen: &NodeState) {
        let (Some(files), Some(node)) = (&seen.files, self.cfg.nodes.get(name)) else {
            return;
        };
        if self.deferred.contains(name)
            || self.blocked.iter().any(|b| b.node.as_deref() == Some(name))
        {
            return;
        }
        for old in &files.stale_clusters {
            let paths = desired::cluster_files(node, old);
            let mut s = step(
                name,
                format!("{name}.cluster_files.{old}"),
                Action::Delete,
                Op::RemoveClusterFiles {
                    cluster: old.clone(),
                    paths: paths.clone(),
                },
            );
            s.before = Some(paths.join(", "));
            s.reason = format!(
                "left by cluster \"{old}\", this data directory's former cluster name: its passfile holds passwords; removed after {name}'s recovery settings name {}",
                desired::passfile_path(self.cfg, node)
            );
            self.late.push(s);
        }
    }

    fn stopped_node(&mut self, want: &NodeDesired, seen: &NodeState) {
        let name = want.name.as_str();
        let Some(files) = seen.files.as_ref() else {
            return;
        };
        let state = files
            .control
            .as_ref()
            .map_or("unknown", |c| c.state.as_str());
        if want.is_primary
            && let Some(other) =
                self.obs.nodes.values().find(|n| {
                    n.name != want.name && n.server.as_ref().is_some_and(|s| !s.in_recovery)
                })
        {
            self.block(
                name,
                format!(
                    "is stopped and named primary, but {} runs as a primary: starting it would make two; name {} as primary, or stop {} first",
                    other.name, other.name, other.name
                ),
            );
            return;
        }
        if self.stopped_start_guards(want, files) {
            return;
        }
        // Planned from its files: drift in postgresql.auto.conf is repaired
        // before the start, so a value that keeps it from starting (or one
        // the file no longer wants) never stays in the way.
        let auto = files
            .auto_conf
            .as_deref()
            .map(crate::gather::parse::conf_settings)
            .unwrap_or_default();
        for setting in want.settings.values() {
            let Some(current) = auto.get(&setting.name) else {
                continue; // not set there: checked once it runs
            };
            let def = guc::lookup(&setting.name);
            let (equal, after) = match (def, &setting.normalized) {
                (Some(def), Some(want_v)) => (
                    guc::normalize_desired(def, &toml::Value::String(current.clone()))
                        .is_ok_and(|v| &v == want_v),
                    want_v.display_with_unit(def),
                ),
                _ => {
                    let after = toml_text(&setting.value);
                    (*current == after, after)
                }
            };
            if equal {
                continue;
            }
            let mut s = offline_setting_step(name, &setting.name, Action::Update, &after);
            s.before = Some(display_value(current));
            s.after = Some(display_value(&after));
            s.reason = "written into postgresql.auto.conf while the server is stopped; takes effect at its start".into();
            self.steps.push(s);
        }
        if let Some(rec) = &want.recovery {
            self.stopped_recovery(name, files, &auto, rec);
        }
        let stuck = if want.is_primary {
            Vec::new()
        } else {
            stuck_below_recorded(want, &auto, files.control.as_ref())
        };
        let primary = self.want.primary.clone();
        let mut s = step(
            name,
            format!("{name}.service"),
            Action::Update,
            Op::Start {
                once_with: stuck
                    .iter()
                    .map(|(n, recorded, _)| (n.clone(), recorded.to_string()))
                    .collect(),
                catch_up_with: (!stuck.is_empty()).then(|| primary.clone()),
            },
        );
        s.before = Some(format!("stopped ({state})"));
        s.after = Some(if want.is_primary {
            "running".into()
        } else {
            "running as a standby".into()
        });
        s.reason = if want.is_primary {
            "PostgreSQL is not running; settings, hba and recovery are checked once it runs (known after apply)".into()
        } else {
            "starts only with standby.signal and its recovery settings in place; settings, hba and slots are checked once it runs (known after apply)".into()
        };
        if !stuck.is_empty() {
            let needs = stuck
                .iter()
                .map(|(n, recorded, _)| format!("{n} >= {recorded}"))
                .collect::<Vec<_>>()
                .join(", ");
            let has = stuck
                .iter()
                .map(|(n, recorded, configured)| {
                    format!("{n} = {recorded} (its value is {configured})")
                })
                .collect::<Vec<_>>()
                .join(", ");
            s.before = Some(format!(
                "stopped ({state}; needs {needs} until it replays {primary}'s parameter change)"
            ));
            s.reason = format!(
                "its pg_control still records {primary}'s {has}: PostgreSQL refuses to start it with a lower value (recovery aborted because of insufficient parameter settings); it starts once with the recorded values (-c, not persisted), replays {primary}'s WAL up to {primary}'s current position, makes a restartpoint (CHECKPOINT), stops, and starts with its own values; {}",
                s.reason
            );
        }
        self.steps.push(s);
    }

    /// A stopped standby's recovery settings, read from postgresql.auto.conf
    /// and standby.signal: written before it may start, so that it never
    /// starts as a primary or follows the wrong upstream.
    fn stopped_recovery(
        &mut self,
        name: &str,
        files: &crate::gather::FileFacts,
        auto: &IndexMap<String, String>,
        rec: &desired::RecoveryDesired,
    ) {
        let passfile_ok = passfile_ok(self.cfg, name, Some(files));
        let conninfo = auto.get("primary_conninfo").map_or("", String::as_str);
        let slot = auto.get("primary_slot_name").map_or("", String::as_str);
        let mut what = Vec::new();
        if !files.standby_signal {
            what.push("no standby.signal");
        }
        if conninfo != rec.primary_conninfo {
            what.push("primary_conninfo");
        }
        if slot != rec.primary_slot_name {
            what.push("primary_slot_name");
        }
        if !passfile_ok {
            what.push("passfile");
        }
        if files.auto_conf_has_password {
            what.push("a password in clear in postgresql.auto.conf");
        }
        if what.is_empty() {
            return;
        }
        let mut s = write_recovery_step(name, Action::Update, rec);
        s.before = Some(format!("stopped: {}", what.join(", ")));
        s.after = Some(format!(
            "standby.signal, primary_conninfo = '{}', primary_slot_name = '{}'",
            rec.primary_conninfo, rec.primary_slot_name
        ));
        s.reason = format!(
            "differs: {}; written into postgresql.auto.conf while the server is stopped, before it starts",
            what.join(", ")
        );
        self.steps.push(s);
    }

    fn running_node(
        &mut self,
        want: &NodeDesired,
        seen: &NodeState,
        server: &ServerFacts,
        is_primary: bool,
    ) {
        let name = want.name.as_str();
        if let Some(major) = self.cfg.cluster.postgres_version
            && server.version_num / 10000 != major
        {
            self.block(
                name,
                format!(
                    "runs PostgreSQL {} but the file says postgres_version = {major}; upgrade the node or fix the file",
                    server.version_num / 10000
                ),
            );
            return;
        }
        if is_primary && server.in_recovery {
            self.block(
                name,
                "is named primary in the file but runs as a standby, and no switchover or failover could be planned (see above)".into(),
            );
            return;
        }
        if !is_primary && !server.in_recovery {
            self.block(
                name,
                format!(
                    "runs as a primary but the file names `{}`, which cannot take over now (see above): two primaries",
                    self.want.primary
                ),
            );
            return;
        }
        if let Some(line) = seen
            .files
            .as_ref()
            .and_then(|f| f.hba_conf.as_deref())
            .and_then(unclosed_hba_block)
        {
            self.block(
                name,
                format!(
                    "{} line {line} opens the pgrepl block but no `{HBA_END}` line closes it; pgrepl would not know which rules are its own: restore the END line (or remove the block) by hand",
                    server.hba_file
                ),
            );
            return;
        }
        if self.running_start_guards(want, seen, server) {
            return;
        }
        self.hba(want, seen, server);
        if is_primary {
            self.roles(name, server);
        }
        self.settings(want, seen, server);
        if !is_primary {
            self.recovery(want, seen, server);
        }
        if self
            .steps
            .iter()
            .any(|s| s.node == name && s.needs_reload())
        {
            let mut s = step(name, format!("{name}.service"), Action::Update, Op::Reload);
            s.after = Some("reload".into());
            s.reason =
                "pg_reload_conf() makes hba, sighup settings and recovery settings live".into();
            self.steps.push(s);
        }
        self.slots(want, server);
        self.unmanaged_slot_warnings(want, server);
        for p in server.settings.values().filter(|p| p.pending_restart) {
            let why = format!("{} (pending_restart)", p.name);
            let put_back = self.steps.iter().any(|s| {
                s.node == name && matches!(&s.op, Op::SetSetting { name: n, .. } if *n == p.name)
            });
            if !put_back
                && !self
                    .restarts
                    .iter()
                    .any(|(n, w)| n == name && w.iter().any(|x| x.starts_with(&p.name)))
            {
                self.warn(
                    Some(name),
                    format!("{} is set but waits for a restart", p.name),
                );
                self.add_restart(name, why);
            }
        }
        for e in &server.file_setting_errors {
            self.warn(Some(name), format!("configuration file error: {e}"));
        }
        for (line, e) in &server.hba_errors {
            self.warn(Some(name), format!("pg_hba.conf line {line}: {e}"));
        }
    }

    /// The file's integer value of `guc` on this node, if it sets one.
    fn wanted_int(&self, want: &NodeDesired, guc: &str) -> Option<i64> {
        match want.settings.get(guc).map(|s| &s.normalized) {
            Some(Some(Normalized::Integer(v))) => Some(*v),
            _ => None,
        }
    }

    /// Values of the file that would keep a running node from starting
    /// at its next restart: `max_replication_slots` below the slots it
    /// holds after this plan, and `shared_preload_libraries` naming a
    /// library it does not have. The node is blocked, with what to do;
    /// nothing is planned on it. Returns whether it was.
    fn running_start_guards(
        &mut self,
        want: &NodeDesired,
        seen: &NodeState,
        server: &ServerFacts,
    ) -> bool {
        let name = want.name.as_str();
        let mut why = Vec::new();
        let limit = self.wanted_int(want, "max_replication_slots").or_else(|| {
            server
                .settings
                .get("max_replication_slots")
                .and_then(|p| p.setting.parse().ok())
        });
        // What it holds once this plan's own slot steps ran (see `slots`).
        let mut held: Vec<&str> = server
            .slots
            .iter()
            .filter(|s| {
                let managed =
                    self.cfg.nodes.contains_key(&s.name) || self.cfg.extra_slots.contains(&s.name);
                !(managed && !want.slots.contains(&s.name) && !s.active)
            })
            .map(|s| s.name.as_str())
            .collect();
        for w in &want.slots {
            if !held.contains(&w.as_str()) {
                held.push(w);
            }
        }
        if let Some(limit) = limit
            && (held.len() as i64) > limit
        {
            let unmanaged: Vec<&str> = held
                .iter()
                .copied()
                .filter(|s| !want.slots.iter().any(|w| w == s))
                .collect();
            let drop = if unmanaged.is_empty() {
                String::new()
            } else {
                format!(
                    "drop the slots no standby needs (SELECT pg_drop_replication_slot('{}')), or ",
                    unmanaged[0]
                )
            };
            why.push(format!(
                "it would hold {} replication slots ({}) with max_replication_slots = {limit}; PostgreSQL refuses to start with more slots than that (FATAL: too many replication slots active before shutdown), and creating one beyond it fails: {drop}set max_replication_slots to at least {} in the file",
                held.len(),
                held.join(", "),
                held.len()
            ));
        }
        if let Some(check) = seen.files.as_ref().and_then(|f| f.preload.as_ref())
            && !check.missing.is_empty()
        {
            let wanted = self.cfg.nodes[name]
                .settings
                .get("shared_preload_libraries")
                .map(|_| crate::gather::preload_wanted(&self.cfg.nodes[name]))
                .unwrap_or_default();
            let live = server
                .settings
                .get("shared_preload_libraries")
                .map(|p| crate::gather::parse::preload_names(&p.setting))
                .unwrap_or_default();
            let path = server
                .settings
                .get("dynamic_library_path")
                .map_or("$libdir", |p| p.setting.as_str());
            let libdir = check.libdir.as_deref().unwrap_or("$libdir");
            let missing = check.missing.join(", ");
            if wanted == live {
                self.warn(
                    Some(name),
                    format!(
                        "shared_preload_libraries loads {missing}, which is no longer in {libdir}: the server runs, but its next start will fail; reinstall the library or remove it from the file"
                    ),
                );
            } else if path != "$libdir" && check.missing.iter().any(|m| !m.contains('/')) {
                self.warn(
                    Some(name),
                    format!(
                        "shared_preload_libraries names {missing}, not found in {libdir}; dynamic_library_path is '{path}', which pgrepl does not search: make sure the server finds it before its restart"
                    ),
                );
            } else {
                why.push(format!(
                    "shared_preload_libraries names {missing}, which is not in {libdir} (neither NAME nor NAME.so): the server would not start at the restart; fix the name in the file, or install the library on the node first"
                ));
            }
        }
        if why.is_empty() {
            return false;
        }
        self.block(
            name,
            format!(
                "cannot take the file's settings, which would keep it from starting: {}",
                why.join("; ")
            ),
        );
        true
    }

    /// The same for a stopped node about to be started: its slots on disk
    /// and its preloaded libraries against the values it will start with
    /// (the file's, else those already in postgresql.auto.conf).
    fn stopped_start_guards(
        &mut self,
        want: &NodeDesired,
        files: &crate::gather::FileFacts,
    ) -> bool {
        let name = want.name.as_str();
        let auto = files
            .auto_conf
            .as_deref()
            .map(crate::gather::parse::conf_settings)
            .unwrap_or_default();
        let mut why = Vec::new();
        let limit = self.wanted_int(want, "max_replication_slots").or_else(|| {
            auto.get("max_replication_slots")
                .and_then(|v| v.trim().parse().ok())
        });
        if let (Some(limit), Some(on_disk)) = (limit, files.slots_on_disk)
            && i64::from(on_disk) > limit
        {
            why.push(format!(
                "it has {on_disk} replication slots in pg_replslot and would start with max_replication_slots = {limit}, which PostgreSQL refuses (FATAL: too many replication slots active before shutdown); set max_replication_slots to at least {on_disk} in the file (apply writes it into postgresql.auto.conf before the start)"
            ));
        }
        if let Some(check) = &files.preload {
            match &check.libdir {
                Some(libdir) if !check.missing.is_empty() => why.push(format!(
                    "it would start with shared_preload_libraries naming {}, which is not in {libdir} (neither NAME nor NAME.so), so it would not start; fix the name in the file, or install the library on the node first",
                    check.missing.join(", ")
                )),
                Some(_) => {}
                None => self.warn(
                    Some(name),
                    "is stopped and its library directory was not found (no pg_config in bin_dir, no plpgsql.so beside it): the libraries in shared_preload_libraries could not be checked before its start".into(),
                ),
            }
        }
        if why.is_empty() {
            return false;
        }
        self.block(
            name,
            format!("is stopped and cannot be started: {}", why.join("; ")),
        );
        true
    }

    fn add_restart(&mut self, node: &str, why: String) {
        match self.restarts.iter_mut().find(|(n, _)| n == node) {
            Some((_, w)) => w.push(why),
            None => self.restarts.push((node.to_string(), vec![why])),
        }
    }

    fn hba(&mut self, want: &NodeDesired, seen: &NodeState, server: &ServerFacts) {
        let current = seen
            .files
            .as_ref()
            .and_then(|f| f.hba_conf.clone())
            .unwrap_or_default();
        let next = render_hba(&current, &want.hba_block);
        if next == current {
            return;
        }
        let had_block = current.lines().any(|l| l.starts_with(HBA_BEGIN));
        let rules = want.hba_block.len().saturating_sub(2);
        let mut s = step(
            &want.name,
            format!("{}.hba", want.name),
            if had_block {
                Action::Update
            } else {
                Action::Create
            },
            Op::WriteHba {
                path: server.hba_file.clone(),
                content: next.clone(),
            },
        );
        s.after = Some(format!("managed block of {rules} rules"));
        // First match wins: a rule above the block shadows what it admits.
        let before_block: Vec<(usize, &str)> = current
            .lines()
            .enumerate()
            .take_while(|(_, l)| !l.starts_with(HBA_BEGIN))
            .filter(|(_, l)| {
                let t = l.trim();
                !t.is_empty() && !t.starts_with('#')
            })
            .map(|(i, l)| (i + 1, l.trim()))
            .collect();
        s.reason = match before_block.first() {
            Some((line, rule)) if had_block => {
                self.warn(
                    Some(&want.name),
                    format!(
                        "{} line {line} (`{rule}`) stands before pgrepl's block and shadows its rules (the first matching line wins); the block moves above it",
                        server.hba_file
                    ),
                );
                format!(
                    "a rule stands before the managed block (line {line}); the block moves above it"
                )
            }
            _ if had_block => "the managed block differs from the file".into(),
            _ => "pg_hba.conf has no pgrepl block yet".into(),
        };
        s.diff = Some(unified_diff(&current, &next, "pg_hba.conf"));
        self.steps.push(s);
    }

    fn roles(&mut self, primary: &str, server: &ServerFacts) {
        for role in &self.want.roles {
            let kind = match role.kind {
                DRoleKind::Replication => RoleKind::Replication,
                DRoleKind::Rewind => RoleKind::Rewind,
            };
            let (attrs_text, password) = match role.kind {
                DRoleKind::Replication => {
                    ("LOGIN REPLICATION", self.cfg.replication.password.expose())
                }
                DRoleKind::Rewind => (
                    "LOGIN, EXECUTE on pg_rewind's four functions",
                    self.cfg.rewind.as_ref().map_or("", |r| r.password.expose()),
                ),
            };
            let address = format!("role.{}", role.name);
            match server.roles.get(&role.name) {
                None => {
                    let mut s = step(
                        primary,
                        address,
                        Action::Create,
                        Op::CreateRole {
                            name: role.name.clone(),
                            kind,
                        },
                    );
                    s.after = Some(format!("{attrs_text}, password (sensitive)"));
                    s.reason = "the role does not exist".into();
                    self.steps.push(s);
                }
                Some(r) => {
                    let replication = kind == RoleKind::Replication;
                    let flags = !r.login || (replication && !r.replication);
                    let expires = r.valid_until.is_some();
                    let limit_low = desired::connection_limit_too_low(
                        self.cfg,
                        replication,
                        r.connection_limit,
                    );
                    let attributes = flags || expires || limit_low;
                    let grants = kind == RoleKind::Rewind && !r.superuser && !r.rewind_grants;
                    let pw = !r
                        .verifier
                        .as_deref()
                        .is_some_and(|v| scram::verifies(v, password));
                    if kind == RoleKind::Rewind && r.superuser {
                        let ident = format!("\"{}\"", role.name.replace('"', "\"\""));
                        self.warn(
                            Some(primary),
                            format!(
                                "role {} is a SUPERUSER: pg_rewind needs only LOGIN and EXECUTE on four functions (pgrepl grants them to a role that is not a superuser). pgrepl does not remove privileges it did not grant: run `ALTER ROLE {ident} NOSUPERUSER` if nothing else needs it",
                                role.name
                            ),
                        );
                    }
                    if !(attributes || grants || pw) {
                        continue;
                    }
                    let mut what = Vec::new();
                    let (mut before, mut after) = (Vec::new(), Vec::new());
                    if flags {
                        let flag = |on: bool, name: &str| {
                            if on {
                                name.to_string()
                            } else {
                                format!("NO{name}")
                            }
                        };
                        let mut live = vec![flag(r.login, "LOGIN")];
                        if replication {
                            live.push(flag(r.replication, "REPLICATION"));
                        }
                        before.push(live.join(" "));
                        let wanted = attrs_text.split(',').next().unwrap_or("").to_string();
                        after.push(wanted.clone());
                        what.push(wanted);
                    }
                    if let Some(until) = &r.valid_until {
                        before.push(format!(
                            "VALID UNTIL '{until}'{}",
                            if r.expired { " (expired)" } else { "" }
                        ));
                        after.push("VALID UNTIL 'infinity'".to_string());
                        what.push(if r.expired {
                            format!("expired at {until}: it cannot log in")
                        } else {
                            format!("expires at {until}: it cannot log in from then on")
                        });
                    }
                    if limit_low {
                        let needed = desired::role_connections_needed(self.cfg, replication);
                        before.push(format!("CONNECTION LIMIT {}", r.connection_limit));
                        after.push("CONNECTION LIMIT -1".to_string());
                        what.push(format!(
                            "connection limit {} is below the {needed} connections {} need",
                            r.connection_limit,
                            if replication {
                                "streaming standbys and base backups"
                            } else {
                                "the re-bases of the other nodes with pg_rewind"
                            }
                        ));
                    }
                    if grants {
                        before.push("no EXECUTE on pg_rewind's functions".to_string());
                        after.push("EXECUTE on pg_rewind's four functions".to_string());
                        what.push("pg_rewind grants".to_string());
                    }
                    if pw {
                        what.push(match r.verifier.as_deref() {
                            Some(v) if v.starts_with("md5") => {
                                "password (stored as MD5, scram-sha-256 refuses it)".to_string()
                            }
                            Some(_) => "password differs".to_string(),
                            None => "password missing".to_string(),
                        });
                    }
                    let mut s = step(
                        primary,
                        address,
                        Action::Update,
                        Op::UpdateRole {
                            name: role.name.clone(),
                            kind,
                            password: pw,
                            attributes,
                            grants,
                        },
                    );
                    s.sensitive = pw;
                    if !before.is_empty() {
                        s.before = Some(before.join(", "));
                        s.after = Some(after.join(", "));
                    }
                    s.reason = what.join("; ");
                    self.steps.push(s);
                }
            }
        }
    }

    fn settings(&mut self, want: &NodeDesired, seen: &NodeState, server: &ServerFacts) {
        let name = want.name.as_str();
        // What waits in postgresql.auto.conf for the next restart: compared
        // with the file too, so a bad value never waits for a restart there.
        let auto = seen
            .files
            .as_ref()
            .and_then(|f| f.auto_conf.as_deref())
            .map(crate::gather::parse::conf_settings)
            .unwrap_or_default();
        for setting in want.settings.values() {
            if !server.settings.contains_key(&setting.name)
                && guc::is_custom_name(&setting.name)
                && let Some(live) = server.custom_settings.get(&setting.name)
            {
                self.custom_setting(name, &setting.name, &setting.value, live.as_deref());
                continue;
            }
            let Some(live) = server.settings.get(&setting.name) else {
                self.warn(
                    Some(name),
                    format!(
                        "{} does not exist in PostgreSQL {} on this node; it is not set",
                        setting.name,
                        server.version_num / 10000
                    ),
                );
                continue;
            };
            let def = guc::lookup(&setting.name);
            let (equal, before, after, sql_value) = match (def, &setting.normalized) {
                (Some(def), Some(want_v)) => {
                    let live_v = guc::normalize_observed(def, &live.setting, live.unit.as_deref());
                    let equal = live_v.as_ref().is_ok_and(|v| v == want_v);
                    let before = match &live_v {
                        Ok(v) => v.display_with_unit(def),
                        Err(_) => live.setting.clone(),
                    };
                    (
                        equal,
                        before,
                        want_v.display_with_unit(def),
                        want_v.to_alter_system_value(def),
                    )
                }
                _ => {
                    let after = toml_text(&setting.value);
                    (
                        live.setting == after,
                        live.setting.clone(),
                        after.clone(),
                        sql_literal(&after),
                    )
                }
            };
            if equal {
                if let (Some(def), Some(want_v), Some(pending)) =
                    (def, &setting.normalized, auto.get(&setting.name))
                    && live.pending_restart
                    && !guc::normalize_desired(def, &toml::Value::String(pending.clone()))
                        .is_ok_and(|v| &v == want_v)
                {
                    let mut s = step(
                        name,
                        format!("{name}.setting.{}", setting.name),
                        Action::Update,
                        Op::SetSetting {
                            name: setting.name.clone(),
                            sql_value: want_v.to_alter_system_value(def),
                            offline: None,
                        },
                    );
                    s.before = Some(format!(
                        "{} (in postgresql.auto.conf, waiting for a restart)",
                        display_value(pending)
                    ));
                    s.after = Some(display_value(&after));
                    s.reason = "ALTER SYSTEM puts the running value back before any restart takes the other one".into();
                    self.steps.push(s);
                }
                continue;
            }
            let restart = live.context == "postmaster";
            if let Some(def) = def
                && def.hot_standby_sensitive
                && let (Some(Normalized::Integer(w)), Ok(l)) =
                    (&setting.normalized, live.setting.parse::<i64>())
                && *w != l
            {
                self.hot_standby_changes
                    .push((name.to_string(), setting.name.clone(), l, *w));
                let list = if *w < l {
                    self.lowering_hot_standby = true;
                    &mut self.lowered_hot_standby
                } else {
                    &mut self.raised_hot_standby
                };
                if !list.contains(&setting.name) {
                    list.push(setting.name.clone());
                }
            }
            let mut s = step(
                name,
                format!("{name}.setting.{}", setting.name),
                Action::Update,
                Op::SetSetting {
                    name: setting.name.clone(),
                    sql_value,
                    offline: None,
                },
            );
            s.before = Some(display_value(&before));
            s.after = Some(display_value(&after));
            s.restart = restart;
            s.reason = if restart {
                "ALTER SYSTEM; takes effect at the restart".into()
            } else {
                "ALTER SYSTEM; takes effect at the reload".into()
            };
            self.steps.push(s);
            if restart {
                self.add_restart(name, setting.name.clone());
            }
        }
    }

    /// A custom (dotted) setting no loaded library defines: PostgreSQL keeps
    /// it as a placeholder string, which pg_settings does not list, so it is
    /// compared with `current_setting(name, true)` (`None`: not set). It is
    /// set with ALTER SYSTEM and made live by a reload, like any `user` setting.
    fn custom_setting(&mut self, node: &str, name: &str, value: &toml::Value, live: Option<&str>) {
        let after = toml_text(value);
        if live == Some(after.as_str()) {
            return;
        }
        let mut s = step(
            node,
            format!("{node}.setting.{name}"),
            Action::Update,
            Op::SetSetting {
                name: name.to_string(),
                sql_value: sql_literal(&after),
                offline: None,
            },
        );
        s.before = Some(live.map_or_else(|| "(not set)".to_string(), display_value));
        s.after = Some(display_value(&after));
        s.reason = "ALTER SYSTEM; takes effect at the reload (a custom setting: a placeholder until a library defines it)".into();
        self.steps.push(s);
    }

    fn recovery(&mut self, want: &NodeDesired, seen: &NodeState, server: &ServerFacts) {
        let Some(rec) = &want.recovery else { return };
        let name = want.name.as_str();
        let live = |n: &str| {
            server
                .settings
                .get(n)
                .map(|p| p.setting.clone())
                .unwrap_or_default()
        };
        let files = seen.files.as_ref();
        let passfile_ok = passfile_ok(self.cfg, name, files);
        let conninfo_ok = live("primary_conninfo") == rec.primary_conninfo;
        let slot_ok = live("primary_slot_name") == rec.primary_slot_name;
        let signal_ok = files.is_some_and(|f| f.standby_signal);
        let password_in_auto_conf = files.is_some_and(|f| f.auto_conf_has_password);
        if conninfo_ok && slot_ok && signal_ok && passfile_ok && !password_in_auto_conf {
            return;
        }
        // Only what differs, as (what, live, wanted): a line whose two sides
        // read the same would hide the change.
        let mut what: Vec<(&str, String, String)> = Vec::new();
        if !conninfo_ok {
            what.push((
                "primary_conninfo",
                format!("primary_conninfo = '{}'", live("primary_conninfo")),
                format!("primary_conninfo = '{}'", rec.primary_conninfo),
            ));
        }
        if !slot_ok {
            what.push((
                "primary_slot_name",
                format!("primary_slot_name = '{}'", live("primary_slot_name")),
                format!("primary_slot_name = '{}'", rec.primary_slot_name),
            ));
        }
        if !signal_ok {
            what.push((
                "standby.signal",
                "no standby.signal".into(),
                "standby.signal".into(),
            ));
        }
        if !passfile_ok {
            let live_passfile = match files.and_then(|f| f.passfile_sha256.as_deref()) {
                None => format!("no passfile {}", rec.passfile),
                Some(_) if files.and_then(|f| f.passfile_mode.as_deref()) != Some("600") => {
                    format!(
                        "passfile {} with mode {}",
                        rec.passfile,
                        files
                            .and_then(|f| f.passfile_mode.as_deref())
                            .unwrap_or("unknown")
                    )
                }
                Some(_) => format!("passfile {} with other content", rec.passfile),
            };
            what.push((
                "passfile",
                live_passfile,
                format!("passfile {} (0600)", rec.passfile),
            ));
        }
        if password_in_auto_conf {
            what.push((
                "a password in clear in postgresql.auto.conf",
                "a password in clear in postgresql.auto.conf".into(),
                "no password in postgresql.auto.conf".into(),
            ));
        }
        let restart = server
            .settings
            .get("primary_conninfo")
            .is_some_and(|p| p.context == "postmaster");
        let mut s = write_recovery_step(name, Action::Update, rec);
        s.before = Some(
            what.iter()
                .map(|(_, b, _)| b.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        );
        s.after = Some(
            what.iter()
                .map(|(_, _, a)| a.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        );
        s.restart = restart;
        s.reason = format!(
            "differs: {}",
            what.iter()
                .map(|(w, _, _)| *w)
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.steps.push(s);
        if restart {
            self.add_restart(name, "primary_conninfo".into());
        }
    }

    fn slots(&mut self, want: &NodeDesired, server: &ServerFacts) {
        // Slots pgrepl made (named after a node, or listed in [[slots]])
        // that no standby of this node uses any more: left over after a
        // switchover. Dropped, or they would hold WAL forever.
        for slot in &server.slots {
            let managed = self.cfg.nodes.contains_key(&slot.name)
                || self.cfg.extra_slots.contains(&slot.name);
            // An active one whose standby this plan re-points elsewhere:
            // dropped once that standby has left (after its reload).
            let moving = slot.active
                && self.want.nodes.get(&slot.name).is_some_and(|d| {
                    d.upstream.as_deref() != Some(want.name.as_str())
                        && self
                            .obs
                            .nodes
                            .get(&slot.name)
                            .is_some_and(|n| n.server.is_some())
                });
            if !managed || want.slots.contains(&slot.name) {
                continue;
            }
            if moving {
                let reason = format!(
                    "{} streams from {} once re-pointed in this plan; dropped after it left",
                    slot.name,
                    self.want.nodes[&slot.name]
                        .upstream
                        .as_deref()
                        .unwrap_or("its new upstream")
                );
                self.late.push(drop_slot_step(
                    &want.name,
                    &slot.name,
                    "physical slot, in use",
                    reason,
                ));
            } else if !slot.active {
                let reason = format!("no standby streams from {} through it any more", want.name);
                self.steps.push(drop_slot_step(
                    &want.name,
                    &slot.name,
                    "physical slot, inactive",
                    reason,
                ));
            }
        }
        for slot in &want.slots {
            if server.slots.iter().any(|s| &s.name == slot) {
                continue;
            }
            let mut s = step(
                &want.name,
                format!("{}.slot.{slot}", want.name),
                Action::Create,
                Op::CreateSlot { name: slot.clone() },
            );
            s.after = Some("physical slot".into());
            s.reason = if self.want.nodes.contains_key(slot) {
                format!("standby {slot} streams through it")
            } else {
                "listed in [[slots]]".into()
            };
            self.steps.push(s);
        }
    }

    fn unmanaged_slot_warnings(&mut self, want: &NodeDesired, server: &ServerFacts) {
        for slot in &server.slots {
            if let Some(ws) = slot.wal_status.as_deref()
                && (ws == "unreserved" || ws == "lost")
            {
                self.warn(
                    Some(&want.name),
                    format!(
                        "slot {} has wal_status {ws}: its standby will need a fresh base backup",
                        slot.name
                    ),
                );
            }
            let managed = self.cfg.nodes.contains_key(&slot.name)
                || self.cfg.extra_slots.contains(&slot.name);
            // A standby's own slot that nobody reads: the standby is down or
            // not streaming, and the slot keeps WAL until it streams again.
            if want.slots.contains(&slot.name)
                && !slot.active
                && self.cfg.nodes.contains_key(&slot.name)
                && let Some(b) = slot.retained_bytes
            {
                self.warn(
                    Some(&want.name),
                    format!(
                        "slot {s} is inactive: {s} does not stream through it; it retains {} of WAL (wal_status {}), more for as long as {s} does not stream; start {s}, or remove it from the file to drop the slot",
                        human_bytes(b.max(0) as u64),
                        slot.wal_status.as_deref().unwrap_or("unknown"),
                        s = slot.name
                    ),
                );
            }
            if want.slots.contains(&slot.name) || managed {
                continue;
            }
            if slot.active {
                // A standby pgrepl built names its walsender after itself
                // and streams through the slot of the same name: a node
                // taken out of the file still streams until it is stopped.
                if let Some(r) = server
                    .replication
                    .iter()
                    .find(|r| r.application_name == slot.name)
                {
                    self.warn(
                        Some(&want.name),
                        format!(
                            "slot {s} is not in the file, yet a standby named {s}{from} streams through it (a node removed from the file?): pgrepl leaves both alone; stop that server, then drop the slot with pg_drop_replication_slot('{s}'), or it keeps WAL for as long as it exists",
                            from = r
                                .client_addr
                                .as_deref()
                                .map(|a| format!(" (from {a})"))
                                .unwrap_or_default(),
                            s = slot.name
                        ),
                    );
                }
                continue;
            }
            // A slot that never reserved WAL (restart_lsn NULL) holds none yet.
            let holds = match slot.retained_bytes {
                Some(b) => format!("retaining {} of WAL", human_bytes(b.max(0) as u64)),
                None => "holding no WAL yet (it will from its first use)".to_string(),
            };
            self.warn(
                Some(&want.name),
                format!(
                    "slot {} is not in the file and inactive, {holds}; pgrepl leaves it alone (drop it with pg_drop_replication_slot if unused)",
                    slot.name
                ),
            );
        }
    }

    /// A base backup copies the upstream's configuration files: where this
    /// standby wants another value than its upstream (a per-node setting,
    /// synchronous_standby_names), it is written offline before the first
    /// start, so the plan shows it and no restart or later round is needed.
    fn copied_settings(&mut self, want: &NodeDesired, upstream: &str) {
        let name = want.name.as_str();
        let Some(up) = self.want.nodes.get(upstream) else {
            return;
        };
        for setting in want.settings.values() {
            let theirs = up.settings.get(&setting.name);
            let same = match (theirs, &setting.normalized) {
                (Some(t), Some(w)) => t.normalized.as_ref() == Some(w),
                (Some(t), None) => t.value == setting.value,
                (None, _) => false,
            };
            if same {
                continue;
            }
            let (after, before) = match guc::lookup(&setting.name) {
                Some(def) => (
                    setting
                        .normalized
                        .as_ref()
                        .map_or_else(|| toml_text(&setting.value), |v| v.display_with_unit(def)),
                    theirs.map(|t| {
                        t.normalized
                            .as_ref()
                            .map_or_else(|| toml_text(&t.value), |v| v.display_with_unit(def))
                    }),
                ),
                None => (
                    toml_text(&setting.value),
                    theirs.map(|t| toml_text(&t.value)),
                ),
            };
            let mut s = offline_setting_step(name, &setting.name, Action::Create, &after);
            s.before = before.map(|b| format!("{} (copied from {upstream})", display_value(&b)));
            s.after = Some(display_value(&after));
            s.reason = format!(
                "the base backup copies {upstream}'s settings; written into postgresql.auto.conf before the first start"
            );
            self.steps.push(s);
        }
    }

    fn new_standby(&mut self, want: &NodeDesired) {
        let name = want.name.as_str();
        let Some(upstream) = want.upstream.clone() else {
            return;
        };
        let Some(rec) = want.recovery.clone() else {
            return;
        };
        // Nothing is planned on, or copied from, a node that could not be read.
        if self
            .blocked
            .iter()
            .any(|b| b.node.as_deref() == Some(upstream.as_str()))
        {
            self.block(
                name,
                format!("has no data directory and its upstream {upstream} could not be planned (see above); it is built from {upstream} once that can be read"),
            );
            return;
        }
        // A base backup copies the data directory only: a separate
        // configuration directory must exist already.
        let pg = &self.cfg.nodes[name].postgres;
        let seen_files = self.obs.nodes.get(name).and_then(|n| n.files.as_ref());
        if let Some(dir) = &pg.config_dir
            && seen_files.and_then(|f| f.config_dir_has_conf) == Some(false)
        {
            self.block(
                name,
                format!(
                    "has no postgresql.conf in its config_dir {dir}, and a base backup copies only the data directory; create the cluster's configuration there first (on Debian: pg_createcluster; pgrepl then replaces the new, empty cluster by a base backup and keeps its data directory aside), or drop config_dir for this node"
                ),
            );
            return;
        }
        // A copy that cannot fit fails half-way: refuse it up front.
        let size = cluster_size(self.obs, &upstream);
        let free = self
            .obs
            .nodes
            .get(name)
            .and_then(|n| n.files.as_ref())
            .and_then(|f| f.disk_free_bytes);
        if let (Some(size), Some(free)) = (size, free)
            && free < backup_room(size)
        {
            self.block(
                name,
                format!(
                    "needs room for a copy of {upstream}'s {} of databases, about {} with the WAL written during the copy and a margin, but the file system of its data directory has {} free; free some space (or put the data directory elsewhere) and plan again",
                    human_bytes(size),
                    human_bytes(backup_room(size)),
                    human_bytes(free)
                ),
            );
            return;
        }
        // The upstream must hold the slot first; when the upstream is itself
        // new, its slot step is planned here too.
        let slot = (!rec.primary_slot_name.is_empty()).then(|| rec.primary_slot_name.clone());
        if let Some(slot_name) = &slot {
            let up_has_slot = self
                .obs
                .nodes
                .get(&upstream)
                .and_then(|n| n.server.as_ref())
                .is_some_and(|s| s.slots.iter().any(|x| &x.name == slot_name));
            let planned = self.steps.iter().any(|s| {
                s.node == upstream && matches!(&s.op, Op::CreateSlot { name } if name == slot_name)
            });
            if !up_has_slot && !planned {
                let mut s = step(
                    &upstream,
                    format!("{upstream}.slot.{slot_name}"),
                    Action::Create,
                    Op::CreateSlot {
                        name: slot_name.clone(),
                    },
                );
                s.after = Some("physical slot".into());
                s.reason = format!("standby {name} streams through it");
                self.steps.push(s);
            }
        }
        let mut s = step(
            name,
            format!("{name}.standby"),
            Action::Create,
            Op::BaseBackup {
                upstream: upstream.clone(),
                slot: slot.clone(),
            },
        );
        let about = size.map_or(String::new(), |b| format!(" (about {})", human_bytes(b)));
        s.after = Some(match &slot {
            Some(sl) => format!("base backup of {upstream} through slot {sl}{about}"),
            None => format!("base backup of {upstream}{about}"),
        });
        s.reason = "the data directory is empty".into();
        if let Some(partial) = self
            .obs
            .nodes
            .get(name)
            .and_then(|n| n.files.as_ref())
            .and_then(|f| f.building_bytes)
        {
            // pgrepl's own copy from an interrupted run: nothing of its own.
            let dd = self.cfg.nodes[name].postgres.data_dir.trim_end_matches('/');
            s.reason = format!(
                "the data directory is empty; pgrepl's interrupted copy {dd}.pgrepl-building ({}) is removed first",
                human_bytes(partial)
            );
            s.after = s.after.map(|a| {
                format!(
                    "{a}; removes the interrupted copy {dd}.pgrepl-building ({})",
                    human_bytes(partial)
                )
            });
        }
        self.steps.push(s);
        self.copied_settings(want, &upstream);
        let mut s = write_recovery_step(name, Action::Create, &rec);
        s.after = Some(format!(
            "primary_conninfo = '{}', primary_slot_name = '{}', standby.signal",
            rec.primary_conninfo, rec.primary_slot_name
        ));
        s.reason = "a new standby".into();
        self.steps.push(s);
        let mut s = step(
            name,
            format!("{name}.service"),
            Action::Create,
            Op::Start {
                once_with: Default::default(),
                catch_up_with: None,
            },
        );
        s.after = Some("running, streaming".into());
        s.reason = "start the new standby and wait until it streams; what it does not inherit from its upstream as that runs then is checked once it runs (known after apply)".into();
        self.steps.push(s);
        // Settings that differ from what the base backup copies from the
        // upstream are set once it runs (known after apply).
        if let Some(up) = self.want.nodes.get(&upstream) {
            let differing: Vec<String> = want
                .settings
                .values()
                .filter(|st| {
                    up.settings
                        .get(&st.name)
                        .is_none_or(|u| u.value != st.value)
                })
                .filter(|st| st.name != "synchronous_standby_names")
                .map(|st| format!("{} = {}", st.name, toml_text(&st.value)))
                .collect();
            if !differing.is_empty() {
                self.warn(
                    Some(name),
                    format!(
                        "settings of its own ({}) are set after it starts",
                        differing.join(", ")
                    ),
                );
            }
        }
    }
}

/// The hot-standby-sensitive settings of a stopped standby whose value at
/// its start (postgresql.auto.conf once the planned offline writes are
/// done, else the file's) is below what its pg_control records of the
/// primary: (name, recorded, configured). Such a standby refuses to start
/// until it has replayed the primary's parameter change.
fn stuck_below_recorded(
    want: &NodeDesired,
    auto: &IndexMap<String, String>,
    control: Option<&crate::gather::ControlData>,
) -> Vec<(String, i64, i64)> {
    let Some(control) = control else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, recorded) in &control.recorded_settings {
        let file = want.settings.get(name).and_then(|s| match &s.normalized {
            Some(Normalized::Integer(v)) => Some(*v),
            _ => None,
        });
        // The offline step writes the file's value over the one there.
        let configured = match (auto.get(name), file) {
            (Some(_), Some(f)) => Some(f),
            (Some(a), None) => a.trim().parse::<i64>().ok(),
            (None, f) => f,
        };
        if let Some(configured) = configured
            && configured < *recorded
        {
            out.push((name.clone(), *recorded, configured));
        }
    }
    out
}

/// A gather error without the `NODE: ` it starts with (the plan names the node).
fn without_node<'a>(error: &'a str, node: &str) -> &'a str {
    error
        .strip_prefix(node)
        .and_then(|e| e.strip_prefix(": "))
        .unwrap_or(error)
}

/// The passfile's SHA-256 on node `name`, as `sha256sum` prints it there.
pub fn passfile_digest(cfg: &Config, node: &crate::config::Node) -> String {
    let d = Sha256::digest(desired::passfile_content(cfg, node).as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether node `name`'s passfile is the file's, mode 0600.
fn passfile_ok(cfg: &Config, name: &str, files: Option<&crate::gather::FileFacts>) -> bool {
    let Some(node) = cfg.nodes.get(name) else {
        return false;
    };
    files.is_some_and(|f| {
        f.passfile_sha256.as_deref() == Some(passfile_digest(cfg, node).as_str())
            && f.passfile_mode.as_deref() == Some("600")
    })
}

fn toml_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Boolean(b) => if *b { "on" } else { "off" }.to_string(),
        other => other.to_string(),
    }
}

fn display_value(v: &str) -> String {
    if v.is_empty() {
        "''".into()
    } else {
        v.to_string()
    }
}

/// A single-quoted SQL literal (`'` doubled, `E''` when a backslash is present).
pub fn sql_literal(s: &str) -> String {
    let body = s.replace('\'', "''");
    if s.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

/// The size of all databases a copy of `upstream` carries: measured on a
/// primary only, and a standby is its primary's physical copy.
pub(crate) fn cluster_size(obs: &Observed, upstream: &str) -> Option<u64> {
    let measured = |n: &NodeState| n.server.as_ref()?.database_size_bytes;
    obs.nodes
        .get(upstream)
        .and_then(measured)
        .or_else(|| obs.nodes.values().find_map(measured))
        .and_then(|b| u64::try_from(b).ok())
}

/// The room a base backup of `size` bytes of databases needs: the copy, the
/// WAL streamed while it runs (`-X stream`), and a margin: 10% and 64 MB
/// (four 16 MB segments).
pub(crate) fn backup_room(size: u64) -> u64 {
    size.saturating_add(size / 10).saturating_add(64 << 20)
}

/// Bytes as people read them: `512 B`, `1.5 MB` (1024-based, as PostgreSQL).
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// pg_hba.conf with the managed block in place: the old block removed, the
/// new one before the first rule (after the leading comments, before the
/// comment lines that belong to that rule), every line outside the block
/// kept as it is. The caller checks first that every block is closed
/// ([`unclosed_hba_block`]): an unclosed one would swallow the rules after it.
pub fn render_hba(current: &str, block: &[String]) -> String {
    let mut outside: Vec<&str> = Vec::new();
    let mut inside = false;
    for line in current.lines() {
        if line.starts_with(HBA_BEGIN) {
            inside = true;
            continue;
        }
        if inside {
            if line.starts_with(HBA_END) {
                inside = false;
            }
            continue;
        }
        outside.push(line);
    }
    let first_rule = outside
        .iter()
        .position(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        })
        .unwrap_or(outside.len());
    // The comment lines right above the first rule describe it: the block
    // goes before them, not between a comment and its rule.
    let mut first_rule = first_rule;
    if first_rule < outside.len() {
        while first_rule > 0 && outside[first_rule - 1].trim_start().starts_with('#') {
            first_rule -= 1;
        }
    }
    let mut lines: Vec<&str> = outside[..first_rule].to_vec();
    // Keep one blank line before and after the block for readability.
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    let mut out = String::new();
    for l in &lines {
        out.push_str(l);
        out.push('\n');
    }
    if !lines.is_empty() {
        out.push('\n');
    }
    for l in block {
        out.push_str(l);
        out.push('\n');
    }
    let rest: Vec<&str> = outside[first_rule..].to_vec();
    let rest_start = rest
        .iter()
        .position(|l| !l.trim().is_empty())
        .unwrap_or(rest.len());
    if rest_start < rest.len() {
        out.push('\n');
        for l in &rest[rest_start..] {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// The 1-based line of a `# BEGIN pgrepl managed` that no `# END pgrepl
/// managed` closes, if any.
pub fn unclosed_hba_block(current: &str) -> Option<usize> {
    let mut open = None;
    for (i, line) in current.lines().enumerate() {
        if line.starts_with(HBA_BEGIN) {
            open = Some(i + 1);
        } else if line.starts_with(HBA_END) {
            open = None;
        }
    }
    open
}

pub fn unified_diff(old: &str, new: &str, name: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(2)
        .header(name, &format!("{name} (planned)"))
        .to_string()
}

/// Every observed fact the plan depends on, for stale-plan detection.
/// Secrets appear only as digests.
pub fn facts(cfg: &Config, obs: &Observed) -> IndexMap<String, String> {
    let mut f = IndexMap::new();
    let want = desired::desired_state(cfg);
    for (name, n) in &obs.nodes {
        if let Some(u) = &n.unreachable {
            f.insert(format!("{name}.reachable"), format!("no ({:?})", u.kind));
            continue;
        }
        f.insert(format!("{name}.reachable"), "yes".into());
        let Some(files) = &n.files else { continue };
        f.insert(format!("{name}.data_dir"), format!("{:?}", files.data_dir));
        f.insert(format!("{name}.running"), files.running.to_string());
        f.insert(
            format!("{name}.standby_signal"),
            files.standby_signal.to_string(),
        );
        f.insert(
            format!("{name}.hba"),
            digest(files.hba_conf.as_deref().unwrap_or("")),
        );
        // Whether it matches, never a hash of it: the passfile holds passwords.
        let passfile = if files.passfile_sha256.is_none() {
            "missing"
        } else if passfile_ok(cfg, name, Some(files)) {
            "matches"
        } else {
            "differs"
        };
        f.insert(format!("{name}.passfile"), passfile.into());
        // Only when present: a saved plan made before a manager took the
        // node over is stale.
        if let Some(m) = crate::manager::managed_by(n) {
            f.insert(format!("{name}.manager"), m.manager.to_string());
        }
        let Some(s) = &n.server else { continue };
        f.insert(format!("{name}.in_recovery"), s.in_recovery.to_string());
        f.insert(format!("{name}.timeline"), s.timeline.to_string());
        f.insert(
            format!("{name}.system_identifier"),
            s.system_identifier.clone(),
        );
        if let Some(w) = want.nodes.get(name) {
            for setting in w.settings.keys() {
                if let Some(live) = s.custom_settings.get(setting) {
                    f.insert(
                        format!("{name}.setting.{setting}"),
                        live.clone().unwrap_or_else(|| "(not set)".into()),
                    );
                }
                if let Some(p) = s.settings.get(setting) {
                    f.insert(
                        format!("{name}.setting.{setting}"),
                        format!(
                            "{}{}",
                            p.setting,
                            if p.pending_restart {
                                " (pending restart)"
                            } else {
                                ""
                            }
                        ),
                    );
                }
            }
        }
        for key in ["primary_conninfo", "primary_slot_name"] {
            if let Some(p) = s.settings.get(key) {
                f.insert(format!("{name}.{key}"), p.setting.clone());
            }
        }
        let slots: Vec<&str> = s.slots.iter().map(|x| x.name.as_str()).collect();
        f.insert(format!("{name}.slots"), slots.join(","));
        for r in s.roles.values() {
            f.insert(
                format!("{name}.role.{}", r.name),
                format!(
                    "login={} replication={} superuser={} grants={} valid_until={} connection_limit={} verifier={}",
                    r.login,
                    r.replication,
                    r.superuser,
                    r.rewind_grants,
                    r.valid_until.as_deref().unwrap_or("infinity"),
                    r.connection_limit,
                    r.verifier_digest.as_deref().unwrap_or("none")
                ),
            );
        }
    }
    f
}
