//! The command line itself: exit codes, a closed stdout, Ctrl-C, the hint
//! after a failed apply (issue 12, case 9), completions and man pages.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::lab::Lab;
use crate::support::{
    apply_ok, apply_paused_in_a_cascade, pgrepl_cmd, plan_is_empty, text,
    the_cascade_stopped_after_node3s_recovery,
};

fn pgrepl_local(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pgrepl"));
    c.args(args)
        .env("NO_COLOR", "1")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null());
    c
}

/// Runs `cmd` with a stdout whose reader is already gone, as in
/// `pgrepl plan | head -0`.
fn with_closed_stdout(mut cmd: Command) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    cmd.stdout(writer).stderr(Stdio::piped());
    cmd.output().expect("run pgrepl")
}

fn no_panic(out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{}", text(out));
    assert_ne!(out.status.code(), Some(101), "{}", text(out));
}

#[test]
fn the_help_and_the_readme_list_every_exit_code() {
    let out = pgrepl_local(&["--help"]).output().expect("help");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let help = String::from_utf8_lossy(&out.stdout);
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    for code in ["0", "1", "2", "3", "4", "130"] {
        assert!(help.contains(&format!("\n  {code:<4} ")), "{code}:\n{help}");
        assert!(readme.contains(&format!("- {code}: ")), "{code} in README");
    }
}

#[test]
fn a_closed_stdout_ends_the_output_quietly_and_keeps_the_exit_code() {
    for args in [
        &["man"][..],
        &["completions", "bash"],
        &["validate", "-c", "examples/three-node-async.toml"],
    ] {
        let mut cmd = pgrepl_local(args);
        cmd.env("PGREPL_REPLICATION_PASSWORD", "r")
            .env("PGREPL_REWIND_PASSWORD", "w");
        let out = with_closed_stdout(cmd);
        no_panic(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
        assert!(out.stderr.is_empty(), "{args:?}: {}", text(&out));
    }
}

#[test]
fn completions_and_man_pages_are_generated() {
    let out = pgrepl_local(&["completions", "bash"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let script = String::from_utf8_lossy(&out.stdout);
    for cmd in ["validate", "plan", "apply", "status"] {
        assert!(script.contains(cmd), "{cmd} in:\n{script}");
    }
    let out = pgrepl_local(&["man"]).output().expect("run");
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH pgrepl 1"), "{page}");
    assert!(
        page.contains("130"),
        "the exit codes are in the page:\n{page}"
    );
    let out = pgrepl_local(&["man", "plan"]).output().expect("run");
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH pgrepl-plan 1"), "{page}");
    assert!(page.contains("detailed"), "{page}");
    let out = pgrepl_local(&["man", "nope"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

/// On real nodes: `plan` with changes and `status` of an unhealthy cluster
/// exit 2 and 3 with their reader gone, without a panic.
#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn plan_and_status_exit_with_their_codes_when_stdout_is_closed() {
    let lab = Lab::for_test("plan_and_status_exit_with_their_codes", 2);
    let plan = with_closed_stdout(pgrepl_cmd(&lab, &["plan", "--detailed-exitcode"]));
    no_panic(&plan);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    // node2 has no data directory yet: unhealthy.
    let status = with_closed_stdout(pgrepl_cmd(&lab, &["status"]));
    no_panic(&status);
    assert_eq!(status.status.code(), Some(3), "{}", text(&status));
}

/// `apply` that must fail; returns its stderr.
fn apply_fails(lab: &Lab) -> String {
    let out = crate::support::pgrepl(lab, &["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Issue 12, case 9: a failure that will repeat (a new standby's data
/// directory pgrepl may not write) says to fix it first, naming node and
/// step, not to run apply again; a rerun indeed fails the same way. Once
/// fixed, a plain apply converges.
#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_failure_that_repeats_says_to_fix_its_cause_first() {
    let lab = Lab::for_test("a_failure_that_repeats_says_to_fix_its_cause_first", 3);
    let dd = lab.data_dir();
    // An empty data directory (a mount point, say) that postgres cannot write.
    let made = lab.exec_root(
        3,
        &[
            "sh",
            "-c",
            "mkdir -p \"$1\" && chown root:root \"$1\" && chmod 755 \"$1\"",
            "sh",
            &dd,
        ],
    );
    assert!(made.status.success(), "{made:?}");
    let first = apply_fails(&lab);
    let again = apply_fails(&lab);
    for err in [&first, &again] {
        assert!(err.contains("node3: step node3."), "{err}");
        assert!(
            err.contains("running apply again would fail the same way"),
            "{err}"
        );
        assert!(err.contains("fix the cause on node3 (step node3."), "{err}");
        assert!(!err.contains("again to continue"), "{err}");
    }
    let fixed = lab.exec_root(
        3,
        &[
            "sh",
            "-c",
            "chown postgres:postgres \"$1\" && chmod 700 \"$1\"",
            "sh",
            &dd,
        ],
    );
    assert!(fixed.status.success(), "{fixed:?}");
    apply_ok(&lab, &[]);
    plan_is_empty(&lab);
}

/// Ctrl-C during apply: the running step finishes, the run stops at the
/// next boundary, says what it did, and exits 130; a rerun converges.
#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn ctrl_c_stops_apply_at_a_step_boundary_with_130() {
    let lab = Lab::for_test("ctrl_c_stops_apply_at_a_step_boundary", 3);
    let (child, pause) = apply_paused_in_a_cascade(&lab);
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(sent.success());
    std::thread::sleep(Duration::from_millis(300));
    std::fs::remove_file(&pause).expect("release the pause");
    let out = child.wait_with_output().expect("output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    assert!(
        err.contains("stopping once the running step is done"),
        "{err}"
    );
    assert!(err.contains("cancelled (Ctrl-C)"), "{err}");
    assert!(err.contains("Done before Ctrl-C:"), "{err}");
    assert!(err.contains("run `pgrepl apply` again"), "{err}");
    the_cascade_stopped_after_node3s_recovery(&lab, &err);
}
