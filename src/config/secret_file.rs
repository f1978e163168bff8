//! A password file on the operator's machine: a regular file (a FIFO or a
//! device would hang or never end), owned by the user running pgrepl or
//! root, not readable by group or others, at most [`MAX_BYTES`]. Its type
//! is checked before it is opened, and again on what was opened.

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// A password file holds one line: far less than this.
pub const MAX_BYTES: u64 = 4096;

/// `O_NONBLOCK` on Linux's common architectures (std has no name for it):
/// a FIFO swapped in between the check and the open does not block it.
const O_NONBLOCK: i32 = if cfg!(all(
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64",
        target_arch = "s390x",
        target_arch = "powerpc64",
        target_arch = "loongarch64"
    )
)) {
    0o4000
} else {
    // Elsewhere the check before the open is what keeps a FIFO out.
    0
};

/// The text of a password file, or why it cannot be one.
pub fn read_private_file(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let cannot = |e: std::io::Error| format!("cannot read {shown}: {e}");
    let meta = std::fs::metadata(path).map_err(cannot)?;
    check_metadata(path, &meta)?;
    let file = File::options()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(path)
        .map_err(cannot)?;
    let opened = file.metadata().map_err(cannot)?;
    if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
        return Err(format!(
            "{shown} changed while pgrepl read it; run pgrepl again"
        ));
    }
    check_metadata(path, &opened)?;
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(too_large(path));
    }
    String::from_utf8(bytes).map_err(|_| format!("{shown} is not UTF-8 text"))
}

fn check_metadata(path: &Path, meta: &Metadata) -> Result<(), String> {
    let shown = path.display();
    if !meta.is_file() {
        let kind = meta.file_type();
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else {
            "not a file"
        };
        return Err(format!(
            "{shown} is {what}, not a regular file; write the password into a file"
        ));
    }
    let me = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    if let Some(me) = me
        && meta.uid() != me
        && meta.uid() != 0
    {
        return Err(format!(
            "{shown} is owned by uid {}, not by the user running pgrepl (uid {me}) or root; run `chown {me} {shown}`",
            meta.uid()
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{shown} is readable by others (mode {mode:04o}); run `chmod 600 {shown}`"
        ));
    }
    if meta.len() > MAX_BYTES {
        return Err(too_large(path));
    }
    Ok(())
}

fn too_large(path: &Path) -> String {
    format!(
        "{} is larger than {MAX_BYTES} bytes: a password file holds the password alone, on one line",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn private(dir: &Path, name: &str, text: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        path
    }

    #[test]
    fn reads_a_private_regular_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = private(dir.path(), "pw", b"s3cret\n");
        assert_eq!(read_private_file(&path).as_deref(), Ok("s3cret\n"));
    }

    #[test]
    fn refuses_a_directory_a_device_and_a_large_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = read_private_file(dir.path()).expect_err("a directory");
        assert!(e.contains("is a directory, not a regular file"), "{e}");
        let e = read_private_file(Path::new("/dev/zero")).expect_err("a device");
        assert!(e.contains("is a device"), "{e}");
        let big = private(dir.path(), "big", &[b'x'; MAX_BYTES as usize + 1]);
        let e = read_private_file(&big).expect_err("too large");
        assert!(e.contains("larger than 4096 bytes"), "{e}");
        let open = private(dir.path(), "open", b"x");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = read_private_file(&open).expect_err("readable by others");
        assert!(e.contains("mode 0644"), "{e}");
    }

    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg("-m")
            .arg("600")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        let start = Instant::now();
        let e = read_private_file(&fifo).expect_err("a FIFO");
        assert!(e.contains("is a FIFO, not a regular file"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn refuses_a_file_of_another_user() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = private(dir.path(), "theirs", b"x");
        let me = std::fs::metadata("/proc/self").expect("/proc/self").uid();
        if me != 0 {
            return; // only root can give a file away
        }
        std::os::unix::fs::chown(&path, Some(4242), None).expect("chown");
        let e = read_private_file(&path).expect_err("owned by another user");
        assert!(e.contains("owned by uid 4242"), "{e}");
    }
}
