//! The cluster file: every loader rule with a failing fixture, the shipped
//! examples against `pgrepl validate` and the JSON Schema, and a loader that
//! never panics. Pure: no node is contacted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use pgrepl::config::{self, Config, ConfigError, Sources};

/// Environment and password files for tests, without touching the process.
pub struct FakeSources {
    pub env: HashMap<String, String>,
    pub files: HashMap<PathBuf, Result<String, String>>,
}

impl Default for FakeSources {
    fn default() -> Self {
        let env = [
            ("PGREPL_REPLICATION_PASSWORD", "s3cret-repl"),
            ("PGREPL_REWIND_PASSWORD", "s3cret-rewind"),
            ("REPL_PW", "pw"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        FakeSources {
            env,
            files: HashMap::new(),
        }
    }
}

impl Sources for FakeSources {
    fn env(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }
    fn read_secret_file(&self, path: &Path) -> Result<String, String> {
        self.files.get(path).cloned().unwrap_or_else(|| {
            Err(format!(
                "cannot read {}: No such file or directory (os error 2)",
                path.display()
            ))
        })
    }
}

fn load(text: &str) -> Result<Config, ConfigError> {
    config::load_str(text, Path::new("pgrepl.toml"), &FakeSources::default())
}

fn errors(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

const BASE_NODES: &str = r#"
[nodes.db1]
host = "10.0.0.1"

[nodes.db2]
host = "10.0.0.2"

[replication]
user = "replicator"
password = { env = "REPL_PW" }
"#;

fn with_cluster(extra: &str) -> String {
    format!("[cluster]\nname = \"t\"\nprimary = \"db1\"\n{BASE_NODES}{extra}")
}

#[test]
fn minimal_file_loads_with_defaults() {
    let cfg = load(&with_cluster("")).expect("valid");
    assert_eq!(cfg.nodes.len(), 2);
    let db2 = &cfg.nodes["db2"];
    assert_eq!(db2.upstream.as_deref(), Some("db1"));
    assert_eq!(cfg.nodes["db1"].upstream, None);
    assert_eq!(db2.ssh.user, "postgres");
    assert_eq!(db2.ssh.port, 22);
    assert_eq!(db2.ssh.connect_timeout, std::time::Duration::from_secs(10));
    assert_eq!(db2.postgres.port, 5432);
    assert_eq!(db2.postgres.data_dir, "/var/lib/postgresql/15/main");
    assert!(cfg.replication.slots);
    assert_eq!(cfg.replication.sslmode, "prefer");
    assert_eq!(cfg.replication.max_lag_on_failover, 1024 * 1024);
    assert_eq!(cfg.replication.password.expose(), "pw");
    assert!(cfg.rewind.is_none());
}

#[test]
fn node_order_is_file_order() {
    let text = "[cluster]\nname='t'\nprimary='zz'\n[nodes.zz]\nhost='h1'\n[nodes.aa]\nhost='h2'\n[nodes.mm]\nhost='h3'\n[replication]\nuser='r'\npassword={env='REPL_PW'}\n";
    let cfg = load(text).expect("valid");
    let names: Vec<&str> = cfg.nodes.keys().map(String::as_str).collect();
    assert_eq!(names, ["zz", "aa", "mm"]);
}

#[test]
fn per_node_overrides_merge_over_defaults() {
    let cfg = load(&with_cluster(
        r#"
[ssh]
user = "pg"
port = 2200
[postgres]
port = 5433
service = { systemd = "postgresql@15-main" }
[settings]
max_connections = 100
work_mem = "4MB"
[nodes.db2.ssh]
port = 2201
[nodes.db2.postgres]
service = { pg_ctlcluster = "15/main" }
[nodes.db2.settings]
work_mem = "8MB"
"#,
    ))
    .expect("valid");
    let (db1, db2) = (&cfg.nodes["db1"], &cfg.nodes["db2"]);
    assert_eq!((db1.ssh.user.as_str(), db1.ssh.port), ("pg", 2200));
    assert_eq!((db2.ssh.user.as_str(), db2.ssh.port), ("pg", 2201));
    assert_eq!(db2.postgres.port, 5433);
    assert_eq!(
        db1.postgres.service,
        config::Service::Systemd("postgresql@15-main".into())
    );
    assert_eq!(
        db2.postgres.service,
        config::Service::PgCtlCluster("15/main".into())
    );
    assert_eq!(
        db1.settings["work_mem"].value,
        toml::Value::String("4MB".into())
    );
    assert_eq!(
        db2.settings["work_mem"].value,
        toml::Value::String("8MB".into())
    );
    assert_eq!(
        db2.settings["max_connections"].value,
        toml::Value::Integer(100)
    );
}

#[test]
fn node_names_in_hba_expand_to_host_cidrs() {
    let cfg = load(&with_cluster(
        "[[hba]]\ntype='host'\ndatabase='app'\nuser='app'\naddress='db2'\nmethod='scram-sha-256'\n",
    ))
    .expect("valid");
    assert_eq!(cfg.hba[0].address.as_deref(), Some("10.0.0.2/32"));
}

#[test]
fn setting_names_are_case_insensitive() {
    let cfg = load(&with_cluster("[settings]\nMax_Connections = 50\n")).expect("valid");
    assert!(cfg.nodes["db1"].settings.contains_key("max_connections"));
}

#[test]
fn password_from_file_strips_one_newline() {
    let mut sources = FakeSources::default();
    sources
        .files
        .insert(PathBuf::from("/etc/pgrepl/pw"), Ok("pa ss\n".to_string()));
    let text = with_cluster("").replace("{ env = \"REPL_PW\" }", "{ file = \"/etc/pgrepl/pw\" }");
    let cfg = config::load_str(&text, Path::new("pgrepl.toml"), &sources).expect("valid");
    assert_eq!(cfg.replication.password.expose(), "pa ss");
    assert!(
        !format!("{cfg:?}").contains("pa ss"),
        "Debug must not show secrets"
    );
}

#[test]
fn relative_password_file_is_relative_to_the_cluster_file() {
    let mut sources = FakeSources::default();
    sources
        .files
        .insert(PathBuf::from("/srv/conf/secret"), Ok("x".to_string()));
    let text = with_cluster("").replace("{ env = \"REPL_PW\" }", "{ file = \"secret\" }");
    let cfg = config::load_str(&text, Path::new("/srv/conf/pgrepl.toml"), &sources).expect("valid");
    assert_eq!(cfg.replication.password.expose(), "x");
}

/// Each rule of SPEC section 1, with the message users read (snapshots).
macro_rules! rule {
    ($name:ident, $text:expr) => {
        #[test]
        fn $name() {
            insta::assert_snapshot!(errors(&$text));
        }
    };
}

rule!(
    syntax_error,
    with_cluster("[settings\nwal_level = 'replica'\n")
);
rule!(
    unknown_key_suggests,
    "[cluster]\nname = \"t\"\nprimry = \"db1\"\n".to_string() + BASE_NODES
);
rule!(
    unknown_key_in_node,
    with_cluster("[nodes.db3]\nhots = \"10.0.0.3\"\n")
);
rule!(
    unknown_top_level_table,
    with_cluster("[replicaton]\nuser = 'x'\n")
);
rule!(
    missing_primary_key,
    "[cluster]\nname = \"t\"\n".to_string() + BASE_NODES
);
rule!(wrong_type, with_cluster("[ssh]\nport = \"22\"\n"));
rule!(
    bad_cluster_name,
    with_cluster("").replace("name = \"t\"", "name = \"Orders Cluster\"")
);
rule!(
    bad_node_name,
    with_cluster("[nodes.DB-3]\nhost = \"10.0.0.3\"\n")
);
rule!(
    primary_not_a_node,
    with_cluster("").replace("primary = \"db1\"", "primary = \"db9\"")
);
rule!(
    primary_typo_suggests,
    with_cluster("").replace("primary = \"db1\"", "primary = \"dbl\"")
);
rule!(
    upstream_not_a_node,
    with_cluster("[nodes.db3]\nhost = \"10.0.0.3\"\nupstream = \"db7\"\n")
);
rule!(
    upstream_self,
    with_cluster("[nodes.db3]\nhost = \"10.0.0.3\"\nupstream = \"db3\"\n")
);
rule!(
    upstream_cycle,
    with_cluster(
        "[nodes.db3]\nhost = \"10.0.0.3\"\nupstream = \"db4\"\n[nodes.db4]\nhost = \"10.0.0.4\"\nupstream = \"db3\"\n"
    )
);
rule!(
    primary_with_upstream,
    with_cluster("").replace(
        "host = \"10.0.0.1\"",
        "host = \"10.0.0.1\"\nupstream = \"db2\""
    )
);
rule!(
    duplicate_host,
    with_cluster("[nodes.db3]\nhost = \"10.0.0.2\"\n")
);
rule!(
    synchronous_unknown_standby,
    with_cluster("").replace(
        "[replication]",
        "[replication]\nsynchronous = { standbys = [\"db5\"] }"
    )
);
rule!(
    synchronous_cascaded_standby,
    with_cluster("[nodes.db3]\nhost = \"10.0.0.3\"\nupstream = \"db2\"\n").replace(
        "[replication]",
        "[replication]\nsynchronous = { count = 1, standbys = [\"db3\"] }"
    )
);
rule!(
    synchronous_count_too_high,
    with_cluster("").replace(
        "[replication]",
        "[replication]\nsynchronous = { count = 3, standbys = [\"db2\"] }"
    )
);
rule!(
    inline_password,
    with_cluster("").replace("{ env = \"REPL_PW\" }", "\"hunter2\"")
);
rule!(
    missing_password_env,
    with_cluster("").replace("REPL_PW", "NOT_SET_ANYWHERE")
);
rule!(
    password_both_sources,
    with_cluster("").replace(
        "{ env = \"REPL_PW\" }",
        "{ env = \"REPL_PW\", file = \"/x\" }"
    )
);
rule!(
    unreadable_password_file,
    with_cluster("").replace("{ env = \"REPL_PW\" }", "{ file = \"/nonexistent/pw\" }")
);
rule!(
    rewind_same_user_as_replication,
    with_cluster("[rewind]\nuser = \"replicator\"\npassword = { env = \"REPL_PW\" }\n")
);
rule!(
    bad_cidr,
    with_cluster(
        "[[hba]]\ntype = \"host\"\ndatabase = \"app\"\nuser = \"app\"\naddress = \"10.0.3.0/33\"\nmethod = \"md5\"\n"
    )
);
rule!(
    address_unknown_node,
    with_cluster(
        "[[hba]]\ntype = \"host\"\ndatabase = \"app\"\nuser = \"app\"\naddress = \"db3\"\nmethod = \"md5\"\n"
    )
);
rule!(
    address_without_prefix,
    with_cluster(
        "[[hba]]\ntype = \"host\"\ndatabase = \"app\"\nuser = \"app\"\naddress = \"10.0.3.7\"\nmethod = \"md5\"\n"
    )
);
rule!(
    bad_hba_type,
    with_cluster(
        "[[hba]]\ntype = \"hots\"\ndatabase = \"app\"\nuser = \"app\"\naddress = \"10.0.0.0/8\"\nmethod = \"md5\"\n"
    )
);
rule!(
    bad_hba_method,
    with_cluster(
        "[[hba]]\ntype = \"host\"\ndatabase = \"app\"\nuser = \"app\"\naddress = \"10.0.0.0/8\"\nmethod = \"scram\"\n"
    )
);
rule!(
    peer_on_host_rule,
    with_cluster(
        "[[hba]]\ntype = \"host\"\ndatabase = \"app\"\nuser = \"app\"\naddress = \"10.0.0.0/8\"\nmethod = \"peer\"\n"
    )
);
rule!(
    local_rule_with_address,
    with_cluster(
        "[[hba]]\ntype = \"local\"\ndatabase = \"app\"\nuser = \"app\"\naddress = \"10.0.0.0/8\"\nmethod = \"peer\"\n"
    )
);
rule!(
    host_rule_without_address,
    with_cluster(
        "[[hba]]\ntype = \"host\"\ndatabase = \"app\"\nuser = \"app\"\nmethod = \"md5\"\n"
    )
);
rule!(
    unknown_guc_suggests,
    with_cluster("[settings]\nwal_levl = \"replica\"\n")
);
rule!(
    unknown_guc_no_suggestion,
    with_cluster("[settings]\nzzqx_frobnicate = 1\n")
);
rule!(
    bool_guc_bad_value,
    with_cluster("[settings]\nhot_standby = \"maybe\"\n")
);
rule!(
    integer_guc_bad_value,
    with_cluster("[settings]\nmax_wal_senders = \"ten\"\n")
);
rule!(
    memory_unit_is_case_sensitive,
    with_cluster("[settings]\nwal_keep_size = \"1gb\"\n")
);
rule!(
    time_unit_unknown,
    with_cluster("[settings]\ncheckpoint_timeout = \"5 minutes\"\n")
);
rule!(
    enum_guc_bad_value,
    with_cluster("[settings]\nwal_level = \"logical2\"\n")
);
rule!(
    guc_out_of_range,
    with_cluster("[settings]\nmax_connections = 4000000\n")
);
rule!(
    owned_primary_conninfo,
    with_cluster("[settings]\nprimary_conninfo = \"host=x\"\n")
);
rule!(
    owned_synchronous_standby_names,
    with_cluster("[nodes.db2.settings]\nsynchronous_standby_names = \"*\"\n")
);
rule!(owned_port, with_cluster("[settings]\nport = 5433\n"));
rule!(
    owned_data_directory,
    with_cluster("[settings]\ndata_directory = \"/srv/pg\"\n")
);
rule!(
    removed_guc_for_version,
    with_cluster("[settings]\nwal_keep_segments = 64\n").replace(
        "primary = \"db1\"",
        "primary = \"db1\"\npostgres_version = 15"
    )
);
rule!(
    standby_lower_hot_standby_setting,
    with_cluster(
        "[settings]\nmax_connections = 200\n[nodes.db2.settings]\nmax_connections = 100\n"
    )
);
rule!(
    known_hosts_off,
    with_cluster("[ssh]\nknown_hosts = \"off\"\n")
);
rule!(
    bad_connect_timeout,
    with_cluster("[ssh]\nconnect_timeout = \"10 sec\"\n")
);
rule!(
    bad_service,
    with_cluster("[postgres]\nservice = \"systemctl\"\n")
);
rule!(
    relative_data_dir,
    with_cluster("[postgres]\ndata_dir = \"data\"\n")
);
rule!(
    bad_sslmode,
    with_cluster("").replace("[replication]", "[replication]\nsslmode = \"on\"")
);
rule!(
    slot_named_like_node,
    with_cluster("[[slots]]\nname = \"db2\"\n")
);
rule!(
    bad_slot_name,
    with_cluster("[[slots]]\nname = \"Barman-1\"\n")
);
rule!(
    no_nodes,
    String::from(
        "[cluster]\nname = \"t\"\nprimary = \"db1\"\n[nodes]\n[replication]\nuser = \"r\"\npassword = { env = \"REPL_PW\" }\n"
    )
);
rule!(
    unsupported_postgres_version,
    with_cluster("").replace(
        "primary = \"db1\"",
        "primary = \"db1\"\npostgres_version = 11"
    )
);

#[test]
fn every_problem_is_reported_at_once() {
    let text = with_cluster(
        "[nodes.db3]\nhost = \"10.0.0.2\"\nupstream = \"nope\"\n[settings]\nwal_levl = 'replica'\nhot_standby = 'maybe'\n",
    );
    let err = load(&text).expect_err("invalid");
    assert_eq!(err.diagnostics.len(), 4, "{err}");
}

#[test]
fn errors_never_contain_secrets() {
    let text = with_cluster("[settings]\nwal_levl = 'replica'\n");
    let err = errors(&text);
    assert!(!err.contains("pw\n") && !err.contains("s3cret"), "{err}");
}

// ---- the shipped examples and the bad fixtures, through the real binary and the schema

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

fn schema() -> jsonschema::Validator {
    let text =
        std::fs::read_to_string(repo().join("schemas/pgrepl.schema.json")).expect("schema file");
    let value: serde_json::Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::validator_for(&value).expect("schema is a valid JSON Schema")
}

fn as_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("readable");
    let value: toml::Value =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::to_value(value).expect("json")
}

fn validate_cmd(path: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pgrepl"))
        .args(["validate", "-c"])
        .arg(path)
        .env("PGREPL_REPLICATION_PASSWORD", "example-repl")
        .env("PGREPL_REWIND_PASSWORD", "example-rewind")
        .output()
        .expect("run pgrepl")
}

/// git does not keep file modes beyond 644/755; the example secrets must be 0600.
fn protect_example_secrets() {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(repo().join("examples/secrets")).expect("examples/secrets") {
        let path = entry.expect("entry").path();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
}

#[test]
fn examples_pass_the_schema_and_validate() {
    protect_example_secrets();
    let validator = schema();
    let examples = toml_files(&repo().join("examples"));
    assert!(
        examples.len() >= 4,
        "expected at least 4 examples, found {}",
        examples.len()
    );
    for path in examples {
        let doc = as_json(&path);
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{} fails the schema: {errors:#?}",
            path.display()
        );
        let out = validate_cmd(&path);
        assert!(
            out.status.success(),
            "{} fails validate: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.starts_with("Configuration is valid: "), "{stdout}");
    }
}

#[test]
fn invalid_fixtures_fail_the_schema_and_validate() {
    let validator = schema();
    let fixtures = toml_files(&repo().join("tests/fixtures/invalid"));
    assert!(
        fixtures.len() >= 8,
        "expected bad fixtures, found {}",
        fixtures.len()
    );
    for path in fixtures {
        let text = std::fs::read_to_string(&path).expect("readable");
        if let Ok(value) = toml::from_str::<toml::Value>(&text) {
            let doc = serde_json::to_value(value).expect("json");
            assert!(
                !validator.is_valid(&doc),
                "{} passes the schema",
                path.display()
            );
        }
        let out = validate_cmd(&path);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{} passes validate",
            path.display()
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        assert!(
            stderr.contains(&format!("{name}:")),
            "{}: error does not name the file and line:\n{stderr}",
            path.display()
        );
        assert!(
            stderr.contains("help:"),
            "{}: error gives no hint:\n{stderr}",
            path.display()
        );
    }
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = validate_cmd(Path::new("/nonexistent/pgrepl.toml"));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read the cluster file /nonexistent/pgrepl.toml"),
        "{stderr}"
    );
    assert!(stderr.contains("-c FILE"), "{stderr}");
}

// ---- the loader never panics

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    fn examples_text() -> Vec<String> {
        toml_files(&repo().join("examples"))
            .into_iter()
            .map(|p| std::fs::read_to_string(p).expect("readable"))
            .collect()
    }

    #[test]
    fn every_prefix_of_every_example() {
        for text in examples_text() {
            for end in (0..=text.len()).filter(|i| text.is_char_boundary(*i)) {
                let _ = load(&text[..end]);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_text(s in "\\PC{0,400}") {
            let _ = load(&s);
        }

        #[test]
        fn mutated_examples(idx in 0usize..4, pos in 0usize..4000, junk in "[\\[\\]={}\"'#\\n a-z0-9.,_-]{0,12}") {
            let texts = examples_text();
            let text = &texts[idx % texts.len()];
            let mut pos = pos % (text.len() + 1);
            while !text.is_char_boundary(pos) { pos -= 1; }
            let mutated = format!("{}{}{}", &text[..pos], junk, &text[pos..]);
            let _ = load(&mutated);
        }
    }
}

rule!(
    not_settable_guc,
    with_cluster("[settings]\nblock_size = 8192\n")
);
rule!(
    too_few_wal_senders,
    with_cluster("[settings]\nmax_wal_senders = 1\n")
);
rule!(
    hot_standby_off,
    with_cluster("[settings]\nhot_standby = false\n")
);
rule!(
    wal_level_minimal,
    with_cluster("[settings]\nwal_level = \"minimal\"\nmax_wal_senders = 0\n")
);
rule!(
    wal_level_minimal_on_one_node,
    with_cluster("[nodes.db2.settings]\nwal_level = \"minimal\"\n")
);
rule!(
    too_few_replication_slots,
    with_cluster("[settings]\nmax_replication_slots = 0\n")
);
rule!(
    too_few_replication_slots_for_extra_slots,
    with_cluster("[settings]\nmax_replication_slots = 1\n[[slots]]\nname = \"barman\"\n")
);
rule!(
    too_few_wal_senders_for_extra_slots,
    with_cluster("[settings]\nmax_wal_senders = 2\n[[slots]]\nname = \"barman\"\n")
);

#[test]
fn just_enough_slots_and_senders_are_valid() {
    let cfg = load(&with_cluster(
        "[settings]\nmax_replication_slots = 2\nmax_wal_senders = 3\nwal_level = \"logical\"\n[[slots]]\nname = \"barman\"\n",
    ))
    .expect("valid");
    assert_eq!(cfg.extra_slots, ["barman"]);
}

// ---- issue 14: what apply would refuse, secrets never echoed, linear work

fn with_password_file(text: &str) -> Result<Config, ConfigError> {
    let mut sources = FakeSources::default();
    sources
        .files
        .insert(PathBuf::from("/etc/pgrepl/pw"), Ok(text.to_string()));
    let file = with_cluster("").replace("{ env = \"REPL_PW\" }", "{ file = \"/etc/pgrepl/pw\" }");
    config::load_str(&file, Path::new("pgrepl.toml"), &sources)
}

#[test]
fn passwords_with_a_line_break_are_refused() {
    for text in ["a\nb\n", "a\rb", "a\n\n", "a\0b"] {
        let e = with_password_file(text).expect_err(text).to_string();
        assert!(e.contains("pgrepl.toml:13:12"), "{e}");
        assert!(
            e.contains("holds more than one line")
                || e.contains("holds a line break")
                || e.contains("holds a NUL"),
            "{e}"
        );
    }
    let cfg = with_password_file("pw\r\n").expect("one line, CRLF");
    assert_eq!(cfg.replication.password.expose(), "pw");
    let mut sources = FakeSources::default();
    sources.env.insert("REPL_PW".into(), "pw\nmore".into());
    let e = config::load_str(&with_cluster(""), Path::new("pgrepl.toml"), &sources)
        .expect_err("env with LF")
        .to_string();
    assert!(
        e.contains("environment variable REPL_PW (for `replication.password`) holds a line break"),
        "{e}"
    );
}

#[test]
fn an_inline_password_is_masked_in_every_echoed_line() {
    // A TOML syntax error on the password's line.
    let text = with_cluster("").replace("{ env = \"REPL_PW\" }", "\"hunter2\" oops");
    let e = errors(&text);
    assert!(!e.contains("hunter2"), "{e}");
    assert!(e.contains("13 | password = \"(sensitive)\" oops"), "{e}");
    // In an inline table, with an unknown key on the same line.
    let text = with_cluster("").replace(
        "[replication]\nuser = \"replicator\"\npassword = { env = \"REPL_PW\" }",
        "replication = { user = \"r\", pasword = 1, password = 'hunter2' }",
    );
    let e = errors(&text);
    assert!(!e.contains("hunter2"), "{e}");
    assert!(e.contains("password = \"(sensitive)\" }"), "{e}");
}

#[test]
fn echoed_lines_are_cut() {
    let e = errors(&with_cluster(&format!(
        "[settings]\n{} = 1\n",
        "y".repeat(5000)
    )));
    assert!(e.lines().all(|l| l.chars().count() < 400), "{e}");
    assert!(e.contains('…'), "{e}");
}

#[test]
fn hosts_are_addresses_or_names() {
    for ok in [
        "10.0.0.3",
        "2001:db8::3",
        "db3",
        "db3.example.com",
        "DB3.example.com.",
    ] {
        load(&with_cluster(&format!("[nodes.db3]\nhost = {ok:?}\n"))).expect(ok);
    }
    for bad in [
        "-oProxyCommand=x",
        "db3#x",
        "db 3",
        "db3/x",
        "-db3",
        "10.0.0.256",
        "[2001:db8::3]",
        "db3_x",
    ] {
        let e = errors(&with_cluster(&format!("[nodes.db3]\nhost = {bad:?}\n")));
        assert!(e.contains("invalid host"), "{bad}: {e}");
    }
    let e = errors(&with_cluster(
        "[nodes.db3]\nhost = \"ssh://admin@db3.example.com:2222\"\n",
    ));
    assert!(e.contains("not an SSH target"), "{e}");
    assert!(
        e.contains("`host = \"db3.example.com\"`, and `user = \"admin\"` in `[ssh]`"),
        "{e}"
    );
    assert!(e.contains("`port = 2222` in `[ssh]`"), "{e}");
}

#[test]
fn validate_refuses_what_apply_would_refuse() {
    for (extra, want) in [
        (
            "[settings]\n\"app.b$c\" = 1\n",
            "not a valid custom setting name",
        ),
        (
            "[settings]\n\"app.1b\" = 1\n",
            "not a valid custom setting name",
        ),
        ("[settings]\n\"app.x\" = \"a\\nb\"\n", "holds a line break"),
        (
            "[settings]\napplication_name = \"a\\u0000b\"\n",
            "holds a NUL",
        ),
        (
            "[settings]\nshared_preload_libraries = [\"a\", \"b\\rc\"]\n",
            "holds a line break",
        ),
        (
            "[postgres]\nservice = { systemd = \"-x\" }\n",
            "invalid systemd unit",
        ),
        (
            "[postgres]\nservice = { systemd = \"a/b\" }\n",
            "invalid systemd unit",
        ),
        (
            "[postgres]\nservice = { pg_ctlcluster = \"15/-main\" }\n",
            "invalid pg_ctlcluster cluster",
        ),
        (
            "[postgres]\nservice = { pg_ctlcluster = \"15/main/x\" }\n",
            "invalid pg_ctlcluster cluster",
        ),
    ] {
        let e = errors(&with_cluster(extra));
        assert!(e.contains(want), "{extra}: {e}");
    }
}

/// Generous bounds for a debug build: today's main takes minutes on each.
fn loads_within(text: &str, secs: u64) -> Result<Config, ConfigError> {
    let start = std::time::Instant::now();
    let result = load(text);
    if let Err(e) = &result {
        let _ = e.to_string();
    }
    assert!(
        start.elapsed() < std::time::Duration::from_secs(secs),
        "took {:?}",
        start.elapsed()
    );
    result
}

#[test]
fn a_five_thousand_node_chain_loads_quickly() {
    let mut text = String::from(
        "[cluster]\nname = \"t\"\nprimary = \"n0\"\n[replication]\nuser = \"r\"\npassword = { env = \"REPL_PW\" }\n[settings]\nmax_wal_senders = 6000\nmax_replication_slots = 6000\n",
    );
    for i in 0..5000 {
        text.push_str(&format!(
            "[nodes.n{i}]\nhost = \"10.0.{}.{}\"\n",
            i / 256,
            i % 256
        ));
        if i > 0 {
            text.push_str(&format!("upstream = \"n{}\"\n", i - 1));
        }
    }
    let cfg = loads_within(&text, 10).expect("valid");
    assert_eq!(cfg.nodes["n4999"].upstream.as_deref(), Some("n4998"));
}

#[test]
fn a_megabyte_name_and_twenty_thousand_errors_report_quickly() {
    let e = loads_within(
        &with_cluster(&format!("[settings]\n{} = 1\n", "x".repeat(1 << 20))),
        10,
    )
    .expect_err("unknown");
    assert_eq!(e.diagnostics.len(), 1);
    let mut extra = String::from("[settings]\n");
    for i in 0..20_000 {
        extra.push_str(&format!("unknown_setting_{i:05} = {i}\n"));
    }
    let e = loads_within(&with_cluster(&extra), 20).expect_err("unknown");
    assert_eq!(e.diagnostics.len(), 20_000);
}

fn validate_file(dir: &Path, text: &str) -> std::process::Output {
    let path = dir.join("pgrepl.toml");
    std::fs::write(&path, text).expect("write");
    validate_cmd(&path)
}

#[test]
fn validate_exits_1_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = with_cluster("[nodes.db3]\nhost = \"admin@db3\"\n")
        .replace("REPL_PW", "PGREPL_REPLICATION_PASSWORD");
    let out = validate_file(dir.path(), &text);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pgrepl.toml:15:8"), "{stderr}");
    assert!(stderr.contains("`user = \"admin\"` in `[ssh]`"), "{stderr}");
}

#[test]
fn validate_does_not_hang_on_a_fifo_password_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("pw");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success()
    );
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let path = dir.path().join("pgrepl.toml");
    let text = with_cluster("").replace("{ env = \"REPL_PW\" }", "{ file = \"pw\" }");
    std::fs::write(&path, text).expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgrepl"))
        .args(["validate", "-c"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run pgrepl");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("validate hangs on a FIFO password file");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr");
    assert!(stderr.contains("is a FIFO, not a regular file"), "{stderr}");
}

const POOLERS: &str = r#"
[pgbouncer]
pause_timeout = "2s"

[pgbouncer.databases]
app = { dbname = "appdb", to = "primary", pool_size = 20 }
app_ro = { dbname = "appdb", to = "standbys" }
app_db2 = { to = "db2" }

[poolers.pgb1]
host = "10.0.0.20"

[poolers.pgb1.ssh]
port = 2222
"#;

#[test]
fn poolers_load_with_their_defaults() {
    let cfg = load(&with_cluster(POOLERS)).expect("valid");
    let pgb = cfg.pgbouncer.as_ref().expect("[pgbouncer]");
    assert_eq!(pgb.ini, "/etc/pgbouncer/pgbouncer.ini");
    assert_eq!(pgb.port, 6432);
    assert_eq!(pgb.admin_user, "pgbouncer");
    assert_eq!(pgb.pause_timeout, std::time::Duration::from_secs(2));
    let to: Vec<_> = pgb.databases.iter().map(|d| d.to.clone()).collect();
    assert_eq!(
        to,
        [
            config::PoolTarget::Primary,
            config::PoolTarget::Standbys,
            config::PoolTarget::Node("db2".into())
        ]
    );
    assert_eq!(
        pgb.databases[0].options,
        [("pool_size".into(), "20".into())]
    );
    assert_eq!(pgb.databases[2].dbname, "app_db2");
    let p = &cfg.poolers["pgb1"];
    assert_eq!(p.reach.ssh.port, 2222);
    assert_eq!(p.reach.postgres.socket_dir, "/var/run/postgresql");
    assert_eq!(p.reach.postgres.port, 6432);
}

#[test]
fn pooler_mistakes_are_errors_with_their_line() {
    let bad = POOLERS
        .replace("to = \"db2\"", "to = \"db9\"")
        .replace("\"2s\"", "\"2 weeks\"")
        .replace("pool_size = 20", "password = \"x\"");
    let e = errors(&with_cluster(&bad));
    assert!(e.contains("`to = \"db9\"`"), "{e}");
    assert!(e.contains("invalid pause_timeout"), "{e}");
    assert!(e.contains("no password in the cluster file"), "{e}");
    // Each names its line of the file.
    let text = with_cluster(&bad);
    let line_of = |needle: &str| {
        text.lines()
            .position(|l| l.contains(needle))
            .map(|i| format!(":{}:", i + 1))
            .expect("line")
    };
    for needle in ["db9", "2 weeks", "password = \"x\""] {
        assert!(
            e.contains(&line_of(needle)),
            "{needle} at {}: {e}",
            line_of(needle)
        );
    }
    let orphan = errors(&with_cluster("[poolers.pgb1]\nhost = \"10.0.0.20\"\n"));
    assert!(orphan.contains("needs a `[pgbouncer]` section"), "{orphan}");
    let clash = errors(&with_cluster(&POOLERS.replace("pgb1", "db1")));
    assert!(clash.contains("both a node and a pooler"), "{clash}");
}

#[test]
fn a_poolers_exec_comes_from_it_then_pgbouncer_then_direct() {
    use config::Exec;
    let cfg = load(&with_cluster(POOLERS)).expect("valid");
    assert_eq!(cfg.poolers["pgb1"].reach.exec, Exec::Direct);
    // A node's `[postgres] exec` is not a pooler's.
    let text = with_cluster(POOLERS).replacen(
        "[pgbouncer]\n",
        "[pgbouncer]\nexec = { sudo = \"pgbouncer\" }\n",
        1,
    );
    let cfg = load(&text).expect("valid");
    assert_eq!(
        cfg.poolers["pgb1"].reach.exec,
        Exec::Sudo("pgbouncer".into())
    );
    let own = text.replace(
        "host = \"10.0.0.20\"\n",
        "host = \"10.0.0.20\"\nexec = \"direct\"\n",
    );
    let cfg = load(&own).expect("valid");
    assert_eq!(cfg.poolers["pgb1"].reach.exec, Exec::Direct);
    let sudo = with_cluster(POOLERS).replace(
        "host = \"10.0.0.20\"\n",
        "host = \"10.0.0.20\"\nexec = { sudo = \"postgres\" }\n",
    );
    let cfg = load(&sudo).expect("valid");
    assert_eq!(
        cfg.poolers["pgb1"].reach.exec,
        Exec::Sudo("postgres".into())
    );
}

#[test]
fn a_pooler_in_a_container_or_an_unknown_exec_is_an_error_on_its_line() {
    for (exec, said) in [
        (
            "{ docker = \"pgb\" }",
            "does not reach a pgBouncer in a container",
        ),
        (
            "{ podman = \"pgb\" }",
            "does not reach a pgBouncer in a container",
        ),
        ("{ sudo = \"-u\" }", "invalid sudo user"),
        ("\"ssh\"", "unknown `exec`"),
    ] {
        let text = with_cluster(POOLERS).replace(
            "host = \"10.0.0.20\"\n",
            &format!("host = \"10.0.0.20\"\nexec = {exec}\n"),
        );
        let e = errors(&text);
        assert!(e.contains(said), "{exec}: {e}");
        let line = text
            .lines()
            .position(|l| l.starts_with("exec = "))
            .expect("exec line")
            + 1;
        assert!(
            e.contains(&format!(":{line}:")),
            "{exec} at line {line}: {e}"
        );
    }
}

// ---- exec: how commands reach PostgreSQL on a node

/// A two-node file with `postgres` in `[postgres]` and `db2` as the
/// extra lines of `[nodes.db2]`.
fn with_exec(postgres: &str, db2: &str) -> String {
    format!(
        "[cluster]\nname = \"t\"\nprimary = \"db1\"\n[ssh]\nuser = \"admin\"\n[postgres]\n{postgres}\n[nodes.db1]\nhost = \"10.0.0.1\"\n[nodes.db2]\nhost = \"10.0.0.2\"\n{db2}\n[replication]\nuser = \"replicator\"\npassword = {{ env = \"REPL_PW\" }}\n"
    )
}

#[test]
fn exec_comes_from_the_node_then_postgres_then_direct() {
    use config::Exec;
    let cfg = load(&with_exec("", "")).expect("valid");
    assert_eq!(cfg.nodes["db1"].exec, Exec::Direct);
    let cfg = load(&with_exec("exec = { sudo = \"postgres\" }", "")).expect("valid");
    assert_eq!(cfg.nodes["db1"].exec, Exec::Sudo("postgres".into()));
    assert_eq!(cfg.nodes["db2"].exec, Exec::Sudo("postgres".into()));
    for db2 in [
        "exec = \"direct\"",
        "[nodes.db2.postgres]\nexec = \"direct\"",
    ] {
        let cfg = load(&with_exec("exec = { sudo = \"postgres\" }", db2)).expect("valid");
        assert_eq!(
            cfg.nodes["db1"].exec,
            Exec::Sudo("postgres".into()),
            "{db2}"
        );
        assert_eq!(cfg.nodes["db2"].exec, Exec::Direct, "{db2}");
    }
    let cfg = load(&with_exec("", "exec = { sudo = \"pg_15.main-x\" }")).expect("valid");
    assert_eq!(cfg.nodes["db2"].exec, Exec::Sudo("pg_15.main-x".into()));
    assert_eq!(
        cfg.nodes["db2"].exec.kind().as_deref(),
        Some("sudo pg_15.main-x")
    );
    assert_eq!(cfg.nodes["db1"].exec.kind(), None);
}

#[test]
fn exec_in_a_container_names_the_engine_and_the_container() {
    use config::Exec;
    let cfg = load(&with_exec("", "exec = { docker = \"proxpanel-db\" }")).expect("valid");
    assert_eq!(cfg.nodes["db2"].exec, Exec::Docker("proxpanel-db".into()));
    assert_eq!(
        cfg.nodes["db2"].exec.kind().as_deref(),
        Some("docker proxpanel-db")
    );
    assert_eq!(cfg.nodes["db1"].exec, Exec::Direct);
    let cfg = load(&with_exec("exec = { podman = \"pg\" }", "")).expect("valid");
    assert_eq!(cfg.nodes["db1"].exec, Exec::Podman("pg".into()));
    // `[postgres] service` for the other nodes does not reach a container.
    let cfg = load(&with_exec(
        "service = { systemd = \"postgresql@15-main\" }",
        "exec = { docker = \"pg\" }",
    ))
    .expect("valid");
    assert_eq!(cfg.nodes["db2"].exec, Exec::Docker("pg".into()));
}
rule!(
    a_service_for_a_container_node_is_refused,
    with_exec(
        "",
        "exec = { docker = \"pg\" }\n[nodes.db2.postgres]\nservice = \"pg_ctl\""
    )
);
rule!(
    exec_set_twice_for_a_node,
    with_exec(
        "",
        "exec = { sudo = \"postgres\" }\n[nodes.db2.postgres]\nexec = \"direct\""
    )
);

#[test]
fn exec_names_that_sudo_or_docker_would_misread_are_refused() {
    for (exec, want) in [
        ("{ sudo = \"-u root\" }", "invalid sudo user"),
        ("{ sudo = \"--\" }", "invalid sudo user"),
        ("{ sudo = \"\" }", "invalid sudo user"),
        ("{ sudo = \"post gres\" }", "invalid sudo user"),
        ("{ sudo = \"postgres\\n\" }", "invalid sudo user"),
        ("{ sudo = \"pg\\u0000\" }", "invalid sudo user"),
        ("{ sudo = \"$(id)\" }", "invalid sudo user"),
        ("{ sudo = \"..\" }", "invalid sudo user"),
        ("{ sudo = \"a/b\" }", "invalid sudo user"),
        ("{ docker = \"-it\" }", "invalid docker container"),
        ("{ podman = \"a;b\" }", "invalid podman container"),
        ("\"sudo\"", "unknown `exec`"),
        ("{ su = \"postgres\" }", "unknown `exec`"),
        ("{ sudo = \"postgres\", docker = \"pg\" }", "unknown `exec`"),
        ("{ sudo = 5 }", "unknown `exec`"),
    ] {
        let text = with_exec(&format!("exec = {exec}"), "");
        let e = errors(&text);
        assert!(e.contains(want), "{exec}: {e}");
        assert!(
            e.contains("pgrepl.toml:7:"),
            "{exec}: the line of [postgres] exec: {e}"
        );
    }
    let long = "a".repeat(65);
    let e = errors(&with_exec(&format!("exec = {{ sudo = \"{long}\" }}"), ""));
    assert!(e.contains("invalid sudo user"), "{e}");
}

#[test]
fn an_ssh_user_that_ssh_would_read_as_an_option_is_an_error() {
    for bad in ["-oProxyCommand=x", "", "a b", "root@host", ".hidden"] {
        let e = errors(&with_exec("", "").replace("user = \"admin\"", &format!("user = {bad:?}")));
        assert!(e.contains("invalid ssh user"), "{bad:?}: {e}");
        assert!(e.contains(":5:"), "{bad:?} names its line: {e}");
    }
    assert!(load(&with_exec("", "").replace("\"admin\"", "\"pg_admin-2.x\"")).is_ok());
}
