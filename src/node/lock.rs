//! The cluster lock on one node: `flock` on a file, held by a remote shell
//! (`scripts/lock.sh`) that lives as long as its SSH channel and renews a
//! lease (the holder file's mtime) every 2 s, acknowledging each renewal.
//! A holder whose lease ran out is stale; so is one whose pgrepl ran on
//! this very machine (same /etc/machine-id), in this boot and pid
//! namespace, and is gone (or its pid now names another process): it is
//! ended (by its recorded PID) and the lock taken over. A host name proves
//! nothing: two CI runners are both `ubuntu`.
//!
//! A holder that stops getting its renewals acknowledged counts the lock
//! lost (`NodeLock::lost_flag`): apply stops before its next step.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// How long a lease may go without an acknowledged renewal before the lock
/// counts as lost: well before another apply may take it over.
const LOST_AFTER: Duration = Duration::from_secs(LOCK_LEASE_S - 4);

enum LockAttempt {
    Locked(Box<NodeLock>),
    Held { text: String, holder: Holder },
}

/// Who holds a lock, as its holder file says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holder {
    /// The remote shell holding it (ended on a takeover).
    pub remote_pid: Option<u32>,
    /// Seconds since the lease was last renewed.
    pub age_s: u64,
    /// The pgrepl process that asked, on its own machine.
    pub client_pid: Option<u32>,
    pub machine_id: Option<String>,
    pub boot_id: Option<String>,
    pub pid_ns: Option<String>,
    /// The client's start time (/proc/PID/stat, clock ticks after boot).
    pub client_start: Option<u64>,
}

impl Holder {
    fn parse(lines: &[String]) -> Holder {
        let field = |k: &str| {
            lines
                .iter()
                .find_map(|l| l.strip_prefix(k).map(str::to_string))
                .filter(|v| !v.is_empty())
        };
        Holder {
            remote_pid: field("pid=").and_then(|p| p.parse().ok()),
            age_s: field("age=").and_then(|a| a.parse().ok()).unwrap_or(0),
            client_pid: field("client=")
                .and_then(|c| c.rsplit_once(':').and_then(|(_, p)| p.parse().ok())),
            machine_id: field("machine_id="),
            boot_id: field("boot_id="),
            pid_ns: field("pid_ns="),
            client_start: field("client_start=").and_then(|s| s.parse().ok()),
        }
    }
}

/// The machine, boot and pid namespace this pgrepl runs in, and its pid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Here {
    pub machine_id: Option<String>,
    pub boot_id: Option<String>,
    pub pid_ns: Option<String>,
    pub pid: u32,
}

impl Here {
    pub fn now() -> Here {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
        };
        Here {
            machine_id: read("/etc/machine-id").or_else(|| read("/var/lib/dbus/machine-id")),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            pid_ns: std::fs::read_link("/proc/self/ns/pid")
                .ok()
                .map(|p| p.to_string_lossy().into_owned()),
            pid: std::process::id(),
        }
    }
}

/// Why a held lock may be taken over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// Its lease was not renewed for `LOCK_LEASE_S`.
    LeaseExpired,
    /// Its pgrepl ran on this machine before the last boot.
    Rebooted,
    /// Its pgrepl ran here, in this boot, and is gone.
    ProcessGone,
    /// Its pid now names a process that started at another time.
    PidReused,
}

/// Whether `holder` is stale, seen from `here`; `start_of(pid)` is the
/// start time of a live process in this pid namespace (None: no such
/// process). The pid test counts only for a holder that names this
/// machine, boot and pid namespace: any other holder (another machine, or
/// a holder file without them) is stale only when its lease ran out.
pub fn stale(holder: &Holder, here: &Here, start_of: impl Fn(u32) -> Option<u64>) -> Option<Stale> {
    if holder.age_s > LOCK_LEASE_S {
        return Some(Stale::LeaseExpired);
    }
    let same =
        |a: &Option<String>, b: &Option<String>| matches!((a, b), (Some(a), Some(b)) if a == b);
    if !same(&holder.machine_id, &here.machine_id) {
        return None;
    }
    if holder.boot_id.is_some() && here.boot_id.is_some() && !same(&holder.boot_id, &here.boot_id) {
        return Some(Stale::Rebooted);
    }
    if !same(&holder.boot_id, &here.boot_id) || !same(&holder.pid_ns, &here.pid_ns) {
        return None;
    }
    let pid = holder.client_pid.filter(|p| *p != here.pid)?;
    match (start_of(pid), holder.client_start) {
        (None, _) => Some(Stale::ProcessGone),
        (Some(now), Some(then)) if now != then => Some(Stale::PidReused),
        _ => None,
    }
}

/// A process's start time (field 22 of /proc/PID/stat, after the command
/// name, which may hold spaces and parentheses); None when there is none.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    // Fields 3.. follow the name: the start time is the 20th of them.
    after.split_whitespace().nth(19)?.parse().ok()
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
        let here = Here::now();
        match self.try_lock(path, holder, data_dir, &here, None).await? {
            LockAttempt::Locked(l) => Ok(Ok(*l)),
            LockAttempt::Held { text, holder: held } => {
                if stale(&held, &here, process_start).is_some()
                    && let Some(pid) = held.remote_pid
                {
                    return match self
                        .try_lock(path, holder, data_dir, &here, Some(pid))
                        .await?
                    {
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
        here: &Here,
        take_over: Option<u32>,
    ) -> anyhow::Result<LockAttempt> {
        let node = self.name();
        let client = format!("{}:{}", local_hostname(), here.pid);
        let take_over = take_over.map(|p| p.to_string()).unwrap_or_default();
        let start = process_start(here.pid)
            .map(|s| s.to_string())
            .unwrap_or_default();
        let id = |v: &Option<String>| v.clone().unwrap_or_default();
        let (machine, boot, ns) = (id(&here.machine_id), id(&here.boot_id), id(&here.pid_ns));
        // The holder file is read line by line: no line break in the text.
        let holder = holder.replace(['\n', '\r'], " ");
        let argv = LOCK.argv(&[
            path, &holder, &client, &take_over, data_dir, &machine, &boot, &ns, &start,
        ]);
        let mut child = self
            .session
            // On the SSH host itself: a container's stop must not end it.
            .spawn(&self.access.host().command(&argv))
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
            Some("locked") => Ok(LockAttempt::Locked(Box::new(NodeLock::renewing(
                node, child, lines,
            )))),
            Some("held") => {
                let mut rest = Vec::new();
                while let Ok(Ok(Some(l))) = timeout(Duration::from_secs(2), lines.next_line()).await
                {
                    rest.push(l);
                }
                let _ = child.wait().await;
                let text = rest
                    .iter()
                    .find_map(|l| l.strip_prefix("holder="))
                    .unwrap_or("an unknown holder")
                    .to_string();
                Ok(LockAttempt::Held {
                    text,
                    holder: Holder::parse(&rest),
                })
            }
            _ => {
                let out = child.wait_with_output().await?;
                self.refused(LOCK.name, &out)?;
                anyhow::bail!(
                    "{node}: cannot take the lock on {path}: {}",
                    out.stderr.trim()
                )
            }
        }
    }
}

/// This machine's host name, for people (the holder text); never proof of
/// who holds a lock.
pub fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into())
}

/// A held lock; released when dropped (the remote holder's stdin closes).
pub struct NodeLock {
    child: Option<RemoteChild>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
    lost: LostFlag,
}

impl NodeLock {
    /// Renews the lease of the holder that answered `locked`, every
    /// `RENEW_EVERY`, and reads each renewal's acknowledgement: when none
    /// came for `LOST_AFTER` (the channel broke, the node is cut off, the
    /// holder ended), the lock is lost and says why.
    fn renewing<R>(node: &str, mut child: RemoteChild, mut acks: tokio::io::Lines<R>) -> NodeLock
    where
        R: tokio::io::AsyncBufRead + Unpin + Send + 'static,
    {
        let stdin = child.take_stdin();
        let lost = LostFlag::default();
        let flag = lost.clone();
        let node = node.to_string();
        let heartbeat = tokio::spawn(async move {
            let why = match stdin {
                None => "its holder has no stdin".to_string(),
                Some(mut stdin) => {
                    let mut renewed = Instant::now();
                    loop {
                        tokio::time::sleep(RENEW_EVERY).await;
                        let left = LOST_AFTER.saturating_sub(renewed.elapsed());
                        let renew = async {
                            stdin.write_all(b"\n").await.ok()?;
                            stdin.flush().await.ok()?;
                            acks.next_line().await.ok()?.filter(|l| l == "renewed")
                        };
                        match timeout(left, renew).await {
                            Ok(Some(_)) => renewed = Instant::now(),
                            Ok(None) => break "its holder ended".to_string(),
                            Err(_) => {
                                break format!(
                                    "no renewal was acknowledged for {}s",
                                    LOST_AFTER.as_secs()
                                );
                            }
                        }
                    }
                }
            };
            flag.lose(format!("{node}: the cluster lock's lease was lost ({why})"));
        });
        NodeLock {
            child: Some(child),
            heartbeat: Some(heartbeat),
            lost,
        }
    }

    /// Says whether this lock was lost; outlives a borrow of the lock.
    pub fn lost_flag(&self) -> LostFlag {
        self.lost.clone()
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

/// Whether a held lock was lost.
#[derive(Debug, Clone, Default)]
pub struct LostFlag(Arc<Mutex<Option<String>>>);

impl LostFlag {
    /// Marks the lock lost, for `why`.
    pub fn lose(&self, why: String) {
        if let Ok(mut l) = self.0.lock() {
            *l = Some(why);
        }
    }

    /// Why the lock was lost, once its lease stopped being renewed: another
    /// apply may take it over, so this one must not take another step.
    pub fn lost(&self) -> Option<String> {
        self.0.lock().ok().and_then(|l| l.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn here() -> Here {
        Here {
            machine_id: Some("aaaa".into()),
            boot_id: Some("b-1".into()),
            pid_ns: Some("pid:[1]".into()),
            pid: 100,
        }
    }

    /// A holder from this machine, boot and namespace, client pid 42
    /// started at tick 7, lease fresh.
    fn ours() -> Holder {
        Holder {
            remote_pid: Some(9),
            age_s: 1,
            client_pid: Some(42),
            machine_id: Some("aaaa".into()),
            boot_id: Some("b-1".into()),
            pid_ns: Some("pid:[1]".into()),
            client_start: Some(7),
        }
    }

    const GONE: fn(u32) -> Option<u64> = |_| None;
    const ALIVE: fn(u32) -> Option<u64> = |_| Some(7);
    const REUSED: fn(u32) -> Option<u64> = |_| Some(8);

    #[test]
    fn a_dead_pgrepl_of_this_machine_is_taken_over() {
        assert_eq!(stale(&ours(), &here(), GONE), Some(Stale::ProcessGone));
        assert_eq!(stale(&ours(), &here(), REUSED), Some(Stale::PidReused));
        assert_eq!(stale(&ours(), &here(), ALIVE), None);
        let rebooted = Holder {
            boot_id: Some("b-0".into()),
            ..ours()
        };
        assert_eq!(stale(&rebooted, &here(), ALIVE), Some(Stale::Rebooted));
        // Our own pid is never a dead holder.
        let me = Holder {
            client_pid: Some(100),
            ..ours()
        };
        assert_eq!(stale(&me, &here(), GONE), None);
    }

    #[test]
    fn another_machines_holder_waits_for_its_lease_whatever_its_host_name() {
        for other in [
            Holder {
                machine_id: Some("bbbb".into()),
                ..ours()
            },
            // A holder file without the machine (an older pgrepl).
            Holder {
                machine_id: None,
                boot_id: None,
                pid_ns: None,
                client_start: None,
                ..ours()
            },
            // Another pid namespace (a container) on this machine.
            Holder {
                pid_ns: Some("pid:[2]".into()),
                ..ours()
            },
        ] {
            assert_eq!(stale(&other, &here(), GONE), None, "{other:?}");
            let expired = Holder {
                age_s: LOCK_LEASE_S + 1,
                ..other
            };
            assert_eq!(stale(&expired, &here(), ALIVE), Some(Stale::LeaseExpired));
        }
        // This machine's id unknown: no pid test at all.
        let blind = Here {
            machine_id: None,
            ..here()
        };
        assert_eq!(stale(&ours(), &blind, GONE), None);
    }

    #[test]
    fn the_holder_file_is_read_field_by_field() {
        let lines: Vec<String> = [
            "pid=9",
            "client=ubuntu:42",
            "machine_id=aaaa",
            "boot_id=b-1",
            "pid_ns=pid:[1]",
            "client_start=7",
            "holder=pgrepl apply by x@ubuntu (pid 42) since now",
            "data_dir=/d",
            "age=1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(Holder::parse(&lines), ours());
        let old = Holder::parse(&["pid=9".into(), "client=ubuntu:42".into(), "age=30".into()]);
        assert_eq!(old.machine_id, None);
        assert_eq!(old.age_s, 30);
    }

    #[test]
    fn this_process_has_a_start_time_and_a_missing_one_has_none() {
        assert!(process_start(std::process::id()).is_some());
        assert_eq!(process_start(u32::MAX), None);
        let here = Here::now();
        assert_eq!(here.pid, std::process::id());
    }
}
