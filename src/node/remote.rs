//! How a command reaches the node, and the one place an argument vector
//! becomes the remote command line. sshd hands that line to the login shell,
//! so every argument is single-quoted: nothing in an argument is ever
//! interpreted.
//!
//! `Access` is where the ways in slot in (SSH as the user that runs
//! PostgreSQL, SSH + `sudo -n -u USER`, SSH + a container engine): each
//! wraps the argument vector before it is quoted (`wrap`), and nothing
//! above this module changes. A variant that needs data (a user name, a
//! container) borrows it from the cluster file, so that `Access`, and
//! `Node` with it, stay `Copy`.

use std::fmt;

use super::container::Engine;
use super::scripts::{CONTAINER, SUDO_HOME, script_name};
use crate::config::{self, Exec};
use crate::transport::{RemoteCommand, RemoteOutput};

/// The user that runs PostgreSQL inside a container: the official image's
/// (uid 999), which its entrypoint drops to.
pub const CONTAINER_USER: &str = "postgres";

/// How commands run on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access<'a> {
    /// SSH as `[ssh].user`, the user that runs PostgreSQL: a command runs
    /// as it is.
    Direct,
    /// SSH as an administrator, then `sudo -n -H -u USER`: every command
    /// runs as USER, from USER's home, with its stdin passed through.
    Sudo(&'a str),
    /// SSH as a user of the container engine, then the command as
    /// `CONTAINER_USER` in the container (`exec`) when it runs, else in a
    /// one-off container of its image on its volumes (`scripts::CONTAINER`).
    /// The container's lifecycle is the server's service; it and the lock
    /// run on the SSH host itself (`host`).
    Container { engine: Engine, name: &'a str },
}

impl<'a> Access<'a> {
    /// The way in that the cluster file gives `node`.
    pub fn of(node: &'a config::Node) -> Access<'a> {
        match &node.exec {
            Exec::Direct => Access::Direct,
            Exec::Sudo(user) => Access::Sudo(user),
            Exec::Docker(name) => Access::Container {
                engine: Engine::Docker,
                name,
            },
            Exec::Podman(name) => Access::Container {
                engine: Engine::Podman,
                name,
            },
        }
    }

    /// The way to the SSH host itself, for what runs beside the server
    /// rather than as it: a container's lifecycle, the cluster lock.
    pub fn host(&self) -> Access<'a> {
        match self {
            Access::Container { .. } => Access::Direct,
            other => *other,
        }
    }

    /// The container, when PostgreSQL runs in one.
    pub fn container(&self) -> Option<(Engine, &'a str)> {
        match *self {
            Access::Container { engine, name } => Some((engine, name)),
            _ => None,
        }
    }

    /// The argument vector that runs `argv` on the node this way.
    fn wrap<'b>(&self, argv: &[&'b str]) -> Vec<&'b str>
    where
        'a: 'b,
    {
        let argv = argv.iter().copied();
        match *self {
            Access::Direct => argv.collect(),
            Access::Sudo(user) => ["sudo", "-n", "-H", "-u", user, "--"]
                .into_iter()
                .chain(SUDO_HOME.argv(&argv.collect::<Vec<_>>()))
                .collect(),
            Access::Container { engine, name } => {
                let mut args = vec![engine.program(), name, CONTAINER_USER];
                args.extend(argv);
                CONTAINER.argv(&args)
            }
        }
    }

    /// The remote command for `argv`: wrapped, then each argument quoted.
    pub fn command<S: AsRef<str>>(&self, argv: &[S]) -> RemoteCommand {
        let argv: Vec<&str> = argv.iter().map(AsRef::as_ref).collect();
        RemoteCommand {
            line: command_line(&self.wrap(&argv)),
            program: program(&argv).to_string(),
        }
    }

    /// How pgrepl's SQL connections reach the server's socket this way.
    pub fn sql_route(&self) -> SqlRoute<'a> {
        match *self {
            Access::Direct => SqlRoute::ForwardedSocket,
            Access::Sudo(user) => SqlRoute::Bridge { user },
            Access::Container { .. } => SqlRoute::Bridge {
                user: CONTAINER_USER,
            },
        }
    }

    /// Whether `out`, the output of a command run this way, is the way in
    /// refusing to run it (sudo without a rule, a container that does not
    /// exist or an engine the SSH user may not use) rather than the
    /// command's own failure: what it said, for the operator.
    pub fn refusal(&self, out: &RemoteOutput) -> Option<String> {
        match self {
            Access::Direct => None,
            Access::Sudo(_) => sudo_refusal(out),
            Access::Container { engine, .. } => container_refusal(*engine, out),
        }
    }
}

/// What `argv` runs, for messages: a script's name (`sh -c TEXT NAME`
/// runs NAME), else the program.
fn program<'b>(argv: &[&'b str]) -> &'b str {
    script_name(argv).unwrap_or_else(|| argv.first().copied().unwrap_or(""))
}

/// How pgrepl's SQL connections reach a node's server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlRoute<'a> {
    /// The socket is forwarded over SSH; peer authentication sees the SSH
    /// user.
    ForwardedSocket,
    /// A bridge run as `user` (`scripts::SQL_BRIDGE`) relays the socket over
    /// its stdio; peer authentication sees `user`.
    Bridge { user: &'a str },
}

/// What the container engine says when it cannot run a command at all:
/// the wrapper's own line (the container cannot be inspected), the engine's
/// daemon out of reach, or no engine (exit 127).
fn container_refusal(engine: Engine, out: &RemoteOutput) -> Option<String> {
    let lines = || out.stderr.lines().map(str::trim);
    let found = match out.code {
        Some(125) => lines().find(|l| l.starts_with("pgrepl-container:")),
        Some(127) => {
            let p = engine.program();
            lines().find(|l| {
                l.ends_with(&format!("{p}: not found"))
                    || l.ends_with(&format!("{p}: command not found"))
            })
        }
        _ => None,
    };
    found.map(String::from)
}

/// What sudo says when it refuses to run a command (sudo 1.9; `-n` turns
/// every password prompt into the first). sudo reports these only as text,
/// as ssh does its failures; a warning it prints while running the command
/// anyway (`unable to resolve host`) is none of them.
const SUDO_REFUSALS: &[&str] = &[
    "a password is required",
    "a terminal is required",
    "is not allowed to execute",
    "is not allowed to run sudo",
    "is not in the sudoers file",
    "unknown user",
    "you do not exist in the passwd database",
    "account validation failure",
    "you must have a tty",
    "no tty present",
    "no valid sudoers sources found",
    "unable to initialize policy plugin",
    "parse error in",
];

/// The line in which sudo refused to run a command: it exits 1 and says
/// why (`sudo: a password is required`, `Sorry, user admin is not allowed
/// to execute ...`), or the shell found no sudo (exit 127).
fn sudo_refusal(out: &RemoteOutput) -> Option<String> {
    let lines = || out.stderr.lines().map(str::trim);
    let found = match out.code {
        Some(1) => lines().find(|l| {
            (l.starts_with("sudo:") || l.starts_with("Sorry, "))
                && SUDO_REFUSALS.iter().any(|r| l.contains(r))
        }),
        Some(127) => lines()
            .find(|l| l.ends_with("sudo: not found") || l.ends_with("sudo: command not found")),
        _ => None,
    };
    found.map(String::from)
}

/// The way in refused to run a command on a node: sudo has no rule for it
/// or is missing, or the container engine cannot reach the container. It
/// repeats until the node's configuration changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRefused {
    pub node: String,
    /// What pgrepl asked for (`pgrepl-gather`, `perl`, `pg_ctl`, ...).
    pub program: String,
    /// What the way in said (`sudo: a password is required`).
    pub said: String,
    /// `[ssh].user` and the sudo user, for the rule to add.
    pub ssh_user: String,
    pub run_as: String,
    /// The engine and container, on a container node.
    pub container: Option<(Engine, String)>,
}

impl AccessRefused {
    pub fn new(node: &config::Node, access: Access<'_>, program: &str, said: String) -> Self {
        AccessRefused {
            node: node.name.clone(),
            program: program.to_string(),
            said,
            ssh_user: node.ssh.user.clone(),
            run_as: match access {
                Access::Sudo(user) => user.to_string(),
                Access::Container { .. } => CONTAINER_USER.to_string(),
                Access::Direct => node.ssh.user.clone(),
            },
            container: access.container().map(|(e, c)| (e, c.to_string())),
        }
    }
}

impl fmt::Display for AccessRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let AccessRefused {
            node,
            program,
            said,
            ssh_user,
            run_as,
            container,
        } = self;
        if let Some((engine, c)) = container {
            let said = said.strip_prefix("pgrepl-container: ").unwrap_or(said);
            if said.contains("No such container") || said.contains("no such container") {
                return write!(
                    f,
                    "{node}: container {c} does not exist ({engine} on {node}); pgrepl does not create containers: create it from the primary's image, with its data directory's parent on a volume (e.g. `{engine} create --name {c} --network host -v VOLUME:/var/lib/postgresql IMAGE`), then plan again"
                );
            }
            if said.ends_with("not found") {
                return write!(
                    f,
                    "{node}: cannot run `{program}` in container {c}: {engine} is not installed for {ssh_user} ({said}); install it on {node} or fix `exec`"
                );
            }
            return write!(
                f,
                "{node}: cannot run `{program}` in container {c} ({said}); check that {ssh_user} may use {engine} on {node} (e.g. is in the group `{engine}`)"
            );
        }
        if said.contains("not found") {
            return write!(
                f,
                "{node}: cannot run `{program}` as {run_as}: sudo is not installed ({said}); install it on {node}, with a rule `{ssh_user} ALL=({run_as}) NOPASSWD: ALL` in /etc/sudoers.d/"
            );
        }
        write!(
            f,
            "{node}: sudo refused to run `{program}` as {run_as} for {ssh_user} ({said}); pgrepl runs sudo with -n and never types a password: add a NOPASSWD rule on {node}, e.g. `{ssh_user} ALL=({run_as}) NOPASSWD: ALL` in a file of /etc/sudoers.d/ (check it with visudo -c)"
        )
    }
}

impl std::error::Error for AccessRefused {}

/// Quotes one argument for a POSIX shell: `'...'` with each `'` as `'\''`.
/// Plain words made only of safe characters are left bare for readability.
fn shell_quote(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if safe {
        return arg.to_string();
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('\'');
    for ch in arg.chars() {
        if ch == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(ch);
        }
    }
    out.push('\'');
    out
}

/// The command line for an argument vector: each argument quoted, joined by spaces.
fn command_line<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|a| shell_quote(a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Runs the quoted line through a real `sh` and returns the argv it saw.
    fn roundtrip(args: &[&str]) -> Vec<String> {
        let line = format!("printf '%s\\0' {}", command_line(args));
        let out = Command::new("sh")
            .arg("-c")
            .arg(&line)
            .output()
            .expect("sh");
        assert!(out.status.success(), "{line}");
        let text = String::from_utf8(out.stdout).expect("utf8");
        text.split('\0')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    /// Arguments made to break any unquoted use.
    const HOSTILE: [&str; 16] = [
        "it's",
        "a b",
        "$(touch /tmp/pgrepl-pwned)",
        "`id`",
        "line1\nline2",
        "\"double\"",
        "back\\slash",
        "semi;colon && rm -rf /nonexistent",
        "*",
        "~",
        "$HOME",
        "'",
        "''",
        "tab\there",
        "ünïcødé",
        "-n",
    ];

    /// A directory with a fake `sudo` first in PATH: it checks that it got
    /// `-n -H -u USER --`, sets HOME to `home` (as `sudo -H` would set the
    /// user's) and runs the rest; and the environment that finds it.
    fn fake_sudo(home: &std::path::Path) -> (tempfile::TempDir, Vec<(String, String)>) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let sudo = dir.path().join("sudo");
        std::fs::write(
            &sudo,
            "#!/bin/sh\n[ \"$1 $2 $3 $4 $5\" = '-n -H -u postgres --' ] || { echo \"sudo: bad arguments: $*\" >&2; exit 1; }\nshift 5\nexport HOME=\"$FAKE_HOME\"\nexec \"$@\"\n",
        )
        .expect("write fake sudo");
        std::fs::set_permissions(&sudo, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let path = format!(
            "{}:{}",
            dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let env = vec![
            ("PATH".to_string(), path),
            ("FAKE_HOME".to_string(), home.display().to_string()),
        ];
        (dir, env)
    }

    /// Runs `argv` through `Access::Sudo("postgres")`'s command line in a
    /// real `sh`, with the fake sudo, from `cwd`, with `stdin`.
    fn through_sudo(
        argv: &[&str],
        home: &std::path::Path,
        cwd: &std::path::Path,
        stdin: &[u8],
    ) -> Vec<u8> {
        use std::io::Write;
        let (_dir, env) = fake_sudo(home);
        let line = Access::Sudo("postgres").command(argv).line;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&line)
            .envs(env)
            .current_dir(cwd)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin)
            .expect("feed stdin");
        let out = child.wait_with_output().expect("sh");
        assert!(
            out.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    #[test]
    fn sudo_access_runs_every_command_through_sudo_n_as_the_user() {
        let cmd = Access::Sudo("postgres").command(&["pg_ctl", "status", "-D", "/data dir"]);
        assert!(
            cmd.line.starts_with("sudo -n -H -u postgres -- sh -c "),
            "{}",
            cmd.line
        );
        assert!(
            cmd.line
                .ends_with(" pgrepl-sudo pg_ctl status -D '/data dir'"),
            "{}",
            cmd.line
        );
        assert_eq!(cmd.program, "pg_ctl");
    }

    #[test]
    fn hostile_arguments_reach_the_program_through_sudo_intact() {
        let home = tempfile::tempdir().expect("home");
        let mut argv = vec!["printf", "%s\\0"];
        argv.extend(HOSTILE);
        let out = through_sudo(&argv, home.path(), home.path(), b"");
        let text = String::from_utf8(out).expect("utf8");
        let seen: Vec<&str> = text.split('\0').filter(|s| !s.is_empty()).collect();
        assert_eq!(seen, HOSTILE);
        assert!(!std::path::Path::new("/tmp/pgrepl-pwned").exists());
    }

    #[test]
    fn a_command_through_sudo_starts_in_the_users_home_with_stdin_passed_through() {
        let home = tempfile::tempdir().expect("home");
        let admin = tempfile::tempdir().expect("the administrator's cwd");
        let out = through_sudo(
            &["sh", "-c", "pwd; cat"],
            home.path(),
            admin.path(),
            b"secret\n",
        );
        let want = format!(
            "{}\nsecret\n",
            home.path().canonicalize().expect("home").display()
        );
        assert_eq!(String::from_utf8_lossy(&out), want);
        // A user without a home starts in `/`.
        let gone = admin.path().join("no such home");
        let out = through_sudo(&["pwd"], &gone, admin.path(), b"");
        assert_eq!(String::from_utf8_lossy(&out), "/\n");
    }

    /// A fake `docker` first in PATH: `container inspect` answers from
    /// $FAKE_STATE (`running`, `stopped`, or anything else: no such
    /// container); `exec` and `run` print their own arguments, NUL-separated,
    /// then the stdin they got, so a test sees exactly what would run.
    fn through_container(
        argv: &[&str],
        state: &str,
        stdin: &[u8],
    ) -> (Option<i32>, String, String) {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let docker = dir.path().join("docker");
        std::fs::write(
            &docker,
            r#"#!/bin/sh
case $1 in
container)
  [ "$2 $3 $5" = "inspect -f --" ] || { echo "bad inspect: $*" >&2; exit 9; }
  case $FAKE_STATE in
    running) echo "true sha256:abc" ;;
    stopped) echo "false sha256:abc" ;;
    *) echo "[]"; echo "Error: No such container: $6" >&2; exit 1 ;;
  esac ;;
exec|run) printf '%s\0' "$@"; printf 'stdin:'; cat ;;
*) echo "unexpected: $*" >&2; exit 9 ;;
esac
"#,
        )
        .expect("write fake docker");
        std::fs::set_permissions(&docker, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let path = format!(
            "{}:{}",
            dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let access = Access::Container {
            engine: Engine::Docker,
            name: "pg-node1",
        };
        let line = access.command(argv).line;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&line)
            .env("PATH", path)
            .env("FAKE_STATE", state)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin)
            .expect("feed stdin");
        let out = child.wait_with_output().expect("sh");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn args_of(stdout: &str) -> (Vec<&str>, &str) {
        let (args, stdin) = stdout.rsplit_once("stdin:").expect("stdin marker");
        (args.split('\0').filter(|a| !a.is_empty()).collect(), stdin)
    }

    #[test]
    fn a_running_container_runs_the_command_by_exec_as_postgres() {
        let (code, out, err) = through_container(
            &["pg_ctl", "status", "-D", "/data dir"],
            "running",
            b"secret\n",
        );
        assert_eq!(code, Some(0), "{err}");
        let (args, stdin) = args_of(&out);
        assert_eq!(
            args,
            [
                "exec",
                "-i",
                "-u",
                "postgres",
                "--",
                "pg-node1",
                "pg_ctl",
                "status",
                "-D",
                "/data dir"
            ]
        );
        assert_eq!(stdin, "secret\n", "stdin passes through, never argv");
    }

    #[test]
    fn a_stopped_container_runs_the_command_in_a_one_off_on_its_volumes() {
        let (code, out, err) = through_container(&["pg_rewind", "-D", "/d"], "stopped", b"");
        assert_eq!(code, Some(0), "{err}");
        let (args, _) = args_of(&out);
        assert_eq!(
            args,
            [
                "run",
                "--rm",
                "-i",
                "--pull",
                "never",
                "--network",
                "host",
                "-u",
                "postgres",
                "--volumes-from",
                "pg-node1",
                "--label",
                "pgrepl.offline-for=pg-node1",
                "-e",
                "PGREPL_OFFLINE=1",
                "--entrypoint",
                "pg_rewind",
                "--",
                "sha256:abc",
                "-D",
                "/d"
            ]
        );
    }

    #[test]
    fn hostile_arguments_reach_the_container_intact() {
        let mut argv = vec!["printf"];
        argv.extend(HOSTILE);
        for state in ["running", "stopped"] {
            let (code, out, err) = through_container(&argv, state, b"");
            assert_eq!(code, Some(0), "{err}");
            let (args, _) = args_of(&out);
            assert!(args.ends_with(&HOSTILE[..]), "{state}: {args:?}");
        }
        assert!(!std::path::Path::new("/tmp/pgrepl-pwned").exists());
    }

    #[test]
    fn a_missing_container_is_a_refusal_naming_it() {
        let access = Access::Container {
            engine: Engine::Docker,
            name: "pg-node1",
        };
        let (code, out, err) = through_container(&["true"], "absent", b"");
        assert_eq!(code, Some(125), "{out}{err}");
        let said = access
            .refusal(&RemoteOutput {
                code,
                stdout: out,
                stderr: err,
            })
            .expect("a refusal");
        let e = AccessRefused {
            node: "db2".into(),
            program: "pgrepl-gather".into(),
            said,
            ssh_user: "admin".into(),
            run_as: "postgres".into(),
            container: Some((Engine::Docker, "pg-node1".into())),
        };
        let text = e.to_string();
        for needle in [
            "db2",
            "container pg-node1 does not exist",
            "pgrepl does not create containers",
            "docker create --name pg-node1",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
        // The command's own failures are not the engine refusing.
        assert_eq!(
            access.refusal(&output(1, "pg_ctl: no server running")),
            None
        );
        assert_eq!(
            access.refusal(&output(125, "docker: Error response from daemon")),
            None
        );
        assert!(
            access
                .refusal(&output(127, "sh: 1: docker: not found"))
                .is_some()
        );
    }

    fn output(code: i32, stderr: &str) -> RemoteOutput {
        RemoteOutput {
            code: Some(code),
            stdout: String::new(),
            stderr: stderr.into(),
        }
    }

    #[test]
    fn sudo_refusing_is_told_from_the_commands_own_failure() {
        let sudo = Access::Sudo("postgres");
        let refused = [
            (1, "sudo: a password is required\n"),
            (
                1,
                "sudo: unable to resolve host node2: Name or service not known\nsudo: a password is required\n",
            ),
            (
                1,
                "Sorry, user pgadmin is not allowed to execute '/bin/sh -c ...' as postgres on node2.\n",
            ),
            (
                1,
                "sudo: unknown user nobody2\nsudo: error initializing audit plugin sudoers_audit\n",
            ),
            (127, "sh: 1: sudo: not found\n"),
            (127, "bash: line 1: sudo: command not found\n"),
        ];
        for (code, stderr) in refused {
            assert!(sudo.refusal(&output(code, stderr)).is_some(), "{stderr}");
        }
        let own = [
            (1, "pg_ctl: no server running\n"),
            (
                1,
                "sudo: unable to resolve host node2: Name or service not known\npg_ctl: no server running\n",
            ),
            (3, "sudo: a password is required\n"),
            (127, "sh: 1: pg_rewind: not found\n"),
            (0, ""),
        ];
        for (code, stderr) in own {
            assert_eq!(sudo.refusal(&output(code, stderr)), None, "{stderr}");
        }
        assert_eq!(
            Access::Direct.refusal(&output(1, "sudo: a password is required")),
            None
        );
    }

    #[test]
    fn a_refusal_says_which_node_command_and_rule() {
        let e = AccessRefused {
            node: "db2".into(),
            program: "perl".into(),
            said: "sudo: a password is required".into(),
            ssh_user: "admin".into(),
            run_as: "postgres".into(),
            container: None,
        };
        let text = e.to_string();
        for needle in [
            "db2",
            "`perl`",
            "a password is required",
            "NOPASSWD",
            "admin ALL=(postgres) NOPASSWD: ALL",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
    }

    #[test]
    fn plain_words_stay_bare() {
        assert_eq!(shell_quote("pg_ctl"), "pg_ctl");
        assert_eq!(
            shell_quote("/var/lib/postgresql/15/main"),
            "/var/lib/postgresql/15/main"
        );
        assert_eq!(shell_quote("-D"), "-D");
    }

    #[test]
    fn empty_argument_is_kept() {
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn hostile_arguments_reach_the_program_intact() {
        let hostile = HOSTILE;
        assert_eq!(roundtrip(&hostile), hostile);
        assert!(!std::path::Path::new("/tmp/pgrepl-pwned").exists());
    }

    #[test]
    fn command_line_joins_with_spaces() {
        assert_eq!(command_line(&["ls", "-l", "a b"]), "ls -l 'a b'");
    }

    #[test]
    fn direct_access_runs_the_command_as_it_is() {
        let cmd = Access::Direct.command(&["pg_ctl", "status", "-D", "/data dir"]);
        assert_eq!(cmd.line, "pg_ctl status -D '/data dir'");
        assert_eq!(cmd.program, "pg_ctl");
    }

    #[test]
    fn a_script_is_named_by_its_name_not_by_sh() {
        let argv = super::super::scripts::STATUS.argv(&["/bin", "/data"]);
        assert_eq!(Access::Direct.command(&argv).program, "pgrepl-status");
        assert_eq!(
            Access::Sudo("postgres").command(&argv).program,
            "pgrepl-status"
        );
        assert_eq!(Access::Direct.command(&["sh", "-c"]).program, "sh");
    }
}
