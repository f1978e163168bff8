//! PostgreSQL in containers, on real nodes (`lab.sh --runtime docker`): each
//! node runs a dockerd of its own; PostgreSQL runs in the container
//! `pg-nodeI` (the official image's layout from PostgreSQL 18 on: a volume at
//! /var/lib/postgresql, the data directory below it), and pgrepl logs in as
//! `pgdocker`, a member of the group docker (`exec = { docker = "pg-nodeI" }`).
//! Converge from a running primary container and created containers on
//! empty volumes, drift repair, switchover under writes, failover with a
//! re-base by pg_rewind, a re-base by base backup, and a container that does
//! not exist; after each run no one-off container is left.

use std::time::Duration;

use crate::lab::Lab;
use crate::support::{
    apply_ok, drift_on_a_standby_and_the_primary_is_repaired, kept_old_data_dirs, pgrepl,
    plan_is_empty, sender_of, text, wait_for,
};
use crate::switchover::{failover_to_node2_then_node1_rewound, switchover_to_node2_under_writes};

/// `docker ARGS` on node `i`'s dockerd; its stdout, trimmed (must succeed).
fn docker(lab: &Lab, i: usize, args: &[&str]) -> String {
    let out = lab.docker(i, args);
    assert!(
        out.status.success(),
        "docker {args:?} on node{i}: {}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn state(lab: &Lab, i: usize) -> String {
    docker(
        lab,
        i,
        &["inspect", "-f", "{{.State.Status}}", &lab.container(i)],
    )
}

/// No one-off container of pgrepl's is left on any node (they are
/// `--rm`, and each ends with its command).
#[track_caller]
fn no_one_off_left(lab: &Lab) {
    for i in 1..=lab.nodes() {
        let label = format!("label=pgrepl.offline-for={}", lab.container(i));
        let mut left = String::new();
        wait_for("one-off containers to go", Duration::from_secs(10), || {
            left = docker(lab, i, &["ps", "-aq", "--filter", &label]);
            left.is_empty()
        });
    }
}

/// The uid, gid and mode of `path` on node `i`, as the container sees it.
fn owner_and_mode(lab: &Lab, i: usize, path: &str) -> String {
    let out = lab.exec(i, &["stat", "-c", "%u:%g %a", path]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn passfile(lab: &Lab) -> String {
    let dd = lab.data_dir();
    let parent = dd.rsplit_once('/').expect("a parent").0;
    format!("{parent}/.pgrepl-lab{}.pgpass", lab.k())
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_docker_cluster_converges_from_empty_volumes_and_its_drift_is_repaired() {
    let lab = Lab::for_docker_test(
        "a_docker_cluster_converges_from_empty_volumes_and_its_drift_is_repaired",
        3,
    );
    assert!(lab.is_docker());
    assert_eq!(state(&lab, 1), "running");
    assert_eq!(state(&lab, 2), "created");
    let plan = text(&pgrepl(&lab, &["plan"]));
    for i in 1..=3 {
        assert!(
            plan.contains(&format!("docker pg-node{i})")),
            "node{i}'s kind: {plan}"
        );
    }
    let out = text(&apply_ok(&lab, &[]));
    assert!(out.contains("docker start pg-node2"), "{out}");
    let h1 = lab.host(1);
    for i in [2, 3] {
        assert_eq!(state(&lab, i), "running");
        assert_eq!(sender_of(&lab, i), format!("{h1}:streaming"));
        // Written by the container's postgres (uid 999): no chown, ever.
        assert_eq!(owner_and_mode(&lab, i, &lab.data_dir()), "999:999 700");
        assert_eq!(owner_and_mode(&lab, i, &passfile(&lab)), "999:999 600");
    }
    assert_eq!(lab.sql(3, "SELECT count(*) >= 1000 FROM lab_data"), "t");
    let status = pgrepl(&lab, &["status"]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    assert!(
        text(&status).contains("node2 (docker pg-node2)"),
        "{}",
        text(&status)
    );
    plan_is_empty(&lab);
    no_one_off_left(&lab);

    // Drift on a standby and on the primary: found and repaired.
    drift_on_a_standby_and_the_primary_is_repaired(&lab);

    // A stopped standby container is started again.
    lab.stop(3);
    assert_eq!(state(&lab, 3), "exited");
    let out = text(&apply_ok(&lab, &[]));
    assert!(out.contains("docker start pg-node3"), "{out}");
    assert_eq!(sender_of(&lab, 3), format!("{h1}:streaming"));
    plan_is_empty(&lab);
    no_one_off_left(&lab);
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_docker_switchover_under_writes_loses_no_committed_row() {
    let lab = Lab::for_docker_test("a_docker_switchover_under_writes_loses_no_committed_row", 3);
    apply_ok(&lab, &[]);
    let out = switchover_to_node2_under_writes(&lab);
    assert!(out.contains("docker stop"), "{out}");
    no_one_off_left(&lab);
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_docker_failover_then_rebases_by_pg_rewind_and_by_base_backup() {
    let lab = Lab::for_docker_test(
        "a_docker_failover_then_rebases_by_pg_rewind_and_by_base_backup",
        3,
    );
    apply_ok(&lab, &[]);
    // Failover to node2; node1, diverged, re-based by pg_rewind (run as
    // postgres, in a one-off container on a docker node).
    failover_to_node2_then_node1_rewound(&lab);
    let h2 = lab.host(2);
    assert_eq!(owner_and_mode(&lab, 1, &lab.data_dir()), "999:999 700");
    no_one_off_left(&lab);

    // node3's volume now holds a cluster of another initdb: re-based by a
    // base backup, its directory kept aside on the volume.
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
             && echo \"unix_socket_directories = '/var/run/postgresql'\" >>\"$1/postgresql.conf\"",
            "sh",
            &dd,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    lab.start(3);
    let out = text(&apply_ok(&lab, &[]));
    assert!(out.contains("node3.timeline"), "{out}");
    assert!(out.contains("base backup"), "{out}");
    assert!(kept_old_data_dirs(&lab, 3).status.success(), "kept aside");
    wait_for(
        "node3 to stream from node2",
        Duration::from_secs(20),
        || sender_of(&lab, 3) == format!("{h2}:streaming"),
    );
    assert_eq!(owner_and_mode(&lab, 3, &dd), "999:999 700");
    plan_is_empty(&lab);
    no_one_off_left(&lab);
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_container_that_does_not_exist_is_said_and_the_others_are_planned() {
    let lab = Lab::for_docker_test(
        "a_container_that_does_not_exist_is_said_and_the_others_are_planned",
        3,
    );
    docker(&lab, 3, &["rm", &lab.container(3)]);
    let plan = pgrepl(&lab, &["plan"]);
    assert_eq!(plan.status.code(), Some(4), "{}", text(&plan));
    let said = text(&plan);
    for needle in [
        "node3: could not be read: container pg-node3 does not exist",
        "pgrepl does not create containers",
        "docker create --name pg-node3",
    ] {
        assert!(said.contains(needle), "{needle:?} in {said}");
    }
    assert!(said.contains("node2.standby"), "node2 is planned: {said}");
    assert_eq!(state(&lab, 2), "created", "plan changes nothing");
    // As the refusal says: --target acts on the others; then the container
    // made as the message says, and the rest converges.
    let refused = pgrepl(&lab, &["apply", "--auto-approve"]);
    assert_eq!(refused.status.code(), Some(4), "{}", text(&refused));
    assert!(text(&refused).contains("use --target to act on the others"));
    let out = pgrepl(
        &lab,
        &[
            "apply",
            "--auto-approve",
            "--target",
            "node1",
            "--target",
            "node2",
        ],
    );
    assert!(text(&out).contains("node2.standby done"), "{}", text(&out));
    assert_eq!(sender_of(&lab, 2), format!("{}:streaming", lab.host(1)));
    let img = docker(
        &lab,
        2,
        &["inspect", "-f", "{{.Config.Image}}", &lab.container(2)],
    );
    docker(
        &lab,
        3,
        &[
            "create",
            "--name",
            &lab.container(3),
            "--network",
            "host",
            "-v",
            "pgdata:/var/lib/postgresql",
            &img,
        ],
    );
    apply_ok(&lab, &[]);
    assert_eq!(sender_of(&lab, 3), format!("{}:streaming", lab.host(1)));
    plan_is_empty(&lab);
    no_one_off_left(&lab);
}
