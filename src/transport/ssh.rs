//! One multiplexed OpenSSH master connection per node; remote commands as
//! command lines made by `node::remote`; SQL through a forwarded Unix socket
//! (peer authentication as the SSH user, no database port, no admin
//! password), or over the stdio of a bridge command run as the user that
//! runs PostgreSQL (a node reached with sudo).

use std::fmt;
use std::num::NonZeroUsize;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use openssh::{
    ControlPersist, ForwardType, KnownHosts as SshKnownHosts, Session, SessionBuilder, Socket,
};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::time::{timeout, timeout_at};

use crate::config::{KnownHosts, Node};
pub use crate::observed::Unreachable;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectError {
    pub kind: Unreachable,
    /// What ssh said, first line, for the operator.
    pub detail: String,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, next) = match self.kind {
            Unreachable::Dns => (
                "host name does not resolve",
                "check `host` in the cluster file and DNS",
            ),
            Unreachable::Refused => (
                "connection refused",
                "is sshd running and listening on the configured port?",
            ),
            Unreachable::NoRoute => ("no route to host", "check the network path to the node"),
            Unreachable::Timeout => (
                "connection timed out",
                "the node or its network is down; check it, or raise `ssh.connect_timeout`",
            ),
            Unreachable::Auth => (
                "SSH authentication failed",
                "install the operator's public key for the node's `ssh.user` (key-only, BatchMode)",
            ),
            Unreachable::HostKey => (
                "host key verification failed",
                "add the node's host key to known_hosts (ssh-keyscan, then verify it), or use known_hosts = \"accept-new\" for a first contact",
            ),
            Unreachable::Other => (
                "SSH connection failed",
                "run `ssh -v` to the node to see why",
            ),
        };
        write!(f, "{what} ({}); {next}", self.detail)
    }
}

impl std::error::Error for ConnectError {}

/// Classifies ssh's own words. ssh reports failures only as text.
pub fn classify_ssh_error(text: &str) -> Unreachable {
    let t = text.to_ascii_lowercase();
    if t.contains("could not resolve") || t.contains("name or service not known") {
        Unreachable::Dns
    } else if t.contains("connection refused") {
        Unreachable::Refused
    } else if t.contains("no route to host") || t.contains("network is unreachable") {
        Unreachable::NoRoute
    } else if t.contains("timed out") || t.contains("timeout") {
        Unreachable::Timeout
    } else if t.contains("host key verification failed")
        || t.contains("remote host identification has changed")
        || t.contains("no matching host key")
    {
        Unreachable::HostKey
    } else if t.contains("permission denied") || t.contains("too many authentication failures") {
        Unreachable::Auth
    } else {
        Unreachable::Other
    }
}

/// The output of a remote command. A non-zero exit is data, not an error.
#[derive(Debug, Clone)]
pub struct RemoteOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl RemoteOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// How the command ended, for error messages: `exit 1`, or `killed by a
    /// signal` (no exit code).
    pub fn exit(&self) -> String {
        match self.code {
            Some(c) => format!("exit {c}"),
            None => "killed by a signal".into(),
        }
    }
}

/// A live SSH connection to one node.
pub struct NodeSession {
    pub node: String,
    session: MasterRef,
    user: String,
    command_timeout: Duration,
    connect_timeout: Duration,
    /// Holds the local end of the forwarded PostgreSQL socket.
    pg_dir: tokio::sync::OnceCell<tempfile::TempDir>,
}

/// One node's master connection. Letting go of it never waits on the
/// master: a master whose link went silent can stop answering its control
/// socket as well (blocked flushing to the dead peer).
struct Master {
    session: Option<Session>,
    /// The master outlives this run (detached, not closed).
    persisted: bool,
}

impl Drop for Master {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        if self.persisted {
            let _ = session.detach();
        } else {
            // openssh's drop asks the master to exit over a blocking socket,
            // with no bound: off this thread, and nobody joins it.
            let _ = std::thread::Builder::new()
                .name("pgrepl-ssh-close".into())
                .spawn(move || drop(session));
        }
    }
}

/// The handle commands and lock holders share; the last one dropped lets the
/// master go (see `Master`).
#[derive(Clone)]
struct MasterRef(Arc<Master>);

impl Deref for MasterRef {
    type Target = Session;
    fn deref(&self) -> &Session {
        // Taken only by `Master::drop` and by `close`, which owns the last handle.
        self.0
            .session
            .as_ref()
            .expect("master session present while shared")
    }
}

/// What a reused master's probe found.
enum Reused {
    Alive(NodeSession),
    /// The established path carried nothing: the node is unreachable now.
    Silent(ConnectError),
    /// Gone or refusing: a fresh connection may still work.
    Dead,
}

/// The line a master writes to its log (`ssh -E`) when its keepalives
/// (ServerAliveInterval) went unanswered and it gave up on the server.
fn master_gave_up(ctl: &Path) -> Option<String> {
    let log = std::fs::read_to_string(ctl.parent()?.join("log")).ok()?;
    log.lines()
        .rev()
        .find(|l| l.contains("not responding"))
        .map(|l| l.trim().to_string())
}

/// How long closing a session may wait for its master's answer; a healthy
/// master answers in milliseconds.
const CLOSE_WAIT: Duration = Duration::from_millis(500);

/// Idle seconds after which a master left for the next run exits.
pub const PERSIST_S: usize = 60;

fn persist_enabled() -> bool {
    std::env::var("PGREPL_SSH_PERSIST").map_or(true, |v| v != "0")
}

/// `$XDG_RUNTIME_DIR/pgrepl-ssh` or `/tmp/pgrepl-ssh-<uid>`: owned by this
/// user, mode 0700, or no reuse at all.
fn control_dir() -> Option<PathBuf> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(d) if d.is_dir() => d.join("pgrepl-ssh"),
        _ => PathBuf::from(format!("/tmp/pgrepl-ssh-{uid}")),
    };
    if !dir.exists() {
        std::fs::create_dir(&dir).ok()?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).ok()?;
    }
    let meta = std::fs::symlink_metadata(&dir).ok()?;
    (meta.is_dir() && meta.uid() == uid && meta.mode() & 0o077 == 0).then_some(dir)
}

/// One master per (user, host, port, key, known_hosts): a different file
/// never reuses a connection made under other settings.
fn master_key(node: &Node) -> String {
    let s = &node.ssh;
    crate::digest::digest(&format!(
        "{}@{}:{}|{:?}|{:?}|{:?}",
        s.user, node.host, s.port, s.identity_file, s.known_hosts_file, s.known_hosts
    ))
}

/// Directories of masters that have exited (no socket left), older than
/// ten minutes so that a master being started now is never touched.
fn remove_dead_masters(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let is_master_dir = e
            .file_name()
            .to_string_lossy()
            .starts_with(".ssh-connection");
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(600));
        if is_master_dir && old && !path.join("master").exists() {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// How long one remote command may take before the node is reported hung.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

impl NodeSession {
    /// Opens the node's master connection, bounded by `ssh.connect_timeout`.
    ///
    /// Masters outlive a run by `PERSIST_S` seconds of idleness (OpenSSH
    /// ControlPersist, in a private directory), so the next run skips the
    /// SSH handshake, which dominates a drift check. A reused master is
    /// probed first; `PGREPL_SSH_PERSIST=0` turns reuse off.
    ///
    /// One budget for the whole attempt: the probe of a reused master and a
    /// fresh connection after it share `connect_timeout`, and a reused master
    /// that went silent is the attempt (no fresh dial after it), so an
    /// unreachable node costs at most one `connect_timeout`.
    pub async fn connect(node: &Node) -> Result<NodeSession, ConnectError> {
        let ssh = &node.ssh;
        let deadline = Instant::now() + ssh.connect_timeout;
        let persist_dir = if persist_enabled() {
            control_dir()
        } else {
            None
        };
        let link = persist_dir
            .as_ref()
            .map(|d| d.join(format!("{}.ctl", master_key(node))));
        if let Some(link) = &link
            && let Ok(ctl) = std::fs::read_link(link)
        {
            match NodeSession::probe_reused(node, ctl, deadline).await {
                Reused::Alive(session) => return Ok(session),
                Reused::Silent(e) => {
                    let _ = std::fs::remove_file(link);
                    return Err(e);
                }
                Reused::Dead => {
                    let _ = std::fs::remove_file(link);
                }
            }
        }
        if let Some(dir) = &persist_dir {
            remove_dead_masters(dir);
        }
        let mut session = dial(node, persist_dir.as_deref(), deadline).await;
        // A connection reset while it was being opened (a node whose
        // network just came back, an sshd at its MaxStartups) is worth a
        // second dial within the same budget; anything else is the answer.
        if let Err(e) = &session
            && transient_dial_failure(&e.detail)
            && deadline.saturating_duration_since(Instant::now()) >= Duration::from_secs(1)
        {
            tokio::time::sleep(Duration::from_millis(300)).await;
            session = dial(node, persist_dir.as_deref(), deadline).await;
        }
        let session = session?;
        if let Some(link) = &link {
            let _ = std::fs::remove_file(link);
            let _ = std::os::unix::fs::symlink(session.control_socket(), link);
        }
        Ok(NodeSession::wrap(node, session, link.is_some()))
    }

    /// Probes a master left by an earlier run with `true`, until `deadline`.
    async fn probe_reused(node: &Node, ctl: PathBuf, deadline: Instant) -> Reused {
        let budget = node.ssh.connect_timeout;
        let session = Session::resume_mux(ctl.clone().into_boxed_path(), None);
        // The control socket is local: a live master answers at once.
        let check_until = deadline.min(Instant::now() + Duration::from_secs(1));
        let alive = matches!(
            timeout_at(check_until.into(), session.check()).await,
            Ok(Ok(()))
        );
        let candidate = NodeSession::wrap(node, session, true);
        if !alive {
            candidate.stop_master().await;
            return Reused::Dead;
        }
        // Null stdio: a native-mux command hands its file descriptors to the
        // master, which would keep the caller's pipes open.
        let probe = async {
            candidate
                .session
                .raw_command("true")
                .stdin(openssh::Stdio::null())
                .stdout(openssh::Stdio::null())
                .stderr(openssh::Stdio::null())
                .status()
                .await
        };
        match timeout_at(deadline.into(), probe).await {
            Ok(Ok(status)) if status.success() => Reused::Alive(candidate),
            // The established path no longer carries anything: the node is
            // unreachable now, whatever a fresh connect would wait to learn.
            // The master is left to end by itself (ServerAlive gives up
            // within 8 s); asking it could wait on it.
            Err(_) => Reused::Silent(ConnectError {
                kind: Unreachable::Timeout,
                detail: format!("no answer within {}", humantime(budget)),
            }),
            // It died under the probe because its keepalives went unanswered:
            // the same silence, found out sooner. A fresh dial would only
            // wait out the rest of the budget.
            Ok(_) if let Some(line) = master_gave_up(&ctl) => Reused::Silent(ConnectError {
                kind: Unreachable::Timeout,
                detail: format!("its open SSH connection stopped answering; ssh: {line}"),
            }),
            Ok(_) => {
                candidate.stop_master().await;
                Reused::Dead
            }
        }
    }

    fn wrap(node: &Node, session: Session, persisted: bool) -> NodeSession {
        NodeSession {
            node: node.name.clone(),
            session: MasterRef(Arc::new(Master {
                session: Some(session),
                persisted,
            })),
            user: node.ssh.user.clone(),
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            connect_timeout: node.ssh.connect_timeout,
            pg_dir: tokio::sync::OnceCell::new(),
        }
    }

    /// Asks a master to exit (it finishes what it carries first), waiting
    /// at most `CLOSE_WAIT` for its answer.
    async fn stop_master(self) {
        if let Ok(mut master) = Arc::try_unwrap(self.session.0)
            && let Some(session) = master.session.take()
        {
            let _ = timeout(CLOSE_WAIT, session.close()).await;
        }
    }

    /// How long one remote command may take, unless its caller says otherwise.
    pub fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    /// Runs `command` on the node, with `stdin` fed to it (secrets travel
    /// this way, never in the command line), and hands each line of its
    /// stderr (split at `\r` or `\n`, as progress meters print) to
    /// `on_line` as it arrives. A non-zero exit is data, not an error.
    pub async fn run(
        &self,
        command: &RemoteCommand,
        stdin: Option<&[u8]>,
        limit: Duration,
        mut on_line: impl FnMut(&str),
    ) -> anyhow::Result<RemoteOutput> {
        use tokio::io::AsyncReadExt;
        let program = &command.program;
        let fut = async {
            let mut cmd = self.session.raw_command(&command.line);
            cmd.stdin(if stdin.is_some() {
                openssh::Stdio::piped()
            } else {
                openssh::Stdio::null()
            })
            .stdout(openssh::Stdio::piped())
            .stderr(openssh::Stdio::piped());
            let mut child = cmd.spawn().await?;
            if let (Some(input), Some(mut pipe)) = (stdin, child.stdin().take()) {
                pipe.write_all(input)
                    .await
                    .map_err(openssh::Error::ChildIo)?;
                pipe.shutdown().await.map_err(openssh::Error::ChildIo)?;
            }
            let mut stdout = child.stdout().take();
            let mut stderr = child.stderr().take();
            let mut out_buf = Vec::new();
            let mut err_all = Vec::new();
            let read_out = async {
                if let Some(o) = stdout.as_mut() {
                    let _ = o.read_to_end(&mut out_buf).await;
                }
            };
            let read_err = async {
                if let Some(e) = stderr.as_mut() {
                    let mut chunk = [0u8; 4096];
                    let mut pending = Vec::new();
                    while let Ok(n) = e.read(&mut chunk).await {
                        if n == 0 {
                            break;
                        }
                        err_all.extend_from_slice(&chunk[..n]);
                        pending.extend_from_slice(&chunk[..n]);
                        while let Some(pos) =
                            pending.iter().position(|b| *b == b'\n' || *b == b'\r')
                        {
                            let l: Vec<u8> = pending.drain(..=pos).collect();
                            let text = String::from_utf8_lossy(&l[..l.len() - 1]).into_owned();
                            if !text.trim().is_empty() {
                                on_line(&text);
                            }
                        }
                    }
                }
            };
            tokio::join!(read_out, read_err);
            let status = child.wait().await?;
            Ok::<_, openssh::Error>((status, out_buf, err_all))
        };
        let (status, out, err) = timeout(limit, fut)
            .await
            .map_err(|elapsed| {
                // The timeout stays in the chain: a rerun may pass (apply::failure).
                anyhow::Error::new(elapsed).context(format!(
                    "{}: `{program}` did not finish within {}",
                    self.node,
                    humantime(limit)
                ))
            })?
            .with_context(|| format!("{}: running `{program}` over SSH failed", self.node))?;
        Ok(RemoteOutput {
            code: status.code(),
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
        })
    }

    /// Forwards a fresh local socket directory to the node's `socket_dir`
    /// (once per session: every connection after the first reuses it).
    async fn forward_pg_socket(
        &self,
        port: u16,
        socket_dir: &str,
    ) -> anyhow::Result<tempfile::TempDir> {
        let dir = local_socket_dir()
            .with_context(|| format!("{}: cannot create a local socket directory", self.node))?;
        let local: PathBuf = dir.path().join(format!(".s.PGSQL.{port}"));
        let remote: PathBuf = PathBuf::from(format!("{socket_dir}/.s.PGSQL.{port}"));
        timeout(
            self.connect_timeout + Duration::from_secs(2),
            self.session.request_port_forward(
                ForwardType::Local,
                Socket::UnixSocket { path: local.into() },
                Socket::UnixSocket {
                    path: remote.into(),
                },
            ),
        )
        .await
        .map_err(|_| anyhow!("{}: forwarding the PostgreSQL socket timed out", self.node))?
        .with_context(|| {
            format!(
                "{}: cannot forward the PostgreSQL socket over SSH",
                self.node
            )
        })?;
        Ok(dir)
    }

    /// Opens a PostgreSQL connection through a forwarded Unix socket to the
    /// node's `socket_dir`; PostgreSQL sees a local peer connection by the SSH user.
    pub async fn pg_client(
        &self,
        port: u16,
        socket_dir: &str,
    ) -> anyhow::Result<tokio_postgres::Client> {
        let dir = self
            .pg_dir
            .get_or_try_init(|| self.forward_pg_socket(port, socket_dir))
            .await?
            .path()
            .to_path_buf();
        let mut cfg = tokio_postgres::Config::new();
        cfg.host_path(&dir)
            .port(port)
            .user(&self.user)
            .dbname("postgres")
            .application_name("pgrepl")
            .connect_timeout(self.connect_timeout);
        let (client, connection) = timeout(self.connect_timeout + Duration::from_secs(1), cfg.connect(tokio_postgres::NoTls))
            .await
            .map_err(|_| anyhow!("{}: connecting to PostgreSQL timed out", self.node))?
            .with_context(|| {
                format!(
                    "{}: cannot connect to PostgreSQL through {socket_dir}/.s.PGSQL.{port} as `{}` (peer authentication)",
                    self.node, self.user
                )
            })?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Opens a connection to a pgBouncer admin console (database
    /// `pgbouncer`) through the forwarded socket `socket_dir/.s.PGSQL.PORT`,
    /// as `user`. The console speaks the simple-query protocol only.
    pub async fn admin_client(
        &self,
        port: u16,
        socket_dir: &str,
        user: &str,
    ) -> anyhow::Result<tokio_postgres::Client> {
        let dir = self
            .pg_dir
            .get_or_try_init(|| self.forward_pg_socket(port, socket_dir))
            .await?
            .path()
            .to_path_buf();
        let mut cfg = tokio_postgres::Config::new();
        cfg.host_path(&dir)
            .port(port)
            .user(user)
            .dbname("pgbouncer")
            .connect_timeout(self.connect_timeout);
        let (client, connection) = timeout(
            self.connect_timeout + Duration::from_secs(1),
            cfg.connect(tokio_postgres::NoTls),
        )
        .await
        .map_err(|_| anyhow!("{}: connecting to the pgBouncer console timed out", self.node))?
        .with_context(|| {
            format!(
                "{}: cannot connect to the pgBouncer console through {socket_dir}/.s.PGSQL.{port} as `{user}`",
                self.node
            )
        })?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Opens a PostgreSQL connection over the stdin and stdout of `bridge`,
    /// a command on the node that relays them to the server's socket
    /// `socket` (`node::sql` makes it, run as the user that runs
    /// PostgreSQL): peer authentication sees that user, `user`, here
    /// asking for `dbname` (`postgres`, or a pgBouncer's `pgbouncer`). Bounded
    /// like `pg_client`. On failure, the bridge's exit and stderr come
    /// along, so that the caller can tell its way in refusing (sudo
    /// without a rule) from the server.
    pub async fn pg_client_over(
        &self,
        bridge: &RemoteCommand,
        user: &str,
        dbname: &str,
        socket: &str,
        slack: Duration,
    ) -> Result<tokio_postgres::Client, BridgeFailure> {
        let limit = self.connect_timeout + Duration::from_secs(1) + slack;
        let what = || {
            format!(
                "{}: cannot connect to PostgreSQL through {socket} as `{user}` (peer authentication, over the stdio of `{}` on the node)",
                self.node, bridge.program
            )
        };
        match timeout(limit, self.connect_over(bridge, user, dbname)).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(mut failure)) => {
                let said = failure
                    .output
                    .as_ref()
                    .map(|o| first_line(&o.stderr))
                    .filter(|l| !l.is_empty());
                failure.error = match said {
                    Some(line) => failure.error.context(format!("{}: {line}", what())),
                    None => failure.error.context(what()),
                };
                Err(failure)
            }
            Err(elapsed) => Err(BridgeFailure {
                output: None,
                error: anyhow::Error::new(elapsed)
                    .context(format!("{}: connecting to PostgreSQL timed out", self.node)),
            }),
        }
    }

    async fn connect_over(
        &self,
        bridge: &RemoteCommand,
        user: &str,
        dbname: &str,
    ) -> Result<tokio_postgres::Client, BridgeFailure> {
        let failed = |e: anyhow::Error| BridgeFailure {
            output: None,
            error: e,
        };
        let mut cmd = Session::to_raw_command(self.session.clone(), bridge.line.clone());
        cmd.stdin(openssh::Stdio::piped())
            .stdout(openssh::Stdio::piped())
            .stderr(openssh::Stdio::piped());
        let mut child = cmd.spawn().await.map_err(|e| {
            failed(
                anyhow::Error::new(e)
                    .context(format!("{}: cannot start `{}`", self.node, bridge.program)),
            )
        })?;
        let (Some(stdin), Some(stdout), stderr) = (
            child.stdin().take(),
            child.stdout().take(),
            child.stderr().take(),
        ) else {
            return Err(failed(anyhow!("{}: the bridge has no stdio", self.node)));
        };
        let mut cfg = tokio_postgres::Config::new();
        cfg.user(user).dbname(dbname).application_name("pgrepl");
        match cfg
            .connect_raw(StdioStream { stdin, stdout }, tokio_postgres::NoTls)
            .await
        {
            Ok((client, connection)) => {
                // The bridge lives as long as the connection: when the
                // client is dropped, the connection ends, its stdin closes
                // and the bridge exits; the child is reaped here.
                tokio::spawn(async move {
                    let _ = connection.await;
                    drop(stderr);
                    let _ = timeout(Duration::from_secs(5), child.wait()).await;
                });
                Ok(client)
            }
            Err(e) => Err(BridgeFailure {
                // The stream is gone with the failed attempt: the bridge
                // sees its stdin close and ends, with what it said.
                output: bridge_output(child, stderr).await,
                error: anyhow::Error::new(e),
            }),
        }
    }

    /// Starts `command` with its stdin, stdout and stderr piped, for a
    /// caller that talks with it while it runs (the cluster lock's holder).
    /// The child keeps this node's master connection alive.
    pub async fn spawn(&self, command: &RemoteCommand) -> anyhow::Result<RemoteChild> {
        let mut cmd = Session::to_raw_command(self.session.clone(), command.line.clone());
        cmd.stdin(openssh::Stdio::piped())
            .stdout(openssh::Stdio::piped())
            .stderr(openssh::Stdio::piped());
        let child = cmd
            .spawn()
            .await
            .with_context(|| format!("{}: cannot start `{}`", self.node, command.program))?;
        Ok(RemoteChild(child))
    }

    /// Ends this run's use of the node: a persisted master is left running
    /// for the next run (it exits after `PERSIST_S` idle seconds), any other
    /// is closed, waiting at most `CLOSE_WAIT` for it. While a lock holder
    /// still shares the master, the last of them lets it go (see `Master`).
    pub async fn close(self) {
        let Ok(mut master) = Arc::try_unwrap(self.session.0) else {
            return;
        };
        let Some(session) = master.session.take() else {
            return;
        };
        if master.persisted {
            let _ = session.detach();
        } else {
            let _ = timeout(CLOSE_WAIT, session.close()).await;
        }
    }
}

/// A command line for the node's login shell, and the program it runs (for
/// messages). Made by `node::remote`, the one place an argument vector
/// becomes a command line; this module sends it as it is.
#[derive(Debug, Clone)]
pub struct RemoteCommand {
    pub line: String,
    pub program: String,
}

/// A bridged connection that failed (`NodeSession::pg_client_over`): the
/// error, and the bridge's exit and stderr when it ended within a second.
#[derive(Debug)]
pub struct BridgeFailure {
    pub output: Option<RemoteOutput>,
    pub error: anyhow::Error,
}

/// How the bridge ended and what it printed on stderr, waiting at most a
/// second for it.
async fn bridge_output(
    child: openssh::Child<MasterRef>,
    stderr: Option<openssh::ChildStderr>,
) -> Option<RemoteOutput> {
    use tokio::io::AsyncReadExt;
    let collect = async {
        let mut err = Vec::new();
        if let Some(mut e) = stderr {
            let _ = e.read_to_end(&mut err).await;
        }
        let status = child.wait().await.ok()?;
        Some(RemoteOutput {
            code: status.code(),
            stdout: String::new(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
        })
    };
    timeout(Duration::from_secs(1), collect)
        .await
        .ok()
        .flatten()
}

/// A remote command's stdin and stdout as one byte stream, for a protocol
/// spoken over them (tokio-postgres' `connect_raw`).
struct StdioStream {
    stdin: openssh::ChildStdin,
    stdout: openssh::ChildStdout,
}

impl tokio::io::AsyncRead for StdioStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stdout).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for StdioStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stdin).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stdin).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stdin).poll_shutdown(cx)
    }
}

/// A running remote command with piped stdio (see `NodeSession::spawn`).
pub struct RemoteChild(openssh::Child<MasterRef>);

/// The write end of a remote command's stdin.
pub type RemoteStdin = openssh::ChildStdin;
/// The read end of a remote command's stdout.
pub type RemoteStdout = openssh::ChildStdout;

impl RemoteChild {
    pub fn take_stdin(&mut self) -> Option<RemoteStdin> {
        self.0.stdin().take()
    }

    pub fn take_stdout(&mut self) -> Option<RemoteStdout> {
        self.0.stdout().take()
    }

    /// Waits for the command to end; its exit code (`None`: killed by a signal).
    pub async fn wait(self) -> anyhow::Result<Option<i32>> {
        Ok(self.0.wait().await?.code())
    }

    /// Waits for the command to end and collects what it has not printed yet.
    pub async fn wait_with_output(self) -> anyhow::Result<RemoteOutput> {
        let out = self.0.wait_with_output().await?;
        Ok(RemoteOutput {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// A fresh local directory for a forwarded PostgreSQL socket, mode 0700
/// from its creation: another local user must not connect through it as
/// the SSH user.
fn local_socket_dir() -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix("pgrepl-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(short_tmp())
}

/// Unix socket paths are limited to 108 bytes: keep the directory short.
fn short_tmp() -> PathBuf {
    let t = std::env::temp_dir();
    if t.as_os_str().len() > 40 {
        PathBuf::from("/tmp")
    } else {
        t
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        text.push_str(": ");
        text.push_str(&s.to_string());
        cur = s.source();
    }
    text
}

fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}

/// One ssh dial to `node` within what is left of `deadline`.
async fn dial(
    node: &Node,
    persist_dir: Option<&Path>,
    deadline: Instant,
) -> Result<Session, ConnectError> {
    let ssh = &node.ssh;
    // What is left of the budget. ssh takes whole seconds: the nearest,
    // at least one.
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ConnectError {
            kind: Unreachable::Timeout,
            detail: format!("no answer within {}", humantime(ssh.connect_timeout)),
        });
    }
    let rounded = left.as_secs() + u64::from(left.subsec_millis() >= 500);
    let ssh_timeout = Duration::from_secs(rounded.max(1));
    let mut b = SessionBuilder::default();
    b.user(ssh.user.clone())
        .port(ssh.port)
        .connect_timeout(ssh_timeout)
        .server_alive_interval(Duration::from_secs(2))
        .control_directory(persist_dir.map_or_else(std::env::temp_dir, Path::to_path_buf))
        // A master outlives the run by PERSIST_S seconds of idleness, and
        // one left behind by a killed pgrepl exits on its own.
        .control_persist(ControlPersist::IdleFor(
            NonZeroUsize::new(PERSIST_S).expect("nonzero"),
        ))
        .known_hosts_check(match ssh.known_hosts {
            KnownHosts::Strict => SshKnownHosts::Strict,
            KnownHosts::AcceptNew => SshKnownHosts::Add,
        });
    if let Some(key) = &ssh.identity_file {
        b.keyfile(key);
    }
    if let Some(kh) = &ssh.known_hosts_file {
        b.user_known_hosts_file(kh);
    }
    // ssh's ConnectTimeout covers the TCP connect and the banner; the
    // overall bound covers a peer that accepts and then stalls during the
    // handshake.
    let bound = left.max(ssh_timeout) + Duration::from_secs(2);
    match timeout(bound, b.connect_mux(&node.host)).await {
        Err(_) => Err(ConnectError {
            kind: Unreachable::Timeout,
            detail: format!("no answer within {}", humantime(bound)),
        }),
        Ok(Err(e)) => {
            let text = error_chain(&e);
            Err(ConnectError {
                kind: classify_ssh_error(&text),
                detail: first_line(&text),
            })
        }
        Ok(Ok(s)) => Ok(s),
    }
}

/// A dial that failed because the peer reset or closed the connection while
/// it was being opened, before any authentication: a node whose link just
/// came back, or an sshd dropping connections past its MaxStartups. Worth a
/// second dial; a refusal, a timeout or a rejected key are not.
fn transient_dial_failure(detail: &str) -> bool {
    let t = detail.to_ascii_lowercase();
    t.contains("connection reset by peer")
        || (t.contains("kex_exchange_identification") && t.contains("closed by remote host"))
}

pub fn humantime(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_ssh_failures() {
        let cases = [
            (
                "ssh: Could not resolve hostname nope: Name or service not known",
                Unreachable::Dns,
            ),
            (
                "ssh: connect to host 198.18.1.11 port 22: Connection refused",
                Unreachable::Refused,
            ),
            (
                "ssh: connect to host 198.18.1.11 port 22: No route to host",
                Unreachable::NoRoute,
            ),
            (
                "ssh: connect to host 198.18.1.11 port 22: Connection timed out",
                Unreachable::Timeout,
            ),
            (
                "postgres@198.18.1.11: Permission denied (publickey).",
                Unreachable::Auth,
            ),
            (
                "No ED25519 host key is known for 198.18.1.11 and you have requested strict checking.\r\nHost key verification failed.",
                Unreachable::HostKey,
            ),
            (
                "kex_exchange_identification: read: Connection reset by peer",
                Unreachable::Other,
            ),
        ];
        for (text, kind) in cases {
            assert_eq!(classify_ssh_error(text), kind, "{text}");
        }
    }

    #[test]
    fn a_master_that_gave_up_on_its_server_is_told_from_its_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctl = dir.path().join("master");
        assert_eq!(master_gave_up(&ctl), None, "no log yet");
        std::fs::write(
            dir.path().join("log"),
            "channel 3: open failed: connect failed: open failed\n",
        )
        .expect("write log");
        assert_eq!(master_gave_up(&ctl), None, "alive master's noise");
        std::fs::write(
            dir.path().join("log"),
            "channel 3: open failed: connect failed: open failed\nTimeout, server 198.18.1.11 not responding.\n",
        )
        .expect("write log");
        assert_eq!(
            master_gave_up(&ctl).as_deref(),
            Some("Timeout, server 198.18.1.11 not responding.")
        );
    }

    #[test]
    fn the_local_socket_directory_is_private() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = local_socket_dir().expect("socket dir");
        let meta = std::fs::symlink_metadata(dir.path()).expect("stat");
        assert!(meta.is_dir());
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        assert_eq!(
            meta.uid(),
            std::fs::metadata("/proc/self").expect("self").uid()
        );
    }

    #[test]
    fn only_a_reset_while_dialling_is_dialled_again() {
        for text in [
            "ssh: connect to host 198.18.202.11 port 22: Connection reset by peer",
            "kex_exchange_identification: read: Connection reset by peer",
            "kex_exchange_identification: Connection closed by remote host",
        ] {
            assert!(transient_dial_failure(text), "{text}");
        }
        for text in [
            "ssh: connect to host 198.18.1.11 port 22: Connection refused",
            "ssh: connect to host 198.18.1.11 port 22: Connection timed out",
            "postgres@198.18.1.11: Permission denied (publickey).",
            "Host key verification failed.",
            "no answer within 5s",
        ] {
            assert!(!transient_dial_failure(text), "{text}");
        }
    }

    #[test]
    fn connect_errors_say_what_to_do() {
        let e = ConnectError {
            kind: Unreachable::HostKey,
            detail: "Host key verification failed.".into(),
        };
        let s = e.to_string();
        assert!(s.starts_with("host key verification failed"), "{s}");
        assert!(s.contains("known_hosts"), "{s}");
    }
}
