//! Mixed clusters on real nodes (`lab.sh --kinds`): each node of its own
//! kind in one cluster file. A bare node (SSH as postgres), a docker node
//! (SSH as `pgdocker`, PostgreSQL in the container `pg-nodeI`, `exec = {
//! docker = ... }` and the container's data directory in
//! `[nodes.nodeI.postgres]`) and a sudo node (SSH as `pgadmin`, `exec = {
//! sudo = "postgres" }`) converge and switch over under writes, there and
//! back; a ProxPanel operator's move from a docker primary onto new
//! hardware (a bare node) is the second story.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::lab::Lab;
use crate::support::{apply_ok, pgrepl, plan_is_empty, sender_of, set_primary, text, wait_for};
use crate::switchover::{ids_on, writer};

/// How the plan and `status` name node `i`'s way in (`docker pg-node2`,
/// `sudo postgres`); none for a bare node.
fn kind_label(lab: &Lab, i: usize) -> Option<String> {
    match lab.kind(i) {
        "docker" => Some(format!("docker {}", lab.container(i))),
        "sudo" => Some("sudo postgres".to_string()),
        _ => None,
    }
}

/// Every node answers SSH as its own kind's user, and the cluster file
/// gives each node what differs from the bare lab's `[ssh]`/`[postgres]`.
#[track_caller]
fn each_node_is_of_its_kind(lab: &Lab) {
    assert!(lab.is_mixed());
    let cfg = std::fs::read_to_string(lab.config_path()).expect("cluster file");
    for i in 1..=lab.nodes() {
        let out = lab.ssh(i).arg("id -un").output().expect("ssh");
        assert!(out.status.success(), "ssh node{i}: {}", text(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            lab.ssh_user_of(i),
            "node{i} ({})",
            lab.kind(i)
        );
        let user = format!("[nodes.node{i}.ssh]\nuser = \"{}\"", lab.ssh_user_of(i));
        let data = format!(
            "[nodes.node{i}.postgres]\ndata_dir = \"{}\"",
            lab.data_dir_of(i)
        );
        let (has_user, has_data) = match lab.kind(i) {
            "docker" => (true, true),
            "sudo" => (true, false),
            _ => (false, false),
        };
        assert_eq!(cfg.contains(&user), has_user, "node{i}'s ssh user: {cfg}");
        assert_eq!(cfg.contains(&data), has_data, "node{i}'s data_dir: {cfg}");
        let exec = kind_label(lab, i).map(|k| {
            let (what, name) = k.split_once(' ').expect("kind and name");
            format!("exec = {{ {what} = \"{name}\" }}")
        });
        if let Some(exec) = exec {
            assert!(cfg.contains(&exec), "node{i}'s {exec}: {cfg}");
        }
    }
}

/// No one-off container of pgrepl's is left on the docker nodes.
#[track_caller]
fn no_one_off_left(lab: &Lab) {
    for i in (1..=lab.nodes()).filter(|&i| lab.kind(i) == "docker") {
        let label = format!("label=pgrepl.offline-for={}", lab.container(i));
        wait_for("one-off containers to go", Duration::from_secs(10), || {
            let out = lab.docker(i, &["ps", "-aq", "--filter", &label]);
            out.status.success() && out.stdout.iter().all(u8::is_ascii_whitespace)
        });
    }
}

/// Converges the lab's cluster as written (node1 the primary): the plan
/// names each node's kind, every other node then streams from node1, and
/// `status` names each node's kind too.
fn converge(lab: &Lab) {
    let plan = text(&pgrepl(lab, &["plan"]));
    for i in 1..=lab.nodes() {
        assert!(plan.contains(&format!("node{i} (")), "node{i}: {plan}");
        if let Some(kind) = kind_label(lab, i) {
            assert!(plan.contains(&format!("{kind})")), "node{i}'s kind: {plan}");
        }
    }
    apply_ok(lab, &[]);
    let h1 = lab.host(1);
    for i in 2..=lab.nodes() {
        assert_eq!(
            sender_of(lab, i),
            format!("{h1}:streaming"),
            "node{i} ({})",
            lab.kind(i)
        );
    }
    assert_eq!(
        lab.sql(lab.nodes(), "SELECT count(*) >= 1000 FROM lab_data"),
        "t"
    );
    let status = pgrepl(lab, &["status"]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    for i in 1..=lab.nodes() {
        if let Some(kind) = kind_label(lab, i) {
            assert!(
                text(&status).contains(&format!("node{i} ({kind})")),
                "{}",
                text(&status)
            );
        }
    }
    plan_is_empty(lab);
    no_one_off_left(lab);
}

/// Switches over to node `to` (1 or 2: the writer writes to whichever of
/// the two accepts writes) under writes: no committed row lost, every
/// other node streams from `to`, the next plan is empty.
fn switch_over_under_writes(lab: &Lab, to: usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let committed = std::thread::scope(|s| {
        let w = s.spawn(|| writer(lab, stop.clone()));
        /// Stops the writer even when an assertion fails.
        struct StopOnDrop(Arc<AtomicBool>);
        impl Drop for StopOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let _guard = StopOnDrop(stop.clone());
        std::thread::sleep(Duration::from_millis(500));
        set_primary(lab, &format!("node{to}"));
        let out = text(&apply_ok(lab, &[]));
        assert!(out.contains("switchover"), "{out}");
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::SeqCst);
        w.join().expect("writer")
    });
    assert!(
        committed.len() >= 5,
        "only {} rows written",
        committed.len()
    );
    assert_eq!(lab.sql(to, "SELECT pg_is_in_recovery()"), "f");
    let h = lab.host(to);
    let others: Vec<usize> = (1..=lab.nodes()).filter(|&i| i != to).collect();
    wait_for(
        &format!("nodes {others:?} to stream from node{to}"),
        Duration::from_secs(20),
        || {
            others
                .iter()
                .all(|&i| sender_of(lab, i) == format!("{h}:streaming"))
        },
    );
    let on_new = ids_on(lab, to);
    let lost: Vec<&i64> = committed.iter().filter(|id| !on_new.contains(id)).collect();
    assert!(lost.is_empty(), "committed rows lost: {lost:?}");
    plan_is_empty(lab);
    no_one_off_left(lab);
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_mixed_cluster_converges_and_switches_over_under_writes() {
    let lab = Lab::for_kinds_test(
        "a_mixed_cluster_converges_and_switches_over_under_writes",
        &["bare", "docker", "sudo"],
    );
    assert_eq!(
        (lab.kind(1), lab.kind(2), lab.kind(3)),
        ("bare", "docker", "sudo")
    );
    each_node_is_of_its_kind(&lab);
    converge(&lab);
    // Onto the docker node, then back onto the bare one.
    switch_over_under_writes(&lab, 2);
    switch_over_under_writes(&lab, 1);
}

/// A ProxPanel operator moves a docker primary onto new hardware: the old
/// node's container is the primary, the new machine a bare node.
#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_proxpanel_move_onto_new_hardware() {
    let lab = Lab::for_kinds_test("a_proxpanel_move_onto_new_hardware", &["docker", "bare"]);
    each_node_is_of_its_kind(&lab);
    converge(&lab);
    switch_over_under_writes(&lab, 2);
    // The old primary's container runs on, as a standby of the new machine.
    let state = lab.docker(
        1,
        &["inspect", "-f", "{{.State.Status}}", &lab.container(1)],
    );
    assert_eq!(String::from_utf8_lossy(&state.stdout).trim(), "running");
    assert_eq!(lab.sql(1, "SELECT pg_is_in_recovery()"), "t");
}

/// `ssh USER@node i` with the lab's key, running `cmd`: whether it succeeded.
fn ssh_as(lab: &Lab, user: &str, i: usize, cmd: &str) -> std::process::Output {
    std::process::Command::new("ssh")
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
        .args(["-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=3"])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            lab.known_hosts_file().display()
        ))
        .arg("-i")
        .arg(lab.identity_file())
        .arg(format!("{user}@{}", lab.host(i)))
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("ssh")
}

/// The lab itself, in another order (node1, the primary, a sudo node):
/// each node lets in its kind's user only, the sudo rule is its own, each
/// command acts by the node's kind, and down leaves nothing.
#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_mixed_lab_serves_each_node_by_its_kind_and_goes_down_clean() {
    let lab = Lab::for_kinds_test(
        "a_mixed_lab_serves_each_node_by_its_kind_and_goes_down_clean",
        &["sudo", "docker", "bare"],
    );
    each_node_is_of_its_kind(&lab);
    // Only the node's own kind's user gets in.
    for (user, i) in [
        ("postgres", 1),
        ("pgdocker", 1),
        ("pgadmin", 3),
        ("postgres", 2),
    ] {
        let out = ssh_as(&lab, user, i, "true");
        assert!(!out.status.success(), "{user} into node{i}: {}", text(&out));
    }
    // node1: a sudo node, the primary with lab_data; its sudo rule is its own.
    assert_eq!(lab.sql(1, "SELECT count(*) FROM lab_data"), "1000");
    let sudo = "sudo -n -u postgres id -un";
    let out = ssh_as(&lab, "pgadmin", 1, sudo);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "postgres",
        "{}",
        text(&out)
    );
    lab.sudo_rule(1, false);
    let out = ssh_as(&lab, "pgadmin", 1, sudo);
    assert!(!out.status.success(), "no rule: {}", text(&out));
    lab.sudo_rule(1, true);
    assert!(ssh_as(&lab, "pgadmin", 1, sudo).status.success());
    // stop and start by pg_ctl on the sudo node.
    lab.stop(1);
    assert!(!lab.try_sql(1, "SELECT 1").status.success());
    lab.start(1);
    assert_eq!(lab.sql(1, "SELECT count(*) FROM lab_data"), "1000");
    // node2: a docker node, its container created, never started; exec
    // there runs in a one-off container as the image's postgres.
    let ps = lab.docker(2, &["ps", "-a", "--format", "{{.Names}} {{.State}}"]);
    assert_eq!(
        String::from_utf8_lossy(&ps.stdout).trim(),
        "pg-node2 created"
    );
    let out = lab.exec(
        2,
        &[
            "sh",
            "-c",
            "id -u; ls -A \"$1\" | wc -l",
            "sh",
            &lab.data_dir_of(2),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "999\n0",
        "{}",
        text(&out)
    );
    // node3: a bare node with an empty data directory.
    let out = lab.exec(
        3,
        &[
            "sh",
            "-c",
            "id -un; test ! -e \"$1/PG_VERSION\"",
            "sh",
            &lab.data_dir_of(3),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "postgres");

    let sudoers = format!("/etc/sudoers.d/pgrepl-lab-{}", lab.k());
    assert!(std::path::Path::new(&sudoers).exists());
    let trace = lab.trace();
    assert!(
        trace
            .leftovers()
            .iter()
            .any(|l| l.starts_with("mount held by ")),
        "the trace must see node2's dockerd mounts while up"
    );
    drop(lab);
    let left = trace.wait_gone(Duration::from_secs(3));
    assert!(left.is_empty(), "left behind by down:\n{}", left.join("\n"));
    assert!(!std::path::Path::new(&sudoers).exists(), "{sudoers} left");
}
