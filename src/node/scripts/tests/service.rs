//! pg_ctl.sh and status.sh against a fake pg_ctl that records its
//! arguments, one a line, in `calls` beside it.

use std::path::{Path, PathBuf};

use super::{SHELLS, executable, hostile, nothing_ran, read, run, stdout, write};
use crate::node::scripts::{PG_CTL, STATUS};

/// A bin directory with a fake pg_ctl: `status` exits with the number in
/// `status` beside it; `stop` removes postmaster.pid unless `keep` exists.
fn fake_bin(base: &Path) -> PathBuf {
    let bin = base.join("-bin $PATH");
    std::fs::create_dir_all(&bin).expect("mkdir");
    executable(
        &bin.join("pg_ctl"),
        r#"#!/bin/sh
here=${0%/*}
printf '%s\n' "$@" -- >>"$here/calls"
case $1 in
status) read -r code <"$here/status"; exit "$code" ;;
stop) [ -e "$here/keep" ] || rm -f "$3/postmaster.pid" ;;
esac
exit 0
"#,
    );
    bin
}

/// The calls the fake pg_ctl recorded since the last look, each its arguments.
fn calls(bin: &Path) -> Vec<Vec<String>> {
    let path = bin.join("calls");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    text.split_terminator("--\n")
        .map(|c| c.lines().map(String::from).collect())
        .collect()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

#[test]
fn pg_ctl_passes_each_path_as_one_argument() {
    let root = tempfile::tempdir().expect("tempdir");
    let base = hostile(root.path());
    let bin = fake_bin(&base);
    let d = base.join("-main 'x'");
    std::fs::create_dir_all(&d).expect("mkdir");
    let log = base.join("-log $(id).log").to_string_lossy().into_owned();
    let (b, ds) = (bin.to_string_lossy(), d.to_string_lossy());
    let opts = "-c max_connections=200 -c pgrepl.once=1";
    for shell in SHELLS {
        let pg_ctl = |verb: &str, extra: &[&str]| {
            let mut args = vec![&*b, &*ds, "5", verb, &log];
            args.extend_from_slice(extra);
            let out = run(shell, PG_CTL, root.path(), &args, None);
            assert!(out.status.success(), "{shell} {verb}: {out:?}");
            calls(&bin)
        };
        assert_eq!(
            pg_ctl("start", &[]),
            [strings(&["start", "-D", &ds, "-W", "-l", &log])]
        );
        assert_eq!(
            pg_ctl("start-once", &[opts]),
            [strings(&["start", "-D", &ds, "-W", "-l", &log, "-o", opts])]
        );
        assert_eq!(
            pg_ctl("restart", &[]),
            [strings(&[
                "restart", "-D", &ds, "-m", "fast", "-W", "-l", &log
            ])]
        );
        // Started once with other values: a stop and a plain start drop them.
        write(&d.join("postmaster.opts"), &format!("postgres -c {opts}\n"));
        assert_eq!(
            pg_ctl("restart", &[]),
            [
                strings(&["stop", "-D", &ds, "-m", "fast", "-w", "-t", "5"]),
                strings(&["start", "-D", &ds, "-W", "-l", &log])
            ]
        );
        std::fs::remove_file(d.join("postmaster.opts")).expect("rm");
        // A stop is done when postmaster.pid is gone...
        write(&d.join("postmaster.pid"), "2147483647\n");
        assert_eq!(
            pg_ctl("stop", &[]),
            [strings(&["stop", "-D", &ds, "-m", "fast", "-W"])]
        );
        assert!(!d.join("postmaster.pid").exists());
        // ...or when its process is.
        write(&bin.join("keep"), "");
        write(&d.join("postmaster.pid"), "2147483647\n");
        pg_ctl("stop", &[]);
        std::fs::remove_file(bin.join("keep")).expect("rm");
        std::fs::remove_file(d.join("postmaster.pid")).expect("rm");
    }
    nothing_ran(root.path());
}

#[test]
fn pg_ctl_stop_gives_up_after_its_wait() {
    let root = tempfile::tempdir().expect("tempdir");
    let base = hostile(root.path());
    let bin = fake_bin(&base);
    let d = base.join("main");
    std::fs::create_dir_all(&d).expect("mkdir");
    // The postmaster that never goes: this test's own process.
    write(&bin.join("keep"), "");
    write(
        &d.join("postmaster.pid"),
        &format!("{}\n", std::process::id()),
    );
    for shell in SHELLS {
        let args = [
            bin.as_os_str(),
            d.as_os_str(),
            "1".as_ref(),
            "stop".as_ref(),
            "log".as_ref(),
        ];
        let out = run(shell, PG_CTL, root.path(), &args, None);
        assert!(!out.status.success(), "{shell}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("server does not shut down within 1s"),
            "{shell}: {out:?}"
        );
    }
    nothing_ran(root.path());
}

#[test]
fn status_prints_pg_ctls_code_and_standby_signal() {
    let root = tempfile::tempdir().expect("tempdir");
    let base = hostile(root.path());
    let bin = fake_bin(&base);
    let d = base.join("-main");
    std::fs::create_dir_all(&d).expect("mkdir");
    for shell in SHELLS {
        let status = |code: &str| {
            write(&bin.join("status"), code);
            let out = run(shell, STATUS, root.path(), &[&bin, &d], None);
            assert!(out.status.success(), "{shell}: {out:?}");
            let d = d.to_string_lossy();
            assert_eq!(calls(&bin), [strings(&["status", "-D", &d])]);
            stdout(&out)
        };
        assert_eq!(status("3"), "3\n");
        assert_eq!(status("0"), "0\n");
        write(&d.join("standby.signal"), "");
        assert_eq!(status("0"), "0 standby\n");
        assert_eq!(status("4"), "4 standby\n");
        std::fs::remove_file(d.join("standby.signal")).expect("rm");
    }
    assert!(read(&bin.join("status")).starts_with('4'));
    nothing_ran(root.path());
}
