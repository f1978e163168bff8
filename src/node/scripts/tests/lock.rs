//! lock.sh: taken, held, renewed and taken over, as pgrepl's lock holder
//! drives it (its stdin is the lease).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{SHELLS, hostile, nothing_ran, read, run, stdout};
use crate::node::scripts::LOCK;

/// MACHINE_ID BOOT_ID PID_NS CLIENT_START as pgrepl passes them.
const ID: [&str; 4] = [
    "0123456789abcdef0123456789abcdef",
    "8a0e3a55-2b3c-4d5e-8f90-0123456789ab",
    "pid:[4026531836]",
    "123456",
];

/// A lock holder run locally, as pgrepl runs it on a node.
struct Holder {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Holder {
    /// Starts the script and reads its first line.
    fn start(shell: &str, cwd: &Path, args: &[&str]) -> (Holder, String) {
        let mut child = Command::new(shell)
            .arg("-c")
            .arg(LOCK.text)
            .arg(LOCK.name)
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let mut first = String::new();
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        out.read_line(&mut first).expect("first line");
        (Holder { child, out }, first)
    }

    /// One renewal of the lease, and its acknowledgement.
    fn renew(&mut self) -> String {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin.write_all(b"\n").expect("renew");
        stdin.flush().expect("flush");
        let mut ack = String::new();
        self.out.read_line(&mut ack).expect("ack");
        ack
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

#[test]
fn a_lock_is_taken_held_and_taken_over() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = hostile(root.path());
    std::fs::create_dir_all(&dir).expect("mkdir");
    let lock = dir.join("-.pgrepl-orders $1.lock");
    let lock_s = lock.to_str().expect("utf-8");
    let holder_file = dir.join("-.pgrepl-orders $1.lock.holder");
    let holder = "-pgrepl apply by o'neil@\"laptop\" $(touch pwned) \\ since now";
    let client = "-laptop:4242";
    let data_dir = dir.join("-main $PGDATA").to_string_lossy().into_owned();
    let data_dir = data_dir.as_str();
    for shell in SHELLS {
        let (mut first, line) = Holder::start(
            shell,
            root.path(),
            &[
                lock_s, holder, client, "", data_dir, ID[0], ID[1], ID[2], ID[3],
            ],
        );
        assert_eq!(line, "locked\n", "{shell}");
        let recorded = read(&holder_file);
        assert!(
            recorded.contains(&format!(
                "\nclient={client}\nmachine_id={}\nboot_id={}\npid_ns={}\nclient_start={}\nholder={holder}\ndata_dir={data_dir}\n",
                ID[0], ID[1], ID[2], ID[3]
            )),
            "{shell}: {recorded}"
        );
        let pid = recorded
            .lines()
            .find_map(|l| l.strip_prefix("pid="))
            .expect("pid line")
            .to_string();
        // The lease: every line read renews the holder file's mtime.
        let old = std::time::SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&holder_file)
            .and_then(|f| f.set_modified(old))
            .expect("age the lease");
        assert_eq!(first.renew(), "renewed\n", "{shell}");
        let renewed = std::time::Instant::now() + Duration::from_secs(5);
        while std::fs::metadata(&holder_file)
            .and_then(|m| m.modified())
            .is_ok_and(|m| m == old)
        {
            assert!(std::time::Instant::now() < renewed, "{shell}: not renewed");
            std::thread::sleep(Duration::from_millis(10));
        }
        // A second taker is told who holds it and since when.
        let out = run(
            shell,
            LOCK,
            root.path(),
            &[lock_s, "other", "h:1", "", data_dir],
            None,
        );
        assert_eq!(out.status.code(), Some(75), "{shell}: {out:?}");
        let text = stdout(&out);
        assert!(text.starts_with("held\nage="), "{shell}: {text}");
        assert!(
            text.contains(&format!("holder={holder}\n")),
            "{shell}: {text}"
        );
        // Taking over ends the holder by its pid.
        let (second, line) = Holder::start(
            shell,
            root.path(),
            &[lock_s, "second", "h:2", &pid, data_dir],
        );
        assert_eq!(line, "locked\n", "{shell}");
        assert!(
            first.child.wait().is_ok_and(|s| !s.success()),
            "{shell}: ended"
        );
        assert!(read(&holder_file).contains("\nholder=second\n"));
        drop(second);
        drop(first);
        // Released when its stdin closes: taken again at once.
        let (again, line) =
            Holder::start(shell, root.path(), &[lock_s, "third", "h:3", "", data_dir]);
        assert_eq!(line, "locked\n", "{shell}");
        drop(again);
    }
    nothing_ran(root.path());
}

/// On main the holder file was written through whatever stood at its name.
/// Now it is a fresh file renamed over it, and a lock file that is a
/// symlink is refused.
#[test]
fn the_lock_never_writes_through_a_symlink() {
    use std::os::unix::fs::symlink;
    let root = tempfile::tempdir().expect("tempdir");
    let dir = hostile(root.path());
    std::fs::create_dir_all(&dir).expect("mkdir");
    let victim = root.path().join("victim");
    let lock = dir.join("-.pgrepl-c.lock");
    let lock_s = lock.to_str().expect("utf-8");
    let holder_file = dir.join("-.pgrepl-c.lock.holder");
    for shell in SHELLS {
        std::fs::write(&victim, "untouched\n").expect("write");
        let _ = std::fs::remove_file(&lock);
        let _ = std::fs::remove_file(&holder_file);
        symlink(&victim, &holder_file).expect("symlink");
        let args = [lock_s, "h", "c:1", "", "/d", ID[0], ID[1], ID[2], ID[3]];
        let (held, line) = Holder::start(shell, root.path(), &args);
        assert_eq!(line, "locked\n", "{shell}");
        assert_eq!(read(&victim), "untouched\n", "{shell}");
        assert!(
            std::fs::symlink_metadata(&holder_file)
                .expect("stat")
                .file_type()
                .is_file()
        );
        assert!(
            std::fs::symlink_metadata(&lock)
                .expect("stat")
                .file_type()
                .is_file()
        );
        drop(held);
        std::fs::remove_file(&lock).expect("rm");
        symlink(&victim, &lock).expect("symlink");
        let out = run(shell, LOCK, root.path(), &args, None);
        assert_eq!(out.status.code(), Some(71), "{shell}: {out:?}");
        assert_eq!(read(&victim), "untouched\n", "{shell}");
        std::fs::remove_file(&lock).expect("rm");
    }
    nothing_ran(root.path());
}
