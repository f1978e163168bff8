//! Failover slots (PostgreSQL 17+): a standby with `sync_replication_slots
//! = on` copies the primary's failover logical slots, which needs what the
//! file may contradict; and `synchronized_standby_slots` on the primary,
//! which must name slots that exist for good.

use super::differ::Differ;
use super::values::toml_text;
use crate::desired::{self, NodeDesired};
use crate::guc::Normalized;
use crate::observed::ServerFacts;

impl Differ<'_> {
    /// Warnings for what keeps the slot sync worker of `want` from
    /// working, and for `synchronized_standby_slots` naming slots the file
    /// does not manage (the primary then waits on a slot nobody keeps).
    pub(super) fn slot_sync(&mut self, want: &NodeDesired, server: &ServerFacts) {
        if server.major() < 17 {
            return;
        }
        let name = want.name.as_str();
        // The worker runs on standbys only; a primary ignores the setting.
        if !want.is_primary && desired::slot_sync(&self.cfg.nodes[name]) {
            let mut why = Vec::new();
            if want
                .settings
                .get("hot_standby_feedback")
                .map(|s| &s.normalized)
                == Some(&Some(Normalized::Bool(false)))
            {
                why.push("the file sets hot_standby_feedback = off; it must be on".to_string());
            }
            if !self.cfg.replication.slots {
                why.push(
                    "[replication] slots = false leaves it without primary_slot_name; set slots = true"
                        .to_string(),
                );
            }
            if let Some(level) = want.settings.get("wal_level").map(|s| toml_text(&s.value))
                && !level.eq_ignore_ascii_case("logical")
            {
                why.push(format!(
                    "wal_level is {level}; it must be logical on every node"
                ));
            }
            if !why.is_empty() {
                self.warn(
                    Some(name),
                    format!(
                        "sync_replication_slots = on, but its slot sync worker cannot copy the primary's failover slots: {}",
                        why.join("; ")
                    ),
                );
            }
        }
        if !want.is_primary {
            return;
        }
        let Some(listed) = want
            .settings
            .get("synchronized_standby_slots")
            .map(|s| toml_text(&s.value))
        else {
            return;
        };
        let unknown: Vec<&str> = listed
            .split(',')
            .map(|s| s.trim().trim_matches('"'))
            .filter(|s| !s.is_empty() && *s != "*" && !want.slots.iter().any(|w| w == s))
            .collect();
        if !unknown.is_empty() {
            self.warn(
                Some(name),
                format!(
                    "synchronized_standby_slots names {}, which the file does not make a physical slot on {name} (its slots: {}): logical decoding on {name} waits for a slot that no standby of the file keeps; name only standbys' slots",
                    unknown.join(", "),
                    if want.slots.is_empty() {
                        "none".to_string()
                    } else {
                        want.slots.join(", ")
                    }
                ),
            );
        }
    }
}
