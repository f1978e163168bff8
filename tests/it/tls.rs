//! TLS on every replication connection, on real nodes: `lab.sh tls` gives
//! each node a certificate from the lab's CA and writes the cluster file
//! with `sslmode = "verify-full"`, `sslrootcert`, `sslcert` and `sslkey`.
//! With them the cluster converges, switches over and re-bases, every
//! connection over TLS; with a CA that signed nothing, each connection
//! fails and says which node and that it is about a certificate.

use std::process::{Command, Stdio};

use crate::lab::Lab;
use crate::lab::fixture::lab_sh;
use crate::support::{apply_ok, edit_config, kept_old_data_dirs, pgrepl, set_primary, text};

/// `lab.sh --k K tls`: certificates on every node, ssl and log_connections
/// on, the cluster file with verify-full.
fn tls_on(lab: &Lab) {
    let out = Command::new("bash")
        .args([lab_sh(), "--k", &lab.k().to_string(), "tls"])
        .stdin(Stdio::null())
        .output()
        .expect("run lab.sh tls");
    assert!(out.status.success(), "lab.sh tls failed:\n{}", text(&out));
}

/// On node `i`: each streaming standby as `name:ssl:client DN`, from
/// pg_stat_replication joined with pg_stat_ssl.
fn replication_tls(lab: &Lab, i: usize) -> String {
    lab.sql(
        i,
        "SELECT string_agg(r.application_name || ':' || s.ssl || ':' || coalesce(s.client_dn, ''), ',' ORDER BY r.application_name) \
         FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)",
    )
}

/// The `connection authorized` lines of node `i`'s server logs (the lab's
/// and the one pg_ctl writes when pgrepl starts it) that hold `who`.
fn authorized(lab: &Lab, i: usize, who: &str) -> Vec<String> {
    let out = lab.exec(
        i,
        &[
            "sh",
            "-c",
            "cat /var/log/postgresql/*.log \"$1\"/../pgrepl-postgresql.log 2>/dev/null",
            "sh",
            &lab.data_dir(),
        ],
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("connection authorized") && l.contains(who))
        .map(String::from)
        .collect()
}

/// Every connection holding `who` (`application_name=pg_basebackup `,
/// `user=pgrepl_rewind `: pg_rewind sets no application name) that node
/// `i` let in used TLS, and there was at least one.
#[track_caller]
fn all_tls(lab: &Lab, i: usize, who: &str) {
    let lines = authorized(lab, i, who);
    assert!(!lines.is_empty(), "node{i} logged no connection of {who}");
    for l in &lines {
        assert!(l.contains("SSL enabled (protocol=TLS"), "not TLS: {l}");
    }
}

/// Makes node `i` a second primary with a row of its own: diverged.
fn diverge(lab: &Lab, i: usize) {
    assert_eq!(lab.sql(i, "SELECT pg_promote()"), "t");
    lab.sql(i, "INSERT INTO lab_data(note) VALUES ('diverged')");
}

/// `apply --target NODE` fails, saying `what`, libpq's certificate
/// message, and that it is a TLS problem.
#[track_caller]
fn fails_on_the_certificate(lab: &Lab, node: &str, what: &str) {
    let out = pgrepl(lab, &["apply", "--auto-approve", "--target", node]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    for needle in [what, "certificate verify failed", "a TLS problem"] {
        assert!(said.contains(needle), "{needle:?} in {said}");
    }
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn verify_full_converges_switches_over_and_rebases_over_tls() {
    let lab = Lab::for_test(
        "verify_full_converges_switches_over_and_rebases_over_tls",
        3,
    );
    tls_on(&lab);
    // New standbys by base backup, then streaming: all over TLS, each
    // standby presenting its own certificate (sslcert, sslkey).
    apply_ok(&lab, &[]);
    assert_eq!(
        replication_tls(&lab, 1),
        "node2:true:/CN=node2,node3:true:/CN=node3"
    );
    all_tls(&lab, 1, "application_name=pg_basebackup ");
    // From 16 on (the lab's file names its major), libpq also refuses a
    // server that asks for anything but SCRAM.
    let conninfo = lab.sql(2, "SHOW primary_conninfo");
    let major: u32 = lab.major().parse().expect("the lab's major");
    assert_eq!(
        conninfo.contains(" require_auth=scram-sha-256"),
        major >= 16,
        "PostgreSQL {major}: {conninfo}"
    );
    // Switchover: the old primary streams from the new one, over TLS.
    set_primary(&lab, "node2");
    apply_ok(&lab, &[]);
    assert_eq!(
        replication_tls(&lab, 2),
        "node1:true:/CN=node1,node3:true:/CN=node3"
    );
    // Re-base by pg_rewind, over TLS.
    diverge(&lab, 3);
    let out = text(&apply_ok(&lab, &[]));
    assert!(out.contains("by pg_rewind"), "{out}");
    all_tls(&lab, 2, "user=pgrepl_rewind ");
    assert_eq!(
        replication_tls(&lab, 2),
        "node1:true:/CN=node1,node3:true:/CN=node3"
    );
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_wrong_ca_fails_each_connection_naming_the_node_and_tls() {
    let lab = Lab::for_test(
        "a_wrong_ca_fails_each_connection_naming_the_node_and_tls",
        3,
    );
    tls_on(&lab);
    apply_ok(&lab, &["--target", "node2"]);
    edit_config(
        &lab,
        "sslrootcert = \"/var/lib/postgresql/tls/root.crt\"",
        "sslrootcert = \"/var/lib/postgresql/tls/wrong-root.crt\"",
    );
    // A new standby's base backup.
    fails_on_the_certificate(&lab, "node3", "pg_basebackup on node3 from node1 failed");
    // A re-base: pg_rewind cannot connect, and pgrepl stops there (a base
    // backup over the same connection would fail alike): nothing is moved
    // aside, the node stays stopped for the next apply.
    diverge(&lab, 2);
    fails_on_the_certificate(
        &lab,
        "node2",
        "pg_rewind on node2 could not connect to its source node1",
    );
    assert!(
        !kept_old_data_dirs(&lab, 2).status.success(),
        "nothing is kept aside"
    );
    // The right CA again: the re-base and the base backup go through.
    edit_config(
        &lab,
        "sslrootcert = \"/var/lib/postgresql/tls/wrong-root.crt\"",
        "sslrootcert = \"/var/lib/postgresql/tls/root.crt\"",
    );
    let out = text(&apply_ok(&lab, &[]));
    assert!(out.contains("by pg_rewind"), "{out}");
    assert_eq!(
        replication_tls(&lab, 1),
        "node2:true:/CN=node2,node3:true:/CN=node3"
    );
}

// ---- the `[replication]` TLS keys in the loader (pure)

/// A two-node file whose `[replication]` table ends with `extra`.
fn load_with(extra: &str) -> Result<pgrepl::config::Config, pgrepl::config::ConfigError> {
    let text = format!(
        "[cluster]\nname = \"t\"\nprimary = \"db1\"\n[nodes.db1]\nhost = \"10.0.0.1\"\n[nodes.db2]\nhost = \"10.0.0.2\"\n\
         [replication]\nuser = \"replicator\"\npassword = {{ env = \"REPL_PW\" }}\n{extra}"
    );
    pgrepl::config::load_str(
        &text,
        std::path::Path::new("pgrepl.toml"),
        &crate::config::FakeSources::default(),
    )
}

#[test]
fn tls_files_are_absolute_paths_and_the_client_pair_comes_together() {
    let cfg = load_with(
        "sslmode = \"verify-full\"\nsslrootcert = \"/etc/tls/it's a \\\\ root.crt\"\nsslcert = \"/etc/tls/c.crt\"\nsslkey = \"/etc/tls/c.key\"\n",
    )
    .expect("valid");
    let r = &cfg.replication;
    assert_eq!(
        r.sslrootcert.as_deref(),
        Some("/etc/tls/it's a \\ root.crt")
    );
    assert_eq!(r.sslcert.as_deref(), Some("/etc/tls/c.crt"));
    assert_eq!(r.sslkey.as_deref(), Some("/etc/tls/c.key"));
    // verify-full without sslrootcert: libpq's ~/.postgresql/root.crt.
    let cfg = load_with("sslmode = \"verify-full\"\n").expect("valid");
    assert_eq!(cfg.replication.sslrootcert, None);
    for (extra, says) in [
        (
            "sslrootcert = \"root.crt\"\n",
            "`replication.sslrootcert` must be an absolute file path",
        ),
        (
            "sslrootcert = \"/etc/tls/\"\n",
            "`replication.sslrootcert` must be an absolute file path",
        ),
        (
            "sslrootcert = \"/etc/a\\nb\"\n",
            "`replication.sslrootcert` must be an absolute file path",
        ),
        (
            "sslrootcert = \"/etc/a\\u0000b\"\n",
            "`replication.sslrootcert` must be an absolute file path",
        ),
        (
            "sslcert = \"/c.crt\"\n",
            "`replication.sslcert` and `replication.sslkey` come together",
        ),
        (
            "sslkey = \"/c.key\"\n",
            "`replication.sslcert` and `replication.sslkey` come together",
        ),
        (
            "sslcert = \"\"\nsslkey = \"/k\"\n",
            "`replication.sslcert` must be an absolute file path",
        ),
    ] {
        let err = load_with(extra)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(says), "{extra:?}: {err}");
    }
}
