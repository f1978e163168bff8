//! The shell scripts pgrepl runs on nodes, each a file under `scripts/`,
//! run as `sh -c TEXT NAME ARGS...`. Every input arrives as a positional
//! argument and is only ever used quoted, so nothing in a path, a name or a
//! value is interpreted; each script is tested under `sh` and `dash` with
//! hostile arguments (spaces, quotes, `$`, backslashes, leading `-`).

/// A script and the name it runs under (its `$0`, shown in its errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Script {
    pub name: &'static str,
    pub text: &'static str,
}

impl Script {
    /// `sh -c TEXT NAME ARGS...`
    pub fn argv<'a>(&self, args: &[&'a str]) -> Vec<&'a str> {
        let mut argv = vec!["sh", "-c", self.text, self.name];
        argv.extend_from_slice(args);
        argv
    }
}

/// The script's name when `argv` runs a script (`sh -c TEXT NAME ARGS...`).
pub fn script_name<'a>(argv: &[&'a str]) -> Option<&'a str> {
    match argv {
        ["sh", "-c", _, name, ..] => Some(name),
        _ => None,
    }
}

/// The read-only script run on each node:
/// `sh -c SCRIPT pgrepl-gather DATA_DIR BIN_DIR CONF_DIR PASSFILE [MODE [LIBRARIES]]`,
/// MODE `repmgrd` (below) or `-`; LIBRARIES the names the file preloads,
/// one a line.
/// Paths arrive as positional arguments and are only ever used quoted, so
/// nothing in them is interpreted.
///
/// Cheap on purpose, because it runs on every node for every plan: shell
/// builtins, one `stat -f`, and for a passfile `sha256sum` and `stat`. A
/// running server's files (hba, auto.conf, histories, pg_control) are read
/// over SQL instead (pg_hba.conf as the server's `hba_file`); only when no
/// postmaster is alive does the script read them itself, each file's
/// content base64 on one line, pg_hba.conf being the `hba_file` the
/// configuration names (`postgres -C hba_file -D CONF_DIR`, which reads the
/// configuration and starts nothing), else `CONF_DIR/pg_hba.conf`.
///
/// Another manager's signs are `manager NAME EVIDENCE` lines: the live
/// postmaster's parent process (Patroni and pg_autoctl run PostgreSQL as
/// their child), Patroni's header in postgresql.conf and its
/// patroni.dynamic.json, pg_auto_failover's postgresql-auto-failover.conf
/// beside postgresql.conf, and a live repmgrd whose repmgr.conf names this
/// data directory. Looking for repmgrd walks /proc, so the script does it
/// for a stopped node only; for a running one, gathering runs the script
/// again with the last argument `repmgrd` when the server preloads repmgr's
/// library, which repmgrd cannot run without. Evidence holds no text read
/// from the node, only fixed words, pids and a repmgr.conf path without a
/// newline, so it cannot forge output lines.
///
/// A stopped node is also asked what would keep it from starting: its
/// slots on disk (`replslots N`: PostgreSQL refuses to start with more than
/// `max_replication_slots`) and, when the file preloads libraries, which of
/// them are missing from the server's library directory (`pkglibdir DIR`,
/// `preload_missing INDEX`). That directory is `BIN_DIR/pg_config
/// --pkglibdir` when that exists, else the usual place beside BIN_DIR
/// (Debian's `/usr/lib/postgresql/MAJOR/lib`); either counts only when it
/// holds `plpgsql.so`, which every server has. A running server answers
/// both over SQL instead.
pub const GATHER: Script = Script {
    name: "pgrepl-gather",
    text: include_str!("scripts/gather.sh"),
};

/// The cluster lock's holder: `LOCK_FILE HOLDER CLIENT TAKE_OVER_PID
/// DATA_DIR MACHINE_ID BOOT_ID PID_NS CLIENT_START` (TAKE_OVER_PID may be
/// empty). Takes `flock` on LOCK_FILE and prints `locked`, records who
/// holds it (the asking pgrepl's machine, boot, pid namespace and process
/// start time, so that a takeover never mistakes another machine's pgrepl
/// for a dead one of its own; and the data directory, so that a former
/// cluster name's lock is recognised) in `LOCK_FILE.holder`, and renews
/// that file's mtime (the lease) at every line it reads, answering
/// `renewed`; it lives as long as its stdin. When the lock is held it
/// prints `held`, the lease's age and the holder file, and exits 75. With
/// TAKE_OVER_PID, that stale holder is ended first and the lock waited for.
pub const LOCK: Script = Script {
    name: "pgrepl-lock",
    text: concat!(
        include_str!("scripts/atomic.sh"),
        include_str!("scripts/lock.sh")
    ),
};

/// `DATA_DIR STANDBY_SIGNAL NAMES [NAME VALUE]...`: replaces the lines of
/// postgresql.auto.conf that set NAMES (an extended regular expression of
/// the names) with the `NAME = VALUE` lines, atomically; STANDBY_SIGNAL `1`
/// also creates standby.signal (after the settings, so a standby.signal
/// never exists without them).
pub const AUTO_CONF_OFFLINE: Script = Script {
    name: "pgrepl-auto-conf",
    text: concat!(
        include_str!("scripts/atomic.sh"),
        include_str!("scripts/auto_conf_offline.sh")
    ),
};

/// pg_ctl without its 100 ms polling: `BIN_DIR DATA_DIR WAIT_S VERB LOG
/// [OPTIONS]`. A stop watches postmaster.pid every 10 ms, as `pg_ctl stop
/// -w` does ten times a second: done when the file is gone or its process
/// is, failed after WAIT_S seconds (by the clock, /proc/uptime). A start
/// returns at once and pgrepl polls for connections; `start-once` passes
/// OPTIONS to the server (`pg_ctl -o`). A restart is pg_ctl's own, which
/// keeps the server's previous options (postmaster.opts), without waiting
/// for the start.
pub const PG_CTL: Script = Script {
    name: "pgrepl-pg_ctl",
    text: include_str!("scripts/pg_ctl.sh"),
};

/// `BIN_DIR DATA_DIR`: `pg_ctl status`'s exit code, then `standby` when
/// standby.signal exists.
pub const STATUS: Script = Script {
    name: "pgrepl-status",
    text: include_str!("scripts/status.sh"),
};

/// `FILE`: replaces FILE with stdin atomically, with FILE's mode (0600 for
/// a new one), keeping the previous file as `FILE.pgrepl-bak` (written the
/// same way).
///
/// Every file pgrepl writes on a node (this, the passfile, postgresql.auto.conf
/// offline, the lock's holder file, signal files) goes through `put`
/// (scripts/atomic.sh): a fresh `mktemp` file beside it, never a fixed
/// name, so a symlink planted there is not followed; fsynced, then renamed
/// over.
pub const WRITE_FILE: Script = Script {
    name: "pgrepl-write",
    text: concat!(
        include_str!("scripts/atomic.sh"),
        include_str!("scripts/write_file.sh")
    ),
};

/// `FILE`: replaces FILE with stdin atomically, readable by its owner only
/// (a passfile: PostgreSQL ignores one that others can read; a signal file).
pub const WRITE_PASSFILE: Script = Script {
    name: "pgrepl-passfile",
    text: concat!(
        include_str!("scripts/atomic.sh"),
        include_str!("scripts/write_passfile.sh")
    ),
};

/// `DATA_DIR`: stops what a killed pgrepl left running on the node: a
/// pg_basebackup or pg_rewind (by executable name) whose command line names
/// DATA_DIR and that sees the same file system (mount namespace) as this
/// shell. The SSH channel's end does not stop a remote command, and an
/// orphan writing on would race the rerun. SIGTERM, then SIGKILL after 10 s.
pub const STOP_ORPHANS: Script = Script {
    name: "pgrepl-stop-orphans",
    text: include_str!("scripts/stop_orphans.sh"),
};

/// `DATA_DIR UTC_TIME`: stops orphans (as `STOP_ORPHANS`), then prints
/// `direct` (an empty data directory exists: back up into it), `building`
/// (none exists: back up beside it, then rename), or `occupied`. An earlier
/// interrupted copy in `DATA_DIR.pgrepl-building` is pgrepl's own and holds
/// nothing else (the plan showed its size): it is removed.
pub const PREPARE_BASE_BACKUP: Script = Script {
    name: "pgrepl-prepare",
    text: concat!(
        include_str!("scripts/stop_orphans.sh"),
        include_str!("scripts/prepare_base_backup.sh")
    ),
};

/// `DATA_DIR TIMELINE FIRST_SEGMENT OUT [LAST_SEGMENT]`: copies the WAL
/// segments of TIMELINE from FIRST_SEGMENT on, and every timeline history
/// file, out of `DATA_DIR/pg_wal` into a new directory, OUT or, when that
/// exists, `OUT.2`, `OUT.3`, ...; prints how many segments and the
/// directory (`N PATH`). pg_rewind discards them. With LAST_SEGMENT, the segment
/// of a clean shutdown's checkpoint (the end of WAL), nothing after it is
/// copied; without it, segments older than FIRST_SEGMENT itself are
/// skipped. Either way, what is left out are recycled files waiting to be
/// reused under a future name, not WAL this node wrote after the fork.
pub const KEEP_DIVERGED_WAL: Script = Script {
    name: "pgrepl-keep-wal",
    text: include_str!("scripts/keep_diverged_wal.sh"),
};

/// `LOCK FILE...`: removes the FILEs (a former cluster name's passfile and
/// lock) unless LOCK, if it exists, is held by a live apply.
pub const REMOVE_CLUSTER_FILES: Script = Script {
    name: "pgrepl-remove",
    text: include_str!("scripts/remove_cluster_files.sh"),
};

/// `COMMAND [ARGS...]`, run by `sudo -n -H -u USER`: moves into USER's
/// home (or `/`), then runs COMMAND (`node::remote`, `Access::Sudo`).
pub const SUDO_HOME: Script = Script {
    name: "pgrepl-sudo",
    text: include_str!("scripts/sudo_home.sh"),
};

/// `ENGINE CONTAINER USER COMMAND [ARGS...]`, run on the SSH host: COMMAND
/// as USER in the running container (`ENGINE exec -i`), else in a one-off
/// container of its image with its mounts (`ENGINE run --rm -i
/// --volumes-from`), `PGREPL_OFFLINE=1` set, labelled
/// `pgrepl.offline-for=CONTAINER` (`node::remote`, `Access::Container`).
/// Exit 125 with a line `pgrepl-container: ...` when the engine cannot
/// inspect the container (it does not exist, or the SSH user may not use
/// the engine).
pub const CONTAINER: Script = Script {
    name: "pgrepl-container",
    text: include_str!("scripts/container.sh"),
};

/// `ENGINE CONTAINER`, run on the SSH host: removes the one-off containers
/// an interrupted run left working on CONTAINER's volumes (by their label),
/// the container counterpart of `STOP_ORPHANS`.
pub const CONTAINER_ORPHANS: Script = Script {
    name: "pgrepl-container-orphans",
    text: include_str!("scripts/container_orphans.sh"),
};

/// The SQL bridge, a Perl program (perl-base is Essential in Debian, and
/// the official postgres image has it): `perl -e BRIDGE -- SOCKET` relays
/// its stdin and stdout to PostgreSQL's Unix socket SOCKET until either
/// side closes, so that pgrepl speaks the protocol over the stdio of a
/// command run as the server's user (`node::sql`). Exit 2 when it cannot
/// connect, with the reason on stderr.
pub const SQL_BRIDGE: &str = include_str!("scripts/sql_bridge.pl");

/// Every script, for the tests.
pub const ALL: [Script; 14] = [
    GATHER,
    LOCK,
    AUTO_CONF_OFFLINE,
    PG_CTL,
    STATUS,
    WRITE_FILE,
    WRITE_PASSFILE,
    STOP_ORPHANS,
    PREPARE_BASE_BACKUP,
    KEEP_DIVERGED_WAL,
    REMOVE_CLUSTER_FILES,
    SUDO_HOME,
    CONTAINER,
    CONTAINER_ORPHANS,
];

#[cfg(test)]
mod tests;
