//! The per-node diff: each node of the file against what was observed of
//! it, dispatched by the state it is in. Its findings (steps, warnings,
//! blocked nodes, restarts) are gathered here for `plan` to order.

use std::collections::HashSet;

use super::restart::{RestartFor, Restarts};
use crate::config::Config;
use crate::desired::{self, DesiredState, NodeDesired, depth};
use crate::guc::Normalized;
use crate::observed::{DataDir, NodeState, Observed};
use crate::plan::{Step, Warning, step};

pub(super) struct Differ<'a> {
    pub(super) cfg: &'a Config,
    pub(super) want: &'a DesiredState,
    pub(super) obs: &'a Observed,
    pub(super) steps: Vec<Step>,
    pub(super) warnings: Vec<Warning>,
    pub(super) blocked: Vec<Warning>,
    pub(super) restarts: Restarts,
    /// Nodes whose role changes in this plan: planned in the next round.
    deferred: HashSet<String>,
    /// Steps that wait for the other nodes' steps (a slot whose standby
    /// leaves in this plan).
    pub(super) late: Vec<Step>,
}

impl<'a> Differ<'a> {
    pub(super) fn new(
        cfg: &'a Config,
        want: &'a DesiredState,
        obs: &'a Observed,
        deferred: HashSet<String>,
    ) -> Differ<'a> {
        Differ {
            cfg,
            want,
            obs,
            steps: Vec::new(),
            warnings: Vec::new(),
            blocked: Vec::new(),
            restarts: Restarts::default(),
            deferred,
            late: Vec::new(),
        }
    }
}

impl Differ<'_> {
    pub(super) fn warn(&mut self, node: Option<&str>, message: String) {
        self.warnings.push(Warning {
            node: node.map(String::from),
            message,
        });
    }

    pub(super) fn block(&mut self, node: &str, message: String) {
        self.blocked.push(Warning {
            node: Some(node.to_string()),
            message,
        });
    }

    pub(super) fn add_restart(&mut self, node: &str, why: RestartFor) {
        self.restarts.add(node, why);
    }

    /// The file's integer value of `guc` on this node, if it sets one.
    pub(super) fn wanted_int(&self, want: &NodeDesired, guc: &str) -> Option<i64> {
        match want.settings.get(guc).map(|s| &s.normalized) {
            Some(Some(Normalized::Integer(v))) => Some(*v),
            _ => None,
        }
    }

    pub(super) fn run(&mut self) {
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
            // Another manager runs this node; nothing is planned on it.
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
                        let why = seen.errors.first().map_or("", |e| without_node(e, &want.name));
                        let hint = no_socket_hint(why, &self.cfg.nodes[&want.name].postgres.socket_dir);
                        self.block(&want.name, format!("PostgreSQL runs but SQL failed: {why}{hint}"));
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
            let mut s = step::remove_cluster_files(name, old, paths.clone());
            s.before = Some(paths.join(", "));
            s.reason = format!(
                "left by cluster \"{old}\", this data directory's former cluster name: its passfile holds passwords; removed after {name}'s recovery settings name {}",
                desired::passfile_path(self.cfg, node)
            );
            self.late.push(s);
        }
    }
}

/// A gather error without the `NODE: ` it starts with (the plan names the node).
/// When the server runs but its socket is not where the file says: the
/// usual cause is a server listening in another directory (a build's
/// default `/tmp`, or a hand-edited `unix_socket_directories`).
fn no_socket_hint(why: &str, socket_dir: &str) -> String {
    if why.contains("No such file or directory") {
        format!(
            "; the server does not listen in {socket_dir}: add it to unix_socket_directories on the node (or set [postgres] socket_dir to where it listens)"
        )
    } else {
        String::new()
    }
}

fn without_node<'a>(error: &'a str, node: &str) -> &'a str {
    error
        .strip_prefix(node)
        .and_then(|e| e.strip_prefix(": "))
        .unwrap_or(error)
}

#[cfg(test)]
mod tests {
    use super::no_socket_hint;

    #[test]
    fn a_missing_socket_names_the_directory_and_the_setting() {
        let hint = no_socket_hint(
            "cannot connect to /var/run/postgresql/.s.PGSQL.5432: No such file or directory",
            "/var/run/postgresql",
        );
        assert!(
            hint.contains("does not listen in /var/run/postgresql"),
            "{hint}"
        );
        assert!(hint.contains("unix_socket_directories"), "{hint}");
    }

    #[test]
    fn other_sql_failures_get_no_socket_hint() {
        assert_eq!(
            no_socket_hint("peer authentication failed for user", "/run"),
            ""
        );
    }
}
