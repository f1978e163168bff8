//! The data directory scripts of a base backup and a re-base:
//! stop_orphans.sh, prepare_base_backup.sh and keep_diverged_wal.sh.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{SHELLS, executable, hostile, nothing_ran, run, stdout, write};
use crate::node::scripts::{KEEP_DIVERGED_WAL, PREPARE_BASE_BACKUP, STOP_ORPHANS};

/// A process named after `path`'s file name, with `args`, that ends on
/// SIGTERM. A thread reaps it, as a real orphan's parent would (a zombie
/// still answers `kill -0`).
struct Fake {
    pid: u32,
    ended: mpsc::Receiver<()>,
}

impl Fake {
    fn ended(&self) -> bool {
        self.ended.recv_timeout(Duration::from_secs(5)).is_ok()
    }

    fn runs(&self) -> bool {
        self.ended.try_recv().is_err()
    }

    fn stop(self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
        assert!(self.ended(), "a fake did not end");
    }
}

fn fake(path: &Path, args: &[&Path]) -> Fake {
    executable(
        path,
        "#!/bin/sh\ntrap 'exit 0' TERM\nwhile :; do sleep 0.05; done\n",
    );
    let mut child = Command::new(path)
        .args(args)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn a fake");
    let pid = child.id();
    // Until the kernel names it after its script.
    let comm = format!("/proc/{pid}/comm");
    let name = path.file_name().expect("name").to_string_lossy();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&comm).map_or(true, |c| c.trim() != name.as_ref()) {
        assert!(Instant::now() < deadline, "{name} did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    let (tx, ended) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = child.wait();
        let _ = tx.send(());
    });
    Fake { pid, ended }
}

#[test]
fn stop_orphans_stops_a_copy_into_this_data_directory_only() {
    let root = tempfile::tempdir().expect("tempdir");
    let base = hostile(root.path());
    let bin = base.join("-bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let d = base.join("main");
    let other = base.join("other");
    for shell in SHELLS {
        let orphan = fake(&bin.join("pg_basebackup"), &[Path::new("-D"), &d]);
        let elsewhere = fake(&bin.join("pg_rewind"), &[Path::new("-D"), &other]);
        let unrelated = fake(&bin.join("pg_dump"), &[Path::new("-f"), &d]);
        let started = Instant::now();
        let out = run(shell, STOP_ORPHANS, root.path(), &[&d], None);
        assert!(out.status.success(), "{shell}: {out:?}");
        assert!(orphan.ended(), "{shell}: the orphan still runs");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{shell}: by SIGTERM"
        );
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            said.contains(&format!("stopping pg_basebackup (pid {})", orphan.pid)),
            "{shell}: {said}"
        );
        assert!(elsewhere.runs() && unrelated.runs(), "{shell}");
        elsewhere.stop();
        unrelated.stop();
    }
    nothing_ran(root.path());
}

#[test]
fn prepare_base_backup_says_where_the_copy_goes() {
    let root = tempfile::tempdir().expect("tempdir");
    let base = hostile(root.path());
    let d = base.join("-15 $x").join("main");
    let building = base.join("-15 $x").join("main.pgrepl-building");
    for shell in SHELLS {
        let prepare = || {
            let out = run(
                shell,
                PREPARE_BASE_BACKUP,
                root.path(),
                &[d.as_os_str(), "2026-01-01T00:00:00Z".as_ref()],
                None,
            );
            assert!(out.status.success(), "{shell}: {out:?}");
            stdout(&out)
        };
        let _ = std::fs::remove_dir_all(&base);
        // Nothing there, not even the parent: built beside it.
        assert_eq!(prepare(), "building\n");
        assert!(d.parent().is_some_and(Path::is_dir) && !d.exists());
        // A leftover of an interrupted copy is removed.
        std::fs::create_dir_all(building.join("base")).expect("mkdir");
        write(&building.join("base/1"), "partial");
        assert_eq!(prepare(), "building\n");
        assert!(!building.exists(), "{shell}");
        // An empty data directory: copied into.
        std::fs::create_dir(&d).expect("mkdir");
        assert_eq!(prepare(), "direct\n");
        // Any file in it: never touched.
        write(&d.join(".keep"), "");
        assert_eq!(prepare(), "occupied\n");
        assert!(d.join(".keep").exists());
    }
    nothing_ran(root.path());
}

#[test]
fn keeps_the_diverged_segments_and_the_histories() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = hostile(root.path()).join("-data dir");
    let wal = data.join("pg_wal");
    std::fs::create_dir_all(&wal).expect("mkdir");
    for f in [
        "000000010000000000000002",
        "00000001000000000000000B",
        "000000010000000000000003",
        "00000001000000000000000A",
        "000000010000000100000000",
        "000000020000000000000003",
        "00000002.history",
        "000000010000000000000003.partial",
        "00000001000000000000000G",
    ] {
        std::fs::write(wal.join(f), f).expect("write");
    }
    // 0B: a recycled segment, renamed ahead but last written long ago.
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(wal.join("00000001000000000000000B"))
        .and_then(|f| f.set_modified(old))
        .expect("set mtime");
    for shell in SHELLS {
        let keep = |to: &Path, last: &str| {
            let args = [
                data.as_os_str(),
                "00000001".as_ref(),
                "000000010000000000000003".as_ref(),
                to.as_os_str(),
                last.as_ref(),
            ];
            run(shell, KEEP_DIVERGED_WAL, root.path(), &args, None)
        };
        let out = hostile(root.path()).join(format!("-kept {shell}"));
        let ran = keep(&out, "");
        assert!(ran.status.success(), "{shell}: {ran:?}");
        assert_eq!(stdout(&ran).trim(), format!("4 {}", out.display()));
        let mut kept: Vec<String> = std::fs::read_dir(&out)
            .expect("kept dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        kept.sort();
        assert_eq!(
            kept,
            [
                "000000010000000000000003",
                "000000010000000000000003.partial",
                "00000001000000000000000A",
                "000000010000000100000000",
                "00000002.history"
            ],
            "{shell}"
        );
        // Bounded by a clean shutdown's checkpoint segment: 0A and later are
        // recycled files, whatever their times.
        let bounded = hostile(root.path()).join(format!("-bounded {shell}"));
        let ran = keep(&bounded, "000000010000000000000003");
        assert!(ran.status.success(), "{shell}: {ran:?}");
        assert_eq!(stdout(&ran).trim(), format!("2 {}", bounded.display()));
        assert!(bounded.join("000000010000000000000003.partial").exists());
        assert!(!bounded.join("00000001000000000000000A").exists());
        // The originals stay where they were (pg_rewind decides their fate).
        assert!(wal.join("000000010000000000000003").exists());
        // An existing target is never written into: a rerun within the
        // same second (the same name) gets OUT.2, then OUT.3.
        for i in 2..=3 {
            let again = keep(&out, "");
            assert!(again.status.success(), "{shell}: {again:?}");
            let next = PathBuf::from(format!("{}.{i}", out.display()));
            assert_eq!(stdout(&again).trim(), format!("4 {}", next.display()));
            assert!(next.join("00000002.history").exists(), "{shell}");
        }
        assert_eq!(
            std::fs::read_dir(&out).expect("kept dir").count(),
            kept.len()
        );
    }
    nothing_ran(root.path());
}
