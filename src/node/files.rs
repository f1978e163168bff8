//! The node's files that pgrepl writes, each atomically (a fresh `mktemp`
//! file beside it, fsynced, renamed into place; never a fixed temporary
//! name, so never through a symlink planted there): pg_hba.conf (the
//! previous one kept), the passfile, postgresql.auto.conf of a stopped
//! server, standby.signal and the rewind marker; and the files a former
//! cluster name left.

use anyhow::bail;

use super::Node;
use super::scripts::{AUTO_CONF_OFFLINE, REMOVE_CLUSTER_FILES, WRITE_FILE, WRITE_PASSFILE};
use crate::quote::{conf_value, setting_name};

impl Node<'_> {
    /// A file's content; `what` names it for the error.
    pub async fn read_file(&self, path: &str, what: &str) -> anyhow::Result<String> {
        self.run_ok(&["cat", path], what).await
    }

    /// Whether `path` exists.
    pub async fn exists(&self, path: &str) -> anyhow::Result<bool> {
        Ok(self.run(&["test", "-e", path]).await?.code == Some(0))
    }

    /// Replaces `path` with `content`, keeping its mode, and the previous
    /// file as `PATH.pgrepl-bak`.
    pub async fn write_file(&self, path: &str, content: &str, what: &str) -> anyhow::Result<()> {
        self.run_stdin_ok(&WRITE_FILE.argv(&[path]), content.as_bytes(), what)
            .await?;
        Ok(())
    }

    /// Puts back the file `write_file` kept.
    pub async fn restore_previous(&self, path: &str, what: &str) -> anyhow::Result<()> {
        let bak = format!("{path}.pgrepl-bak");
        self.run_ok(&["mv", "-f", &bak, path], what).await?;
        Ok(())
    }

    /// Writes the passfile, readable by its owner only.
    pub async fn write_passfile(&self, path: &str, content: &str) -> anyhow::Result<()> {
        self.write_private(path, content, "writing the passfile")
            .await
    }

    /// Replaces `path` with `content`, readable by its owner only.
    async fn write_private(&self, path: &str, content: &str, what: &str) -> anyhow::Result<()> {
        self.run_stdin_ok(&WRITE_PASSFILE.argv(&[path]), content.as_bytes(), what)
            .await?;
        Ok(())
    }

    /// An empty marker file (standby.signal, the rewind marker), written as
    /// every other file is: never through a symlink at its name.
    pub(super) async fn create_marker(&self, path: &str, what: &str) -> anyhow::Result<()> {
        self.write_private(path, "", what).await
    }

    /// Writes settings into a stopped server's postgresql.auto.conf (ALTER
    /// SYSTEM needs a running one), each value quoted by the one rule
    /// PostgreSQL's configuration parser reads back; with `standby_signal`,
    /// standby.signal follows them.
    pub async fn write_auto_conf_offline(
        &self,
        settings: &[(&str, &str)],
        standby_signal: bool,
    ) -> anyhow::Result<()> {
        let names = settings
            .iter()
            .map(|(n, _)| setting_name(n).map(|n| n.replace('.', "\\.")))
            .collect::<anyhow::Result<Vec<_>>>()?
            .join("|");
        let quoted: Vec<(String, String)> = settings
            .iter()
            .map(|(n, v)| (n.to_string(), conf_value(v)))
            .collect();
        let mut args: Vec<&str> = vec![
            &self.spec.postgres.data_dir,
            if standby_signal { "1" } else { "0" },
            &names,
        ];
        for (n, v) in &quoted {
            args.push(n);
            args.push(v);
        }
        let out = self.script(AUTO_CONF_OFFLINE, &args).await?;
        if !out.success() {
            bail!(
                "{}: writing postgresql.auto.conf failed ({}): {}",
                self.name(),
                out.exit(),
                out.stderr.trim()
            );
        }
        Ok(())
    }

    /// A stopped standby's recovery settings and standby.signal, offline.
    pub async fn write_recovery_offline(&self, conninfo: &str, slot: &str) -> anyhow::Result<()> {
        self.write_auto_conf_offline(
            &[("primary_conninfo", conninfo), ("primary_slot_name", slot)],
            true,
        )
        .await
    }

    fn standby_signal(&self) -> String {
        format!("{}/standby.signal", self.spec.postgres.data_dir)
    }

    pub async fn has_standby_signal(&self) -> anyhow::Result<bool> {
        self.exists(&self.standby_signal()).await
    }

    pub async fn create_standby_signal(&self) -> anyhow::Result<()> {
        self.create_marker(&self.standby_signal(), "creating standby.signal")
            .await
    }

    /// Removes `paths` unless `lock` (if it exists) is held by a live apply.
    pub async fn remove_files_unless_locked(
        &self,
        lock: &str,
        paths: &[String],
        what: &str,
    ) -> anyhow::Result<()> {
        let mut args = vec![lock];
        args.extend(paths.iter().map(String::as_str));
        self.run_ok(&REMOVE_CLUSTER_FILES.argv(&args), what).await?;
        Ok(())
    }
}
