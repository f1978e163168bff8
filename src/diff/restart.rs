//! Restarts: one node at a time, after the other steps and before new
//! standbys. Raised, a hot-standby-sensitive setting restarts the standbys
//! first; lowered, the primary first, each standby once it replayed the
//! primary's change. What no order serves in one round waits for a second.

use crate::config::Config;
use crate::desired::depth;
use crate::observed::Observed;
use crate::plan::{Op, Step, Warning, step};

/// What needs a node's restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RestartFor {
    /// A setting this plan changes.
    Setting(String),
    /// A setting already changed that waits for a restart (pending_restart).
    Pending(String),
}

impl RestartFor {
    fn setting(&self) -> &str {
        match self {
            RestartFor::Setting(name) | RestartFor::Pending(name) => name,
        }
    }

    fn text(&self) -> String {
        match self {
            RestartFor::Setting(name) => name.clone(),
            RestartFor::Pending(name) => format!("{name} (pending_restart)"),
        }
    }
}

/// A hot-standby-sensitive setting this plan changes on a node.
#[derive(Debug, Clone)]
struct HotStandbyChange {
    node: String,
    name: String,
    live: i64,
    wanted: i64,
}

/// The restarts the per-node diff asked for, in discovery order.
#[derive(Debug, Default)]
pub(super) struct Restarts {
    nodes: Vec<(String, Vec<RestartFor>)>,
    hot_standby: Vec<HotStandbyChange>,
}

/// Where a standby's restart must go, by the values of each name: before
/// the primary's (its value is below the primary's new one, else its
/// recovery pauses at the primary's change), after it (its new value is
/// below the primary's old one: it restarts once it replayed the change).
struct Side {
    node: String,
    before: bool,
    after: bool,
}

impl Restarts {
    pub(super) fn add(&mut self, node: &str, why: RestartFor) {
        match self.nodes.iter_mut().find(|(n, _)| n == node) {
            Some((_, w)) => w.push(why),
            None => self.nodes.push((node.to_string(), vec![why])),
        }
    }

    /// Whether `node` restarts already for `setting`.
    pub(super) fn has(&self, node: &str, setting: &str) -> bool {
        self.nodes
            .iter()
            .any(|(n, w)| n == node && w.iter().any(|x| x.setting() == setting))
    }

    pub(super) fn hot_standby_change(&mut self, node: &str, name: &str, live: i64, wanted: i64) {
        self.hot_standby.push(HotStandbyChange {
            node: node.to_string(),
            name: name.to_string(),
            live,
            wanted,
        });
    }

    /// The names this plan raises (`raised`) or lowers, in discovery order.
    fn names(&self, raised: bool) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for c in &self.hot_standby {
            if (c.wanted > c.live) == raised && !out.contains(&c.name) {
                out.push(c.name.clone());
            }
        }
        out
    }

    /// The restart steps in their order. What must wait for a second round
    /// is taken out of `steps`, with a warning saying so.
    pub(super) fn into_steps(
        mut self,
        cfg: &Config,
        obs: &Observed,
        steps: &mut Vec<Step>,
        warnings: &mut Vec<Warning>,
    ) -> Vec<Step> {
        let mut deferred: Vec<String> = Vec::new();
        let mut lowering = !self.names(false).is_empty();
        if let Some(warning) = self.split_raise_from_lowering(steps, &mut deferred) {
            lowering = false;
            warnings.push(warning);
        }
        let mut sides = self.sides(cfg, obs, &deferred);
        if let Some(warning) = self.defer_stuck(cfg, &sides, steps, &mut deferred) {
            lowering = false;
            warnings.push(warning);
            sides = self.sides(cfg, obs, &deferred);
        }
        self.ordered(cfg, &sides, lowering)
    }

    /// Raised, standbys restart first; lowered, the primary first. Both in
    /// one round, no order works (a standby refuses to start with a value
    /// below its primary's): the raise goes now, the lowering in the next
    /// round. A name raised on some nodes and lowered on others is not
    /// split: its standbys stay at or above the primary in either order.
    fn split_raise_from_lowering(
        &mut self,
        steps: &mut Vec<Step>,
        deferred: &mut Vec<String>,
    ) -> Option<Warning> {
        let (raised_any, lowered_any) = (self.names(true), self.names(false));
        let raised: Vec<String> = raised_any
            .iter()
            .filter(|n| !lowered_any.contains(n))
            .cloned()
            .collect();
        let lowered: Vec<String> = lowered_any
            .iter()
            .filter(|n| !raised_any.contains(n))
            .cloned()
            .collect();
        if raised.is_empty() || lowered.is_empty() {
            return None;
        }
        let why = format!(
            "this change raises {} and lowers {}; a raise restarts the standbys first and a lowering the primary first, so apply lowers {}",
            raised.join(", "),
            lowered.join(", "),
            lowered.join(", ")
        );
        Some(self.second_round(&lowered, steps, deferred, why))
    }

    /// A standby that must restart both before the primary (for one name)
    /// and after it (for another): the names the primary lowers wait for a
    /// second round.
    fn defer_stuck(
        &mut self,
        cfg: &Config,
        sides: &[Side],
        steps: &mut Vec<Step>,
        deferred: &mut Vec<String>,
    ) -> Option<Warning> {
        let stuck: Vec<String> = sides
            .iter()
            .filter(|s| s.before && s.after)
            .map(|s| s.node.clone())
            .collect();
        if stuck.is_empty() {
            return None;
        }
        let primary = &cfg.cluster.primary;
        let lowered_by_primary: Vec<String> = self
            .hot_standby
            .iter()
            .filter(|c| &c.node == primary && c.wanted < c.live && !deferred.contains(&c.name))
            .map(|c| c.name.clone())
            .collect();
        let why = format!(
            "{} must restart before the primary for one setting and after it for {}; apply lowers {}",
            stuck.join(", "),
            lowered_by_primary.join(", "),
            lowered_by_primary.join(", ")
        );
        Some(self.second_round(&lowered_by_primary, steps, deferred, why))
    }

    /// Takes the settings `names` out of this round, into `deferred`: their
    /// steps, and the restarts only they needed. The warning says `why`.
    fn second_round(
        &mut self,
        names: &[String],
        steps: &mut Vec<Step>,
        deferred: &mut Vec<String>,
        why: String,
    ) -> Warning {
        steps.retain(|s| !matches!(&s.op, Op::SetSetting { name, .. } if names.contains(name)));
        for (_, restart_for) in self.nodes.iter_mut() {
            restart_for.retain(|w| !matches!(w, RestartFor::Setting(n) if names.contains(n)));
        }
        self.nodes
            .retain(|(_, restart_for)| !restart_for.is_empty());
        deferred.extend(names.iter().cloned());
        Warning {
            node: None,
            message: format!(
                "{why} in a second round, after these restarts (a saved plan stops before it: plan and apply again)"
            ),
        }
    }

    /// Each standby's side of the primary's restart, from the values of
    /// the names not `deferred`.
    fn sides(&self, cfg: &Config, obs: &Observed, deferred: &[String]) -> Vec<Side> {
        let primary = &cfg.cluster.primary;
        let changes: Vec<&HotStandbyChange> = self
            .hot_standby
            .iter()
            .filter(|c| !deferred.contains(&c.name))
            .collect();
        let values = |node: &str, name: &str| -> Option<(i64, i64)> {
            changes
                .iter()
                .find(|c| c.node == node && c.name == name)
                .map(|c| (c.live, c.wanted))
                .or_else(|| live_integer(obs, node, name).map(|v| (v, v)))
        };
        let mut names: Vec<&str> = changes.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        self.nodes
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
                Side {
                    node: n.clone(),
                    before,
                    after,
                }
            })
            .collect()
    }

    /// One restart step per node: standbys before the primary unless a
    /// hot-standby-sensitive setting goes down; after it, upstreams before
    /// their downstreams.
    fn ordered(self, cfg: &Config, sides: &[Side], lowering: bool) -> Vec<Step> {
        let primary = &cfg.cluster.primary;
        // 0: before the primary, 1: the primary, 2: after it.
        let place = |node: &str| -> usize {
            if node == primary {
                return 1;
            }
            match sides.iter().find(|s| s.node == node) {
                Some(Side { before: true, .. }) => 0,
                Some(Side { after: true, .. }) => 2,
                _ if lowering => 2,
                _ => 0,
            }
        };
        let mut ordered = self.nodes;
        ordered.sort_by_key(|(node, _)| {
            let at = place(node);
            (at, if at == 2 { depth(cfg, node) } else { 0 })
        });
        ordered
            .into_iter()
            .map(|(node, why)| {
                // A lowering: a standby restarted before it replayed the
                // primary's parameter change (and made a restartpoint past
                // it) compares its lower value with the old one and
                // refuses to start.
                let catch_up_with = (place(&node) == 2).then(|| primary.clone());
                let reason = match &catch_up_with {
                    Some(p) => format!(
                        "first waits until it has replayed {p}'s WAL up to {p}'s current position (past {p}'s parameter change) and made a restartpoint there (CHECKPOINT): restarted before that, a standby refuses a value below the one {p} ran with"
                    ),
                    None => "one node at a time; settings that need it take effect".into(),
                };
                let settings: Vec<String> = why.iter().map(RestartFor::text).collect();
                step::restart(&node, &settings.join(", "), catch_up_with, reason)
            })
            .collect()
    }
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
