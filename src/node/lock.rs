//! The cluster lock on one node: `flock` on a file, held by a remote shell
//! (`scripts/lock.sh`) that lives as long as its SSH channel and renews a
//! lease (the holder file's mtime) every 2 s. A holder whose lease ran
//! out, or whose pgrepl process on this machine is gone, is stale: it is
//! ended (by its recorded PID) and the lock taken over.

use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::time::timeout;

use super::Node;
use super::scripts::LOCK;
use crate::transport::RemoteChild;
use crate::transport::ssh::humantime;

/// Seconds after which a lock whose holder stopped renewing it is stale.
pub const LOCK_LEASE_S: u64 = 15;

/// How often the holder's lease is renewed.
const RENEW_EVERY: Duration = Duration::from_secs(2);

enum LockAttempt {
    Locked(Box<NodeLock>),
    Held {
        text: String,
        remote_pid: Option<u32>,
        age_s: u64,
        client: Option<String>,
    },
}

impl Node<'_> {
    /// Takes the cluster lock `path` on this node for `holder` (who, from
    /// where, since when): the lock, or the text of whoever holds it. The
    /// holder file also names `data_dir`, so that the lock of a former
    /// cluster name is recognised as this data directory's.
    pub async fn lock(
        &self,
        path: &str,
        holder: &str,
        data_dir: &str,
    ) -> anyhow::Result<Result<NodeLock, String>> {
        match self.try_lock(path, holder, data_dir, None).await? {
            LockAttempt::Locked(l) => Ok(Ok(*l)),
            LockAttempt::Held {
                text,
                remote_pid,
                age_s,
                client,
            } => {
                let same_host_dead = client
                    .as_deref()
                    .and_then(|c| c.split_once(':'))
                    .is_some_and(|(host, pid)| {
                        host == local_hostname()
                            && pid.parse::<u32>().is_ok_and(|p| {
                                p != std::process::id()
                                    && !std::path::Path::new(&format!("/proc/{p}")).exists()
                            })
                    });
                if (same_host_dead || age_s > LOCK_LEASE_S)
                    && let Some(pid) = remote_pid
                {
                    return match self.try_lock(path, holder, data_dir, Some(pid)).await? {
                        LockAttempt::Locked(l) => Ok(Ok(*l)),
                        LockAttempt::Held { text, .. } => Ok(Err(text)),
                    };
                }
                Ok(Err(text))
            }
        }
    }

    async fn try_lock(
        &self,
        path: &str,
        holder: &str,
        data_dir: &str,
        take_over: Option<u32>,
    ) -> anyhow::Result<LockAttempt> {
        let node = self.name();
        let client = format!("{}:{}", local_hostname(), std::process::id());
        let take_over = take_over.map(|p| p.to_string()).unwrap_or_default();
        let argv = LOCK.argv(&[path, holder, &client, &take_over, data_dir]);
        let mut child = self
            .session
            .spawn(&self.access.command(&argv))
            .await
            .with_context(|| format!("{node}: cannot start the lock holder"))?;
        let Some(stdout) = child.take_stdout() else {
            anyhow::bail!("{node}: lock holder has no stdout");
        };
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let limit = self.session.command_timeout();
        let first = timeout(limit, lines.next_line())
            .await
            .map_err(|_| {
                anyhow!(
                    "{node}: taking the lock did not answer within {}",
                    humantime(limit)
                )
            })?
            .with_context(|| format!("{node}: reading the lock holder's answer"))?;
        match first.as_deref() {
            Some("locked") => Ok(LockAttempt::Locked(Box::new(NodeLock::renewing(child)))),
            Some("held") => {
                let mut rest = Vec::new();
                while let Ok(Ok(Some(l))) = timeout(Duration::from_secs(2), lines.next_line()).await
                {
                    rest.push(l);
                }
                let _ = child.wait().await;
                let field = |k: &str| {
                    rest.iter()
                        .find_map(|l| l.strip_prefix(k).map(str::to_string))
                };
                Ok(LockAttempt::Held {
                    text: field("holder=").unwrap_or_else(|| "an unknown holder".into()),
                    remote_pid: field("pid=").and_then(|p| p.parse().ok()),
                    age_s: field("age=").and_then(|a| a.parse().ok()).unwrap_or(0),
                    client: field("client="),
                })
            }
            _ => {
                let out = child.wait_with_output().await?;
                anyhow::bail!(
                    "{node}: cannot take the lock on {path}: {}",
                    out.stderr.trim()
                )
            }
        }
    }
}

fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into())
}

/// A held lock; released when dropped (the remote holder's stdin closes).
pub struct NodeLock {
    child: Option<RemoteChild>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
}

impl NodeLock {
    /// Renews the lease of the holder that answered `locked`, every
    /// `RENEW_EVERY`, for as long as its stdin takes lines.
    fn renewing(mut child: RemoteChild) -> NodeLock {
        let stdin = child.take_stdin();
        let heartbeat = tokio::spawn(async move {
            if let Some(mut stdin) = stdin {
                loop {
                    tokio::time::sleep(RENEW_EVERY).await;
                    if stdin.write_all(b"\n").await.is_err() || stdin.flush().await.is_err() {
                        break;
                    }
                }
            }
        });
        NodeLock {
            child: Some(child),
            heartbeat: Some(heartbeat),
        }
    }

    pub async fn release(mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
            let _ = h.await;
        }
        if let Some(child) = self.child.take() {
            let _ = timeout(Duration::from_secs(5), child.wait()).await;
        }
    }
}
