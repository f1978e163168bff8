//! The lab itself: real nodes over real SSH (issue 3's "Done means").

use super::fixture::Lab;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Kills (by PID) and reaps a child process when dropped, even on panic.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn lab_three_nodes_ssh_socket_client_address_and_clean_down() {
    let mut lab = Lab::for_bare_test(
        "lab_three_nodes_ssh_socket_client_address_and_clean_down",
        3,
    );

    // Every node over SSH, strict host key checking against the lab's known_hosts;
    // each sees its own hostname and its own /var/lib/postgresql.
    for i in 1..=3 {
        let out = lab.ssh(i).arg("true").output().unwrap();
        ok(&out, &format!("ssh {} true", lab.host(i)));
        let probe = format!(
            "hostname; test -e {}/PG_VERSION && echo data || echo empty",
            lab.data_dir()
        );
        let got = ok(
            &lab.ssh(i).arg(lab.as_postgres(i, &probe)).output().unwrap(),
            "ssh probe",
        );
        let want = format!("node{i}\n{}", if i == 1 { "data" } else { "empty" });
        assert_eq!(got, want, "node{i}");
    }
    // Strictness is real: an unknown host key is refused.
    let out = Command::new("ssh")
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
        .args([
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
        ])
        .arg("-i")
        .arg(lab.identity_file())
        .arg(format!("postgres@{}", lab.host(1)))
        .arg("true")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "ssh without the lab's known_hosts must fail"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Host key verification failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // node1's PostgreSQL through a local Unix socket forwarded over SSH
    // (peer authentication sees the SSH user, postgres; no password, no TCP port).
    let sockdir = tempfile::tempdir().unwrap();
    let socket = sockdir.path().join(".s.PGSQL.5432");
    let fwd = lab
        .ssh(1)
        .args(["-N", "-o", "ExitOnForwardFailure=yes", "-L"])
        .arg(format!(
            "{}:/var/run/postgresql/.s.PGSQL.5432",
            socket.display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut fwd = KillOnDrop(fwd);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        if let Some(status) = fwd.0.try_wait().unwrap() {
            panic!("ssh -L exited early: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "forwarded socket {} never appeared",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = Command::new(lab.bin("psql"))
        .args(["-XAt", "-U", "postgres", "-d", "postgres", "-h"])
        .arg(sockdir.path())
        .args([
            "-c",
            "SELECT count(*), current_user, pg_is_in_recovery() FROM lab_data",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        ok(&out, "psql through the forwarded socket"),
        "1000|postgres|f"
    );
    drop(fwd);

    // From node1's point of view, a connection from node2 (and node3) arrives
    // with that node's own address.
    lab.sql(1, "CREATE ROLE lab_probe LOGIN PASSWORD 'lab-probe-pw'");
    let hba_line = format!("host all lab_probe 198.18.{}.0/24 scram-sha-256", lab.k());
    let add_hba = format!("echo '{hba_line}' >> {}/pg_hba.conf", lab.data_dir());
    ok(&lab.exec(1, &["sh", "-c", &add_hba]), "append pg_hba line");
    assert_eq!(lab.sql(1, "SELECT pg_reload_conf()"), "t");
    for i in 2..=3 {
        // A passfile in the node's own home (each node has its own ~).
        let pgpass = format!(
            "umask 077; echo '{}:5432:postgres:lab_probe:lab-probe-pw' > ~/.pgpass",
            lab.host(1)
        );
        ok(&lab.exec(i, &["sh", "-c", &pgpass]), "write .pgpass");
        let q = "SELECT inet_client_addr(), (SELECT client_addr FROM pg_stat_activity WHERE pid = pg_backend_pid())";
        let host1 = lab.host(1);
        let out = lab.exec(
            i,
            &[
                "psql",
                "-XAt",
                "-w",
                "-h",
                &host1,
                "-U",
                "lab_probe",
                "-d",
                "postgres",
                "-c",
                q,
            ],
        );
        let me = lab.host(i);
        assert_eq!(
            ok(&out, &format!("psql from node{i} to node1")),
            format!("{me}|{me}")
        );
    }
    // pg_hba is real too: the host (198.18.K.1) has no password for lab_probe.
    let out = lab.exec(
        2,
        &[
            "psql",
            "-XAt",
            "-w",
            "-h",
            &lab.host(1),
            "-U",
            "postgres",
            "-c",
            "SELECT 1",
        ],
    );
    assert!(
        !out.status.success(),
        "postgres over TCP from node2 must be refused"
    );

    // The lab's own cluster file and passwords.
    let config = std::fs::read_to_string(lab.config_path()).unwrap();
    for want in [
        format!("name = \"lab{}\"", lab.k()),
        "primary = \"node1\"".to_string(),
        format!("host = \"{}\"", lab.host(3)),
        format!("identity_file = \"{}\"", lab.identity_file().display()),
        "known_hosts = \"strict\"".to_string(),
    ] {
        assert!(
            config.contains(&want),
            "cluster file lacks {want}:\n{config}"
        );
    }
    let env: Vec<String> = lab
        .env()
        .into_iter()
        .map(|(k, v)| {
            assert!(v.len() >= 16, "{k} too short");
            k
        })
        .collect();
    assert_eq!(
        env,
        ["PGREPL_REPLICATION_PASSWORD", "PGREPL_REWIND_PASSWORD"]
    );

    // Down leaves no namespace, link, process or file; a second down is harmless.
    let trace = lab.trace();
    assert!(
        trace.process_count() >= 4,
        "expected sshd x3 + postgres in the lab"
    );
    lab.down().unwrap();
    let left = trace.wait_gone(Duration::from_secs(3));
    assert!(left.is_empty(), "left behind by down:\n{}", left.join("\n"));
    lab.down().unwrap();
}

/// Whether node `from` can open a TCP connection to node `to`'s sshd (port 22).
fn tcp_from(lab: &Lab, from: usize, to: usize) -> bool {
    let script = "exec 3<>/dev/tcp/$0/22";
    let host = lab.host(to);
    lab.exec(from, &["timeout", "2", "bash", "-c", script, &host])
        .status
        .success()
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn lab_cut_heal_stop_start() {
    let lab = Lab::for_test("lab_cut_heal_stop_start", 2);
    let ssh_true = |i: usize| {
        let t = Instant::now();
        let out = lab
            .ssh(i)
            .args(["-o", "ConnectTimeout=2"])
            .arg("true")
            .output()
            .unwrap();
        (out, t.elapsed())
    };

    // cut: node2 unreachable within seconds, node1 unaffected.
    ok(&ssh_true(2).0, "ssh node2 before cut");
    assert!(
        tcp_from(&lab, 1, 2),
        "node1 must reach node2's sshd before the cut"
    );
    lab.cut(2);
    // From the host and from node1 at once (each waits out a 2 s timeout).
    let ((out, took), node1_reaches_node2) = std::thread::scope(|s| {
        let from_node1 = s.spawn(|| tcp_from(&lab, 1, 2));
        (ssh_true(2), from_node1.join().unwrap())
    });
    assert!(!out.status.success(), "ssh to a cut node must fail");
    assert!(
        took < Duration::from_secs(6),
        "ssh to a cut node took {took:?}"
    );
    assert!(
        !node1_reaches_node2,
        "node2 must be unreachable from node1 while cut"
    );
    ok(&ssh_true(1).0, "ssh node1 while node2 is cut");

    // heal: reachable again.
    lab.heal(2);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (out, _) = ssh_true(2);
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node2 unreachable after heal: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        tcp_from(&lab, 1, 2),
        "node1 must reach node2 again after heal"
    );

    // stop/start node1's PostgreSQL.
    lab.stop(1);
    let out = lab.exec(1, &["pg_isready", "-q"]);
    assert_eq!(out.status.code(), Some(2), "pg_isready after stop: {out:?}");
    assert!(!lab.try_sql(1, "SELECT 1").status.success());
    lab.start(1);
    ok(
        &lab.exec(1, &["pg_isready", "-q"]),
        "pg_isready after start",
    );
    assert_eq!(lab.sql(1, "SELECT count(*) FROM lab_data"), "1000");
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn docker_lab_containers_in_the_official_layout_exec_stop_start_and_clean_down() {
    let lab = Lab::for_docker_test(
        "docker_lab_containers_in_the_official_layout_exec_stop_start_and_clean_down",
        2,
    );
    let major = lab.major().to_string();
    let data_dir = lab.data_dir();
    assert!(lab.is_docker());
    assert_eq!(data_dir, format!("/var/lib/postgresql/{major}/docker"));
    assert_eq!(lab.ssh_user(), "pgdocker");
    assert_eq!(lab.container(2), "pg-node2");
    let config = std::fs::read_to_string(lab.config_path()).unwrap();
    for want in [
        "user = \"pgdocker\"".to_string(),
        format!("data_dir = \"{data_dir}\""),
        "exec = { docker = \"pg-node1\" }".to_string(),
        "exec = { docker = \"pg-node2\" }".to_string(),
    ] {
        assert!(
            config.contains(&want),
            "cluster file lacks {want}:\n{config}"
        );
    }

    // node1: its server answers through `lab.sql`, from PGDATA on the volume.
    assert_eq!(
        lab.sql(
            1,
            "SELECT count(*) || '|' || current_setting('data_directory') FROM lab_data"
        ),
        format!("1000|{data_dir}")
    );
    let inspect = |i: usize, format: &str| {
        ok(
            &lab.docker(i, &["inspect", "-f", format, &lab.container(i)]),
            &format!("docker inspect {}", lab.container(i)),
        )
    };
    let mounts = "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}}{{end}}";
    for i in 1..=2 {
        assert_eq!(
            inspect(i, mounts),
            "volume pgdata /var/lib/postgresql",
            "node{i}"
        );
        assert_eq!(
            inspect(i, "{{range .Config.Env}}{{println .}}{{end}}")
                .lines()
                .find(|l| l.starts_with("PGDATA="))
                .unwrap_or("no PGDATA"),
            format!("PGDATA={data_dir}"),
            "node{i}"
        );
    }
    // exec in the running container, as postgres.
    assert_eq!(
        ok(
            &lab.exec(1, &["sh", "-c", "id -un; cat \"$PGDATA/PG_VERSION\""]),
            "exec 1"
        ),
        format!("postgres\n{major}")
    );

    // node2: its container exists and never ran; over SSH, pgdocker sees
    // that node's dockerd only.
    assert_eq!(inspect(2, "{{.State.Status}}"), "created");
    let seen = ok(
        &lab.ssh(2)
            .arg("id -un; docker ps -a --format '{{.Names}} {{.State}}'")
            .output()
            .unwrap(),
        "ssh node2 docker ps",
    );
    assert_eq!(seen, "pgdocker\npg-node2 created");
    // exec on a node whose container does not run: a one-off container of
    // its image with its volume, as uid 999, which the image's empty PGDATA
    // (copied into the fresh volume) and its parents belong to.
    let parent = format!("/var/lib/postgresql/{major}");
    let probe = format!(
        "id -u; stat -c '%u:%g %a' /var/lib/postgresql {parent} {data_dir}; ls -A {data_dir} | wc -l"
    );
    assert_eq!(
        ok(&lab.exec(2, &["sh", "-c", &probe]), "exec 2 (one-off)"),
        "999\n999:999 755\n999:999 755\n999:999 700\n0"
    );
    assert_eq!(
        ok(&lab.exec(2, &["ls", &data_dir]), "exec 2 ls"),
        "",
        "node2's data directory must be empty"
    );
    assert_eq!(
        ok(
            &lab.docker(2, &["ps", "-a", "--format", "{{.Names}}"]),
            "docker ps"
        ),
        "pg-node2",
        "the one-off containers must be gone"
    );
    assert_eq!(inspect(2, "{{.State.Status}}"), "created");

    // --network host: node2 reaches node1's server at node1's address, and
    // not while node1 is cut.
    let host1 = lab.host(1);
    let ready_from_2 = || {
        lab.exec(2, &["pg_isready", "-q", "-h", &host1, "-t", "2"])
            .status
            .code()
    };
    assert_eq!(ready_from_2(), Some(0), "node1's server from node2");
    lab.cut(1);
    assert_eq!(ready_from_2(), Some(2), "node1 cut: no answer from node2");
    lab.heal(1);
    assert_eq!(ready_from_2(), Some(0), "node1 healed");

    // stop / start: docker stop and start of pg-node1; the data stays.
    lab.stop(1);
    assert_eq!(inspect(1, "{{.State.Status}}"), "exited");
    assert!(!lab.try_sql(1, "SELECT 1").status.success());
    let logs = lab.docker(1, &["logs", &lab.container(1)]);
    assert!(
        String::from_utf8_lossy(&logs.stderr).contains("received fast shutdown request"),
        "docker stop must be a fast shutdown:\n{}",
        String::from_utf8_lossy(&logs.stderr)
    );
    // While stopped, exec on node1 is a one-off too, on the same volume.
    assert_eq!(
        ok(
            &lab.exec(
                1,
                &[
                    "sh",
                    "-c",
                    &format!("test ! -e {data_dir}/postmaster.pid && cat {data_dir}/PG_VERSION")
                ]
            ),
            "exec 1 (one-off)"
        ),
        major
    );
    lab.start(1);
    assert_eq!(inspect(1, "{{.State.Status}}"), "running");
    assert_eq!(lab.sql(1, "SELECT count(*) FROM lab_data"), "1000");

    // Drop tears it down: no process, namespace, link, cgroup, mount or file left.
    let trace = lab.trace();
    assert!(
        trace.process_count() >= 6,
        "expected sshd, dockerd and containerd per node, and postgres: {}",
        trace.process_count()
    );
    // The trace sees the containers' cgroup and dockerd's mounts while up.
    let up = trace.leftovers();
    for kind in ["cgroup ", "mount held by "] {
        assert!(
            up.iter().any(|l| l.starts_with(kind)),
            "the trace must see a {kind}of the lab while it is up:\n{}",
            up.join("\n")
        );
    }
    drop(lab);
    let left = trace.wait_gone(Duration::from_secs(3));
    assert!(left.is_empty(), "left behind by down:\n{}", left.join("\n"));
}
