//! Everything that reaches one node, typed: its SQL (`sql`), its shell
//! scripts (`scripts`), its server (`service`), its files (`files`), its
//! data directory's rebuilds (`datadir`), the cluster lock (`lock`). Under
//! it, `remote` is the one way a command reaches the node; `transport`
//! carries it.
//!
//! A `Node` is a handle over the node's SSH session for the length of a
//! read or a step: gather and apply talk to nodes only through it.

pub mod container;
pub mod datadir;
pub mod files;
pub mod lock;
pub mod pooler;
pub mod remote;
pub mod scripts;
pub mod service;
pub mod sql;

use std::time::Duration;

use anyhow::bail;

pub use datadir::{BASE_BACKUP_LIMIT, BackupTarget, BaseBackup};
pub use lock::{LOCK_LEASE_S, LostFlag, NodeLock};
pub use remote::{Access, AccessRefused};
pub use scripts::Script;
pub use service::{PG_CTL_WAIT_S, STREAM_WAIT, ServerStatus};
pub use sql::Sql;

use crate::config;
use crate::transport::{NodeSession, RemoteOutput};

/// One node as the cluster file describes it, reached through its session.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    pub spec: &'a config::Node,
    session: &'a NodeSession,
    access: Access<'a>,
}

impl<'a> Node<'a> {
    pub fn new(spec: &'a config::Node, session: &'a NodeSession) -> Node<'a> {
        Node {
            spec,
            session,
            access: Access::of(spec),
        }
    }

    pub fn name(&self) -> &'a str {
        &self.spec.name
    }

    /// `BIN_DIR/NAME`: one of the server's programs.
    pub fn bin(&self, name: &str) -> String {
        format!("{}/{name}", self.spec.postgres.bin_dir)
    }

    /// Runs `argv` and collects its output; a non-zero exit is data.
    pub async fn run<S: AsRef<str>>(&self, argv: &[S]) -> anyhow::Result<RemoteOutput> {
        self.run_with_stdin(argv, None, self.session.command_timeout())
            .await
    }

    /// Runs `argv` with `stdin` fed to it (secrets travel this way, never in
    /// argv), for at most `limit`.
    pub async fn run_with_stdin<S: AsRef<str>>(
        &self,
        argv: &[S],
        stdin: Option<&[u8]>,
        limit: Duration,
    ) -> anyhow::Result<RemoteOutput> {
        self.run_streaming(argv, stdin, limit, |_| {}).await
    }

    /// Runs `argv` and hands each line of its stderr (split at `\r` or `\n`,
    /// as progress meters print) to `on_line` as it arrives.
    pub async fn run_streaming<S: AsRef<str>>(
        &self,
        argv: &[S],
        stdin: Option<&[u8]>,
        limit: Duration,
        on_line: impl FnMut(&str),
    ) -> anyhow::Result<RemoteOutput> {
        let command = self.access.command(argv);
        let out = self.session.run(&command, stdin, limit, on_line).await?;
        self.refused(&command.program, &out)?;
        Ok(out)
    }

    /// Runs `argv` on the SSH host itself, as `[ssh].user`, whatever the
    /// node's way in to PostgreSQL: a container's lifecycle and logs, the
    /// cluster lock. On other nodes, the same as `run_with_stdin`.
    pub async fn run_host<S: AsRef<str>>(
        &self,
        argv: &[S],
        limit: Duration,
    ) -> anyhow::Result<RemoteOutput> {
        let host = self.access.host();
        let command = host.command(argv);
        let out = self.session.run(&command, None, limit, |_| {}).await?;
        if let Some(said) = host.refusal(&out) {
            return Err(AccessRefused::new(self.spec, host, &command.program, said).into());
        }
        Ok(out)
    }

    /// The engine and container, when PostgreSQL runs in one.
    pub fn container(&self) -> Option<(container::Engine, &'a str)> {
        self.access.container()
    }

    /// On a container node: that the container exists and that pgrepl can
    /// work on its data directory (`container::Container::layout_problem`),
    /// else an error naming the node and what to change.
    pub async fn check_container(&self) -> anyhow::Result<()> {
        let Some((engine, c)) = self.container() else {
            return Ok(());
        };
        let out = self
            .run_host(&container::inspect(engine, c), container::CLI_MARGIN)
            .await?;
        let found = container::parse_inspect(c, &out.stdout)
            .map_err(|e| anyhow::anyhow!("{}: {e:#}: {}", self.name(), out.stderr.trim()))?;
        let Some(found) = found else {
            let said = format!("pgrepl-container: No such container: {c}");
            return Err(AccessRefused::new(self.spec, self.access, c, said).into());
        };
        if let Some(why) = found.layout_problem(&self.spec.postgres.data_dir) {
            bail!("{}: container {c}: {why}", self.name());
        }
        Ok(())
    }

    /// An error when `out` is the way in refusing to run `program` (sudo
    /// without a rule), not `program`'s own output.
    fn refused(&self, program: &str, out: &RemoteOutput) -> anyhow::Result<()> {
        match self.access.refusal(out) {
            Some(said) => Err(AccessRefused::new(self.spec, self.access, program, said).into()),
            None => Ok(()),
        }
    }

    /// Runs `argv`; its stdout, or an error saying `what` failed and why.
    pub async fn run_ok<S: AsRef<str>>(&self, argv: &[S], what: &str) -> anyhow::Result<String> {
        ok(self.run(argv).await?, what)
    }

    /// Runs `argv` with `stdin`; its stdout, or an error saying `what` failed.
    pub async fn run_stdin_ok<S: AsRef<str>>(
        &self,
        argv: &[S],
        stdin: &[u8],
        what: &str,
    ) -> anyhow::Result<String> {
        let out = self
            .run_with_stdin(argv, Some(stdin), self.session.command_timeout())
            .await?;
        ok(out, what)
    }

    /// Runs `script` with `args`.
    pub async fn script(&self, script: Script, args: &[&str]) -> anyhow::Result<RemoteOutput> {
        self.run(&script.argv(args)).await
    }
}

fn ok(out: RemoteOutput, what: &str) -> anyhow::Result<String> {
    if !out.success() {
        bail!("{what} failed ({}): {}", out.exit(), out.stderr.trim());
    }
    Ok(out.stdout)
}
