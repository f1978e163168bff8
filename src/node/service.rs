//! The node's PostgreSQL server: whether it runs (`pg_ctl status`, one
//! script for every caller), its pg_control, and start, stop, restart or a
//! start with one-time options through the node's `service`. The one place
//! that knows pg_ctl, systemd and pg_ctlcluster; it also waits for a server
//! to accept connections, and for a standby to stream.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::scripts::{PG_CTL, STATUS};
use super::{Node, container};
use crate::config::Service;
use crate::observed::ControlData;
use crate::transport::RemoteOutput;

/// How long pg_ctl may wait for a start, stop or restart.
pub const PG_CTL_WAIT_S: u64 = 120;
/// How long a standby may take to stream after it starts.
pub const STREAM_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Start,
    Stop,
    Restart,
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
        })
    }
}

/// What `pg_ctl status` says of the data directory, and whether it holds
/// standby.signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerStatus {
    /// pg_ctl's exit code: 0 runs, 3 does not run, 4 no data directory.
    pub code: Option<i32>,
    pub standby_signal: bool,
}

impl ServerStatus {
    /// A postmaster serves the data directory.
    pub fn runs(&self) -> bool {
        self.code == Some(0)
    }

    fn parse(out: &str) -> ServerStatus {
        let mut words = out.split_whitespace();
        ServerStatus {
            code: words.next().and_then(|c| c.parse().ok()),
            standby_signal: words.next() == Some("standby"),
        }
    }
}

impl Node<'_> {
    /// Where pgrepl's pg_ctl starts log: beside the data directory.
    pub fn log_file(&self) -> String {
        let dd = self.spec.postgres.data_dir.trim_end_matches('/');
        let parent = dd
            .rsplit_once('/')
            .map_or("/tmp", |(p, _)| if p.is_empty() { "/" } else { p });
        format!("{parent}/pgrepl-postgresql.log")
    }

    /// Where the server's log is, for messages: pgrepl's pg_ctl log, or a
    /// container's own (`docker logs`).
    pub fn log_name(&self) -> String {
        match self.container() {
            Some((engine, c)) => format!("`{engine} logs {c}`"),
            None => self.log_file(),
        }
    }

    /// The last `lines` lines of the server's log (empty if unreadable).
    pub async fn tail_log(&self, lines: u32) -> String {
        let n = lines.to_string();
        match self.container() {
            // The server logs to the container's stderr.
            Some((engine, c)) => self
                .run_host(
                    &[engine.program(), "logs", "--tail", &n, "--", c],
                    container::CLI_MARGIN,
                )
                .await
                .map(|o| format!("{}{}", o.stdout, o.stderr))
                .unwrap_or_default(),
            None => self
                .run(&["tail", "-n", &n, &self.log_file()])
                .await
                .map(|o| o.stdout)
                .unwrap_or_default(),
        }
    }

    pub async fn status(&self) -> anyhow::Result<ServerStatus> {
        let pg = &self.spec.postgres;
        let out = self
            .run_ok(
                &STATUS.argv(&[&pg.bin_dir, &pg.data_dir]),
                "checking whether PostgreSQL runs",
            )
            .await?;
        Ok(ServerStatus::parse(&out))
    }

    /// Whether a postmaster serves the node's data directory.
    pub async fn runs(&self) -> anyhow::Result<bool> {
        Ok(self.status().await?.runs())
    }

    /// `pg_controldata` of the data directory.
    pub async fn controldata(&self) -> anyhow::Result<ControlData> {
        let out = self
            .run(&[
                "env",
                "LC_ALL=C",
                &self.bin("pg_controldata"),
                &self.spec.postgres.data_dir,
            ])
            .await?;
        if !out.success() {
            bail!(
                "{}: pg_controldata failed: {}",
                self.name(),
                out.stderr.trim()
            );
        }
        Ok(crate::observed::parse::parse_controldata(&out.stdout))
    }

    pub async fn start(&self) -> anyhow::Result<String> {
        self.control(Verb::Start).await
    }

    pub async fn stop(&self) -> anyhow::Result<String> {
        self.control(Verb::Stop).await
    }

    pub async fn restart(&self) -> anyhow::Result<String> {
        self.control(Verb::Restart).await
    }

    /// Starts, stops or restarts the server through its `service`.
    ///
    /// With pg_ctl, a start does not use `-w` (which looks ten times a
    /// second): pgrepl tries a connection every 20 ms instead, and returns
    /// once the server accepts it (a hot standby: once it is consistent).
    async fn control(&self, verb: Verb) -> anyhow::Result<String> {
        if let Some((engine, c)) = self.container() {
            return self.control_container(engine, c, verb).await;
        }
        let pg = &self.spec.postgres;
        let wait = PG_CTL_WAIT_S.to_string();
        let log = self.log_file();
        let verb_s = verb.to_string();
        let argv: Vec<&str> = match &pg.service {
            // -l: without it the server keeps the SSH channel open and the
            // command never returns.
            Service::PgCtl => PG_CTL.argv(&[&pg.bin_dir, &pg.data_dir, &wait, &verb_s, &log]),
            Service::Systemd(unit) => vec!["sudo", "-n", "systemctl", &verb_s, unit],
            Service::PgCtlCluster(c) => {
                let (v, n) = c.split_once('/').unwrap_or((c, "main"));
                let mut argv = vec!["pg_ctlcluster", v, n, &verb_s];
                if verb != Verb::Start {
                    argv.extend(["-m", "fast"]);
                }
                argv.extend(["--", "-w", "-t", &wait]);
                argv
            }
        };
        let accept = matches!(pg.service, Service::PgCtl) && verb != Verb::Stop;
        self.run_service(&argv, &verb_s, accept).await?;
        let how = match &pg.service {
            Service::PgCtl => format!("{}/pg_ctl {verb} -D {}", pg.bin_dir, pg.data_dir),
            _ => argv.join(" "),
        };
        Ok(format!("{verb} ({how})"))
    }

    /// The container is the service: `docker start|stop|restart` on the
    /// SSH host (a stop gives the server `container::STOP_TIMEOUT_S` to
    /// shut down), then, unless stopping, a wait for connections.
    async fn control_container(
        &self,
        engine: container::Engine,
        c: &str,
        verb: Verb,
    ) -> anyhow::Result<String> {
        let action = match verb {
            Verb::Start => container::Lifecycle::Start,
            Verb::Stop => container::Lifecycle::Stop,
            Verb::Restart => container::Lifecycle::Restart,
        };
        let inv = container::lifecycle(engine, action, c);
        let out = self.run_host(&inv.argv, inv.limit).await?;
        self.service_done(out, &format!("{engine} {verb} {c}"), verb != Verb::Stop)
            .await?;
        Ok(format!("{verb} ({engine} {verb} {c})"))
    }

    /// Starts the server once with `options` (`-c name=value ...`), which
    /// a systemd unit cannot pass; `shown` says them for messages.
    pub async fn start_once(&self, options: &str, shown: &str) -> anyhow::Result<()> {
        if let Some((engine, c)) = self.container() {
            bail!(
                "container {c} cannot start its server once with other values ({engine} start passes none)"
            )
        }
        let pg = &self.spec.postgres;
        let wait = PG_CTL_WAIT_S.to_string();
        let log = self.log_file();
        let argv: Vec<&str> = match &pg.service {
            Service::PgCtl => PG_CTL.argv(&[
                &pg.bin_dir,
                &pg.data_dir,
                &wait,
                "start-once",
                &log,
                options,
            ]),
            Service::PgCtlCluster(c) => {
                let (v, n) = c.split_once('/').unwrap_or((c, "main"));
                vec![
                    "pg_ctlcluster",
                    v,
                    n,
                    "start",
                    "--",
                    "-w",
                    "-t",
                    &wait,
                    "-o",
                    options,
                ]
            }
            Service::Systemd(unit) => {
                bail!("systemd unit {unit} cannot start the server once with other values")
            }
        };
        let accept = matches!(pg.service, Service::PgCtl);
        self.run_service(&argv, &format!("start with {shown}"), accept)
            .await
    }

    /// Runs a service command, waits for connections when `accept`; a
    /// failure says what failed, with the last lines of the server's log.
    async fn run_service(&self, argv: &[&str], what: &str, accept: bool) -> anyhow::Result<()> {
        let out = self
            .run_with_stdin(argv, None, Duration::from_secs(PG_CTL_WAIT_S + 30))
            .await?;
        self.service_done(out, what, accept).await
    }

    /// After a service command: its failure, or, when `accept`, the
    /// server's failing to accept connections, said with the last lines of
    /// the server's log.
    async fn service_done(
        &self,
        out: RemoteOutput,
        what: &str,
        accept: bool,
    ) -> anyhow::Result<()> {
        let mut failure = (!out.success()).then(|| {
            format!(
                "{}: {what} failed ({}): {}",
                self.name(),
                out.exit(),
                out.stderr.trim()
            )
        });
        if failure.is_none() && accept {
            failure = self.wait_accepting().await.err().map(|e| format!("{e:#}"));
        }
        if let Some(failure) = failure {
            let tail = self.tail_log(15).await;
            bail!(
                "{failure}{}",
                if tail.is_empty() {
                    String::new()
                } else {
                    format!("\nlast lines of {}:\n{tail}", self.log_name())
                }
            );
        }
        Ok(())
    }

    /// Polls every 20 ms until the server accepts a connection, for at most
    /// `PG_CTL_WAIT_S`; every half second, checks that the postmaster still
    /// lives, so a server that fails to start is reported at once.
    pub async fn wait_accepting(&self) -> anyhow::Result<()> {
        let node = self.name();
        let pg = &self.spec.postgres;
        let started = Instant::now();
        let deadline = started + Duration::from_secs(PG_CTL_WAIT_S);
        let mut last_check = started;
        let mut last_error = String::new();
        while Instant::now() < deadline {
            match self.sql().await {
                Ok(sql) if sql.answers().await => {
                    // The server that answered is the one just started
                    // (another cluster on the same socket would answer too).
                    if self.runs().await? {
                        return Ok(());
                    }
                    bail!(
                        "{node}: a server answers on {}/.s.PGSQL.{}, but PostgreSQL on {} is not running",
                        pg.socket_dir,
                        pg.port,
                        pg.data_dir
                    );
                }
                Ok(_) => {}
                Err(e) => last_error = format!("{:#}", e.root_cause()),
            }
            if last_check.elapsed() >= Duration::from_millis(500) {
                last_check = Instant::now();
                if matches!(self.status().await?.code, Some(3) | Some(4)) {
                    bail!("{node}: PostgreSQL exited while starting ({last_error})");
                }
            }
            // Tight at first; each refused attempt is a line in the server's log.
            let pause = if started.elapsed() < Duration::from_secs(2) {
                20
            } else {
                250
            };
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        bail!(
            "{node}: PostgreSQL did not accept connections within {PG_CTL_WAIT_S}s ({last_error})"
        )
    }

    /// Polls pg_stat_wal_receiver every 20 ms until the standby streams, or
    /// fails with the server's log.
    pub async fn wait_streaming(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + STREAM_WAIT;
        let mut last = String::from("no WAL receiver");
        // One connection for the whole wait, opened again only if it breaks.
        let mut sql = None;
        while Instant::now() < deadline {
            if sql.is_none() {
                sql = self.sql().await.ok();
            }
            if let Some(s) = &sql {
                match s.wal_receiver_status().await {
                    Ok(Some(status)) if status == "streaming" => return Ok(()),
                    Ok(Some(status)) => last = format!("WAL receiver {status}"),
                    Ok(None) => last = "no WAL receiver".into(),
                    Err(_) => sql = None,
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let tail = self.tail_log(10).await;
        bail!(
            "the standby did not stream within {}s ({last}); last lines of {}:\n{tail}",
            STREAM_WAIT.as_secs(),
            self.log_name()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reads_the_scripts_answer() {
        let s = ServerStatus::parse("0 standby\n");
        assert!(s.runs() && s.standby_signal);
        let s = ServerStatus::parse("3\n");
        assert!(!s.runs() && !s.standby_signal && s.code == Some(3));
        assert_eq!(ServerStatus::parse("").code, None);
    }
}
