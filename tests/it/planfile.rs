//! Saved plans are trusted only after re-derivation (issue 14): `apply
//! PLANFILE` plans again from the cluster file and the live state and runs
//! nothing unless the saved steps are exactly those. An edited plan file
//! (SQL, a node, an injected step) is refused and changes nothing; a plan
//! file that is not one (malformed, truncated, huge, of another version, a
//! FIFO, naming a node the file does not have) is a clear error.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::lab::Lab;
use crate::support::{apply_ok, node_fingerprint, pgrepl, pgrepl_bare, plan_is_empty, text};

fn read_json(path: &Path) -> Value {
    let raw = std::fs::read_to_string(path).expect("plan file");
    serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{e}: {raw}"))
}

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(v).expect("json")).expect("write plan file");
}

fn no_panic(out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{}", text(out));
    assert_ne!(out.status.code(), Some(101), "{}", text(out));
}

/// `wal_keep_size` on node1 set by hand (ALTER SYSTEM and a reload).
fn set_by_hand(lab: &Lab, value: &str) {
    lab.sql(1, &format!("ALTER SYSTEM SET wal_keep_size = '{value}'"));
    lab.sql(1, "SELECT pg_reload_conf()");
    crate::support::wait_for(
        &format!("node1: wal_keep_size = {value}"),
        Duration::from_secs(5),
        || lab.sql(1, "SHOW wal_keep_size") == value,
    );
}

/// `pgrepl apply PLANFILE --auto-approve`, without `-c`.
fn apply_file(lab: &Lab, planfile: &Path) -> Output {
    pgrepl_bare(
        lab,
        &["apply", planfile.to_str().expect("path"), "--auto-approve"],
    )
    .output()
    .expect("apply")
}

/// The index of the saved step at `address`.
fn step_at(plan: &Value, address: &str) -> usize {
    plan["plan"]["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .position(|s| s["address"] == address)
        .unwrap_or_else(|| panic!("no step {address} in {plan:#}"))
}

/// `apply EDITED` must refuse, name `address`, and change nothing.
fn refused_unchanged(lab: &Lab, edited: &Path, address: &str, what: &str) {
    let before: Vec<String> = (1..=2).map(|i| node_fingerprint(lab, i)).collect();
    let out = apply_file(lab, edited);
    no_panic(&out);
    assert_eq!(out.status.code(), Some(1), "{what}:\n{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "the saved plan does not match what the cluster file and the live state give now"
        ),
        "{what}:\n{}",
        text(&out)
    );
    assert!(
        err.contains("nothing was changed"),
        "{what}:\n{}",
        text(&out)
    );
    assert!(
        err.contains(address),
        "{what}: names {address}:\n{}",
        text(&out)
    );
    assert!(
        err.contains("pgrepl plan --out"),
        "{what}: says what to do:\n{}",
        text(&out)
    );
    for (_, secret) in lab.env() {
        assert!(!err.contains(&secret), "{what}: a password in the message");
    }
    let after: Vec<String> = (1..=2).map(|i| node_fingerprint(lab, i)).collect();
    assert_eq!(before, after, "{what}: an edited plan file changed a node");
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn an_edited_plan_file_is_refused_and_changes_nothing() {
    let lab = Lab::for_test("an_edited_plan_file_is_refused_and_changes_nothing", 2);
    apply_ok(&lab, &[]);
    plan_is_empty(&lab);
    set_by_hand(&lab, "64MB");
    let planfile = lab.dir().join("drift.plan");
    let out = pgrepl(&lab, &["plan", "--out", planfile.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let saved = read_json(&planfile);
    let setting = step_at(&saved, "node1.setting.wal_keep_size");
    let edited = lab.dir().join("edited.plan");

    // The SQL of a step.
    let mut v = saved.clone();
    v["plan"]["changes"][setting]["sql_value"] = json!("'1GB'");
    write_json(&edited, &v);
    refused_unchanged(&lab, &edited, "node1.setting.wal_keep_size", "edited SQL");

    // The node a step runs on.
    let mut v = saved.clone();
    v["plan"]["changes"][setting]["node"] = json!("node2");
    write_json(&edited, &v);
    refused_unchanged(&lab, &edited, "node1.setting.wal_keep_size", "another node");

    // An injected re-base whose keep-aside path is outside the data directory.
    let mut v = saved.clone();
    v["plan"]["changes"]
        .as_array_mut()
        .expect("changes")
        .insert(
            0,
            json!({
                "address": "node2.timeline", "node": "node2", "action": "replace",
                "before": null, "after": null, "restart": false, "reason": "",
                "sensitive": false, "diff": null, "op": "rebase",
                "source": "node1", "rewind": false, "keep_as": "/tmp/pgrepl-kept-elsewhere"
            }),
        );
    write_json(&edited, &v);
    refused_unchanged(&lab, &edited, "node2.timeline", "an injected re-base");

    // A step left out.
    let mut v = saved.clone();
    v["plan"]["changes"]
        .as_array_mut()
        .expect("changes")
        .remove(setting);
    write_json(&edited, &v);
    refused_unchanged(
        &lab,
        &edited,
        "node1.setting.wal_keep_size",
        "a step left out",
    );

    // The untouched plan file applies, and runs exactly its steps.
    let out = apply_file(&lab, &planfile);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(lab.sql(1, "SHOW wal_keep_size"), "256MB");
    plan_is_empty(&lab);
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_plan_file_made_before_the_live_state_changed_is_refused_as_stale() {
    let lab = Lab::for_test(
        "a_plan_file_made_before_the_live_state_changed_is_refused_as_stale",
        2,
    );
    apply_ok(&lab, &[]);
    // A plan for a drifted setting, then the setting is changed by hand.
    set_by_hand(&lab, "64MB");
    let planfile = lab.dir().join("stale.plan");
    let planfile_s = planfile.to_str().expect("path");
    let out = pgrepl(&lab, &["plan", "--out", planfile_s]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    set_by_hand(&lab, "32MB");
    let before: Vec<String> = (1..=2).map(|i| node_fingerprint(&lab, i)).collect();
    let out = apply_file(&lab, &planfile);
    no_panic(&out);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Saved plan is stale:"), "{}", text(&out));
    assert!(
        err.contains("node1.setting.wal_keep_size changed"),
        "{}",
        text(&out)
    );
    let after: Vec<String> = (1..=2).map(|i| node_fingerprint(&lab, i)).collect();
    assert_eq!(before, after, "a stale plan file changed a node");

    // A node that went down since the plan: stale, nothing changed on the other.
    set_by_hand(&lab, "64MB");
    lab.stop(2);
    let before = node_fingerprint(&lab, 1);
    let out = apply_file(&lab, &planfile);
    no_panic(&out);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Saved plan is stale:"), "{}", text(&out));
    assert!(err.contains("node2.running changed"), "{}", text(&out));
    assert_eq!(
        before,
        node_fingerprint(&lab, 1),
        "a stale plan changed node1"
    );
}

// What follows needs no node: the plan file is refused before any is contacted.

/// The example cluster file in a fresh directory, with its passwords.
fn example(dir: &Path) -> std::path::PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/three-node-async.toml");
    let dst = dir.join("orders.toml");
    std::fs::copy(src, &dst).expect("copy the example");
    dst
}

fn apply_local(config: &Path, planfile: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pgrepl"));
    c.arg("apply")
        .arg(planfile)
        .arg("-c")
        .arg(config)
        .arg("--auto-approve")
        .env("NO_COLOR", "1")
        .env("PGREPL_REPLICATION_PASSWORD", "repl-secret-1")
        .env("PGREPL_REWIND_PASSWORD", "rewind-secret-2")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Runs `cmd`, killed after 20 s (a plan file that hangs the reader).
fn output_within(mut cmd: Command) -> Output {
    let mut child = cmd.spawn().expect("run pgrepl");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!("pgrepl did not finish within 20 s:\n{}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// A saved plan for the example cluster with `changes`, otherwise well formed.
fn plan_file(config: &Path, changes: Value) -> Value {
    let cfg_text = std::fs::read_to_string(config).expect("config");
    json!({
        "pgrepl_version": env!("CARGO_PKG_VERSION"),
        "config_path": config,
        "config_digest": pgrepl::digest::digest(&cfg_text),
        "plan": {
            "format_version": "1",
            "cluster": "orders",
            "nodes": [],
            "changes": changes,
            "warnings": [],
            "blocked": [],
            "summary": {"add": 1, "change": 0, "destroy": 0, "replace": 0},
            "data_loss": null,
            "facts": {}
        }
    })
}

fn refused(config: &Path, planfile: &Path, expect: &[&str], what: &str) {
    let out = output_within(apply_local(config, planfile));
    no_panic(&out);
    assert_eq!(out.status.code(), Some(1), "{what}:\n{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for e in expect {
        assert!(err.contains(e), "{what}: {e:?} in\n{}", text(&out));
    }
    assert!(!err.contains("repl-secret-1") && !err.contains("rewind-secret-2"));
}

#[test]
fn a_plan_file_that_is_not_one_or_names_an_unknown_node_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = example(dir.path());
    let planfile = dir.path().join("orders.plan");
    let base_backup = |node: &str, upstream: &str| {
        json!({
            "address": format!("{node}.standby"), "node": node, "action": "create",
            "before": null, "after": null, "restart": false, "reason": "",
            "sensitive": false, "diff": null, "op": "base_backup",
            "upstream": upstream, "slot": null
        })
    };

    // A node the cluster file does not have: named, never a panic.
    write_json(
        &planfile,
        &plan_file(&config, json!([base_backup("db9", "db1")])),
    );
    refused(
        &config,
        &planfile,
        &["db9", "not in the cluster file", "nothing was changed"],
        "a step on an unknown node",
    );
    write_json(
        &planfile,
        &plan_file(&config, json!([base_backup("db2", "db7")])),
    );
    refused(
        &config,
        &planfile,
        &["db7", "not in the cluster file"],
        "an unknown upstream",
    );

    // Another pgrepl version, another plan format.
    let mut v = plan_file(&config, json!([]));
    v["pgrepl_version"] = json!("0.0.1");
    write_json(&planfile, &v);
    refused(
        &config,
        &planfile,
        &[
            "pgrepl 0.0.1",
            env!("CARGO_PKG_VERSION"),
            "pgrepl plan --out",
        ],
        "another version",
    );
    let mut v = plan_file(&config, json!([]));
    v["plan"]["format_version"] = json!("9");
    write_json(&planfile, &v);
    refused(&config, &planfile, &["format 9"], "another format");

    // Malformed, truncated.
    std::fs::write(&planfile, "this is not JSON").expect("write");
    refused(
        &config,
        &planfile,
        &["is not a pgrepl plan file"],
        "malformed",
    );
    let whole =
        serde_json::to_string_pretty(&plan_file(&config, json!([base_backup("db2", "db1")])))
            .expect("json");
    std::fs::write(&planfile, &whole[..whole.len() / 2]).expect("write");
    refused(
        &config,
        &planfile,
        &["is not a pgrepl plan file", "truncated"],
        "truncated",
    );

    // Huge: refused without being read whole.
    let huge = std::fs::File::create(&planfile).expect("create");
    huge.set_len(1 << 30).expect("a sparse 1 GiB file");
    refused(&config, &planfile, &["too large"], "huge");

    // A FIFO: refused, not waited on.
    std::fs::remove_file(&planfile).expect("rm");
    let made = Command::new("mkfifo")
        .arg(&planfile)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    refused(&config, &planfile, &["not a regular file"], "a FIFO");
}
