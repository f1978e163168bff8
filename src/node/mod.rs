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
