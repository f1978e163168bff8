//! The gather script on local directories: missing, empty, foreign,
//! stopped and running data directories, and the signs of other managers.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use super::{HOSTILE, executable, write};
use crate::node::scripts::GATHER;
use crate::observed::parse::*;
use crate::observed::{DataDir, Manager};

/// The POSIX shells the script must run under: `sh` (dash on
/// Debian), dash by name, and bash.
const SHELLS: [&str; 3] = ["sh", "dash", "bash"];

/// The script's output under `shell`, run in `cwd` (where an injected
/// command would leave its files).
fn gather_in<A: AsRef<OsStr>>(shell: &str, cwd: &Path, args: &[A]) -> String {
    let out = super::run(shell, GATHER, cwd, args, None);
    assert!(out.status.success(), "{shell}: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The script's output, the same under every shell (but for the free
/// space, which moves). A stopped node's run looks for repmgrd
/// machine-wide: not while a test runs a fake one.
fn gather<A: AsRef<OsStr>>(cwd: &Path, args: &[A]) -> String {
    let _one = MANAGERS.lock().unwrap_or_else(|e| e.into_inner());
    let outs: Vec<String> = SHELLS.iter().map(|sh| gather_in(sh, cwd, args)).collect();
    let steady = |out: &str| {
        out.lines()
            .filter(|l| !l.starts_with("fs "))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    for (sh, out) in SHELLS.iter().zip(&outs) {
        assert_eq!(
            steady(out),
            steady(&outs[0]),
            "{sh} differs from {}",
            SHELLS[0]
        );
    }
    outs.into_iter().next().unwrap_or_default()
}

/// DATA_DIR BIN_DIR DATA_DIR PASSFILE, run in the passfile's directory
/// (each test's root).
fn run(data_dir: &Path, bin_dir: &Path, passfile: &Path) -> String {
    let cwd = passfile.parent().unwrap_or(bin_dir);
    gather(cwd, &[data_dir, bin_dir, data_dir, passfile])
}

/// A data directory named to break any unquoted use and to forge output
/// lines (a newline), inside `root`.
fn hostile(root: &Path) -> std::path::PathBuf {
    root.join(format!("{HOSTILE}\nline2"))
}

#[test]
fn missing_empty_and_foreign() {
    let root = tempfile::tempdir().expect("tempdir");
    let d = hostile(root.path());
    let nothing = root.path().join("no-passfile");
    let f = parse_gather_output(&run(&d, root.path(), &nothing)).expect("parses");
    assert_eq!(f.data_dir, DataDir::Missing);
    assert!(
        f.disk_total_bytes.is_some_and(|t| t > 0),
        "statvfs of the parent"
    );
    std::fs::create_dir(&d).expect("mkdir");
    let f = parse_gather_output(&run(&d, root.path(), &nothing)).expect("parses");
    assert_eq!(f.data_dir, DataDir::Empty);
    write(&d.join(".hidden"), "x");
    let f = parse_gather_output(&run(&d, root.path(), &nothing)).expect("parses");
    assert_eq!(f.data_dir, DataDir::Foreign);
    let file = root.path().join("a file");
    write(&file, "");
    let f = parse_gather_output(&run(&file, root.path(), &nothing)).expect("parses");
    assert_eq!(f.data_dir, DataDir::Foreign, "a regular file is not empty");
    std::fs::remove_file(&file).expect("rm");
    assert!(f.passfile_sha256.is_none());
    let names: Vec<_> = std::fs::read_dir(root.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 1, "nothing executed: {names:?}");
}

/// A renamed cluster's passfile and lock holder beside the data
/// directory are found by the data directory they name; another
/// data directory's, a foreign file, and odd names are not.
#[test]
fn a_former_cluster_name_is_found_by_its_data_directory() {
    let root = tempfile::tempdir().expect("tempdir");
    let base = root.path().join("it's a \"dir\" $(touch pwned) `x` \\ -n");
    let d = base.join("main");
    std::fs::create_dir_all(&d).expect("mkdir");
    let dd = d.to_str().expect("utf-8");
    let header = |cluster: &str, dir: &str| {
        format!(
            "{}\n*:*:*:r:secret\n",
            crate::desired::passfile_header(cluster, dir)
        )
    };
    let current = base.join(".pgrepl-now.pgpass");
    write(&current, &header("now", dd));
    write(&base.join(".pgrepl-old.pgpass"), &header("old", dd));
    write(
        &base.join(".pgrepl-other.pgpass"),
        &header("other", "/elsewhere/main"),
    );
    write(&base.join(".pgrepl-bare.pgpass"), "*:*:*:r:secret\n");
    write(&base.join(".pgrepl-Bad$.pgpass"), &header("Bad$", dd));
    write(
        &base.join(".pgrepl-older.lock.holder"),
        &format!("pid=1\nholder=x\ndata_dir={dd}\n"),
    );
    write(
        &base.join(".pgrepl-now.lock.holder"),
        &format!("pid=1\ndata_dir={dd}\n"),
    );
    write(
        &base.join(".pgrepl-theirs.lock.holder"),
        "pid=1\ndata_dir=/elsewhere/main\n",
    );
    let f = parse_gather_output(&run(&d, root.path(), &current)).expect("parses");
    assert_eq!(f.stale_clusters, ["old", "older"]);
    assert!(!root.path().join("pwned").exists() && !base.join("pwned").exists());
}

/// A stopped node: its slots on disk, and the preloaded libraries
/// looked for in the library directory beside bin_dir (the one
/// holding plpgsql.so), as `$libdir/NAME`, NAME or NAME.so.
#[test]
fn a_stopped_node_reports_its_slots_and_missing_libraries() {
    let root = tempfile::tempdir().expect("tempdir");
    let base = hostile(root.path());
    let d = base.join("main");
    let bin = base.join("bin");
    let lib = base.join("lib");
    for dir in [&d, &bin, &lib] {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    write(&d.join("PG_VERSION"), "15\n");
    for slot in ["node2", "node3", "barman", "gone.tmp"] {
        std::fs::create_dir_all(d.join("pg_replslot").join(slot)).expect("mkdir");
    }
    write(&lib.join("plpgsql.so"), "");
    write(&lib.join("pg_stat_statements.so"), "");
    write(&lib.join("auto_explain"), "");
    let libs: Vec<String> = [
        "pg_stat_statements",
        "pg_stat_statementz",
        "$libdir/auto_explain",
        "$(touch pwned3)",
        "plpgsql.so",
    ]
    .map(String::from)
    .to_vec();
    let out = gather(
        root.path(),
        &[
            d.as_os_str(),
            bin.as_os_str(),
            d.as_os_str(),
            root.path().join("no-passfile").as_os_str(),
            OsStr::new("-"),
            OsStr::new(&libs.join("\n")),
        ],
    );
    let f = parse_gather_output(&out).expect("parses");
    assert_eq!(f.slots_on_disk, Some(3), "{out}");
    let check = parse_preload_check(&out, &libs).expect("checked");
    assert_eq!(check.missing, ["pg_stat_statementz", "$(touch pwned3)"]);
    // A newline in the path is not printed: the line would be forged.
    assert_eq!(check.libdir, None, "{out}");
    assert!(!root.path().join("pwned3").exists());
    assert!(!d.join("pwned3").exists());
    // No library list: nothing checked.
    let plain = run(&d, &bin, &root.path().join("no-passfile"));
    assert_eq!(parse_preload_check(&plain, &libs), None);
    assert!(!plain.contains("pkglibdir"), "{plain}");
}

#[test]
fn a_stopped_data_directory_is_read_from_disk() {
    let root = tempfile::tempdir().expect("tempdir");
    let d = hostile(root.path());
    let bin = root.path().join("bin");
    std::fs::create_dir_all(d.join("pg_wal")).expect("mkdir");
    std::fs::create_dir(&bin).expect("mkdir");
    write(&d.join("PG_VERSION"), "15\n");
    write(&d.join("standby.signal"), "");
    write(&d.join("pg_hba.conf"), "local all all peer\n");
    write(
        &d.join("postgresql.auto.conf"),
        "primary_conninfo = 'host=a password=pw'\n",
    );
    write(&d.join("pg_wal/00000002.history"), "1\t0/3000148\treason\n");
    // A postmaster.pid left by a crash: no such process.
    write(&d.join("postmaster.pid"), "2147483647\n");
    let tool = bin.join("pg_controldata");
    write(
        &tool,
        &format!("#!/bin/sh\ncat <<'EOF'\n{SAMPLE_CONTROLDATA}EOF\n"),
    );
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let passfile = root.path().join("pass file");
    write(&passfile, "h:5432:*:r:secret\n");
    std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    let f = parse_gather_output(&run(&d, &bin, &passfile)).expect("parses");
    assert_eq!(f.data_dir, DataDir::Initialised);
    assert_eq!(f.major, Some(15));
    assert!(!f.running && f.standby_signal && !f.recovery_signal);
    assert_eq!(f.control, Some(parse_controldata(SAMPLE_CONTROLDATA)));
    assert_eq!(f.hba_conf.as_deref(), Some("local all all peer\n"));
    assert!(f.auto_conf_has_password);
    assert!(!f.auto_conf.as_deref().unwrap_or("").contains("pw"));
    assert_eq!(f.histories, vec![(2, "1\t0/3000148\treason\n".to_string())]);
    use sha2::Digest;
    let want = format!("{:x}", sha2::Sha256::digest(b"h:5432:*:r:secret\n"));
    assert_eq!(f.passfile_sha256.as_deref(), Some(want.as_str()));
    assert_eq!(f.passfile_mode.as_deref(), Some("600"));
    assert!(!root.path().join("pwned").exists() && !root.path().join("pwned2").exists());
}

#[test]
fn a_stopped_nodes_hba_is_the_file_its_configuration_names() {
    let root = tempfile::tempdir().expect("tempdir");
    let d = hostile(root.path());
    let bin = root.path().join("bin");
    std::fs::create_dir_all(&d).expect("mkdir");
    std::fs::create_dir(&bin).expect("mkdir");
    write(&d.join("PG_VERSION"), "15\n");
    write(&d.join("pg_hba.conf"), "# the default, unused\n");
    let custom = root.path().join("etc $x 'hba'/custom hba.conf");
    std::fs::create_dir_all(custom.parent().expect("parent")).expect("mkdir");
    write(&custom, "local all all trust\n");
    // `postgres -C hba_file -D CONFIG_DIR` as PostgreSQL answers it: only
    // for exactly these arguments.
    let tool = bin.join("postgres");
    write(
        &tool,
        "#!/bin/sh\n[ \"$1 $2 $3\" = '-C hba_file -D' ] && [ \"$4\" = \"$PGREPL_TEST_D\" ] && printf '%s\\n' \"$PGREPL_TEST_HBA\"\n",
    );
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let passfile = root.path().join("none");
    let out = |hba: &Path| {
        let _one = MANAGERS.lock().unwrap_or_else(|e| e.into_inner());
        let mut outs = Vec::new();
        for sh in SHELLS {
            let run = Command::new(sh)
                .args(["-c", GATHER.text, GATHER.name])
                .arg(&d)
                .arg(&bin)
                .arg(&d)
                .arg(&passfile)
                .env("PGREPL_TEST_D", &d)
                .env("PGREPL_TEST_HBA", hba)
                .current_dir(root.path())
                .output()
                .expect("runs");
            assert!(run.status.success(), "{sh}: {run:?}");
            let f = parse_gather_output(&String::from_utf8_lossy(&run.stdout)).expect("parses");
            outs.push(f.hba_conf);
        }
        assert!(outs.iter().all(|o| *o == outs[0]), "{outs:?}");
        outs.remove(0)
    };
    assert_eq!(out(&custom).as_deref(), Some("local all all trust\n"));
    // Relative to the data directory, as the server reads it.
    write(&d.join("rel.conf"), "host all all 10.0.0.0/8 trust\n");
    assert_eq!(
        out(Path::new("rel.conf")).as_deref(),
        Some("host all all 10.0.0.0/8 trust\n")
    );
    // No answer (a root shell, a broken configuration): the default.
    std::fs::remove_file(&tool).expect("rm");
    assert_eq!(out(&custom).as_deref(), Some("# the default, unused\n"));
    assert!(!root.path().join("pwned").exists() && !root.path().join("pwned2").exists());
}

#[test]
fn a_separate_config_dir_is_checked_for_postgresql_conf() {
    let root = tempfile::tempdir().expect("tempdir");
    let (d, c) = (root.path().join("data"), root.path().join("etc main"));
    let run_split = || {
        let out = gather(
            root.path(),
            &[&d, root.path(), &c, &root.path().join("none")],
        );
        parse_gather_output(&out).expect("parses")
    };
    assert_eq!(run_split().config_dir_has_conf, Some(false));
    std::fs::create_dir(&c).expect("mkdir");
    write(&c.join("postgresql.conf"), "");
    assert_eq!(run_split().config_dir_has_conf, Some(true));
    // Configuration inside the data directory: nothing to check.
    let f = parse_gather_output(&run(&d, root.path(), &root.path().join("none"))).expect("parses");
    assert_eq!(f.config_dir_has_conf, None);
}

#[test]
fn a_live_postmaster_leaves_the_files_to_sql() {
    let root = tempfile::tempdir().expect("tempdir");
    let d = root.path().join("data");
    std::fs::create_dir(&d).expect("mkdir");
    write(&d.join("PG_VERSION"), "17");
    write(&d.join("pg_hba.conf"), "local all all peer\n");
    // This test's own process stands in for the postmaster.
    write(
        &d.join("postmaster.pid"),
        &format!("{}\n{}\n", std::process::id(), d.display()),
    );
    let f = parse_gather_output(&run(&d, root.path(), &root.path().join("none"))).expect("parses");
    assert_eq!(f.major, Some(17), "PG_VERSION without a newline");
    assert!(f.running);
    assert!(f.control.is_none() && f.hba_conf.is_none());
}

/// Tests that start fake managers, or look for repmgrd on this
/// machine, one at a time: a fake repmgrd is seen machine-wide.
static MANAGERS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run_in(shell: &str, d: &Path, bin: &Path, extra: &[&str]) -> String {
    let mut args = vec![d, bin, d];
    let passfile = bin.join("no-passfile");
    args.push(&passfile);
    args.extend(extra.iter().map(Path::new));
    gather_in(shell, bin, &args)
}

/// A process whose command name is `path`'s file name (the kernel
/// names a script's process after the script), running `sleep` as
/// its child. Both end when it is dropped.
struct Fake {
    parent: std::process::Child,
    child: u32,
}

impl Fake {
    fn start(path: &Path, args: &[&str]) -> Fake {
        executable(
            path,
            "#!/bin/sh\nfor a; do f=$a; done\nsleep 60 &\necho $! >\"$f.tmp\" && mv \"$f.tmp\" \"$f\"\nwait\n",
        );
        let pidfile = path.with_extension("child");
        let parent = Command::new(path)
            .args(args)
            .arg(&pidfile)
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("spawn the fake manager");
        let mut fake = Fake { parent, child: 0 };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        fake.child = loop {
            if let Some(pid) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                break pid;
            }
            assert!(std::time::Instant::now() < deadline, "no child pid");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        fake
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        if self.child != 0 {
            let _ = Command::new("kill").arg(self.child.to_string()).status();
        } else {
            let _ = self.parent.kill();
        }
        let _ = self.parent.wait();
    }
}

fn data_dir(d: &Path, postmaster_pid: Option<u32>) {
    std::fs::create_dir_all(d).expect("mkdir");
    write(&d.join("PG_VERSION"), "15\n");
    if let Some(pid) = postmaster_pid {
        write(
            &d.join("postmaster.pid"),
            &format!("{pid}\n{}\n", d.display()),
        );
    }
}

fn managers(out: &str) -> Vec<(Manager, Vec<String>)> {
    parse_gather_output(out)
        .expect("parses")
        .managers
        .into_iter()
        .map(|m| (m.manager, m.evidence))
        .collect()
}

#[test]
fn patroni_and_pg_auto_failover_files_are_seen_on_a_stopped_node() {
    let _one = MANAGERS.lock().unwrap_or_else(|e| e.into_inner());
    let root = tempfile::tempdir().expect("tempdir");
    let d = hostile(root.path());
    data_dir(&d, None);
    for shell in SHELLS {
        assert!(managers(&run_in(shell, &d, root.path(), &[])).is_empty());
    }
    write(
        &d.join("postgresql.conf"),
        "# Do not edit this file manually!\n# It will be overwritten by Patroni!\ninclude 'postgresql.base.conf'\n",
    );
    write(&d.join("patroni.dynamic.json"), "{}");
    write(&d.join("postgresql-auto-failover.conf"), "");
    for shell in SHELLS {
        let out = run_in(shell, &d, root.path(), &[]);
        assert_eq!(
            managers(&out),
            [
                (
                    Manager::Patroni,
                    vec![
                        "postgresql.conf begins with Patroni's header (It will be overwritten by Patroni!)".to_string(),
                        "patroni.dynamic.json is in the data directory".to_string(),
                    ]
                ),
                (
                    Manager::PgAutoFailover,
                    vec!["postgresql-auto-failover.conf is beside postgresql.conf".to_string()]
                ),
            ],
            "{shell}:\n{out}"
        );
        let f = parse_gather_output(&out).expect("parses");
        assert!(!f.running && f.major == Some(15), "{shell}");
    }
    // Patroni's include line alone (no header) is not its sign.
    write(
        &d.join("postgresql.conf"),
        "include 'postgresql.base.conf'\n",
    );
    std::fs::remove_file(d.join("patroni.dynamic.json")).expect("rm");
    std::fs::remove_file(d.join("postgresql-auto-failover.conf")).expect("rm");
    for shell in SHELLS {
        assert!(managers(&run_in(shell, &d, root.path(), &[])).is_empty());
    }
    assert!(!root.path().join("pwned").exists() && !root.path().join("pwned2").exists());
}

#[test]
fn the_postmasters_parent_process_names_its_manager() {
    let _one = MANAGERS.lock().unwrap_or_else(|e| e.into_inner());
    let root = tempfile::tempdir().expect("tempdir");
    let d = hostile(root.path());
    // (the parent's name, its arguments, the manager and evidence expected)
    type Case<'a> = (&'a str, &'a [&'a str], Option<(Manager, &'a str)>);
    let cases: [Case; 4] = [
        (
            "patroni",
            &["/etc/patroni.yml"],
            Some((
                Manager::Patroni,
                "the postmaster's parent process is patroni (pid ",
            )),
        ),
        (
            "pg_autoctl",
            &["run"],
            Some((
                Manager::PgAutoFailover,
                "the postmaster's parent process is pg_autoctl (pid ",
            )),
        ),
        // `python3 -m patroni`: the name is python3, the command line says patroni.
        (
            "python3",
            &["-m", "patroni", "/etc/patroni.yml"],
            Some((Manager::Patroni, "the postmaster's parent process (pid ")),
        ),
        ("supervise", &["postgres"], None),
    ];
    for (name, args, want) in cases {
        let dir = root.path().join(format!("bin {name}"));
        std::fs::create_dir(&dir).expect("mkdir");
        let fake = Fake::start(&dir.join(name), args);
        data_dir(&d, Some(fake.child));
        for shell in SHELLS {
            let out = run_in(shell, &d, root.path(), &[]);
            let got = managers(&out);
            let f = parse_gather_output(&out).expect("parses");
            assert!(f.running, "{name} {shell}: {out}");
            match want {
                Some((manager, evidence)) => {
                    assert_eq!(got.len(), 1, "{name} {shell}: {out}");
                    assert_eq!(got[0].0, manager, "{name} {shell}");
                    let e = &got[0].1;
                    assert!(
                        e.len() == 1
                            && e[0].starts_with(evidence)
                            && e[0].contains(&fake.parent.id().to_string()),
                        "{name} {shell}: {e:?}"
                    );
                }
                None => assert!(got.is_empty(), "{name} {shell}: {got:?}"),
            }
        }
        drop(fake);
    }
    assert!(!root.path().join("pwned").exists() && !root.path().join("pwned2").exists());
}

#[test]
fn a_live_repmgrd_counts_when_its_repmgr_conf_names_this_data_directory() {
    let _one = MANAGERS.lock().unwrap_or_else(|e| e.into_inner());
    let root = tempfile::tempdir().expect("tempdir");
    let d = root.path().join("data dir");
    data_dir(&d, None);
    let conf = root.path().join("repmgr conf");
    let bin = root.path().join("bin");
    std::fs::create_dir(&bin).expect("mkdir");
    let conf_s = conf.to_str().expect("utf-8");
    let fake = Fake::start(&bin.join("repmgrd"), &["-f", conf_s, "--daemonize"]);
    let pid = fake.parent.id().to_string();
    // The whole script, and its search alone (`repmgrd` last).
    let found = |extra: &[&str]| -> Vec<Vec<(Manager, Vec<String>)>> {
        SHELLS
            .iter()
            .map(|shell| {
                let out = run_in(shell, &d, root.path(), extra);
                parse_manager_lines(&out)
                    .into_iter()
                    .map(|m| (m.manager, m.evidence))
                    .collect()
            })
            .collect()
    };
    // Its file cannot be read (here: it does not exist): it may be ours.
    for got in found(&[]).into_iter().chain(found(&["repmgrd"])) {
        assert!(
            got.iter().any(|(m, e)| *m == Manager::Repmgrd
                && e.iter()
                    .any(|e| e.contains(&format!("(pid {pid})")) && e.contains("cannot be read"))),
            "{got:?}"
        );
    }
    // Another data directory: not ours.
    write(
        &conf,
        "node_id=2\nconninfo='host=db2 user=repmgr'\ndata_directory='/srv/other'\n",
    );
    for got in found(&[]).into_iter().chain(found(&["repmgrd"])) {
        assert!(
            !got.iter()
                .any(|(_, e)| e.iter().any(|e| e.contains(&format!("(pid {pid})")))),
            "{got:?}"
        );
    }
    // This data directory, written with a trailing slash, unquoted or quoted.
    for line in [
        format!("  data_directory = '{}/'  # the node's", d.display()),
        format!("data_directory=\"{}\"", d.display()),
    ] {
        write(&conf, &format!("node_id=2\n{line}\nlog_level=INFO"));
        for got in found(&[]).into_iter().chain(found(&["repmgrd"])) {
            let want = format!(
                "repmgrd (pid {pid}) runs for this data directory (data_directory in {conf_s})"
            );
            assert!(
                got.iter()
                    .any(|(m, e)| *m == Manager::Repmgrd && e.contains(&want)),
                "{line}: {got:?}"
            );
        }
    }
    // `repmgrd` as the last argument prints the search alone.
    let out = run_in("dash", &d, root.path(), &["repmgrd"]);
    assert!(out.lines().all(|l| l.starts_with("manager ")), "{out}");
    drop(fake);
}
