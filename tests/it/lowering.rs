//! Lowering a hot-standby-sensitive setting on real nodes (issue 12, case
//! 2): no standby is ever left unable to start, and a stuck one is repaired
//! by a plain apply.

use std::time::{Duration, Instant};

use crate::lab::Lab;
use crate::support::{apply_ok, edit_config, pgrepl, plan_is_empty, text};

fn streaming(lab: &Lab, i: usize) -> bool {
    lab.try_sql(i, "SELECT status FROM pg_stat_wal_receiver")
        .stdout
        .starts_with(b"streaming")
}

fn wait_streaming(lab: &Lab, i: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !streaming(lab, i) {
        assert!(Instant::now() < deadline, "node{i} does not stream");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// 100 -> 80: the primary restarts first, each standby only once it has
/// replayed the primary's parameter change and made a restartpoint past
/// it, so a later restart by hand (a reboot) starts too.
#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn lowering_max_connections_leaves_every_standby_restartable() {
    let lab = Lab::for_test("lowering_max_connections", 3);
    edit_config(
        &lab,
        "wal_level = \"replica\"",
        "wal_level = \"replica\"\nmax_connections = 100",
    );
    apply_ok(&lab, &[]);
    plan_is_empty(&lab);
    edit_config(&lab, "max_connections = 100", "max_connections = 80");
    let plan = text(&pgrepl(&lab, &["plan"]));
    assert!(
        plan.contains("replayed node1's WAL") && plan.contains("CHECKPOINT"),
        "{plan}"
    );
    let applied = text(&apply_ok(&lab, &[]));
    assert!(applied.contains("restartpoint at"), "{applied}");
    plan_is_empty(&lab);
    for i in 1..=3 {
        assert_eq!(lab.sql(i, "SHOW max_connections"), "80", "node{i}");
    }
    // What fails without the wait: the standby starts from its last
    // restartpoint and compares its 80 with what pg_control recorded.
    for i in 2..=3 {
        lab.stop(i);
        lab.start(i);
        wait_streaming(&lab, i);
        assert_eq!(lab.sql(i, "SHOW max_connections"), "80", "node{i}");
    }
    plan_is_empty(&lab);
}

/// A standby stopped while the primary still ran with 100, given 80 while
/// the primary went to 80: its pg_control records 100, and it refuses to
/// start ("recovery aborted because of insufficient parameter settings").
/// A plain apply starts it once with 100, lets it replay the primary's
/// change, makes a restartpoint, and starts it with 80.
#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_standby_stuck_below_its_recorded_max_connections_is_repaired_by_apply() {
    let lab = Lab::for_test("stuck_standby_max_connections", 3);
    edit_config(
        &lab,
        "wal_level = \"replica\"",
        "wal_level = \"replica\"\nmax_connections = 100",
    );
    apply_ok(&lab, &[]);
    // node2 stops with 100 recorded; the primary goes to 80 by hand.
    lab.stop(2);
    lab.sql(1, "ALTER SYSTEM SET max_connections = 80");
    lab.stop(1);
    lab.start(1);
    assert_eq!(lab.sql(1, "SHOW max_connections"), "80");
    let data = lab.data_dir();
    let put = lab.exec(
        2,
        &[
            "sh",
            "-c",
            "echo \"max_connections = '80'\" >> \"$1/postgresql.auto.conf\"",
            "sh",
            &data,
        ],
    );
    assert!(put.status.success(), "{}", text(&put));
    let control = lab.exec(2, &["env", "LC_ALL=C", "pg_controldata", &data]);
    assert!(
        String::from_utf8_lossy(&control.stdout)
            .contains("max_connections setting:              100"),
        "{}",
        text(&control)
    );
    // Reproduced by hand: it refuses to start.
    let log = format!("/var/log/postgresql/postgresql-{}-main.log", lab.major());
    let start = lab.exec(
        2,
        &["pg_ctl", "-D", &data, "-l", &log, "-w", "-t", "30", "start"],
    );
    assert!(!start.status.success(), "{}", text(&start));
    let tail = lab.exec(2, &["tail", "-n", "30", &log]);
    assert!(
        String::from_utf8_lossy(&tail.stdout)
            .contains("recovery aborted because of insufficient parameter settings"),
        "{}",
        text(&tail)
    );
    // The file says 80 too: a plain apply repairs it.
    edit_config(&lab, "max_connections = 100", "max_connections = 80");
    let plan = text(&pgrepl(&lab, &["plan"]));
    assert!(
        plan.contains("needs max_connections >= 100 until it replays node1's parameter change"),
        "{plan}"
    );
    let applied = text(&apply_ok(&lab, &[]));
    assert!(
        applied.contains("started once with max_connections = 100"),
        "{applied}"
    );
    wait_streaming(&lab, 2);
    assert_eq!(lab.sql(2, "SHOW max_connections"), "80");
    plan_is_empty(&lab);
    // Started again by hand, it starts (a restartpoint past the change).
    lab.stop(2);
    lab.start(2);
    wait_streaming(&lab, 2);
    assert_eq!(lab.sql(2, "SHOW max_connections"), "80");
    plan_is_empty(&lab);
}
