//! Rebuilding a data directory: where a base backup goes, pg_basebackup
//! and pg_rewind with their progress lines, the marker of a rewind under
//! way, keeping the WAL a rewind discards, and moving directories aside.
//! Nothing here deletes a data directory.

use std::time::Duration;

use anyhow::{anyhow, bail};

use super::Node;
use super::scripts::{CONTAINER_ORPHANS, KEEP_DIVERGED_WAL, PREPARE_BASE_BACKUP, STOP_ORPHANS};
use crate::transport::RemoteOutput;

/// How long a base backup, a rewind or keeping diverged WAL may take.
pub const BASE_BACKUP_LIMIT: Duration = Duration::from_secs(6 * 3600);

/// Where a base backup is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupTarget {
    /// An empty data directory exists: into it.
    Direct,
    /// None exists: into `DATA_DIR.pgrepl-building`, renamed into place after.
    Building(String),
    /// The data directory holds files; why, if the script said.
    Occupied(String),
}

/// What pg_basebackup copies, and how it logs in.
pub struct BaseBackup<'a> {
    /// Host, port, user, passfile and the TLS keywords (no password).
    pub conninfo: &'a str,
    pub slot: Option<&'a str>,
    pub target: &'a str,
}

impl Node<'_> {
    fn data_dir(&self) -> &str {
        &self.spec.postgres.data_dir
    }

    /// Stops what a killed earlier run left copying into this data
    /// directory, removes its partial copy, and says where a backup goes.
    pub async fn prepare_base_backup(&self, utc_now: &str) -> anyhow::Result<BackupTarget> {
        self.remove_orphan_containers().await?;
        let dd = self.data_dir();
        let out = self.script(PREPARE_BASE_BACKUP, &[dd, utc_now]).await?;
        Ok(match out.stdout.trim() {
            "direct" => BackupTarget::Direct,
            "building" => BackupTarget::Building(format!("{dd}.pgrepl-building")),
            _ => BackupTarget::Occupied(out.stderr.trim().to_string()),
        })
    }

    /// Runs pg_basebackup (`-X stream`, a fast checkpoint, with progress),
    /// handing each stderr line to `on_line`.
    pub async fn pg_basebackup(
        &self,
        b: &BaseBackup<'_>,
        on_line: impl FnMut(&str),
    ) -> anyhow::Result<RemoteOutput> {
        let bin = self.bin("pg_basebackup");
        // LC_ALL=C: libpq's messages (a failed certificate check) in English.
        let mut argv: Vec<&str> = vec![
            "env",
            "LC_ALL=C",
            &bin,
            "-d",
            b.conninfo,
            "-D",
            b.target,
            "-X",
            "stream",
            "--checkpoint=fast",
            "--no-password",
            "--progress",
        ];
        if let Some(s) = b.slot {
            argv.extend(["-S", s]);
        }
        self.run_streaming(&argv, None, BASE_BACKUP_LIMIT, on_line)
            .await
    }

    /// Runs pg_rewind from `source_server` (a conninfo), handing each
    /// progress line to `on_line`.
    pub async fn pg_rewind(
        &self,
        source_server: &str,
        on_line: impl FnMut(&str),
    ) -> anyhow::Result<RemoteOutput> {
        let source = format!("--source-server={source_server}");
        let argv = [
            "env",
            "LC_ALL=C",
            &self.bin("pg_rewind"),
            "-D",
            self.data_dir(),
            &source,
            "--progress",
        ];
        self.run_streaming(&argv, None, BASE_BACKUP_LIMIT, on_line)
            .await
    }

    /// `mv -T from to`: a directory renamed, never merged into another.
    pub async fn rename_dir(&self, from: &str, to: &str, what: &str) -> anyhow::Result<()> {
        self.run_ok(&["mv", "-T", from, to], what).await?;
        Ok(())
    }

    /// `DATA_DIR.pgrepl-rewinding`: present from a rewind's start until it
    /// succeeds. A directory whose rewind never finished is only good for
    /// keeping aside.
    fn rewind_marker(&self) -> String {
        format!("{}.pgrepl-rewinding", self.data_dir().trim_end_matches('/'))
    }

    pub async fn rewind_interrupted(&self) -> anyhow::Result<bool> {
        self.exists(&self.rewind_marker()).await
    }

    pub async fn mark_rewind_started(&self) -> anyhow::Result<()> {
        self.create_marker(&self.rewind_marker(), "marking the rewind as started")
            .await
    }

    pub async fn remove_rewind_marker(&self) -> anyhow::Result<()> {
        self.run_ok(
            &["rm", "-f", &self.rewind_marker()],
            "removing the rewind marker",
        )
        .await?;
        Ok(())
    }

    /// Stops a pg_basebackup or pg_rewind a killed earlier run left writing
    /// into this data directory.
    pub async fn stop_orphans(&self) -> anyhow::Result<()> {
        self.remove_orphan_containers().await?;
        self.run_ok(
            &STOP_ORPHANS.argv(&[self.data_dir()]),
            "stopping what an interrupted run left running",
        )
        .await?;
        Ok(())
    }

    /// On a container node, removes the one-off containers an interrupted
    /// run left working on its volumes (each runs in a PID namespace of
    /// its own, where `STOP_ORPHANS` cannot see the others).
    async fn remove_orphan_containers(&self) -> anyhow::Result<()> {
        let Some((engine, c)) = self.container() else {
            return Ok(());
        };
        let out = self
            .run_host(
                &CONTAINER_ORPHANS.argv(&[engine.program(), c]),
                super::container::CLI_MARGIN,
            )
            .await?;
        if !out.success() {
            bail!(
                "{}: removing one-off containers left on {c}'s volumes failed ({}): {}",
                self.name(),
                out.exit(),
                out.stderr.trim()
            );
        }
        Ok(())
    }

    /// Copies the WAL segments of `timeline` from segment `first` on (to
    /// `last`, when given), and every history file, into the new directory
    /// `keep_as`; how many segments.
    pub async fn keep_diverged_wal(
        &self,
        timeline: u32,
        first: &str,
        keep_as: &str,
        last: &str,
    ) -> anyhow::Result<(u64, String)> {
        let tli = format!("{timeline:08X}");
        let argv = KEEP_DIVERGED_WAL.argv(&[self.data_dir(), &tli, first, keep_as, last]);
        // As long as a copy may take: the divergence can be gigabytes.
        let out = self.run_with_stdin(&argv, None, BASE_BACKUP_LIMIT).await?;
        if !out.success() {
            bail!(
                "copying timeline {timeline}'s WAL from {first} to {keep_as} failed ({}): {}",
                out.exit(),
                out.stderr.trim()
            );
        }
        let printed = out.stdout.trim_end_matches('\n');
        let (n, dir) = printed
            .split_once(' ')
            .and_then(|(n, dir)| Some((n.parse().ok()?, dir.to_string())))
            .ok_or_else(|| anyhow!("copying timeline {timeline}'s WAL printed {printed:?}"))?;
        Ok((n, dir))
    }
}
