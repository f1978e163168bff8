//! `pgrepl plan` on real nodes: it reads and changes nothing, exits 2 with
//! changes under --detailed-exitcode, and never prints or saves a secret.

use serde_json::Value;

use crate::lab::Lab;
use crate::plan::{plan_schema, schema_errors};
use crate::support::pgrepl;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn exec(lab: &Lab, i: usize, script: &str) -> String {
    let out = lab.exec(i, &["sh", "-c", script, "fingerprint", &lab.data_dir()]);
    assert!(
        out.status.success(),
        "node{i}: {script}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Everything a plan could change on node `i`: files in and around the data
/// directory, the socket directory, and on a running server its settings
/// (with the last reload and start time), roles, slots and hba rules.
fn fingerprint(lab: &Lab, i: usize) -> String {
    // $1 is the data directory. WAL segments and the statistics directory
    // change on their own; everything else must not.
    let files = r#"D=$1
echo '## outside the data directory'
find /var/lib/postgresql -path "$D" -prune -o -printf '%p %y %m %s\n' | sort
echo '## data directory'
if [ -d "$D" ]; then
  find "$D" -path "$D/pg_wal" -prune -o -path "$D/pg_stat_tmp" -prune -o -printf '%P %y %m\n' | sort
  for f in pg_hba.conf pg_ident.conf postgresql.conf postgresql.auto.conf standby.signal recovery.signal; do
    [ -e "$D/$f" ] && echo "$f $(sha256sum < "$D/$f")"
  done
fi
echo '## socket directory'
ls -a /var/run/postgresql
"#;
    let mut fp = format!("# node{i}\n{}", exec(lab, i, files));
    let running = lab
        .exec(i, &["pg_ctl", "status", "-D", &lab.data_dir()])
        .status
        .success();
    if running {
        for sql in [
            "SELECT pg_postmaster_start_time(), pg_conf_load_time(), pg_is_in_recovery()",
            "SELECT name, setting, source, pending_restart FROM pg_settings ORDER BY name",
            "SELECT sourcefile, sourceline, name, setting, applied, error FROM pg_file_settings ORDER BY 1, 2",
            "SELECT rolname, rolcanlogin, rolreplication, rolsuper, md5(coalesce(rolpassword, '')) FROM pg_authid ORDER BY 1",
            "SELECT slot_name, slot_type, active, restart_lsn FROM pg_replication_slots ORDER BY 1",
            "SELECT line_number, type, database, user_name, address, auth_method, error FROM pg_hba_file_rules ORDER BY 1",
            "SELECT count(*) FROM lab_data",
        ] {
            fp.push_str(&format!("## {sql}\n{}\n", lab.sql(i, sql)));
        }
    }
    fp
}

fn fingerprints(lab: &Lab) -> Vec<String> {
    (1..=lab.nodes()).map(|i| fingerprint(lab, i)).collect()
}

fn assert_no_secret(lab: &Lab, what: &str, output: &str) {
    for (name, secret) in lab.env() {
        assert!(!secret.is_empty(), "{name} is empty in the lab's env file");
        assert!(
            !output.contains(&secret),
            "the value of {name} appears in {what}:\n{output}"
        );
    }
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn plan_on_a_fresh_lab_changes_nothing_and_shows_no_secret() {
    let lab = Lab::for_test("plan_on_a_fresh_lab_changes_nothing_and_shows_no_secret", 3);
    let before = fingerprints(&lab);
    // The fingerprint is sensitive: node1 runs, the others are empty.
    assert!(
        before[0].contains("pg_postmaster_start_time"),
        "{}",
        before[0]
    );
    assert!(
        !before[1].contains("pg_postmaster_start_time"),
        "{}",
        before[1]
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let planfile = dir.path().join("fresh.plan");
    let planfile_arg = planfile.to_str().expect("utf-8 path");
    let out = pgrepl(
        &lab,
        &["plan", "--detailed-exitcode", "--out", planfile_arg],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(2),
        "changes present: exit 2\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.starts_with("pgrepl will perform these steps on cluster \"lab"),
        "{stdout}"
    );
    for want in [
        "+ node1.hba",
        "+ role.replicator",
        "+ role.pgrepl_rewind",
        "+ node1.slot.node2",
        "+ node2.standby",
        "+ node3.service",
        "(restart)",
        "password (sensitive)",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    assert!(
        stdout
            .trim_end()
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("Plan: ")),
        "{stdout}"
    );
    assert!(stderr.contains("Saved the plan to"), "{stderr}");
    let saved = std::fs::read_to_string(&planfile).expect("the plan file was written");
    assert_no_secret(&lab, "stdout", &stdout);
    assert_no_secret(&lab, "stderr", &stderr);
    assert_no_secret(&lab, "the plan file", &saved);

    // --json: the same steps, valid against the schema, no secret.
    let out = pgrepl(&lab, &["plan", "--json", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let json_text = text(&out.stdout);
    assert_no_secret(&lab, "--json", &json_text);
    assert_no_secret(&lab, "--json's stderr", &text(&out.stderr));
    let json: Value =
        serde_json::from_str(&json_text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{json_text}"));
    let errors = schema_errors(&plan_schema(), &json);
    assert!(
        errors.is_empty(),
        "--json does not match schemas/plan.schema.json:\n{}\n{json:#}",
        errors.join("\n")
    );
    assert_eq!(json["format_version"], "1");
    let saved: Value = serde_json::from_str(&saved).expect("the plan file is JSON");
    assert_eq!(
        saved["plan"]["changes"], json["changes"],
        "the saved plan is the plan shown"
    );

    // Planning again gives the same plan: nothing moved.
    let again = pgrepl(&lab, &["plan", "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(2));
    assert_eq!(text(&again.stdout), stdout);

    let after = fingerprints(&lab);
    for (b, a) in before.iter().zip(&after) {
        if b != a {
            let diff = similar::TextDiff::from_lines(b, a)
                .unified_diff()
                .header("before plan", "after plan")
                .to_string();
            panic!("pgrepl plan changed a node:\n{diff}");
        }
    }
}
