//! Nodes reached with sudo, on real nodes (`lab.sh --sudo`): pgrepl logs in
//! as the administrator `pgadmin`, and every command and SQL connection
//! goes through `sudo -n -u postgres` (`exec = { sudo = "postgres" }`).
//! Converge, drift repair, switchover under writes, failover with a re-base
//! by pg_rewind, a re-base by base backup, and a missing sudo rule; after
//! each run no SQL bridge or sudo is left on the nodes.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::lab::Lab;
use crate::support::{
    apply_ok, drift_on_a_standby_and_the_primary_is_repaired, kept_old_data_dirs, pgrepl,
    plan_is_empty, sender_of, text, wait_for,
};
use crate::switchover::{failover_to_node2_then_node1_rewound, switchover_to_node2_under_writes};

/// The processes in node `i`'s network namespace that pgrepl's sudo runs
/// would leave: a sudo, or a SQL bridge (`perl`).
fn bridges_and_sudos(lab: &Lab, i: usize) -> Vec<String> {
    let ns = format!("pgrl-{}-{i}", lab.k());
    let out = Command::new("ip")
        .args(["netns", "pids", &ns])
        .output()
        .expect("ip netns pids");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|pid| {
            let cmd = std::fs::read(format!("/proc/{}/cmdline", pid.trim())).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            (cmd.starts_with("perl ") || cmd.starts_with("sudo ")).then(|| {
                format!(
                    "{}: {}",
                    pid.trim(),
                    cmd.chars().take(80).collect::<String>()
                )
            })
        })
        .collect()
}

/// No node keeps a bridge or a sudo once pgrepl has exited (they end with
/// their connection; 5 s for the last ones to notice).
#[track_caller]
fn nothing_left_running(lab: &Lab) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<String> = (1..=lab.nodes())
            .flat_map(|i| bridges_and_sudos(lab, i))
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "left running on the nodes:\n{}",
            left.join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The owner and mode of `path` on node `i` (`postgres 600`).
fn owner_and_mode(lab: &Lab, i: usize, path: &str) -> String {
    let out = lab.exec(i, &["stat", "-c", "%U %a", path]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_sudo_cluster_converges_and_its_drift_is_repaired() {
    let lab = Lab::for_sudo_test("a_sudo_cluster_converges_and_its_drift_is_repaired", 3);
    assert!(lab.is_sudo());
    // The plan names each node's kind; the primary runs, the standbys are empty.
    let plan = text(&pgrepl(&lab, &["plan"]));
    for i in 1..=3 {
        assert!(
            plan.contains(&format!("node{i} (")) && plan.contains(", sudo postgres)"),
            "{plan}"
        );
    }
    apply_ok(&lab, &[]);
    let h1 = lab.host(1);
    for i in [2, 3] {
        assert_eq!(sender_of(&lab, i), format!("{h1}:streaming"));
    }
    // What pgrepl wrote is postgres's, as if postgres had logged in.
    let passfile = format!(
        "/var/lib/postgresql/{}/.pgrepl-lab{}.pgpass",
        lab.major(),
        lab.k()
    );
    assert_eq!(owner_and_mode(&lab, 2, &passfile), "postgres 600");
    assert_eq!(
        owner_and_mode(&lab, 2, &format!("{}/standby.signal", lab.data_dir())),
        "postgres 600"
    );
    let status = pgrepl(&lab, &["status"]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    assert!(
        text(&status).contains("node2 (sudo postgres)"),
        "{}",
        text(&status)
    );
    let json = pgrepl(&lab, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("status json");
    assert_eq!(v["nodes"][0]["kind"], "sudo postgres", "{v:#}");
    plan_is_empty(&lab);
    nothing_left_running(&lab);

    // Drift on a standby and on the primary: found and repaired.
    drift_on_a_standby_and_the_primary_is_repaired(&lab);
    nothing_left_running(&lab);
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_sudo_switchover_under_writes_loses_no_committed_row() {
    let lab = Lab::for_sudo_test("a_sudo_switchover_under_writes_loses_no_committed_row", 3);
    apply_ok(&lab, &[]);
    let out = switchover_to_node2_under_writes(&lab);
    assert!(!out.contains("pg_rewind:"), "a clean switchover: {out}");
    nothing_left_running(&lab);
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_sudo_failover_then_rebases_by_pg_rewind_and_by_base_backup() {
    let lab = Lab::for_sudo_test(
        "a_sudo_failover_then_rebases_by_pg_rewind_and_by_base_backup",
        3,
    );
    apply_ok(&lab, &[]);
    // Failover to node2; node1, diverged, re-based by pg_rewind (run as
    // postgres, in a one-off container on a docker node).
    failover_to_node2_then_node1_rewound(&lab);
    let h2 = lab.host(2);
    nothing_left_running(&lab);

    // node3 now holds a cluster of another initdb: re-based by a base
    // backup, its directory kept aside.
    lab.stop(3);
    let dd = lab.data_dir();
    let out = lab.exec(
        3,
        &[
            "sh",
            "-c",
            // The socket where the cluster file says it is: builds other
            // than Debian's put it in /tmp by default.
            "mv \"$1\" \"$1.before-initdb\" && initdb -D \"$1\" >/dev/null \
             && echo \"unix_socket_directories = '/var/run/postgresql'\" >>\"$1/postgresql.conf\" \
             && pg_ctl -D \"$1\" -l \"$1/../initdb-node.log\" -w start >/dev/null",
            "sh",
            &dd,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = text(&apply_ok(&lab, &[]));
    assert!(out.contains("node3.timeline"), "{out}");
    assert!(out.contains("base backup"), "{out}");
    assert!(kept_old_data_dirs(&lab, 3).status.success(), "kept aside");
    wait_for(
        "node3 to stream from node2",
        Duration::from_secs(20),
        || sender_of(&lab, 3) == format!("{h2}:streaming"),
    );
    assert_eq!(
        owner_and_mode(&lab, 3, &dd),
        "postgres 700",
        "the copy is postgres's"
    );
    plan_is_empty(&lab);
    nothing_left_running(&lab);
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_missing_sudo_rule_is_an_error_naming_the_node_and_nothing_hangs() {
    let lab = Lab::for_sudo_test(
        "a_missing_sudo_rule_is_an_error_naming_the_node_and_nothing_hangs",
        3,
    );
    apply_ok(&lab, &[]);
    lab.sudo_rule(2, false);
    /// Puts the rule back even when an assertion fails.
    struct Restore<'a>(&'a Lab);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            self.0.sudo_rule(2, true);
        }
    }
    let restore = Restore(&lab);
    let says = |out: &std::process::Output| {
        let said = text(out);
        for needle in [
            "node2",
            "sudo refused to run",
            "a password is required",
            "pgadmin ALL=(postgres) NOPASSWD: ALL",
        ] {
            assert!(said.contains(needle), "{needle:?} in {said}");
        }
        assert!(!said.contains("node1: sudo"), "{said}");
    };
    // plan: node2 blocked, the others planned; at once, not after a timeout.
    let started = Instant::now();
    let plan = pgrepl(&lab, &["plan", "--detailed-exitcode"]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(plan.status.code(), Some(4), "{}", text(&plan));
    says(&plan);
    // status: node2 unhealthy with the same words.
    let status = pgrepl(&lab, &["status"]);
    assert_eq!(status.status.code(), Some(3), "{}", text(&status));
    says(&status);
    // apply: refused without --force, and nothing was changed.
    let apply = pgrepl(&lab, &["apply", "--auto-approve"]);
    assert_eq!(apply.status.code(), Some(4), "{}", text(&apply));
    says(&apply);
    nothing_left_running(&lab);
    // The rule back: nothing to do.
    drop(restore);
    plan_is_empty(&lab);
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_sql_bridge_ends_when_its_connection_is_dropped() {
    let lab = Lab::for_sudo_test("a_sql_bridge_ends_when_its_connection_is_dropped", 1);
    let sources = crate::config::FakeSources {
        env: lab.env().into_iter().collect(),
        files: Default::default(),
    };
    let path = lab.config_path();
    let text = std::fs::read_to_string(&path).expect("the lab's file");
    let cfg = pgrepl::config::load_str(&text, &path, &sources).expect("the lab's file loads");
    let spec = &cfg.nodes["node1"];
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let session = pgrepl::transport::NodeSession::connect(spec)
            .await
            .expect("ssh as pgadmin");
        let node = pgrepl::node::Node::new(spec, &session);
        let first = node.sql().await.expect("a connection over the bridge");
        let second = node.sql().await.expect("another one");
        assert!(first.answers().await && second.answers().await);
        assert_eq!(bridges(&lab).len(), 2, "{:?}", bridges(&lab));
        // Dropped while the SSH session lives on: its bridge ends, the
        // other one stays.
        drop(first);
        let deadline = Instant::now() + Duration::from_secs(5);
        while bridges(&lab).len() != 1 {
            assert!(Instant::now() < deadline, "{:?}", bridges(&lab));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(second.answers().await);
        drop(second);
        session.close().await;
    });
    nothing_left_running(&lab);
}

/// The SQL bridges running on node 1 (a sudo running one counts with it).
fn bridges(lab: &Lab) -> Vec<String> {
    bridges_and_sudos(lab, 1)
        .into_iter()
        .filter(|p| p.contains(": perl "))
        .collect()
}
