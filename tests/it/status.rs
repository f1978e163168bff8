//! Gathering and `pgrepl status` on real nodes (issue: gather + status).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::FakeSources;
use crate::lab::Lab;
use crate::support::pgrepl;

fn status_json(lab: &Lab) -> (Option<i32>, Value) {
    let out = pgrepl(lab, &["status", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json is not JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), v)
}

fn node<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["name"] == name))
        .unwrap_or_else(|| panic!("no node {name} in {v:#}"))
}

/// Sets up streaming replication the way an operator would by hand: a role,
/// an hba line, a slot, pg_basebackup -R, start.
fn replicate_by_hand(lab: &Lab, i: usize) {
    let name = lab.node_name(i);
    if lab.sql(1, "SELECT count(*) FROM pg_roles WHERE rolname = 'rep'") == "0" {
        lab.sql(1, "CREATE ROLE rep LOGIN REPLICATION PASSWORD 'handmade'");
        let hba = format!(
            "host replication rep {}/24 scram-sha-256",
            lab.host(1)
                .rsplit_once('.')
                .map_or("", |(p, _)| p)
                .to_string()
                + ".0"
        );
        let out = lab.exec(
            1,
            &[
                "sh",
                "-c",
                &format!("echo '{hba}' >> \"$1\"/pg_hba.conf",),
                "sh",
                &lab.data_dir(),
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        lab.sql(1, "SELECT pg_reload_conf()");
    }
    lab.sql(
        1,
        &format!("SELECT pg_create_physical_replication_slot('{name}')"),
    );
    let script = format!(
        "printf '*:*:*:rep:handmade\\n' > ~/.pgpass && chmod 600 ~/.pgpass && \
         {bb} -h {h} -U rep -D {d} -R -S {name} -X stream --checkpoint=fast && \
         {ctl} -D {d} -l ~/hand.log -w start",
        bb = lab.bin("pg_basebackup"),
        ctl = lab.bin("pg_ctl"),
        h = lab.host(1),
        d = lab.data_dir()
    );
    let out = lab.exec(i, &["sh", "-c", &script]);
    assert!(
        out.status.success(),
        "base backup of {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn status_of_a_fresh_lab_is_one_primary_and_two_empty_nodes() {
    let lab = Lab::for_test(
        "status_of_a_fresh_lab_is_one_primary_and_two_empty_nodes",
        3,
    );
    let (code, v) = status_json(&lab);
    assert_eq!(code, Some(3), "empty nodes are not healthy: {v:#}");
    assert_eq!(v["healthy"], false);
    let n1 = node(&v, "node1");
    assert_eq!(n1["role"], "primary");
    assert_eq!(n1["healthy"], true);
    assert_eq!(n1["timeline"], 1);
    assert!(
        n1["lsn"].as_str().is_some_and(|l| l.contains('/')),
        "{n1:#}"
    );
    assert!(
        n1["database_size_bytes"]
            .as_i64()
            .is_some_and(|b| b > 1 << 20),
        "{n1:#}"
    );
    for name in ["node2", "node3"] {
        let n = node(&v, name);
        assert_eq!(n["role"], "empty", "{n:#}");
        assert_eq!(n["reachable"], true);
        assert_eq!(n["healthy"], false);
        assert!(n["database_size_bytes"].is_null(), "{n:#}");
    }
    // Free space is read on every node, with or without a data directory.
    for name in ["node1", "node2", "node3"] {
        let n = node(&v, name);
        let (free, total) = (
            n["disk_free_bytes"].as_u64(),
            n["disk_total_bytes"].as_u64(),
        );
        assert!(
            matches!((free, total), (Some(f), Some(t)) if f > 0 && f <= t),
            "{n:#}"
        );
        assert!(n["gather_ms"].as_u64().is_some(), "{n:#}");
    }
    // The table says the same in words.
    let out = pgrepl(&lab, &["status"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.lines().next().is_some_and(|h| h.starts_with("NODE")),
        "{table}"
    );
    assert!(table.contains("2 of 3 nodes unhealthy"), "{table}");
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn status_follows_standbys_stopped_and_cut_nodes() {
    let lab = Lab::for_test("status_follows_standbys_stopped_and_cut_nodes", 3);
    replicate_by_hand(&lab, 2);
    replicate_by_hand(&lab, 3);
    lab.sql(
        1,
        "INSERT INTO lab_data(note) SELECT 'more' FROM generate_series(1, 500)",
    );

    // Streaming standbys, with their upstream, slot and lag in numbers.
    let deadline = Instant::now() + Duration::from_secs(10);
    let v = loop {
        let (code, v) = status_json(&lab);
        if code == Some(0) || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(v["healthy"], true, "{v:#}");
    let sysid = node(&v, "node1")["system_identifier"].clone();
    for name in ["node2", "node3"] {
        let n = node(&v, name);
        assert_eq!(n["role"], "standby", "{n:#}");
        assert_eq!(n["upstream"], "node1");
        assert_eq!(n["slot"], name);
        assert_eq!(n["slot_wal_status"], "reserved");
        assert_eq!(n["sync_state"], "async");
        assert!(n["lag_bytes"].is_u64(), "{n:#}");
        assert!(n["lag_seconds"].is_number(), "{n:#}");
        assert_eq!(n["system_identifier"], sysid);
    }

    // A stopped standby: its state comes from pg_controldata.
    lab.stop(3);
    let (code, v) = status_json(&lab);
    assert_eq!(code, Some(3));
    let n3 = node(&v, "node3");
    assert_eq!(n3["role"], "stopped", "{n3:#}");
    assert_eq!(n3["timeline"], 1);
    assert!(n3["lsn"].as_str().is_some(), "{n3:#}");
    assert!(
        n3["problems"].to_string().contains("shut down in recovery"),
        "{n3:#}"
    );

    // A cut node is unreachable within the connect timeout (3s in the lab
    // file); the others are still reported.
    lab.cut(2);
    let started = Instant::now();
    let (code, v) = status_json(&lab);
    let took = started.elapsed();
    lab.heal(2);
    assert_eq!(code, Some(3));
    assert!(
        took < Duration::from_secs(6),
        "status took {took:?} with a cut node"
    );
    let n2 = node(&v, "node2");
    assert_eq!(n2["role"], "unreachable", "{n2:#}");
    assert_eq!(n2["reachable"], false);
    assert!(n2["problems"].to_string().contains("timed out"), "{n2:#}");
    assert_eq!(node(&v, "node1")["role"], "primary");
    assert_eq!(node(&v, "node3")["role"], "stopped");
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn hostile_arguments_reach_the_node_intact_and_execute_nothing() {
    let lab = Lab::for_test(
        "hostile_arguments_reach_the_node_intact_and_execute_nothing",
        1,
    );
    let text = std::fs::read_to_string(lab.config_path()).expect("lab config");
    let hostile_dir = "/var/lib/postgresql/it's a \"dir\" $(touch /tmp/pgrepl-pwned) `touch /tmp/pgrepl-pwned2`;x";
    let hostile_text = text.replace(
        &format!("data_dir = \"{}\"", lab.data_dir()),
        &format!("data_dir = {}", toml::Value::String(hostile_dir.into())),
    );
    assert_ne!(text, hostile_text, "the lab file's data_dir line changed");
    let cfg = pgrepl::config::load_str(
        &hostile_text,
        Path::new("lab.toml"),
        &FakeSources::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let node = cfg.nodes["node1"].clone();
    let hostile_secret = "pa'ss\"word $(touch /tmp/pgrepl-pwned3)\n`id` \\ end";
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let session = pgrepl::transport::NodeSession::connect(&node)
            .await
            .expect("ssh");
        let remote = pgrepl::node::Node::new(&node, &session);
        // argv: every argument arrives as one argument, byte for byte.
        let args = ["printf", "%s\\0", hostile_dir, hostile_secret, "a b", ""];
        let out = remote.run(&args).await.expect("run");
        assert!(out.success(), "{}", out.stderr);
        let got: Vec<&str> = out.stdout.split('\0').collect();
        assert_eq!(got, [hostile_dir, hostile_secret, "a b", "", ""]);
        // stdin: the way secrets travel.
        let out = remote
            .run_with_stdin(
                &["cat"],
                Some(hostile_secret.as_bytes()),
                Duration::from_secs(10),
            )
            .await
            .expect("run");
        assert_eq!(out.stdout, hostile_secret);
        // The whole gather with a hostile data_dir: read as a path, nothing executed.
        let (state, session2) = pgrepl::gather::gather_node(&cfg, &node).await;
        // The node's server answers on the socket, but for its real data
        // directory: never taken for this one.
        assert!(state.server.is_none());
        assert!(
            state.errors.len() == 1
                && state.errors[0].contains(&format!(
                    "serves {}, not the data directory",
                    lab.data_dir()
                )),
            "{:?}",
            state.errors
        );
        let files = state.files.expect("files gathered");
        assert_eq!(files.data_dir, pgrepl::gather::DataDir::Missing);
        assert!(!files.running);
        if let Some(s) = session2 {
            s.close().await;
        }
        let out = remote
            .run(&["sh", "-c", "ls /tmp/pgrepl-pwned* 2>/dev/null | wc -l"])
            .await
            .expect("run");
        assert_eq!(
            out.stdout.trim(),
            "0",
            "a hostile argument was executed on the node"
        );
        session.close().await;
    });
    assert!(!Path::new("/tmp/pgrepl-pwned").exists() && !Path::new("/tmp/pgrepl-pwned3").exists());
}
