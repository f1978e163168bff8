//! Every script run locally under `sh` and `dash` (no lab needed: their
//! inputs are positional arguments), with hostile arguments: spaces,
//! quotes, `$(...)`, backquotes, a backslash, `$HOME`, a glob and a leading
//! `-`. Commands that the scripts run (pg_ctl, pg_basebackup) are local
//! fakes that record their arguments.

mod datadir;
mod files;
mod gather;
mod lock;
mod service;
mod sql_bridge;

use std::ffi::OsStr;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::{ALL, Script};

/// The shells every script must run under: `sh` (dash on Debian) and dash
/// by name.
const SHELLS: [&str; 2] = ["sh", "dash"];

/// A file name made to break any unquoted use of it.
const HOSTILE: &str = "-it's a \"dir\" $(touch pwned) `touch pwned2` back\\slash $HOME; *";

/// A directory (not created) named `HOSTILE` in `root`.
fn hostile(root: &Path) -> PathBuf {
    root.join(HOSTILE)
}

/// Runs `script` under `shell` with `args` in `cwd` (where an injected
/// command would leave its files), with `stdin` fed to it.
fn run<A: AsRef<OsStr>>(
    shell: &str,
    script: Script,
    cwd: &Path,
    args: &[A],
    stdin: Option<&[u8]>,
) -> Output {
    let mut child = Command::new(shell)
        .arg("-c")
        .arg(script.text)
        .arg(script.name)
        .args(args)
        .current_dir(cwd)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{shell} runs: {e}"));
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input).expect("write stdin");
    }
    child.wait_with_output().expect("wait")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

fn executable(path: &Path, text: &str) {
    write(path, text);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Nothing in a hostile argument was executed (in `cwd`, where it ran).
fn nothing_ran(cwd: &Path) {
    for f in ["pwned", "pwned2"] {
        assert!(!cwd.join(f).exists(), "a hostile argument was executed");
    }
}

#[test]
fn every_script_file_is_a_script() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/node/scripts");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).expect("scripts dir") {
        let path = entry.expect("entry").path();
        if path.extension() == Some(OsStr::new("sh")) {
            files += 1;
            let text = read(&path);
            assert!(
                ALL.iter().any(|s| s.text.contains(&text)),
                "{} is not used by any script",
                path.display()
            );
        }
    }
    assert!(files >= ALL.len(), "{files} script files");
    let mut names: Vec<&str> = ALL.iter().map(|s| s.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), ALL.len(), "each script has its own name");
}

#[test]
fn a_script_runs_as_sh_c_with_its_name() {
    let argv = super::STATUS.argv(&["/usr/lib/postgresql/15/bin", "/data"]);
    assert_eq!(
        argv,
        [
            "sh",
            "-c",
            super::STATUS.text,
            "pgrepl-status",
            "/usr/lib/postgresql/15/bin",
            "/data"
        ]
    );
}
