//! Issue 14 on real nodes: files a node's configuration puts elsewhere,
//! and what a node says that pgrepl must not trust.

use serde_json::Value;

use crate::lab::Lab;
use crate::support::{apply_ok, pgrepl, plan_is_empty, text};

/// `sha256sum FILE` on node `i` (its first word).
fn sha_of(lab: &Lab, i: usize, path: &str) -> String {
    let out = lab.exec(i, &["sha256sum", path]);
    assert!(out.status.success(), "sha256sum {path}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// On main the plan read `DATA_DIR/pg_hba.conf` and apply wrote the
/// server's `hba_file`: with a custom `hba_file` pgrepl computed the block
/// from one file and overwrote the other. Both are the server's `hba_file`.
#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_custom_hba_file_is_the_one_read_and_written() {
    let lab = Lab::for_test("a_custom_hba_file_is_the_one_read_and_written", 2);
    apply_ok(&lab, &[]);
    let dd = lab.data_dir();
    let default = format!("{dd}/pg_hba.conf");
    let dir = format!(
        "{}/it's hba $x",
        dd.rsplit_once('/').map_or("/tmp", |p| p.0)
    );
    let custom = format!("{dir}/custom hba.conf");
    // The custom file: the default one without pgrepl's block; the server
    // told to read it (postgresql.conf, a restart).
    let out = lab.exec(
        1,
        &[
            "sh",
            "-c",
            "mkdir -p -- \"$1\" && sed '/^# BEGIN pgrepl managed/,/^# END pgrepl managed/d' \"$2\" > \"$3\" \
             && printf \"hba_file = '%s'\\n\" \"$4\" >> \"$5/postgresql.conf\"",
            "sh",
            &dir,
            &default,
            &custom,
            &custom.replace('\'', "''"),
            &dd,
        ],
    );
    assert!(out.status.success(), "{out:?}");
    lab.stop(1);
    lab.start(1);
    assert_eq!(lab.sql(1, "SHOW hba_file"), custom);
    let default_before = sha_of(&lab, 1, &default);

    let out = pgrepl(&lab, &["plan", "--json"]);
    let plan: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    let hba: Vec<&Value> = plan["changes"]
        .as_array()
        .unwrap_or_else(|| panic!("no changes in {plan:#}"))
        .iter()
        .filter(|c| c["address"].as_str().is_some_and(|a| a.ends_with(".hba")))
        .collect();
    assert_eq!(
        hba.len(),
        1,
        "only node1's custom file lacks the block: {plan:#}"
    );
    assert_eq!(hba[0]["address"], "node1.hba", "{plan:#}");
    assert_eq!(
        hba[0]["action"], "create",
        "the block is new in that file: {plan:#}"
    );
    assert_eq!(hba[0]["path"], custom.as_str(), "{plan:#}");

    apply_ok(&lab, &[]);
    let written = lab.exec(1, &["cat", &custom]);
    assert!(
        String::from_utf8_lossy(&written.stdout).contains("# BEGIN pgrepl managed"),
        "{written:?}"
    );
    assert_eq!(
        sha_of(&lab, 1, &default),
        default_before,
        "the default pg_hba.conf is untouched"
    );
    plan_is_empty(&lab);
}
