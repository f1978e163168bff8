//! Issue 12, cases 5, 7 and 8 on real nodes: a replication role that
//! cannot log in, custom settings, and what `status` shows of a standby
//! that does not stream.

use std::time::Duration;

use serde_json::Value;

use crate::lab::Lab;
use crate::support::{apply_ok, edit_config, pgrepl, plan_is_empty, sender_of, text, wait_for};

fn plan_exit(lab: &Lab) -> (Option<i32>, String) {
    let out = pgrepl(lab, &["plan", "--detailed-exitcode"]);
    (out.status.code(), text(&out))
}

fn status_json(lab: &Lab) -> (Option<i32>, Value) {
    let out = pgrepl(lab, &["status", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}):\n{}", text(&out)));
    (out.status.code(), v)
}

fn node<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["name"] == name))
        .unwrap_or_else(|| panic!("no node {name} in {v:#}"))
}

/// Case 5: on main an expired replication role and a rewind role with
/// `CONNECTION LIMIT 0` planned "No changes" (exit 0), and a SUPERUSER
/// rewind role went unmentioned.
#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_role_that_cannot_log_in_is_drift_and_apply_repairs_it() {
    let lab = Lab::for_test("a_role_that_cannot_log_in_is_drift_and_apply_repairs_it", 3);
    apply_ok(&lab, &[]);
    lab.sql(
        1,
        "ALTER ROLE replicator VALID UNTIL '2000-01-01 00:00:00+00'",
    );
    lab.sql(1, "ALTER ROLE pgrepl_rewind CONNECTION LIMIT 0 SUPERUSER");

    let (code, out) = plan_exit(&lab);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("~ role.replicator") && out.contains("(expired) -> VALID UNTIL 'infinity'"),
        "{out}"
    );
    assert!(
        out.contains("~ role.pgrepl_rewind")
            && out.contains("CONNECTION LIMIT 0 -> CONNECTION LIMIT -1"),
        "{out}"
    );
    assert!(
        out.contains("role pgrepl_rewind is a SUPERUSER")
            && out.contains("does not remove privileges it did not grant"),
        "{out}"
    );

    // The plan file records the roles' expiry and limit: a saved plan made
    // before they changed is stale.
    let planfile = lab.dir().join("roles.plan");
    let out = pgrepl(
        &lab,
        &["plan", "--out", planfile.to_str().expect("utf-8 path")],
    );
    assert!(matches!(out.status.code(), Some(0 | 2)), "{}", text(&out));
    let saved: Value =
        serde_json::from_slice(&std::fs::read(&planfile).expect("plan file")).expect("json");
    let facts = saved["plan"]["facts"].to_string();
    assert!(
        facts.contains("valid_until=2000-01-01") && facts.contains("connection_limit=0"),
        "{facts}"
    );

    let out = text(&apply_ok(&lab, &[]));
    assert!(out.contains("A fresh plan shows no changes"), "{out}");
    assert_eq!(
        lab.sql(
            1,
            "SELECT rolvaliduntil = 'infinity' FROM pg_authid WHERE rolname = 'replicator'"
        ),
        "t"
    );
    assert_eq!(
        lab.sql(
            1,
            "SELECT rolconnlimit || ' ' || rolsuper FROM pg_authid WHERE rolname = 'pgrepl_rewind'"
        ),
        "-1 true",
        "the limit is lifted; SUPERUSER, which pgrepl did not grant, stays"
    );
    let (code, out) = plan_exit(&lab);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("role pgrepl_rewind is a SUPERUSER"), "{out}");
}

/// Case 7: on main `"myapp.foo" = "bar"` was never set: the plan warned
/// that it "does not exist" and said "No changes".
#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_custom_setting_is_set_and_its_drift_repaired() {
    let lab = Lab::for_test("a_custom_setting_is_set_and_its_drift_repaired", 3);
    // Unquoted, it is a TOML table: the error says to quote the name.
    edit_config(&lab, "[settings]\n", "[settings]\nmyapp.foo = \"bar\"\n");
    let out = pgrepl(&lab, &["validate"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("unknown setting `myapp`")
            && text(&out).contains("quote its name: \"myapp.foo\" = ..."),
        "{}",
        text(&out)
    );
    edit_config(&lab, "myapp.foo = \"bar\"", "\"myapp.foo\" = \"bar\"");

    apply_ok(&lab, &[]);
    let value = "SELECT coalesce(current_setting('myapp.foo', true), '(not set)')";
    for i in 1..=3 {
        assert_eq!(lab.sql(i, value), "bar", "node{i}");
    }
    plan_is_empty(&lab);

    // Drift on one standby is seen and put back.
    lab.sql(2, "ALTER SYSTEM SET myapp.foo = 'other'");
    lab.sql(2, "SELECT pg_reload_conf()");
    wait_for("the reload on node2", Duration::from_secs(5), || {
        lab.sql(2, value) == "other"
    });
    let (code, out) = plan_exit(&lab);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("~ node2.setting.myapp.foo  other -> bar"),
        "{out}"
    );
    assert!(!out.contains("does not exist"), "{out}");
    apply_ok(&lab, &[]);
    assert_eq!(lab.sql(2, value), "bar");
    plan_is_empty(&lab);
}

/// Case 8: on main a stopped standby showed slot `-` (JSON null) and the
/// plan said nothing of its slot retaining WAL; a standby whose replay was
/// paused showed healthy.
#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn status_shows_a_stopped_standbys_slot_and_a_paused_replay() {
    let lab = Lab::for_test(
        "status_shows_a_stopped_standbys_slot_and_a_paused_replay",
        3,
    );
    apply_ok(&lab, &[]);
    wait_for("a healthy cluster", Duration::from_secs(10), || {
        status_json(&lab).0 == Some(0)
    });

    // Paused replay: streaming, but nothing applied.
    lab.sql(2, "SELECT pg_wal_replay_pause()");
    let (code, v) = status_json(&lab);
    let n2 = node(&v, "node2");
    assert_eq!(code, Some(3), "{v:#}");
    assert_eq!(n2["role"], "standby", "{n2:#}");
    assert_eq!(n2["healthy"], false, "{n2:#}");
    assert!(
        n2["problems"].to_string().contains("WAL replay is paused"),
        "{n2:#}"
    );
    lab.sql(2, "SELECT pg_wal_replay_resume()");

    // A stopped standby: its slot on the primary, inactive, retaining WAL.
    lab.stop(3);
    lab.sql(
        1,
        "INSERT INTO lab_data(note) SELECT 'more' FROM generate_series(1, 2000)",
    );
    wait_for(
        "node3's slot to be inactive",
        Duration::from_secs(10),
        || {
            lab.sql(
                1,
                "SELECT active FROM pg_replication_slots WHERE slot_name = 'node3'",
            ) == "f"
        },
    );
    let (code, v) = status_json(&lab);
    assert_eq!(code, Some(3), "{v:#}");
    let n3 = node(&v, "node3");
    assert_eq!(n3["role"], "stopped", "{n3:#}");
    assert_eq!(n3["slot"], "node3", "{n3:#}");
    assert_eq!(n3["slot_wal_status"], "reserved", "{n3:#}");
    assert!(
        n3["slot_retained_bytes"].as_i64().is_some_and(|b| b > 0),
        "{n3:#}"
    );
    assert!(
        n3["problems"]
            .to_string()
            .contains("its slot node3 on node1 is inactive and retains"),
        "{n3:#}"
    );
    assert_eq!(node(&v, "node2")["healthy"], true, "{v:#}");
    let out = pgrepl(&lab, &["status"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("node3 (reserved, "), "{table}");

    // The plan starts node3 and warns about the WAL its slot holds.
    let (code, out) = plan_exit(&lab);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("slot node3 is inactive: node3 does not stream through it; it retains"),
        "{out}"
    );
}

/// The `.pgrepl-*` files beside node `i`'s data directory.
fn pgrepl_files(lab: &Lab, i: usize) -> Vec<String> {
    let dd = lab.data_dir();
    let parent = dd.rsplit_once('/').expect("absolute").0.to_string();
    let out = lab.exec(i, &["ls", "-A", &parent]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(".pgrepl-"))
        .map(str::to_string)
        .collect()
}

/// Case 9: renaming `cluster.name` left the old passfile (live passwords)
/// and lock files on every node. Now the plan removes them, after the
/// standbys' recovery settings name the new passfile, and the standbys
/// keep streaming.
#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn renaming_the_cluster_removes_the_former_names_passfile_and_locks() {
    let lab = Lab::for_test(
        "renaming_the_cluster_removes_the_former_names_passfile_and_locks",
        3,
    );
    apply_ok(&lab, &[]);
    let old = format!("lab{}", lab.k());
    for i in 2..=3 {
        let files = pgrepl_files(&lab, i);
        assert!(
            files.contains(&format!(".pgrepl-{old}.pgpass")),
            "{files:?}"
        );
    }
    edit_config(&lab, &format!("name = \"{old}\""), "name = \"renamed\"");
    let (code, out) = plan_exit(&lab);
    assert_eq!(code, Some(2), "{out}");
    for i in 1..=3 {
        assert!(
            out.contains(&format!("- node{i}.cluster_files.{old}")),
            "{out}"
        );
    }
    assert!(out.contains("its passfile holds passwords"), "{out}");
    apply_ok(&lab, &[]);
    for i in 1..=3 {
        let files = pgrepl_files(&lab, i);
        assert!(
            !files
                .iter()
                .any(|f| f.starts_with(&format!(".pgrepl-{old}."))),
            "node{i}: {files:?}"
        );
        assert!(
            files.contains(&".pgrepl-renamed.lock".to_string()),
            "node{i}: {files:?}"
        );
    }
    for i in 2..=3 {
        assert!(
            pgrepl_files(&lab, i).contains(&".pgrepl-renamed.pgpass".to_string()),
            "node{i}"
        );
        wait_for(
            "the standby to stream again",
            Duration::from_secs(10),
            || sender_of(&lab, i).ends_with(":streaming"),
        );
    }
    plan_is_empty(&lab);
}

/// Case 9: a node taken out of the file keeps streaming through its slot;
/// the plan says so (it leaves both alone) instead of staying silent.
#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_node_removed_from_the_file_is_named_with_the_slot_it_leaves() {
    let lab = Lab::for_test(
        "a_node_removed_from_the_file_is_named_with_the_slot_it_leaves",
        3,
    );
    apply_ok(&lab, &[]);
    let config = std::fs::read_to_string(lab.config_path()).expect("config");
    let start = config.find("[nodes.node3]").expect("node3 section");
    let end = config[start + 1..]
        .find("\n[")
        .map_or(config.len(), |e| start + 1 + e + 1);
    let without = format!("{}{}", &config[..start], &config[end..]);
    std::fs::write(lab.config_path(), without).expect("write config");
    // Its pg_hba rule goes with it (the connection it has stays up).
    let (code, out) = plan_exit(&lab);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("~ node1.hba"), "{out}");
    assert!(
        out.contains(&format!(
            "slot node3 is not in the file, yet a standby named node3 (from {}) streams through it",
            lab.host(3)
        )),
        "{out}"
    );
}
