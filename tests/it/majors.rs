//! What PostgreSQL 16, 17 and 18 change for pgrepl, each on the majors it
//! concerns. Each is marked ignored, with the major it needs as the
//! reason, so a plain `cargo test` lists it as ignored; scripts/test.sh runs
//! it with `--include-ignored` under `PGREPL_LAB_PG` of that major and newer.
//! Run by hand on an older major, it fails and says which major it needs.

use std::time::Duration;

use crate::lab::Lab;
use crate::support::{
    apply_ok, edit_config, pgrepl, plan_is_empty, sender_of, set_primary, text, wait_for,
};

/// The lab's major, refused below `at_least` with why.
fn major_at_least(lab: &Lab, at_least: u32, why: &str) -> u32 {
    let major: u32 = lab.major().parse().expect("the lab's major");
    assert!(
        major >= at_least,
        "this test concerns PostgreSQL {at_least} and newer ({why}); the lab runs {major}: run it with PGREPL_LAB_PG={at_least} or newer (scripts/test.sh does)"
    );
    major
}

/// Waits until node `i` streams from node `from`.
fn wait_streaming(lab: &Lab, i: usize, from: usize) {
    let want = format!("{}:streaming", lab.host(from));
    wait_for(
        &format!("node{i} to stream from node{from}"),
        Duration::from_secs(20),
        || sender_of(lab, i) == want,
    );
}

fn plan_text(lab: &Lab) -> String {
    text(&pgrepl(lab, &["plan"]))
}

/// PostgreSQL 16 reads `include`, `include_if_exists` and `include_dir` in
/// pg_hba.conf. An include above the managed block pulls in rules matched
/// before the block's: the plan names the directive and the included
/// rule that shadows the replication role, moves the block above it and
/// keeps the directive; the included rule then no longer shadows.
#[test]
#[ignore = "a lab test of PostgreSQL 16+: PGREPL_LAB_PG=16 (or newer) with --include-ignored; scripts/test.sh runs it there"]
fn an_hba_include_above_the_block_is_named_and_kept() {
    let lab = Lab::for_test("an_hba_include_above_the_block_is_named_and_kept", 2);
    major_at_least(&lab, 16, "pg_hba.conf include directives");
    apply_ok(&lab, &[]);
    let dd = lab.data_dir();
    let subnet = format!("198.18.{}.0/24", lab.k());
    let script = format!(
        "set -e; mkdir -p {dd}/hba.d; echo 'host replication all {subnet} reject' > {dd}/hba.d/10-shadow.conf; \
         {{ echo 'include_dir hba.d'; cat {dd}/pg_hba.conf; }} > {dd}/pg_hba.new; mv {dd}/pg_hba.new {dd}/pg_hba.conf"
    );
    let out = lab.exec(1, &["sh", "-c", &script]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = plan_text(&lab);
    assert!(shown.contains("~ node1.hba"), "{shown}");
    assert!(
        shown.contains("line 1 (`include_dir hba.d`) stands before pgrepl's block"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("{dd}/hba.d/10-shadow.conf line 1")),
        "the included rule is named with its file and line: {shown}"
    );
    assert!(
        shown.contains("replicator's replication connections from node2"),
        "{shown}"
    );
    apply_ok(&lab, &[]);
    let hba = lab.sql(1, "SELECT pg_read_file('pg_hba.conf')");
    let block = hba.find("# BEGIN pgrepl managed").expect("the block");
    let include = hba
        .find("include_dir hba.d")
        .expect("the directive is kept");
    assert!(block < include, "the block moved above the include:\n{hba}");
    // The included rule is still loaded, after the block's.
    assert_eq!(
        lab.sql(
            1,
            "SELECT count(*) FROM pg_hba_file_rules WHERE file_name LIKE '%10-shadow.conf'"
        ),
        "1"
    );
    plan_is_empty(&lab);
    // An error in an included file is reported with that file.
    let bad = format!("{dd}/hba.d/20-bad.conf");
    let out = lab.exec(
        1,
        &["sh", "-c", &format!("echo 'host replication' > {bad}")],
    );
    assert!(out.status.success(), "{}", text(&out));
    let shown = plan_text(&lab);
    assert!(
        shown.contains("line 1: ") && shown.contains(&format!("(in {bad})")),
        "{shown}"
    );
    let out = lab.exec(1, &["rm", &bad]);
    assert!(out.status.success(), "{}", text(&out));
    // node2 still gets in: a base backup through node1's hba.
    lab.stop(2);
    let out = lab.exec(2, &["sh", "-c", &format!("rm -rf {dd}")]);
    assert!(out.status.success(), "{}", text(&out));
    apply_ok(&lab, &[]);
    wait_streaming(&lab, 2, 1);
    plan_is_empty(&lab);
}

/// PostgreSQL 17 failover slots: with `sync_replication_slots = on` the
/// standby's primary_conninfo names a database, it runs with
/// hot_standby_feedback, and the hba admits the replication role to that
/// database; a logical slot created with failover = true on the primary
/// then shows on the standby as synced, and after a switchover it is on
/// the new primary.
#[test]
#[ignore = "a lab test of PostgreSQL 17+: PGREPL_LAB_PG=17 (or newer) with --include-ignored; scripts/test.sh runs it there"]
fn failover_slots_are_synced_and_survive_a_switchover() {
    let lab = Lab::for_test("failover_slots_are_synced_and_survive_a_switchover", 2);
    major_at_least(&lab, 17, "sync_replication_slots");
    edit_config(
        &lab,
        "wal_level = \"replica\"",
        "wal_level = \"logical\"\nsync_replication_slots = true",
    );
    apply_ok(&lab, &[]);
    let conninfo = lab.sql(2, "SHOW primary_conninfo");
    assert!(conninfo.contains("dbname=postgres"), "{conninfo}");
    assert_eq!(lab.sql(2, "SHOW hot_standby_feedback"), "on");
    plan_is_empty(&lab);
    lab.sql(
        1,
        "SELECT pg_create_logical_replication_slot('x', 'pgoutput', false, false, true)",
    );
    wait_for("slot x synced to node2", Duration::from_secs(90), || {
        // WAL past the slot's position lets the standby catch up with it.
        lab.sql(1, "SELECT pg_log_standby_snapshot()");
        lab.sql(
            2,
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'x' AND synced AND NOT temporary",
        ) == "1"
    });
    set_primary(&lab, "node2");
    apply_ok(&lab, &[]);
    assert_eq!(lab.sql(2, "SELECT pg_is_in_recovery()"), "f");
    assert_eq!(
        lab.sql(
            2,
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'x' AND slot_type = 'logical' AND failover"
        ),
        "1",
        "the failover slot is on the new primary"
    );
    // Usable there: it decodes.
    lab.sql(
        2,
        "SELECT count(*) FROM pg_logical_slot_peek_binary_changes('x', NULL, NULL, 'proto_version', '1', 'publication_names', 'none')",
    );
    plan_is_empty(&lab);
}

/// PostgreSQL 18: initdb turns data checksums on, so pg_rewind needs no
/// wal_log_hints: a file that does not set it gets no restart for it, and
/// a diverged old primary is still rewound. MD5 passwords, deprecated in
/// 18, are warned of. A standby's slot invalidated by
/// idle_replication_slot_timeout shows as such in status and plan, and the
/// plan re-creates it.
#[test]
#[ignore = "a lab test of PostgreSQL 18+: PGREPL_LAB_PG=18 (or newer) with --include-ignored; scripts/test.sh runs it there"]
fn on_18_checksums_serve_pg_rewind_md5_is_warned_and_an_idle_slot_is_recreated() {
    let lab = Lab::for_test(
        "on_18_checksums_serve_pg_rewind_md5_is_warned_and_an_idle_slot_is_recreated",
        2,
    );
    major_at_least(
        &lab,
        18,
        "checksums by default, idle_replication_slot_timeout, MD5 deprecation",
    );
    assert_eq!(lab.sql(1, "SHOW data_checksums"), "on");
    assert_eq!(lab.sql(1, "SHOW wal_log_hints"), "off");
    edit_config(&lab, "wal_log_hints = true\n", "");
    let shown = plan_text(&lab);
    assert!(!shown.contains("wal_log_hints"), "{shown}");
    assert!(
        !shown.contains("restart"),
        "no restart of the primary: {shown}"
    );
    apply_ok(&lab, &[]);
    plan_is_empty(&lab);

    // Checksums alone let pg_rewind re-base a diverged old primary.
    lab.cut(1);
    set_primary(&lab, "node2");
    let out = pgrepl(&lab, &["apply", "--auto-approve", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    lab.sql(
        1,
        "INSERT INTO lab_data(note) SELECT 'split' FROM generate_series(1, 100)",
    );
    lab.heal(1);
    let shown = plan_text(&lab);
    assert!(shown.contains("node1.timeline"), "{shown}");
    assert!(shown.contains("re-base by pg_rewind"), "{shown}");
    apply_ok(&lab, &[]);
    let out = lab.exec(
        1,
        &[
            "sh",
            "-c",
            "ls -d /var/lib/postgresql/*/main.pgrepl-old-* 2>/dev/null | wc -l",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "rewound, not replaced by a base backup"
    );
    plan_is_empty(&lab);

    // MD5: a role with an MD5 password, and a file asking for them.
    lab.sql(
        2,
        "SET password_encryption = 'md5'; CREATE ROLE legacy LOGIN PASSWORD 'old-secret'",
    );
    edit_config(
        &lab,
        "hot_standby = true",
        "hot_standby = true\npassword_encryption = \"md5\"",
    );
    let shown = plan_text(&lab);
    assert!(
        shown.contains("role legacy still has an MD5 password"),
        "{shown}"
    );
    assert!(
        shown.contains("the file sets password_encryption = md5"),
        "{shown}"
    );
    assert!(!shown.contains("old-secret"), "{shown}");
    edit_config(&lab, "\npassword_encryption = \"md5\"", "");

    // An idle slot: node1 (now the standby) stopped past the timeout.
    edit_config(
        &lab,
        "hot_standby = true",
        "hot_standby = true\nidle_replication_slot_timeout = \"1s\"",
    );
    apply_ok(&lab, &[]);
    lab.stop(1);
    wait_for(
        "node1's slot invalidated for idle_timeout",
        Duration::from_secs(30),
        || {
            std::thread::sleep(Duration::from_millis(500));
            lab.sql(2, "CHECKPOINT");
            lab.sql(
            2,
            "SELECT coalesce(invalidation_reason, '') FROM pg_replication_slots WHERE slot_name = 'node1'",
        ) == "idle_timeout"
        },
    );
    let status = pgrepl(&lab, &["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    let node1 = json["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["name"] == "node1"))
        .expect("node1 in status");
    assert_eq!(node1["slot_invalidated"], "idle_timeout", "{node1:#}");
    let shown = plan_text(&lab);
    assert!(shown.contains("- node2.slot.node1"), "{shown}");
    assert!(shown.contains("+ node2.slot.node1"), "{shown}");
    assert!(
        shown.contains("invalidation_reason idle_timeout"),
        "{shown}"
    );
    // Turned off in the same apply (before the slot is re-created), or the
    // new slot is invalidated again while node1 starts.
    edit_config(
        &lab,
        "idle_replication_slot_timeout = \"1s\"",
        "idle_replication_slot_timeout = 0",
    );
    apply_ok(&lab, &[]);
    wait_streaming(&lab, 1, 2);
    assert_eq!(
        lab.sql(2, "SELECT coalesce(invalidation_reason, 'valid') FROM pg_replication_slots WHERE slot_name = 'node1'"),
        "valid"
    );
    plan_is_empty(&lab);
}
