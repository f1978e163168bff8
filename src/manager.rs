//! Other managers: a node run by Patroni, repmgrd or
//! pg_auto_failover is never acted on. Gathering finds their signs
//! (`gather::ManagerFacts`); this module decides from those facts alone.
//! Pure: no IO.

use crate::observed::{Manager, ManagerFacts, NodeState};

/// The manager that runs this node, if any: the first one gathering found.
pub fn managed_by(node: &NodeState) -> Option<&ManagerFacts> {
    node.files.as_ref().and_then(|f| f.managers.first())
}

/// Why the plan leaves a managed node alone, what was seen, and the two
/// ways out. Pausing is not one of them: a paused Patroni still runs
/// PostgreSQL as its child, and a paused repmgrd still runs.
pub fn blocked_message(m: &ManagerFacts) -> String {
    let seen = if m.evidence.is_empty() {
        String::new()
    } else {
        format!(" ({})", m.evidence.join("; "))
    };
    let hand_over = match m.manager {
        Manager::Patroni => {
            "stop Patroni on the node and remove its files (Patroni's header in postgresql.conf, patroni.dynamic.json); `patronictl pause` is not enough, Patroni still runs PostgreSQL"
        }
        Manager::Repmgrd => {
            "stop repmgrd on the node; `repmgr service pause` is not enough, repmgrd still runs"
        }
        Manager::PgAutoFailover => {
            "remove the node from pg_auto_failover (`pg_autoctl drop node`), run PostgreSQL without pg_autoctl, and remove postgresql-auto-failover.conf and its include line; maintenance mode is not enough, pg_autoctl still runs PostgreSQL"
        }
    };
    format!(
        "is managed by {}{seen}; pgrepl never acts on a node another manager runs: let {} own it and remove the node from this file, or hand it to pgrepl: {hand_over}; then plan again",
        m.manager, m.manager
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observed::{DataDir, FileFacts};

    fn node(managers: Vec<ManagerFacts>) -> NodeState {
        NodeState {
            name: "db2".into(),
            host: "10.0.2.11".into(),
            unreachable: None,
            files: Some(FileFacts {
                data_dir: DataDir::Initialised,
                major: Some(15),
                running: true,
                standby_signal: true,
                recovery_signal: false,
                control: None,
                hba_conf: None,
                auto_conf: None,
                auto_conf_has_password: false,
                histories: Vec::new(),
                disk_free_bytes: None,
                disk_total_bytes: None,
                data_dir_physical: None,
                config_dir_has_conf: None,
                passfile_sha256: None,
                passfile_mode: None,
                rewind_interrupted: false,
                building_bytes: None,
                managers,
                slots_on_disk: None,
                stale_clusters: Vec::new(),
                preload: None,
            }),
            server: None,
            errors: Vec::new(),
            gather_ms: 1,
        }
    }

    #[test]
    fn the_first_manager_found_runs_the_node() {
        assert!(managed_by(&node(Vec::new())).is_none());
        let mut bare = node(Vec::new());
        bare.files = None;
        assert!(managed_by(&bare).is_none());
        let n = node(vec![
            ManagerFacts {
                manager: Manager::Patroni,
                evidence: vec!["the postmaster's parent process is patroni (pid 7)".into()],
            },
            ManagerFacts {
                manager: Manager::Repmgrd,
                evidence: Vec::new(),
            },
        ]);
        assert_eq!(managed_by(&n).map(|m| m.manager), Some(Manager::Patroni));
    }

    #[test]
    fn the_message_names_the_manager_what_was_seen_and_what_to_do() {
        let m = ManagerFacts {
            manager: Manager::Patroni,
            evidence: vec![
                "the postmaster's parent process is patroni (pid 7)".into(),
                "patroni.dynamic.json is in the data directory".into(),
            ],
        };
        let text = blocked_message(&m);
        assert!(
            text.starts_with("is managed by Patroni (the postmaster's parent process is patroni (pid 7); patroni.dynamic.json is in the data directory); pgrepl never acts"),
            "{text}"
        );
        assert!(text.contains("remove the node from this file"), "{text}");
        for manager in [Manager::Repmgrd, Manager::PgAutoFailover] {
            let text = blocked_message(&ManagerFacts {
                manager,
                evidence: Vec::new(),
            });
            assert!(
                text.starts_with(&format!("is managed by {manager}; ")),
                "{text}"
            );
        }
    }
}
