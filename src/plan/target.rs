//! `--target`: a plan cut down to some addresses and what they need.

use super::{Op, Plan, Step};

impl Plan {
    /// Keeps the steps whose address matches a target (exactly, or as a
    /// prefix ending at a dot: `node2` matches `node2.setting.x`), plus the
    /// steps they depend on ([`needs`]), to a fixed point.
    pub fn restrict_to(mut self, targets: &[String]) -> Plan {
        if targets.is_empty() {
            return self;
        }
        let matches = |addr: &str| {
            targets.iter().any(|t| {
                addr == t || (addr.starts_with(t.as_str()) && addr[t.len()..].starts_with('.'))
            })
        };
        let mut keep: Vec<bool> = self.changes.iter().map(|s| matches(&s.address)).collect();
        // Dependencies, to a fixed point.
        loop {
            let mut changed = false;
            for i in 0..self.changes.len() {
                if !keep[i] {
                    continue;
                }
                let step = &self.changes[i];
                for (j, other) in self.changes.iter().enumerate() {
                    if !keep[j] && needs(step, other) {
                        keep[j] = true;
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        let changes: Vec<Step> = self
            .changes
            .drain(..)
            .zip(keep)
            .filter(|(_, k)| *k)
            .map(|(s, _)| s)
            .collect();
        let mut plan = Plan::new(
            self.cluster,
            self.nodes,
            changes,
            self.warnings,
            self.blocked,
            self.facts,
        );
        plan.data_loss = self.data_loss;
        plan.needs_force = self.needs_force;
        plan.refused = self.refused;
        plan
    }
}

/// Whether `step` needs `other` to run first, for `--target`: a base backup
/// needs its upstream's slot, roles, hba and a running upstream; recovery
/// settings need the slot they name and the roles; every step of a new
/// standby needs its whole build; a setting needs the reload or restart
/// that makes it live.
fn needs(step: &Step, other: &Step) -> bool {
    let same_node = other.node == step.node;
    match (&step.op, &other.op) {
        (Op::BaseBackup { upstream, slot }, Op::CreateSlot { name }) => {
            &other.node == upstream && slot.as_deref() == Some(name.as_str())
        }
        // Slots for standbys are named after the standby and a
        // `[[slots]]` name never equals a node's: the name alone
        // finds the slot on the upstream.
        (
            Op::WriteRecovery {
                primary_slot_name, ..
            },
            Op::CreateSlot { name },
        ) => !primary_slot_name.is_empty() && name == primary_slot_name,
        (
            Op::BaseBackup { .. } | Op::WriteRecovery { .. },
            Op::CreateRole { .. } | Op::UpdateRole { .. },
        ) => true,
        (Op::BaseBackup { upstream, .. }, Op::WriteHba { .. } | Op::BaseBackup { .. }) => {
            &other.node == upstream
        }
        (Op::BaseBackup { upstream, .. }, Op::Start { .. }) => same_node || &other.node == upstream,
        // A new standby is built whole, whichever of its steps is targeted.
        (Op::BaseBackup { .. }, Op::WriteRecovery { .. }) => same_node,
        (_, Op::BaseBackup { .. }) => same_node,
        // A former name's passfile goes once nothing names it.
        (Op::RemoveClusterFiles { .. }, Op::WriteRecovery { .. } | Op::Reload) => same_node,
        (Op::SetSetting { .. } | Op::WriteHba { .. } | Op::WriteRecovery { .. }, Op::Reload) => {
            same_node && step.needs_reload()
        }
        (Op::SetSetting { .. } | Op::WriteRecovery { .. }, Op::Restart { .. }) => {
            same_node && step.restart
        }
        // A standby's restart that waits for its primary's
        // lowering needs that lowering (and its restart).
        (
            Op::Restart {
                catch_up_with: Some(p),
            },
            Op::Restart { .. },
        ) => &other.node == p,
        (
            Op::Restart {
                catch_up_with: Some(p),
            },
            Op::SetSetting { .. },
        ) => &other.node == p && other.restart,
        _ => false,
    }
}
