//! A stopped node: started (never as a second primary), after its
//! postgresql.auto.conf and recovery files are repaired offline; refused
//! when a value would keep it from starting.

use indexmap::IndexMap;

use super::differ::Differ;
use super::values::{display_value, passfile_ok, setting_in, toml_text, write_recovery};
use crate::desired::{NodeDesired, RecoveryDesired};
use crate::guc::{self, Normalized};
use crate::observed::{ControlData, FileFacts, NodeState};
use crate::plan::{Action, Step, step};

impl Differ<'_> {
    pub(super) fn stopped_node(&mut self, want: &NodeDesired, seen: &NodeState) {
        let name = want.name.as_str();
        let Some(files) = seen.files.as_ref() else {
            return;
        };
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
        let auto = files
            .auto_conf
            .as_deref()
            .map(crate::observed::parse::conf_settings)
            .unwrap_or_default();
        self.offline_settings(want, &auto, files.major);
        if let Some(rec) = &want.recovery {
            self.stopped_recovery(name, files, &auto, rec);
        }
        let stuck = if want.is_primary {
            Vec::new()
        } else {
            stuck_below_recorded(want, &auto, files.control.as_ref())
        };
        let state = files
            .control
            .as_ref()
            .map_or("unknown", |c| c.state.as_str());
        let s = self.start(want, state, &stuck);
        self.steps.push(s);
    }

    /// Planned from its files: drift in postgresql.auto.conf is repaired
    /// before the start, so a value that keeps it from starting (or one
    /// the file no longer wants) never stays in the way. A setting not
    /// there is checked once it runs.
    fn offline_settings(
        &mut self,
        want: &NodeDesired,
        auto: &IndexMap<String, String>,
        major: Option<u32>,
    ) {
        for setting in want.settings.values() {
            let Some(current) = auto.get(&setting.name) else {
                continue;
            };
            let (def, wanted) = setting_in(setting, major);
            let (equal, after) = match (def, &wanted) {
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
            let mut s = step::offline_setting(&want.name, &setting.name, Action::Update, &after);
            s.before = Some(display_value(current));
            s.after = Some(display_value(&after));
            s.reason = "written into postgresql.auto.conf while the server is stopped; takes effect at its start".into();
            self.steps.push(s);
        }
    }

    /// `~ NODE.service`: the start, once with the values its pg_control
    /// records (`stuck`) when its own are lower.
    fn start(&self, want: &NodeDesired, state: &str, stuck: &[(String, i64, i64)]) -> Step {
        let primary = &self.want.primary;
        let mut s = step::start(
            &want.name,
            Action::Update,
            stuck
                .iter()
                .map(|(n, recorded, _)| (n.clone(), recorded.to_string()))
                .collect(),
            (!stuck.is_empty()).then(|| primary.clone()),
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
        s
    }

    /// A stopped standby's recovery settings, read from postgresql.auto.conf
    /// and standby.signal: written before it may start, so that it never
    /// starts as a primary or follows the wrong upstream.
    fn stopped_recovery(
        &mut self,
        name: &str,
        files: &FileFacts,
        auto: &IndexMap<String, String>,
        rec: &RecoveryDesired,
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
        let mut s = write_recovery(name, Action::Update, rec);
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

    /// The same for a stopped node about to be started: its slots on disk
    /// and its preloaded libraries against the values it will start with
    /// (the file's, else those already in postgresql.auto.conf).
    fn stopped_start_guards(&mut self, want: &NodeDesired, files: &FileFacts) -> bool {
        let name = want.name.as_str();
        let auto = files
            .auto_conf
            .as_deref()
            .map(crate::observed::parse::conf_settings)
            .unwrap_or_default();
        let mut why = Vec::new();
        // Were the primary known, the topology would re-base it (and this
        // node would not be here): it never starts as it is.
        if files.rewind_interrupted {
            why.push(format!(
                "a pg_rewind into it was interrupted ({}.pgrepl-rewinding exists), which can leave it inconsistent; it is re-based from the primary once the primary can be read",
                self.cfg.nodes[name].postgres.data_dir.trim_end_matches('/')
            ));
        }
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
}

/// The hot-standby-sensitive settings of a stopped standby whose value at
/// its start (postgresql.auto.conf once the planned offline writes are
/// done, else the file's) is below what its pg_control records of the
/// primary: (name, recorded, configured). Such a standby refuses to start
/// until it has replayed the primary's parameter change.
fn stuck_below_recorded(
    want: &NodeDesired,
    auto: &IndexMap<String, String>,
    control: Option<&ControlData>,
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
