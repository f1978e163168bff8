//! A node without a data directory: a new standby, built by a base backup
//! of its upstream (through its slot there), its own settings and recovery
//! written before its first start.

use super::differ::Differ;
use super::values::{display_value, toml_text, write_recovery};
use crate::desired::NodeDesired;
use crate::guc;
use crate::plan::{Action, Op, Step, step};
use crate::space;
use crate::text::human_bytes;

impl Differ<'_> {
    pub(super) fn new_standby(&mut self, want: &NodeDesired) {
        let name = want.name.as_str();
        let Some(upstream) = want.upstream.clone() else {
            return;
        };
        let Some(rec) = want.recovery.clone() else {
            return;
        };
        if self.cannot_build(name, &upstream) {
            return;
        }
        // The upstream must hold the slot first; when the upstream is itself
        // new, its slot step is planned here too.
        let slot = (!rec.primary_slot_name.is_empty()).then(|| rec.primary_slot_name.clone());
        if let Some(slot_name) = &slot {
            self.upstream_slot(name, &upstream, slot_name);
        }
        let s = self.base_backup(name, &upstream, slot);
        self.steps.push(s);
        self.copied_settings(want, &upstream);
        let mut s = write_recovery(name, Action::Create, &rec);
        s.after = Some(format!(
            "primary_conninfo = '{}', primary_slot_name = '{}', standby.signal",
            rec.primary_conninfo, rec.primary_slot_name
        ));
        s.reason = "a new standby".into();
        self.steps.push(s);
        let mut s = step::start(name, Action::Create, Default::default(), None);
        s.after = Some("running, streaming".into());
        s.reason = "start the new standby and wait until it streams; what it does not inherit from its upstream as that runs then is checked once it runs (known after apply)".into();
        self.steps.push(s);
        self.own_settings_warning(want, &upstream);
    }

    /// Whether the standby cannot be built now (it is then blocked): its
    /// upstream could not be planned, its configuration directory lacks
    /// postgresql.conf, or the copy would not fit.
    fn cannot_build(&mut self, name: &str, upstream: &str) -> bool {
        // Nothing is planned on, or copied from, a node that could not be read.
        if self
            .blocked
            .iter()
            .any(|b| b.node.as_deref() == Some(upstream))
        {
            self.block(
                name,
                format!("has no data directory and its upstream {upstream} could not be planned (see above); it is built from {upstream} once that can be read"),
            );
            return true;
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
            return true;
        }
        // A copy that cannot fit fails half-way: refuse it up front.
        let free = seen_files.and_then(|f| f.disk_free_bytes);
        if let Some(short) = space::shortfall(self.obs, upstream, free) {
            self.block(
                name,
                format!(
                    "needs room for a copy of {upstream}'s {} of databases, about {} with the WAL written during the copy and a margin, but the file system of its data directory has {} free; free some space (or put the data directory elsewhere) and plan again",
                    human_bytes(short.size),
                    human_bytes(short.needs),
                    human_bytes(short.free)
                ),
            );
            return true;
        }
        false
    }

    /// The slot on the upstream that standby `name` streams through,
    /// unless it is there or planned already.
    fn upstream_slot(&mut self, name: &str, upstream: &str, slot_name: &str) {
        let up_has_slot = self
            .obs
            .nodes
            .get(upstream)
            .and_then(|n| n.server.as_ref())
            .is_some_and(|s| s.slots.iter().any(|x| x.name == slot_name));
        let planned = self.steps.iter().any(|s| {
            s.node == upstream && matches!(&s.op, Op::CreateSlot { name } if name == slot_name)
        });
        if !up_has_slot && !planned {
            let mut s = step::create_slot(upstream, slot_name);
            s.reason = format!("standby {name} streams through it");
            self.steps.push(s);
        }
    }

    /// `+ NODE.standby`, with the size of the copy, and pgrepl's own
    /// interrupted copy (nothing of the user's) removed first.
    fn base_backup(&self, name: &str, upstream: &str, slot: Option<String>) -> Step {
        let size = space::cluster_size(self.obs, upstream);
        let about = size.map_or(String::new(), |b| format!(" (about {})", human_bytes(b)));
        let after = match &slot {
            Some(sl) => format!("base backup of {upstream} through slot {sl}{about}"),
            None => format!("base backup of {upstream}{about}"),
        };
        let mut s = step::base_backup(name, upstream, slot);
        s.after = Some(after);
        s.reason = "the data directory is empty".into();
        if let Some(partial) = self
            .obs
            .nodes
            .get(name)
            .and_then(|n| n.files.as_ref())
            .and_then(|f| f.building_bytes)
        {
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
        s
    }

    /// Settings that differ from what the base backup copies from the
    /// upstream are set once it runs (known after apply).
    fn own_settings_warning(&mut self, want: &NodeDesired, upstream: &str) {
        let Some(up) = self.want.nodes.get(upstream) else {
            return;
        };
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
                Some(&want.name),
                format!(
                    "settings of its own ({}) are set after it starts",
                    differing.join(", ")
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
            let mut s = step::offline_setting(name, &setting.name, Action::Create, &after);
            s.before = before.map(|b| format!("{} (copied from {upstream})", display_value(&b)));
            s.after = Some(display_value(&after));
            s.reason = format!(
                "the base backup copies {upstream}'s settings; written into postgresql.auto.conf before the first start"
            );
            self.steps.push(s);
        }
    }
}
