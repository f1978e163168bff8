//! Tests for the GUC catalog and value normalisation. Expected values were
//! checked against a live PostgreSQL 15 (`SET x = '...'; SHOW x`).

use super::parse::{self, BaseUnit};
use super::*;
use proptest::prelude::*;
use toml::Value as V;

fn def(name: &str) -> &'static GucDef {
    match lookup(name) {
        Some(d) => d,
        None => panic!("{name} is not in the catalog"),
    }
}

fn s(v: &str) -> V {
    V::String(v.to_string())
}

fn desired(name: &str, v: V) -> Result<Normalized, ValueError> {
    normalize_desired(def(name), &v)
}

fn ok(name: &str, v: V) -> Normalized {
    match desired(name, v.clone()) {
        Ok(n) => n,
        Err(e) => panic!("{name} = {v:?}: unexpected error: {e}"),
    }
}

fn err(name: &str, v: V) -> String {
    match desired(name, v.clone()) {
        Ok(n) => panic!("{name} = {v:?}: expected an error, got {n:?}"),
        Err(e) => e.to_string(),
    }
}

fn observed(name: &str, setting: &str, unit: Option<&str>) -> Normalized {
    match normalize_observed(def(name), setting, unit) {
        Ok(n) => n,
        Err(e) => panic!("{name} observed {setting:?}: {e}"),
    }
}

// ---------------------------------------------------------------------------
// Catalog
// ---------------------------------------------------------------------------

/// The facts of one entry that differ between majors, for comparing
/// neighbouring entries of one name.
fn facts(d: &GucDef) -> String {
    format!(
        "{:?} {:?} {:?} {:?} {:?} {:?}",
        d.vartype, d.unit, d.context, d.enum_values, d.min, d.max
    )
}

#[test]
fn catalog_is_sorted_unique_and_consistent() {
    let gucs = catalog();
    assert!(gucs.len() > 420, "{} entries", gucs.len());
    for w in gucs.windows(2) {
        match super::cmp_ignore_case(w[0].name, w[1].name) {
            std::cmp::Ordering::Less => {}
            // Entries of one name: consecutive runs of majors, each with
            // other facts than the one before.
            std::cmp::Ordering::Equal => {
                assert_eq!(w[0].name, w[1].name);
                assert_eq!(w[0].until.map(|u| u + 1), Some(w[1].since), "{}", w[0].name);
                assert_ne!(facts(&w[0]), facts(&w[1]), "{}", w[0].name);
            }
            std::cmp::Ordering::Greater => panic!("{} / {}", w[0].name, w[1].name),
        }
    }
    for d in gucs {
        assert!((12..=18).contains(&d.since), "{}", d.name);
        if let Some(u) = d.until {
            assert!(d.since <= u && u < 18, "{}", d.name);
        }
        if let Some(u) = d.unit {
            assert!(BaseUnit::from_pg(u).is_some(), "{}: unit {u}", d.name);
            assert!(
                matches!(d.vartype, VarType::Integer | VarType::Real),
                "{}",
                d.name
            );
        }
        match d.vartype {
            VarType::Enum => assert!(!d.enum_values.is_empty(), "{}", d.name),
            _ => assert!(d.enum_values.is_empty(), "{}", d.name),
        }
        // server_version_num's range is the server's version: left out.
        if matches!(d.vartype, VarType::Integer | VarType::Real) && d.name != "server_version_num" {
            let (Some(min), Some(max)) = (d.min, d.max) else {
                panic!("{} has no range", d.name)
            };
            assert!(min <= max, "{}", d.name);
        }
        assert!(!d.name.contains('.'), "{}", d.name);
        assert_eq!(lookup_in(d.name, d.since), Some(d));
        assert_eq!(lookup_in(d.name, d.until.unwrap_or(18)), Some(d));
        assert_eq!(lookup(d.name), gucs.iter().rfind(|e| e.name == d.name));
    }
}

/// SHA-256 of the facts of every setting a major has, as
/// `facts_sha256` in scripts/gen-guc-catalog.py computes it from the
/// dumps (min and max as the bits of an f64).
fn facts_sha256(major: u32) -> String {
    use sha2::{Digest, Sha256};
    let mut lines: Vec<(String, String)> = catalog()
        .iter()
        .filter_map(|d| lookup_in(d.name, major).filter(|m| std::ptr::eq(*m, d)))
        .map(|d| {
            let bits =
                |v: Option<f64>| v.map_or(String::new(), |v| format!("{:016x}", v.to_bits()));
            let line = format!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                d.name,
                d.vartype.as_str(),
                d.unit.unwrap_or(""),
                d.context.as_str(),
                d.enum_values.join(","),
                bits(d.min),
                bits(d.max)
            );
            (d.name.to_lowercase(), line)
        })
        .collect();
    lines.sort();
    let text: String = lines.into_iter().map(|(_, l)| l).collect();
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn catalog_holds_what_the_generator_derived_for_each_major() {
    let majors: Vec<u32> = catalog::FACTS_SHA256.iter().map(|(m, _)| *m).collect();
    assert_eq!(majors, (12..=18).collect::<Vec<_>>());
    for (major, sha) in catalog::FACTS_SHA256 {
        assert_eq!(&facts_sha256(*major), sha, "PostgreSQL {major}");
    }
}

#[test]
fn catalog_entries_match_pg_settings() {
    let d = def("shared_buffers");
    assert_eq!(d.vartype, VarType::Integer);
    assert_eq!(d.unit, Some("8kB"));
    assert_eq!(d.context, Context::Postmaster);
    assert_eq!((d.min, d.max), (Some(16.0), Some(1073741823.0)));

    let d = def("wal_level");
    assert_eq!(d.enum_values, &["minimal", "replica", "logical"]);
    assert_eq!(d.context, Context::Postmaster);

    assert_eq!(def("wal_keep_size").unit, Some("MB"));
    assert_eq!(def("checkpoint_timeout").unit, Some("s"));
    assert_eq!(def("statement_timeout").unit, Some("ms"));
    assert_eq!(def("log_rotation_age").unit, Some("min"));
    assert_eq!(def("track_activity_query_size").unit, Some("B"));
    assert_eq!(def("work_mem").unit, Some("kB"));
    assert_eq!(def("hot_standby").vartype, VarType::Bool);
    assert_eq!(def("cpu_tuple_cost").max, Some(f64::MAX));
    assert_eq!(def("max_slot_wal_keep_size").min, Some(-1.0));
    assert_eq!(def("log_connections").context, Context::SuperuserBackend);
    assert_eq!(def("ignore_system_indexes").context, Context::Backend);
    assert_eq!(def("block_size").context, Context::Internal);
    assert_eq!(def("primary_conninfo").context, Context::Sighup);
    assert_eq!(def("wal_compression").vartype, VarType::Enum);
}

#[test]
fn hot_standby_sensitive_settings() {
    let mut names: Vec<&str> = catalog()
        .iter()
        .filter(|d| d.hot_standby_sensitive)
        .map(|d| d.name)
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "max_connections",
            "max_locks_per_transaction",
            "max_prepared_transactions",
            "max_wal_senders",
            "max_worker_processes"
        ]
    );
}

#[test]
fn hidden_settings_are_known() {
    // Probed on the live 15-18 servers (they are not in pg_settings).
    for n in [
        "default_with_oids",
        "is_superuser",
        "role",
        "seed",
        "session_authorization",
        "ssl_renegotiation_limit",
    ] {
        assert!((12..=18).all(|m| lookup_in(n, m).is_some()), "{n}");
    }
}

#[test]
fn versions() {
    use std::ops::RangeInclusive as R;
    let cases: &[(&str, R<u32>)] = &[
        ("wal_keep_segments", 12..=12),
        ("wal_keep_size", 13..=18),
        ("max_slot_wal_keep_size", 13..=18),
        ("ignore_invalid_pages", 13..=18),
        ("operator_precedence_warning", 12..=13),
        ("vacuum_cleanup_index_scale_factor", 12..=13),
        ("stats_temp_directory", 12..=14),
        ("recovery_init_sync_method", 14..=18),
        ("remove_temp_files_after_crash", 14..=18),
        ("client_connection_check_interval", 14..=18),
        ("idle_session_timeout", 14..=18),
        ("log_startup_progress_interval", 15..=18),
        ("archive_library", 15..=18),
        // Removed or renamed in 16.
        ("promote_trigger_file", 12..=15),
        ("vacuum_defer_cleanup_age", 12..=15),
        ("force_parallel_mode", 12..=15),
        ("lc_collate", 12..=15),
        ("lc_ctype", 12..=15),
        ("debug_parallel_query", 16..=18),
        ("createrole_self_grant", 16..=18),
        ("reserved_connections", 16..=18),
        ("vacuum_buffer_usage_limit", 16..=18),
        ("scram_iterations", 16..=18),
        // Removed in 17.
        ("old_snapshot_threshold", 12..=16),
        ("db_user_namespace", 12..=16),
        ("trace_recovery_messages", 12..=16),
        ("summarize_wal", 17..=18),
        ("wal_summary_keep_time", 17..=18),
        ("sync_replication_slots", 17..=18),
        ("synchronized_standby_slots", 17..=18),
        ("allow_alter_system", 17..=18),
        ("transaction_timeout", 17..=18),
        ("io_combine_limit", 17..=18),
        // New in 18.
        ("idle_replication_slot_timeout", 18..=18),
        ("max_active_replication_origins", 18..=18),
        ("md5_password_warnings", 18..=18),
        ("io_method", 18..=18),
        ("autovacuum_worker_slots", 18..=18),
        ("vacuum_truncate", 18..=18),
        ("ssl_groups", 18..=18),
        // Back-patched in minor releases: in every major of their branch.
        ("restrict_nonsystem_relation_kind", 12..=18),
        ("allow_in_place_tablespaces", 12..=18),
        ("file_extend_method", 16..=18),
        ("output_plugin_libraries", 14..=18),
        ("hot_standby", 12..=18),
        ("primary_conninfo", 12..=18),
        ("extension_destdir", 12..=18),
    ];
    for (name, majors) in cases {
        let d = def(name);
        for m in 12..=18 {
            assert_eq!(available_in(d, m), majors.contains(&m), "{name} in {m}");
            assert_eq!(
                lookup_in(name, m).is_some(),
                majors.contains(&m),
                "{name} in {m}"
            );
        }
        let last = (*majors.end() < 18).then_some(*majors.end());
        assert_eq!(lifetime(d), (*majors.start(), last), "{name}");
    }
    assert!(available_in(&CUSTOM, 12));
    assert!(available_in(&CUSTOM, 18));
}

#[test]
fn contexts_by_version() {
    assert_eq!(context_in(def("primary_conninfo"), 12), Context::Postmaster);
    assert_eq!(context_in(def("primary_conninfo"), 13), Context::Sighup);
    assert_eq!(
        context_in(def("primary_slot_name"), 12),
        Context::Postmaster
    );
    assert_eq!(context_in(def("primary_slot_name"), 17), Context::Sighup);
    assert_eq!(context_in(def("restore_command"), 13), Context::Postmaster);
    assert_eq!(context_in(def("restore_command"), 14), Context::Sighup);
    assert_eq!(context_in(def("max_connections"), 12), Context::Postmaster);
    // 18 starts the autovacuum workers it may need up front
    // (autovacuum_worker_slots): their number changes on reload.
    let workers = def("autovacuum_max_workers");
    assert_eq!(context_in(workers, 17), Context::Postmaster);
    assert_eq!(context_in(workers, 18), Context::Sighup);
    assert_eq!(workers.context, Context::Sighup);
    assert_eq!(
        lookup_in("autovacuum_max_workers", 15).map(|d| d.context),
        Some(Context::Postmaster)
    );
    assert!(Context::Postmaster.needs_restart());
    assert!(!Context::Sighup.needs_restart());
    for c in [
        Context::Internal,
        Context::Postmaster,
        Context::Sighup,
        Context::SuperuserBackend,
        Context::Backend,
        Context::Superuser,
        Context::User,
    ] {
        assert_eq!(Context::from_pg(c.as_str()), Some(c));
    }
    for t in [
        VarType::Bool,
        VarType::Integer,
        VarType::Real,
        VarType::String,
        VarType::Enum,
    ] {
        assert_eq!(VarType::from_pg(t.as_str()), Some(t));
    }
}

// ---------------------------------------------------------------------------
// PostgreSQL 16-18 (from the live 16.2, 17.10 and 18.6 servers)
// ---------------------------------------------------------------------------

/// The definition a server of `major` has.
fn def_in(name: &str, major: u32) -> &'static GucDef {
    match lookup_in(name, major) {
        Some(d) => d,
        None => panic!("{name} is not in PostgreSQL {major}"),
    }
}

fn desired_in(name: &str, major: u32, v: V) -> Result<Normalized, ValueError> {
    normalize_desired(def_in(name, major), &v)
}

#[test]
fn settings_new_in_17_and_18_for_replication() {
    // 18: a slot unused for this long is invalidated at a checkpoint.
    let d = def_in("idle_replication_slot_timeout", 18);
    assert_eq!(
        (d.vartype, d.unit, d.context),
        (VarType::Integer, Some("s"), Context::Sighup)
    );
    assert_eq!((d.min, d.max), (Some(0.0), Some(2147483647.0)));
    assert_eq!(
        desired_in("idle_replication_slot_timeout", 18, s("1d")),
        Ok(Normalized::Integer(86400))
    );
    assert_eq!(Normalized::Integer(86400).display_with_unit(d), "1d");
    assert!(lookup_in("idle_replication_slot_timeout", 17).is_none());
    assert_eq!(lifetime(def("idle_replication_slot_timeout")), (18, None));

    // 17: failover slots and WAL summaries.
    for name in ["sync_replication_slots", "summarize_wal"] {
        let d = def_in(name, 17);
        assert_eq!(
            (d.vartype, d.context),
            (VarType::Bool, Context::Sighup),
            "{name}"
        );
        assert!(lookup_in(name, 16).is_none(), "{name}");
    }
    let d = def_in("synchronized_standby_slots", 17);
    assert_eq!((d.vartype, d.context), (VarType::String, Context::Sighup));
    assert_eq!(list_kind(d), ListKind::List);
    assert_eq!(
        desired_in("synchronized_standby_slots", 18, s("db2 ,db3")),
        Ok(Normalized::String("db2, db3".into()))
    );
    assert!(lookup_in("synchronized_standby_slots", 16).is_none());
    let d = def_in("wal_summary_keep_time", 17);
    assert_eq!((d.unit, d.context), (Some("min"), Context::Sighup));
    assert_eq!(
        desired_in("wal_summary_keep_time", 17, s("10d")),
        Ok(Normalized::Integer(14400))
    );
}

#[test]
fn settings_removed_or_renamed_in_16_to_18() {
    // What the catalog says for each, and what a file is told to use instead.
    let cases = [
        ("vacuum_defer_cleanup_age", (12, Some(15)), None),
        ("promote_trigger_file", (12, Some(15)), None),
        (
            "force_parallel_mode",
            (12, Some(15)),
            Some("debug_parallel_query"),
        ),
        ("old_snapshot_threshold", (12, Some(16)), None),
        ("db_user_namespace", (12, Some(16)), None),
        ("trace_recovery_messages", (12, Some(16)), None),
        ("ssl_ecdh_curve", (12, Some(17)), Some("ssl_groups")),
    ];
    for (name, life, next) in cases {
        assert_eq!(lifetime(def(name)), life, "{name}");
        assert_eq!(successor(name), next, "{name}");
    }
    // debug_parallel_query takes what force_parallel_mode took.
    assert_eq!(
        def("debug_parallel_query").enum_values,
        def("force_parallel_mode").enum_values
    );
    assert_eq!(
        desired_in("debug_parallel_query", 16, V::Boolean(true)),
        Ok(Normalized::Enum("on".into()))
    );
    // 18 still reads ssl_ecdh_curve, as ssl_groups; 17 has its own.
    assert_eq!(def_in("ssl_ecdh_curve", 17).name, "ssl_ecdh_curve");
    assert_eq!(def_in("ssl_ecdh_curve", 18).name, "ssl_groups");
    assert_eq!(def_in("SSL_ECDH_CURVE", 18).name, "ssl_groups");
    assert!(available_in(def("ssl_ecdh_curve"), 18));
    assert!(lookup_in("ssl_groups", 17).is_none());
    // The newest facts of a removed setting are its last major's.
    assert_eq!(def("ssl_ecdh_curve").until, Some(17));
}

#[test]
fn ranges_that_changed_between_majors() {
    // 17 lowered maintenance_work_mem's minimum from 1MB to 64kB.
    assert_eq!(
        desired_in("maintenance_work_mem", 17, s("64kB")),
        Ok(Normalized::Integer(64))
    );
    let e = desired_in("maintenance_work_mem", 16, s("64kB")).expect_err("16: 1MB at least");
    assert!(e.to_string().contains("out of range"), "{e}");
    // 18 raised io_combine_limit's maximum from 256kB (32 pages) to 1MB.
    assert_eq!(
        desired_in("io_combine_limit", 18, s("1MB")),
        Ok(Normalized::Integer(128))
    );
    assert!(desired_in("io_combine_limit", 17, s("1MB")).is_err());
    assert_eq!(
        desired_in("io_combine_limit", 17, s("256kB")),
        Ok(Normalized::Integer(32))
    );
    // 18 raised log_rotation_size's maximum from 2GB - 1kB to 2TB - 1kB.
    assert_eq!(
        desired_in("log_rotation_size", 18, s("4GB")),
        Ok(Normalized::Integer(4 * 1024 * 1024))
    );
    assert!(desired_in("log_rotation_size", 17, s("4GB")).is_err());
    // Without a major: the newest facts.
    assert_eq!(def("maintenance_work_mem").min, Some(64.0));
    assert_eq!(def("io_combine_limit").max, Some(128.0));
}

#[test]
fn enum_values_by_major() {
    // compute_query_id = regress is 15+ (regression tests).
    assert_eq!(
        desired_in("compute_query_id", 15, s("regress")),
        Ok(Normalized::Enum("regress".into()))
    );
    let e = desired_in("compute_query_id", 14, s("regress")).expect_err("14");
    assert!(
        e.to_string().contains("expected one of auto, on, off"),
        "{e}"
    );
    // 18's asynchronous I/O; io_uring is compiled in with liburing (Debian's
    // builds), though the wheel dumped lacks it.
    assert_eq!(
        def_in("io_method", 18).enum_values,
        &["sync", "worker", "io_uring"]
    );
    assert_eq!(
        desired_in("io_method", 18, s("IO_URING")),
        Ok(Normalized::Enum("io_uring".into()))
    );
    assert!(lookup_in("io_method", 17).is_none());
    assert_eq!(
        def_in("file_copy_method", 18).enum_values,
        &["copy", "clone"]
    );
    assert_eq!(
        def_in("file_extend_method", 16).enum_values,
        &["posix_fallocate", "write_zeros"]
    );
    // lz4 and zstd in every major that has them as enum values, whatever the
    // build that was dumped.
    for m in 15..=18 {
        assert_eq!(
            def_in("wal_compression", m).enum_values,
            &["pglz", "lz4", "zstd", "on", "off"],
            "{m}"
        );
        assert_eq!(
            desired_in("default_toast_compression", m, s("lz4")),
            Ok(Normalized::Enum("lz4".into())),
            "{m}"
        );
    }
}

#[test]
fn log_connections_is_a_list_in_18_and_a_bool_before() {
    assert_eq!(def_in("log_connections", 17).vartype, VarType::Bool);
    let d18 = def_in("log_connections", 18);
    assert_eq!(d18.vartype, VarType::String);
    assert_eq!(d18.context, Context::SuperuserBackend);
    assert!(std::ptr::eq(def("log_connections"), d18));

    // A boolean means the same in every major, read with either definition
    // (a plan reads a node's live value with the newest).
    for m in [12, 15, 17, 18] {
        for (v, b) in [
            (V::Boolean(true), true),
            (s("on"), true),
            (s("yes"), true),
            (s("1"), true),
            (V::Boolean(false), false),
            (s("OFF"), false),
        ] {
            assert_eq!(
                desired_in("log_connections", m, v.clone()),
                Ok(Normalized::Bool(b)),
                "{m} {v}"
            );
        }
    }
    for (live, b) in [
        ("on", true),
        ("true", true),
        ("off", false),
        ("", false),
        ("0", false),
    ] {
        assert_eq!(
            observed("log_connections", live, None),
            Normalized::Bool(b),
            "{live:?}"
        );
        assert_eq!(
            normalize_observed(def_in("log_connections", 15), live, None).ok(),
            (!live.is_empty()).then_some(Normalized::Bool(b)),
            "{live:?}"
        );
    }
    // 18's aspects: case-insensitive, white space ignored.
    let want = Normalized::String("receipt, authentication".into());
    assert_eq!(
        desired_in("log_connections", 18, s("Receipt ,authentication")),
        Ok(want.clone())
    );
    assert_eq!(
        desired_in(
            "log_connections",
            18,
            V::Array(vec![s("receipt"), s("authentication")])
        ),
        Ok(want.clone())
    );
    assert_eq!(
        observed("log_connections", "receipt,authentication", None),
        want
    );
    assert_eq!(want.to_alter_system_value(d18), "'receipt, authentication'");
    assert_eq!(Normalized::Bool(true).to_alter_system_value(d18), "'on'");
    assert_eq!(
        desired_in("log_connections", 18, s("setup_durations")),
        Ok(Normalized::String("setup_durations".into()))
    );
    // 18 refuses what it does not log, and boolean prefixes ("of" is off in 17).
    let e = desired_in("log_connections", 18, s("receipt,bogus")).expect_err("bogus");
    assert!(
        e.to_string()
            .contains(r#""bogus" is not something it logs"#)
            && e.to_string()
                .contains("receipt, authentication, authorization, setup_durations, all"),
        "{e}"
    );
    assert!(desired_in("log_connections", 18, s("of")).is_err());
    assert!(desired_in("log_connections", 18, s("receipt,on")).is_err());
    assert!(desired_in("log_connections", 18, s("receipt,")).is_err());
    assert_eq!(
        desired_in("log_connections", 17, s("of")),
        Ok(Normalized::Bool(false))
    );
    // 17 refuses 18's aspects.
    let e = desired_in("log_connections", 17, s("receipt")).expect_err("17");
    assert_eq!(
        e.to_string(),
        r#""receipt" is not a boolean for log_connections: use true or false"#
    );
    let e = desired_in("log_connections", 18, V::Float(1.5)).expect_err("float");
    assert!(e.to_string().contains("true, false, or a string"), "{e}");
}

/// Loads a cluster file with the given `postgres_version` and `[settings]`.
fn load_file(version: Option<u32>, settings: &str) -> Result<crate::config::Config, String> {
    struct Env;
    impl crate::config::Sources for Env {
        fn env(&self, _: &str) -> Option<String> {
            Some("pw".into())
        }
        fn read_secret_file(&self, p: &std::path::Path) -> Result<String, String> {
            Err(format!("{} is not read here", p.display()))
        }
    }
    let version = version.map_or(String::new(), |v| format!("postgres_version = {v}\n"));
    let text = format!(
        "[cluster]\nname = \"t\"\nprimary = \"db1\"\n{version}\
         [nodes.db1]\nhost = \"10.0.0.1\"\n[nodes.db2]\nhost = \"10.0.0.2\"\n\
         [replication]\nuser = \"r\"\npassword = {{ env = \"PW\" }}\n\
         [settings]\n{settings}\n"
    );
    crate::config::load_str(&text, std::path::Path::new("pgrepl.toml"), &Env)
        .map_err(|e| e.to_string())
}

fn setting_of(version: Option<u32>, line: &str) -> crate::config::Setting {
    let cfg = match load_file(version, line) {
        Ok(c) => c,
        Err(e) => panic!("{version:?} {line}: {e}"),
    };
    match cfg.nodes["db1"].settings.values().next() {
        Some(s) => s.clone(),
        None => panic!("{line}: no setting"),
    }
}

fn refused(version: Option<u32>, line: &str) -> String {
    match load_file(version, line) {
        Ok(_) => panic!("{version:?} {line}: accepted"),
        Err(e) => e,
    }
}

#[test]
fn a_file_is_checked_with_its_majors_facts() {
    // Refused by that major, saying what it has instead.
    let refusals: &[(u32, &str, &str)] = &[
        // An 18-only setting.
        (
            15,
            "idle_replication_slot_timeout = \"2d\"",
            "`idle_replication_slot_timeout` does not exist in PostgreSQL 15\n",
        ),
        (
            15,
            "idle_replication_slot_timeout = \"2d\"",
            "it exists from PostgreSQL 18 on: remove it or raise `cluster.postgres_version`",
        ),
        // 17's failover slots.
        (
            16,
            "synchronized_standby_slots = \"db2\"",
            "it exists from PostgreSQL 17 on",
        ),
        // Removed and renamed settings name their successor, or say remove it.
        (
            16,
            "force_parallel_mode = \"on\"",
            "it was removed after PostgreSQL 15: use `debug_parallel_query` instead",
        ),
        (
            16,
            "vacuum_defer_cleanup_age = 0",
            "it was removed after PostgreSQL 15: remove it",
        ),
        (
            17,
            "old_snapshot_threshold = -1",
            "it was removed after PostgreSQL 16: remove it",
        ),
        (
            17,
            "db_user_namespace = false",
            "`db_user_namespace` does not exist in PostgreSQL 17",
        ),
        // Values: that major's type, range and enum values.
        (
            17,
            "log_connections = \"receipt\"",
            "\"receipt\" is not a boolean for log_connections",
        ),
        (
            16,
            "maintenance_work_mem = \"64kB\"",
            "out of range for maintenance_work_mem",
        ),
        (
            14,
            "compute_query_id = \"regres\"",
            "`compute_query_id` takes one of: auto, on, off",
        ),
        (
            15,
            "compute_query_id = \"regres\"",
            "`compute_query_id` takes one of: auto, regress, on, off",
        ),
    ];
    for (major, line, want) in refusals {
        let e = refused(Some(*major), line);
        assert!(e.contains(want), "{major}: {line}: {e}");
    }
    // Taken by that major (or, without a version, by any: the newest facts).
    let accepted: &[(Option<u32>, &str)] = &[
        (Some(18), "idle_replication_slot_timeout = \"2d\""),
        (None, "idle_replication_slot_timeout = \"2d\""),
        (None, "log_connections = \"receipt\""),
        (Some(17), "sync_replication_slots = true"),
        (Some(16), "db_user_namespace = false"),
        (Some(17), "maintenance_work_mem = \"64kB\""),
        (Some(15), "log_connections = \"of\""),
    ];
    for (major, line) in accepted {
        assert!(load_file(*major, line).is_ok(), "{major:?}: {line}");
    }
    assert_eq!(
        setting_of(Some(18), "idle_replication_slot_timeout = \"2d\"").normalized,
        Some(Normalized::Integer(172_800))
    );
    assert_eq!(
        setting_of(Some(18), "log_connections = \"receipt\"").normalized,
        Some(Normalized::String("receipt".into()))
    );
    // 18 reads the old name as the new one; 17 has its own.
    let ecdh = "ssl_ecdh_curve = \"prime256v1\"";
    assert_eq!(setting_of(Some(18), ecdh).name, "ssl_groups");
    assert_eq!(setting_of(Some(17), ecdh).name, "ssl_ecdh_curve");
}

#[test]
fn supported_majors_are_12_to_18() {
    assert!(load_file(Some(12), "").is_ok());
    assert!(load_file(Some(18), "").is_ok());
    for bad in [11, 19] {
        let e = refused(Some(bad), "");
        assert!(
            e.contains(&format!("unsupported postgres_version {bad}"))
                && e.contains("pgrepl supports PostgreSQL majors 12 to 18"),
            "{e}"
        );
    }
    // The catalog describes every supported major and no other.
    assert!(catalog().iter().all(|d| (12..=18).contains(&d.since)));
    assert_eq!(catalog().iter().filter_map(|d| d.until).max(), Some(17));
}

// ---------------------------------------------------------------------------
// lookup / suggest / owned
// ---------------------------------------------------------------------------

#[test]
fn lookup_is_case_insensitive() {
    assert_eq!(def("WAL_LEVEL").name, "wal_level");
    assert_eq!(def("Wal_Level").name, "wal_level");
    assert_eq!(def("datestyle").name, "DateStyle");
    assert_eq!(def("DATESTYLE").name, "DateStyle");
    assert_eq!(def("timezone").name, "TimeZone");
    assert_eq!(def("intervalstyle").name, "IntervalStyle");
    assert!(lookup("wal_levels").is_none());
    assert!(lookup("").is_none());
    assert!(lookup("wal level").is_none());
    assert!(lookup("wal-level").is_none());
}

#[test]
fn lookup_old_aliases_and_custom() {
    assert_eq!(def("sort_mem").name, "work_mem");
    assert_eq!(def("VACUUM_MEM").name, "maintenance_work_mem");
    for n in [
        "pg_stat_statements.max",
        "auto_explain.log_min_duration",
        "Foo.Bar",
        "a.b.c",
        "my_ext.x$1",
    ] {
        let d = def(n);
        assert!(std::ptr::eq(d, &CUSTOM), "{n}");
        assert!(is_custom(d));
        assert_eq!(d.vartype, VarType::String);
        assert_eq!(d.context, Context::User);
    }
    for n in ["a.", ".a", "a..b", "1a.b", "a b.c", "a.b-c", "."] {
        assert!(lookup(n).is_none(), "{n}");
    }
    assert!(!is_custom(def("work_mem")));
}

#[test]
fn suggestions() {
    let cases = [
        ("max_connection", Some("max_connections")),
        ("max_conections", Some("max_connections")),
        ("shared_buffer", Some("shared_buffers")),
        ("Shared_Bufers", Some("shared_buffers")),
        ("hot-standby", Some("hot_standby")),
        ("hot_stanby", Some("hot_standby")),
        ("wal_levle", Some("wal_level")),
        ("synchronous_comit", Some("synchronous_commit")),
        ("max-wal-senders", Some("max_wal_senders")),
        ("wal_keep_sizes", Some("wal_keep_size")),
        ("walkeepsize", Some("wal_keep_size")),
        ("checkpoint_timout", Some("checkpoint_timeout")),
        ("wal_keep_segments", Some("wal_keep_size")),
        ("force_parallel_mode", Some("debug_parallel_query")),
        ("checkpoint_segments", Some("max_wal_size")),
        ("standby_slot_names", Some("synchronized_standby_slots")),
        ("xyzzy", None),
        ("completely_unrelated_name", None),
        ("", None),
    ];
    for (input, want) in cases {
        assert_eq!(suggest(input), want, "{input}");
    }
}

#[test]
fn edit_distance_basics() {
    assert_eq!(edit_distance("", ""), 0);
    assert_eq!(edit_distance("abc", ""), 3);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(edit_distance("ab", "ba"), 1);
    assert_eq!(edit_distance("wal_level", "wal_levle"), 1);
}

#[test]
fn owned_settings() {
    let cases = [
        (
            "primary_conninfo",
            "[nodes.NAME] upstream and [replication]",
        ),
        (
            "PRIMARY_CONNINFO",
            "[nodes.NAME] upstream and [replication]",
        ),
        (
            "primary_slot_name",
            "[nodes.NAME] upstream and [replication]",
        ),
        ("synchronous_standby_names", "[replication] synchronous"),
        ("port", "[postgres] port"),
        ("Port", "[postgres] port"),
        ("data_directory", "[postgres] data_dir"),
        ("hba_file", "[postgres] config_dir"),
        ("ident_file", "[postgres] config_dir"),
        ("config_file", "[postgres] config_dir"),
        ("unix_socket_directories", "[postgres] socket_dir"),
    ];
    for (name, want) in cases {
        assert_eq!(owned_setting(name), Some(want), "{name}");
    }
    for name in [
        "recovery_target_timeline",
        "promote_trigger_file",
        "recovery_target",
        "recovery_target_lsn",
        "recovery_target_time",
        "standby_mode",
        "allow_alter_system",
    ] {
        assert!(owned_setting(name).is_some(), "{name}");
    }
    for name in [
        "restore_command",
        "hot_standby",
        "hot_standby_feedback",
        "wal_level",
        "max_wal_senders",
        "listen_addresses",
        "archive_command",
        "recovery_min_apply_delay",
        "recovery_target_action",
        "cluster_name",
        "work_mem",
        "pg_stat_statements.max",
    ] {
        assert_eq!(owned_setting(name), None, "{name}");
    }
}

#[test]
fn settable() {
    for n in [
        "block_size",
        "server_version",
        "in_hot_standby",
        "data_checksums",
        "wal_segment_size",
    ] {
        assert!(not_settable_reason(def(n)).is_some(), "{n}");
    }
    for n in [
        "role",
        "session_authorization",
        "transaction_isolation",
        "data_directory",
        "config_file",
    ] {
        assert!(not_settable_reason(def(n)).is_some(), "{n}");
    }
    for n in [
        "work_mem",
        "wal_level",
        "shared_preload_libraries",
        "hot_standby",
    ] {
        assert_eq!(not_settable_reason(def(n)), None, "{n}");
    }
}

// ---------------------------------------------------------------------------
// parse.rs: the C library emulation
// ---------------------------------------------------------------------------

#[test]
fn strtol_like_c() {
    let cases: &[(&str, i64, usize, bool)] = &[
        ("10", 10, 2, false),
        ("  10", 10, 4, false),
        ("+10", 10, 3, false),
        ("-10", -10, 3, false),
        ("010", 8, 3, false),
        ("08", 0, 1, false),
        ("0x10", 16, 4, false),
        ("0X1f", 31, 4, false),
        ("-0x10", -16, 5, false),
        ("0x", 0, 1, false),
        ("0xg", 0, 1, false),
        ("0", 0, 1, false),
        ("", 0, 0, false),
        ("abc", 0, 0, false),
        ("-", 0, 0, false),
        (" ", 0, 0, false),
        ("1.5", 1, 1, false),
        ("1e3", 1, 1, false),
        ("9223372036854775807", i64::MAX, 19, false),
        ("9223372036854775808", i64::MAX, 19, true),
        ("-9223372036854775808", i64::MIN, 20, false),
        ("-9223372036854775809", i64::MIN, 20, true),
        ("99999999999999999999999999", i64::MAX, 26, true),
    ];
    for &(input, value, end, overflow) in cases {
        let r = parse::strtol0(input.as_bytes());
        assert_eq!(
            (r.value, r.end, r.overflow),
            (value, end, overflow),
            "{input:?}"
        );
    }
}

#[test]
fn strtod_like_c() {
    let cases: &[(&str, f64, usize, bool)] = &[
        ("1.5", 1.5, 3, false),
        (" .5", 0.5, 3, false),
        ("5.", 5.0, 2, false),
        ("1e3", 1000.0, 3, false),
        ("1E-3", 0.001, 4, false),
        ("1e", 1.0, 1, false),
        ("1e+", 1.0, 1, false),
        ("-2.5x", -2.5, 4, false),
        ("0x10", 16.0, 4, false),
        ("0x0.8p0", 0.5, 7, false),
        ("0x1p10", 1024.0, 6, false),
        ("0x1P-1", 0.5, 6, false),
        ("0x", 0.0, 1, false),
        ("inf", f64::INFINITY, 3, false),
        ("-Infinity", f64::NEG_INFINITY, 9, false),
        ("INFINITE", f64::INFINITY, 3, false),
        ("1e400", f64::INFINITY, 5, true),
        ("1e-400", 0.0, 6, true),
        ("0e-400", 0.0, 6, false),
        (".", 0.0, 0, false),
        ("", 0.0, 0, false),
        ("e5", 0.0, 0, false),
    ];
    for &(input, value, end, range) in cases {
        let r = parse::strtod(input.as_bytes());
        assert_eq!(
            (r.value, r.end, r.range_error),
            (value, end, range),
            "{input:?}"
        );
    }
    let r = parse::strtod(b"nan");
    assert!(r.value.is_nan() && r.end == 3);
    let r = parse::strtod(b"NaN(123)x");
    assert!(r.value.is_nan() && r.end == 8);
}

#[test]
fn convert_to_base_unit_rounds_like_postgres() {
    let kb = BaseUnit::Kilobytes;
    assert_eq!(parse::convert_to_base_unit(1.0, b"MB", kb), Some(1024.0));
    assert_eq!(
        parse::convert_to_base_unit(30.1, b"GB", kb),
        Some(31561728.0)
    ); // 30822.4 MB -> 30822 MB
    assert_eq!(parse::convert_to_base_unit(1.0, b"MB  ", kb), Some(1024.0));
    assert_eq!(parse::convert_to_base_unit(1.0, b"MB x", kb), None);
    assert_eq!(parse::convert_to_base_unit(1.0, b"MBB", kb), None);
    assert_eq!(parse::convert_to_base_unit(1.0, b"mb", kb), None);
    assert_eq!(parse::convert_to_base_unit(1.0, b"min", kb), None);
    assert_eq!(
        parse::convert_to_base_unit(1.0, b"min", BaseUnit::Seconds),
        Some(60.0)
    );
    assert_eq!(
        parse::convert_to_base_unit(1.0, b"mins", BaseUnit::Seconds),
        None
    );
    assert_eq!(parse::convert_to_base_unit(1.0, b"", kb), None);
}

#[test]
fn best_units() {
    assert_eq!(
        parse::int_with_best_unit(1024, BaseUnit::Megabytes),
        (1, "GB")
    );
    assert_eq!(
        parse::int_with_best_unit(1025, BaseUnit::Megabytes),
        (1025, "MB")
    );
    assert_eq!(
        parse::int_with_best_unit(16384, BaseUnit::Blocks(8192)),
        (128, "MB")
    );
    assert_eq!(
        parse::int_with_best_unit(3, BaseUnit::Blocks(8192)),
        (24, "kB")
    );
    assert_eq!(
        parse::int_with_best_unit(300, BaseUnit::Seconds),
        (5, "min")
    );
    assert_eq!(parse::int_with_best_unit(90, BaseUnit::Seconds), (90, "s"));
    assert_eq!(
        parse::int_with_best_unit(86400, BaseUnit::Seconds),
        (1, "d")
    );
    assert_eq!(
        parse::int_with_best_unit(1500, BaseUnit::Milliseconds),
        (1500, "ms")
    );
    assert_eq!(parse::int_with_best_unit(1440, BaseUnit::Minutes), (1, "d"));
    assert_eq!(
        parse::real_with_best_unit(0.5, BaseUnit::Milliseconds),
        (500.0, "us")
    );
    assert_eq!(
        parse::real_with_best_unit(2.0, BaseUnit::Milliseconds),
        (2.0, "ms")
    );
    assert_eq!(
        parse::real_with_best_unit(60000.0, BaseUnit::Milliseconds),
        (1.0, "min")
    );
}

// ---------------------------------------------------------------------------
// Booleans
// ---------------------------------------------------------------------------

#[test]
fn booleans() {
    let t = Normalized::Bool(true);
    let f = Normalized::Bool(false);
    let cases: &[(&str, &Normalized)] = &[
        ("on", &t),
        ("ON", &t),
        ("On", &t),
        ("off", &f),
        ("OFF", &f),
        ("of", &f),
        ("oF", &f),
        ("true", &t),
        ("TRUE", &t),
        ("t", &t),
        ("tr", &t),
        ("tru", &t),
        ("True", &t),
        ("false", &f),
        ("f", &f),
        ("fa", &f),
        ("fals", &f),
        ("yes", &t),
        ("y", &t),
        ("ye", &t),
        ("YES", &t),
        ("no", &f),
        ("n", &f),
        ("nO", &f),
        ("1", &t),
        ("0", &f),
    ];
    for (input, want) in cases {
        assert_eq!(&ok("hot_standby", s(input)), *want, "{input:?}");
    }
    for input in [
        "o", "maybe", "yess", "truee", "01", "00", "2", "-1", "", " on", "on ", "enable", "nope",
        "offf", "10", "tRuE1",
    ] {
        assert_eq!(
            err("hot_standby", s(input)),
            format!("{input:?} is not a boolean for hot_standby: use true or false"),
            "{input:?}"
        );
    }
    assert_eq!(ok("hot_standby", V::Boolean(true)), t);
    assert_eq!(ok("wal_log_hints", V::Boolean(false)), f);
    assert_eq!(ok("hot_standby", V::Integer(1)), t);
    assert_eq!(ok("hot_standby", V::Integer(0)), f);
    assert_eq!(
        err("hot_standby", V::Integer(2)),
        "2 is not a boolean for hot_standby: use true or false"
    );
    assert_eq!(
        err("hot_standby", V::Float(1.0)),
        "hot_standby expects true or false, not a float"
    );
    assert_eq!(
        err("hot_standby", V::Array(vec![])),
        "hot_standby expects true or false, not an array"
    );
    assert_eq!(observed("hot_standby", "on", None), t);
    assert_eq!(observed("hot_standby", "off", None), f);
    assert_eq!(
        ok("hot_standby", V::Boolean(true)),
        observed("hot_standby", "on", None)
    );
    assert_eq!(t.display_with_unit(def("hot_standby")), "on");
    assert_eq!(f.to_sql_literal_value(def("hot_standby")), "off");
    assert_eq!(t.to_alter_system_value(def("hot_standby")), "'on'");
    assert!(normalize_observed(def("hot_standby"), "yes please", None).is_err());
}

// ---------------------------------------------------------------------------
// Integers
// ---------------------------------------------------------------------------

fn int(name: &str, v: V) -> i64 {
    match ok(name, v.clone()) {
        Normalized::Integer(i) => i,
        other => panic!("{name} = {v:?}: {other:?}"),
    }
}

#[test]
fn integers_megabytes() {
    let cases: &[(&str, i64)] = &[
        ("1GB", 1024),
        ("1TB", 1048576),
        ("1MB", 1),
        ("0", 0),
        ("1024", 1024),
        ("1024MB", 1024),
        ("1.5GB", 1536),
        ("0.5GB", 512),
        ("512kB", 0),  // 0.5 MB, rint to even
        ("1536kB", 2), // 1.5 MB
        ("2560kB", 2), // 2.5 MB, ties to even
        ("3584kB", 4), // 3.5 MB
        ("1048576B", 1),
        (" 1GB", 1024),
        ("1GB ", 1024),
        ("1 GB", 1024),
        ("1\tGB", 1024),
        ("+1GB", 1024),
        ("1e3", 1000),
        ("1E3MB", 1000),
        ("0x10", 16),
        ("010", 8),
        ("1.0", 1),
        (".5", 0),
        ("0.6", 1),
        ("2047GB", 2096128),
    ];
    for (input, want) in cases {
        assert_eq!(int("wal_keep_size", s(input)), *want, "{input:?}");
    }
    assert_eq!(int("wal_keep_size", V::Integer(1024)), 1024);
    assert_eq!(int("wal_keep_size", V::Float(2.5)), 2);
    assert_eq!(int("wal_keep_size", V::Float(3.5)), 4);
}

#[test]
fn integers_kilobytes_and_bytes() {
    let cases: &[(&str, &str, i64)] = &[
        ("work_mem", "64kB", 64),
        ("work_mem", "4MB", 4096),
        ("work_mem", "1GB", 1048576),
        ("work_mem", "1.5MB", 1536),
        ("work_mem", "65536B", 64),
        ("work_mem", "66000B", 64), // 64.45 kB
        ("work_mem", "1e3", 1000),
        ("work_mem", "64 kB", 64),
        ("maintenance_work_mem", "1GB", 1048576),
        ("track_activity_query_size", "1kB", 1024),
        ("track_activity_query_size", "1MB", 1048576),
        ("track_activity_query_size", "100", 100),
        ("track_activity_query_size", "4096B", 4096),
        ("log_parameter_max_length", "-1", -1),
        ("log_parameter_max_length", "1kB", 1024),
        ("wal_decode_buffer_size", "512kB", 524288),
        ("vacuum_buffer_usage_limit", "2MB", 2048),
        ("huge_page_size", "2MB", 2048),
    ];
    for (name, input, want) in cases {
        assert_eq!(int(name, s(input)), *want, "{name} = {input:?}");
    }
}

#[test]
fn integers_pages() {
    let cases: &[(&str, &str, i64)] = &[
        ("shared_buffers", "128MB", 16384),
        ("shared_buffers", "1GB", 131072),
        ("shared_buffers", "16384", 16384),
        ("shared_buffers", "8GB", 1048576),
        ("effective_cache_size", "4GB", 524288),
        ("effective_cache_size", "8kB", 1),
        ("effective_cache_size", "12kB", 2), // 1.5 pages, ties to even
        ("effective_cache_size", "20kB", 2), // 2.5 pages
        ("effective_cache_size", "100kB", 12), // 12.5 pages
        ("effective_cache_size", "8192B", 1),
        ("wal_buffers", "-1", -1),
        ("wal_buffers", "16MB", 2048),
        ("temp_buffers", "8MB", 1024),
        ("min_parallel_table_scan_size", "8MB", 1024),
        ("io_combine_limit", "128kB", 16),
        ("io_combine_limit", "256kB", 32),
    ];
    for (name, input, want) in cases {
        assert_eq!(int(name, s(input)), *want, "{name} = {input:?}");
    }
    assert_eq!(
        err("effective_cache_size", s("4kB")),
        "\"4kB\" (= 0) is out of range for effective_cache_size (8kB .. 17179869176kB)"
    );
    assert_eq!(
        err("shared_buffers", s("64kB")),
        "\"64kB\" is out of range for shared_buffers (128kB .. 8589934584kB)"
    );
    // 1MB at most since 18 (256kB in 17).
    assert!(err("io_combine_limit", s("2MB")).contains("out of range"));
}

#[test]
fn integers_time() {
    let cases: &[(&str, &str, i64)] = &[
        ("statement_timeout", "1s", 1000),
        ("statement_timeout", "1min", 60000),
        ("statement_timeout", "1h", 3600000),
        ("statement_timeout", "1d", 86400000),
        ("statement_timeout", "24d", 2073600000),
        ("statement_timeout", "1.5s", 1500),
        ("statement_timeout", "1500us", 2),
        ("statement_timeout", "2500us", 2),
        ("statement_timeout", "100us", 0),
        ("statement_timeout", "30", 30),
        ("statement_timeout", "30ms", 30),
        ("statement_timeout", "30 ms", 30),
        ("statement_timeout", "0", 0),
        ("checkpoint_timeout", "5min", 300),
        ("checkpoint_timeout", "1h", 3600),
        ("checkpoint_timeout", "1d", 86400),
        ("checkpoint_timeout", "30000ms", 30),
        ("checkpoint_timeout", "1.5min", 90),
        ("checkpoint_timeout", "300", 300),
        ("checkpoint_timeout", "0.5h", 1800),
        ("authentication_timeout", "1500ms", 2),
        ("authentication_timeout", "2500ms", 2),
        ("authentication_timeout", "2501ms", 3),
        ("log_rotation_age", "1d", 1440),
        ("log_rotation_age", "1h", 60),
        ("log_rotation_age", "90s", 2),
        ("log_rotation_age", "30s", 0),
        ("log_rotation_age", "1min", 1),
        ("log_rotation_age", "0.5d", 720),
        ("wal_sender_timeout", "60s", 60000),
        ("wal_receiver_status_interval", "10s", 10),
        ("max_standby_streaming_delay", "-1", -1),
        ("log_min_duration_statement", "-1", -1),
        ("log_autovacuum_min_duration", "10min", 600000),
        ("transaction_timeout", "1h", 3600000),
        ("wal_summary_keep_time", "10d", 14400),
    ];
    for (name, input, want) in cases {
        assert_eq!(int(name, s(input)), *want, "{name} = {input:?}");
    }
}

#[test]
fn integers_unitless() {
    assert_eq!(int("max_connections", V::Integer(100)), 100);
    assert_eq!(int("max_connections", s("100")), 100);
    assert_eq!(int("max_connections", s(" 100 ")), 100);
    assert_eq!(int("max_connections", s("0x64")), 100);
    assert_eq!(int("max_connections", s("1e2")), 100);
    assert_eq!(int("max_connections", s("99.5")), 100);
    assert_eq!(int("max_connections", s("100.5")), 100);
    assert_eq!(int("max_wal_senders", V::Integer(10)), 10);
    assert_eq!(int("log_file_mode", s("0600")), 384);
    assert_eq!(int("unix_socket_permissions", s("0777")), 511);
    assert_eq!(
        int("max_pred_locks_per_relation", V::Integer(-2147483648)),
        -2147483648
    );
    assert_eq!(int("extra_float_digits", s("-15")), -15);
    assert_eq!(
        err("max_connections", V::Integer(4000000)),
        "4000000 is out of range for max_connections (1 .. 262143)"
    );
    assert_eq!(
        err("max_connections", s("4000000")),
        "\"4000000\" is out of range for max_connections (1 .. 262143)"
    );
    assert_eq!(
        err("max_connections", V::Integer(0)),
        "0 is out of range for max_connections (1 .. 262143)"
    );
    assert_eq!(
        err("max_connections", s("100MB")),
        "invalid value \"100MB\" for max_connections: max_connections takes a plain number without unit"
    );
    assert_eq!(
        err("max_connections", s("many")),
        "invalid value \"many\" for max_connections: expected an integer"
    );
    assert_eq!(
        err("max_connections", s("")),
        "invalid value \"\" for max_connections: expected an integer"
    );
    assert_eq!(
        err("max_connections", V::Boolean(true)),
        "max_connections expects an integer, not a boolean"
    );
    assert_eq!(
        err("max_connections", s("08")),
        "invalid value \"08\" for max_connections: PostgreSQL reads an integer with a leading 0 as octal, so \"08\" is not a number: remove the leading zero"
    );
    assert!(err("max_connections", s("0100_")).contains("without unit"));
}

#[test]
fn integer_errors() {
    assert_eq!(
        err("wal_keep_size", s("1gb")),
        "invalid value \"1gb\" for wal_keep_size: memory units are case-sensitive: use B, kB, MB, GB or TB (did you mean \"1GB\"?)"
    );
    assert_eq!(
        err("wal_keep_size", s("1 gb")),
        "invalid value \"1 gb\" for wal_keep_size: memory units are case-sensitive: use B, kB, MB, GB or TB (did you mean \"1 GB\"?)"
    );
    assert_eq!(
        err("work_mem", s("64KB")),
        "invalid value \"64KB\" for work_mem: memory units are case-sensitive: use B, kB, MB, GB or TB (did you mean \"64kB\"?)"
    );
    assert_eq!(
        err("work_mem", s("64kb")),
        "invalid value \"64kb\" for work_mem: memory units are case-sensitive: use B, kB, MB, GB or TB (did you mean \"64kB\"?)"
    );
    assert_eq!(
        err("work_mem", s("64Mb")),
        "invalid value \"64Mb\" for work_mem: memory units are case-sensitive: use B, kB, MB, GB or TB (did you mean \"64MB\"?)"
    );
    assert_eq!(
        err("work_mem", s("1G")),
        "invalid value \"1G\" for work_mem: \"G\" is not a memory unit: use B, kB, MB, GB or TB (did you mean \"1GB\"?)"
    );
    assert_eq!(
        err("work_mem", s("1GiB")),
        "invalid value \"1GiB\" for work_mem: \"GiB\" is not a memory unit: use B, kB, MB, GB or TB (did you mean \"1GB\"?)"
    );
    assert_eq!(
        err("work_mem", s("1 bytes")),
        "invalid value \"1 bytes\" for work_mem: \"bytes\" is not a memory unit: use B, kB, MB, GB or TB (did you mean \"1 B\"?)"
    );
    assert_eq!(
        err("checkpoint_timeout", s("5MIN")),
        "invalid value \"5MIN\" for checkpoint_timeout: time units are case-sensitive: use us, ms, s, min, h or d (did you mean \"5min\"?)"
    );
    assert_eq!(
        err("checkpoint_timeout", s("30S")),
        "invalid value \"30S\" for checkpoint_timeout: time units are case-sensitive: use us, ms, s, min, h or d (did you mean \"30s\"?)"
    );
    assert_eq!(
        err("checkpoint_timeout", s("5 mins")),
        "invalid value \"5 mins\" for checkpoint_timeout: \"mins\" is not a time unit: use us, ms, s, min, h or d (did you mean \"5 min\"?)"
    );
    assert_eq!(
        err("checkpoint_timeout", s("5m")),
        "invalid value \"5m\" for checkpoint_timeout: \"m\" is not a time unit: use us, ms, s, min, h or d (did you mean \"5min\"?)"
    );
    assert_eq!(
        err("statement_timeout", s("10sec")),
        "invalid value \"10sec\" for statement_timeout: \"sec\" is not a time unit: use us, ms, s, min, h or d (did you mean \"10s\"?)"
    );
    assert_eq!(
        err("checkpoint_timeout", s("1GB")),
        "invalid value \"1GB\" for checkpoint_timeout: checkpoint_timeout takes a time, not a memory size: use us, ms, s, min, h or d"
    );
    assert_eq!(
        err("work_mem", s("1min")),
        "invalid value \"1min\" for work_mem: work_mem takes a memory size, not a time: use B, kB, MB, GB or TB"
    );
    assert_eq!(
        err("work_mem", s("10 parsecs")),
        "invalid value \"10 parsecs\" for work_mem: unknown memory unit \"parsecs\": use B, kB, MB, GB or TB (units are case-sensitive)"
    );
    assert_eq!(
        err("work_mem", s("1MB extra")),
        "invalid value \"1MB extra\" for work_mem: unexpected text after the unit \"MB\""
    );
    assert_eq!(
        err("work_mem", s("abc")),
        "invalid value \"abc\" for work_mem: expected an integer with an optional memory unit (B, kB, MB, GB, TB), e.g. \"64MB\"; a bare number is in kB"
    );
    assert_eq!(
        err("checkpoint_timeout", s("soon")),
        "invalid value \"soon\" for checkpoint_timeout: expected an integer with an optional time unit (us, ms, s, min, h, d), e.g. \"30s\"; a bare number is in seconds"
    );
    assert_eq!(
        err("checkpoint_timeout", s("29s")),
        "\"29s\" is out of range for checkpoint_timeout (30s .. 1d)"
    );
    assert_eq!(
        err("checkpoint_timeout", s("2d")),
        "\"2d\" is out of range for checkpoint_timeout (30s .. 1d)"
    );
    assert_eq!(
        err("checkpoint_timeout", V::Integer(10)),
        "10 is out of range for checkpoint_timeout (30s .. 1d)"
    );
    assert_eq!(
        err("wal_keep_size", s("-1")),
        "\"-1\" is out of range for wal_keep_size (0 .. 2147483647MB)"
    );
    assert_eq!(
        err("work_mem", s("1B")),
        "\"1B\" (= 0) is out of range for work_mem (64kB .. 2147483647kB)"
    );
    // overflow of the C int
    assert_eq!(
        err("work_mem", s("99999999999")),
        "\"99999999999\" (= 99999999999kB) is out of range for work_mem (64kB .. 2147483647kB)"
    );
    assert_eq!(
        err("work_mem", s("2TB")),
        "\"2TB\" is out of range for work_mem (64kB .. 2147483647kB)"
    );
    assert!(err("work_mem", V::Integer(i64::MAX)).contains("out of range"));
    assert!(err("work_mem", V::Integer(i64::MIN)).contains("out of range"));
    assert!(err("work_mem", s("1e10")).contains("out of range"));
    assert!(err("statement_timeout", s("25d")).contains("out of range"));
    assert!(err("work_mem", s("-99999999999999999999999")).contains("out of range"));
    assert!(err("work_mem", V::Float(f64::INFINITY)).contains("out of range"));
    // what PostgreSQL refuses without a hint
    for input in [
        "1e400", "nan", "inf", "-inf", "infinity", "0x1p10", "1_000", "1,000", "1.5e", "1e",
        "1 e3", "- 1", "--1", "GB",
    ] {
        assert!(desired("work_mem", s(input)).is_err(), "{input:?}");
    }
    assert!(desired("work_mem", V::Float(f64::NAN)).is_err());
    assert_eq!(
        err("work_mem", V::Boolean(true)),
        "work_mem expects an integer, or a string with a memory unit such as \"64MB\", not a boolean"
    );
}

#[test]
fn sentinels() {
    assert_eq!(int("max_slot_wal_keep_size", V::Integer(-1)), -1);
    assert_eq!(int("max_slot_wal_keep_size", s("-1")), -1);
    assert_eq!(int("max_slot_wal_keep_size", s("-1MB")), -1);
    assert_eq!(int("max_slot_wal_keep_size", s("10GB")), 10240);
    assert_eq!(
        err("max_slot_wal_keep_size", V::Integer(-2)),
        "-2 is out of range for max_slot_wal_keep_size (-1 .. 2147483647MB)"
    );
    assert_eq!(int("autovacuum_work_mem", V::Integer(-1)), -1);
    assert_eq!(int("temp_file_limit", V::Integer(-1)), -1);
    assert_eq!(int("log_temp_files", s("-1")), -1);
    assert_eq!(int("autovacuum_vacuum_cost_limit", V::Integer(-1)), -1);
    let d = def("max_slot_wal_keep_size");
    assert_eq!(Normalized::Integer(-1).display_with_unit(d), "-1");
    assert_eq!(Normalized::Integer(0).display_with_unit(d), "0");
    assert_eq!(Normalized::Integer(-1).to_sql_literal_value(d), "-1");
    assert_eq!(
        observed("max_slot_wal_keep_size", "-1", Some("MB")),
        Normalized::Integer(-1)
    );
}

#[test]
fn check_hooks() {
    // wal_buffers below 4 pages becomes 4 (check_wal_buffers)
    assert_eq!(int("wal_buffers", V::Integer(1)), 4);
    assert_eq!(int("wal_buffers", s("0")), 4);
    assert_eq!(int("wal_buffers", s("8kB")), 4);
    assert_eq!(int("wal_buffers", s("-1")), -1);
    assert_eq!(int("wal_buffers", s("40kB")), 5);
    // autovacuum_work_mem below 1MB becomes 1MB (check_autovacuum_work_mem)
    assert_eq!(int("autovacuum_work_mem", V::Integer(64)), 1024);
    assert_eq!(int("autovacuum_work_mem", s("-1")), -1);
    assert_eq!(int("autovacuum_work_mem", s("2MB")), 2048);
    // vacuum_buffer_usage_limit: 0 or 128kB .. 16GB
    assert_eq!(int("vacuum_buffer_usage_limit", V::Integer(0)), 0);
    assert_eq!(int("vacuum_buffer_usage_limit", s("256kB")), 256);
    assert_eq!(
        err("vacuum_buffer_usage_limit", s("64kB")),
        "invalid value \"64kB\" for vacuum_buffer_usage_limit: it must be 0 (no limit) or between 128kB and 16GB"
    );
    // SLRU buffers (17): whole banks of 16 pages
    assert_eq!(int("transaction_buffers", s("1MB")), 128);
    assert_eq!(int("transaction_buffers", V::Integer(0)), 0);
    assert_eq!(
        err("notify_buffers", V::Integer(20)),
        "invalid value 20 for notify_buffers: it must be a multiple of 16 pages (128kB), e.g. \"256kB\""
    );
    // default_with_oids only accepts false
    assert_eq!(
        ok("default_with_oids", V::Boolean(false)),
        Normalized::Bool(false)
    );
    assert_eq!(
        err("default_with_oids", V::Boolean(true)),
        "invalid value true for default_with_oids: WITH OIDS is no longer supported: only false is accepted"
    );
}

#[test]
fn integers_observed() {
    let pairs: &[(&str, V, &str, Option<&str>)] = &[
        ("wal_keep_size", s("1GB"), "1024", Some("MB")),
        ("shared_buffers", s("128MB"), "16384", Some("8kB")),
        ("shared_buffers", s("1GB"), "131072", Some("8kB")),
        ("checkpoint_timeout", s("5min"), "300", Some("s")),
        ("statement_timeout", s("1.5s"), "1500", Some("ms")),
        ("work_mem", s("4MB"), "4096", Some("kB")),
        ("max_connections", V::Integer(100), "100", None),
        ("log_file_mode", s("0600"), "0600", None),
        ("log_file_mode", V::Integer(384), "0600", None),
        ("log_rotation_age", s("1d"), "1440", Some("min")),
        ("track_activity_query_size", s("1kB"), "1024", Some("B")),
        // a server built with 16kB pages shows shared_buffers in 16kB pages
        ("shared_buffers", s("128MB"), "8192", Some("16kB")),
        ("wal_keep_size", V::Integer(1024), "1024", None),
    ];
    for (name, v, setting, unit) in pairs {
        assert_eq!(
            ok(name, v.clone()),
            observed(name, setting, *unit),
            "{name} {v:?} vs {setting}"
        );
    }
    assert_ne!(
        ok("wal_keep_size", s("1GB")),
        observed("wal_keep_size", "1023", Some("MB"))
    );
    assert!(normalize_observed(def("work_mem"), "lots", Some("kB")).is_err());
}

#[test]
fn integer_display() {
    let cases: &[(&str, i64, &str)] = &[
        ("wal_keep_size", 1024, "1GB"),
        ("wal_keep_size", 1025, "1025MB"),
        ("wal_keep_size", 1048576, "1TB"),
        ("wal_keep_size", 0, "0"),
        ("shared_buffers", 16384, "128MB"),
        ("effective_cache_size", 1, "8kB"),
        ("effective_cache_size", 3, "24kB"),
        ("work_mem", 4096, "4MB"),
        ("work_mem", 1025, "1025kB"),
        ("track_activity_query_size", 1024, "1kB"),
        ("track_activity_query_size", 1000, "1000B"),
        ("checkpoint_timeout", 300, "5min"),
        ("checkpoint_timeout", 30, "30s"),
        ("checkpoint_timeout", 86400, "1d"),
        ("checkpoint_timeout", 5400, "90min"),
        ("statement_timeout", 1500, "1500ms"),
        ("statement_timeout", 60000, "1min"),
        ("statement_timeout", 7200000, "2h"),
        ("log_rotation_age", 1440, "1d"),
        ("log_rotation_age", 90, "90min"),
        ("max_connections", 100, "100"),
        ("log_temp_files", -1, "-1"),
    ];
    for (name, v, want) in cases {
        let d = def(name);
        let n = Normalized::Integer(*v);
        assert_eq!(n.display_with_unit(d), *want, "{name} {v}");
        assert_eq!(n.to_sql_literal_value(d), *want, "{name} {v}");
        assert_eq!(
            n.to_alter_system_value(d),
            format!("'{want}'"),
            "{name} {v}"
        );
        // what we display parses back to the same value
        assert_eq!(normalize_desired(d, &s(want)), Ok(n), "{name} {want}");
    }
}

// ---------------------------------------------------------------------------
// Reals
// ---------------------------------------------------------------------------

fn real(name: &str, v: V) -> f64 {
    match ok(name, v.clone()) {
        Normalized::Real(f) => f,
        other => panic!("{name} = {v:?}: {other:?}"),
    }
}

#[test]
fn reals() {
    let cases: &[(&str, V, f64)] = &[
        ("checkpoint_completion_target", V::Float(0.9), 0.9),
        ("checkpoint_completion_target", s("0.9"), 0.9),
        ("checkpoint_completion_target", s(" .9"), 0.9),
        ("checkpoint_completion_target", s("0.9 "), 0.9),
        ("checkpoint_completion_target", s("9e-1"), 0.9),
        ("checkpoint_completion_target", s("+.5"), 0.5),
        ("checkpoint_completion_target", s("0x0.8p0"), 0.5),
        ("checkpoint_completion_target", V::Integer(1), 1.0),
        ("checkpoint_completion_target", s("1"), 1.0),
        ("checkpoint_completion_target", s("0"), 0.0),
        ("random_page_cost", V::Float(1.1), 1.1),
        ("random_page_cost", s("4"), 4.0),
        ("random_page_cost", s("010"), 10.0), // strtod: no octal
        ("random_page_cost", s("0x10"), 16.0),
        ("random_page_cost", s("1e300"), 1e300),
        ("jit_above_cost", V::Integer(-1), -1.0),
        ("hash_mem_multiplier", s("2.0"), 2.0),
        ("autovacuum_vacuum_scale_factor", s("0.05"), 0.05),
        ("vacuum_cost_delay", s("1.5"), 1.5),
        ("vacuum_cost_delay", s("1.5ms"), 1.5),
        ("vacuum_cost_delay", s("1500us"), 1.5),
        ("vacuum_cost_delay", s("0.5ms"), 0.5),
        ("vacuum_cost_delay", s("1.5 us"), 0.0015),
        ("vacuum_cost_delay", s("0.1s"), 100.0),
        ("vacuum_cost_delay", V::Integer(2), 2.0),
        ("autovacuum_vacuum_cost_delay", s("-1"), -1.0),
        ("autovacuum_vacuum_cost_delay", s("2ms"), 2.0),
    ];
    for (name, v, want) in cases {
        assert_eq!(
            ok(name, v.clone()),
            Normalized::Real(*want),
            "{name} = {v:?}"
        );
    }
    assert_eq!(real("vacuum_cost_delay", s("100")), 100.0);
    assert_eq!(
        err("checkpoint_completion_target", s("1.5")),
        "\"1.5\" is out of range for checkpoint_completion_target (0 .. 1)"
    );
    assert_eq!(
        err("checkpoint_completion_target", V::Float(1.5)),
        "1.5 is out of range for checkpoint_completion_target (0 .. 1)"
    );
    assert_eq!(
        err("checkpoint_completion_target", s("abc")),
        "invalid value \"abc\" for checkpoint_completion_target: expected a number"
    );
    assert_eq!(
        err("checkpoint_completion_target", s("0.9s")),
        "invalid value \"0.9s\" for checkpoint_completion_target: checkpoint_completion_target takes a plain number without unit"
    );
    assert_eq!(
        err("vacuum_cost_delay", s("1s")),
        "\"1s\" is out of range for vacuum_cost_delay (0 .. 100ms)"
    );
    assert!(err("vacuum_cost_delay", s("1MS")).contains("did you mean \"1ms\"?"));
    assert!(err("random_page_cost", s("inf")).contains("out of range"));
    assert!(err("random_page_cost", V::Float(f64::INFINITY)).contains("out of range"));
    assert!(desired("random_page_cost", s("nan")).is_err());
    assert!(desired("random_page_cost", V::Float(f64::NAN)).is_err());
    assert!(desired("random_page_cost", s("1e400")).is_err());
    assert!(desired("random_page_cost", s("1,5")).is_err());
    assert!(desired("random_page_cost", s("")).is_err());
    assert_eq!(
        err("random_page_cost", V::Boolean(false)),
        "random_page_cost expects a number, not a boolean"
    );
}

#[test]
fn reals_compare_with_tolerance() {
    // pg_settings prints reals with %g (6 significant digits)
    assert_eq!(
        ok("cursor_tuple_fraction", V::Float(0.123456789)),
        observed("cursor_tuple_fraction", "0.123457", None)
    );
    assert_eq!(
        ok("checkpoint_completion_target", V::Float(0.9)),
        observed("checkpoint_completion_target", "0.9", None)
    );
    assert_ne!(
        ok("checkpoint_completion_target", V::Float(0.9)),
        observed("checkpoint_completion_target", "0.91", None)
    );
    assert_eq!(
        ok("random_page_cost", V::Float(1.1)),
        observed("random_page_cost", "1.1", None)
    );
    assert_eq!(
        ok("cpu_tuple_cost", V::Float(1e300)),
        observed("cpu_tuple_cost", "1e+300", None)
    );
    assert_eq!(
        ok("vacuum_cost_delay", s("500us")),
        observed("vacuum_cost_delay", "0.5", Some("ms"))
    );
    assert_ne!(Normalized::Real(0.0), Normalized::Real(1e-9));
    assert_ne!(Normalized::Real(1.0), Normalized::Integer(1));
    assert_eq!(Normalized::Real(-1.0), Normalized::Real(-1.0));
}

#[test]
fn real_display() {
    let cases: &[(&str, f64, &str, &str)] = &[
        ("checkpoint_completion_target", 0.9, "0.9", "0.9"),
        ("random_page_cost", 4.0, "4", "4"),
        ("random_page_cost", 1e300, "1e300", "1e300"),
        ("seq_page_cost", 0.00001, "1e-5", "1e-5"),
        ("vacuum_cost_delay", 2.0, "2ms", "2"),
        ("vacuum_cost_delay", 0.5, "500us", "0.5"),
        ("vacuum_cost_delay", 0.0, "0", "0"),
        ("vacuum_cost_delay", 60.0, "60ms", "60"),
        ("autovacuum_vacuum_cost_delay", -1.0, "-1", "-1"),
    ];
    for (name, v, shown, sql) in cases {
        let d = def(name);
        let n = Normalized::Real(*v);
        assert_eq!(n.display_with_unit(d), *shown, "{name}");
        assert_eq!(n.to_sql_literal_value(d), *sql, "{name}");
        assert_eq!(
            normalize_desired(d, &s(shown)),
            Ok(n.clone()),
            "{name} {shown}"
        );
        assert_eq!(normalize_desired(d, &s(sql)), Ok(n), "{name} {sql}");
    }
}

// ---------------------------------------------------------------------------
// Enums
// ---------------------------------------------------------------------------

fn en(v: &str) -> Normalized {
    Normalized::Enum(v.to_string())
}

#[test]
fn enums() {
    let cases: &[(&str, V, &str)] = &[
        ("wal_level", s("replica"), "replica"),
        ("wal_level", s("REPLICA"), "replica"),
        ("wal_level", s("Replica"), "replica"),
        ("wal_level", s("logical"), "logical"),
        ("wal_level", s("minimal"), "minimal"),
        ("wal_level", s("archive"), "replica"),
        ("wal_level", s("hot_standby"), "replica"),
        ("wal_level", s("HOT_STANDBY"), "replica"),
        ("synchronous_commit", V::Boolean(true), "on"),
        ("synchronous_commit", V::Boolean(false), "off"),
        ("synchronous_commit", s("on"), "on"),
        ("synchronous_commit", s("true"), "on"),
        ("synchronous_commit", s("YES"), "on"),
        ("synchronous_commit", s("1"), "on"),
        ("synchronous_commit", V::Integer(1), "on"),
        ("synchronous_commit", V::Integer(0), "off"),
        ("synchronous_commit", s("no"), "off"),
        ("synchronous_commit", s("remote_apply"), "remote_apply"),
        ("synchronous_commit", s("REMOTE_WRITE"), "remote_write"),
        ("synchronous_commit", s("local"), "local"),
        ("archive_mode", s("always"), "always"),
        ("archive_mode", V::Boolean(true), "on"),
        ("archive_mode", s("false"), "off"),
        ("huge_pages", s("try"), "try"),
        ("huge_pages", V::Boolean(false), "off"),
        ("wal_compression", s("on"), "on"),
        ("wal_compression", s("pglz"), "on"),
        ("wal_compression", s("PGLZ"), "on"),
        ("wal_compression", V::Boolean(true), "on"),
        ("wal_compression", s("lz4"), "lz4"),
        ("wal_compression", s("zstd"), "zstd"),
        ("wal_compression", s("0"), "off"),
        ("constraint_exclusion", s("partition"), "partition"),
        ("backslash_quote", s("safe_encoding"), "safe_encoding"),
        ("compute_query_id", s("auto"), "auto"),
        ("recovery_prefetch", V::Boolean(true), "on"),
        ("debug_parallel_query", s("regress"), "regress"),
        ("force_parallel_mode", s("yes"), "on"),
        ("client_min_messages", s("debug"), "debug2"),
        ("client_min_messages", s("info"), "info"),
        ("client_min_messages", s("NOTICE"), "notice"),
        ("log_min_messages", s("debug"), "debug2"),
        ("log_min_messages", s("panic"), "panic"),
        (
            "default_transaction_isolation",
            s("repeatable read"),
            "repeatable read",
        ),
        (
            "default_transaction_isolation",
            s("Read Committed"),
            "read committed",
        ),
        ("ssl_min_protocol_version", s("tlsv1.2"), "tlsv1.2"),
        ("ssl_min_protocol_version", s("TLSv1.3"), "tlsv1.3"),
        ("ssl_max_protocol_version", s(""), ""),
        ("password_encryption", s("SCRAM-SHA-256"), "scram-sha-256"),
        ("password_encryption", s("md5"), "md5"),
        ("recovery_target_action", s("promote"), "promote"),
        ("IntervalStyle", s("iso_8601"), "iso_8601"),
        ("icu_validation_level", s("disabled"), "disabled"),
    ];
    for (name, v, want) in cases {
        assert_eq!(ok(name, v.clone()), en(want), "{name} = {v:?}");
    }
}

#[test]
fn enum_errors() {
    assert_eq!(
        err("wal_level", s("logical2")),
        "\"logical2\" is not a valid wal_level: expected one of minimal, replica, logical (did you mean \"logical\"?)"
    );
    assert_eq!(
        err("wal_level", s("repl")),
        "\"repl\" is not a valid wal_level: expected one of minimal, replica, logical"
    );
    assert_eq!(
        err("wal_level", s("full")),
        "\"full\" is not a valid wal_level: expected one of minimal, replica, logical"
    );
    assert_eq!(
        err("wal_level", s(" replica")),
        "\" replica\" is not a valid wal_level: expected one of minimal, replica, logical (did you mean \"replica\"?)"
    );
    assert_eq!(
        err("wal_level", V::Boolean(true)),
        "wal_level expects a string, one of minimal, replica, logical, not a boolean"
    );
    assert_eq!(
        err("wal_level", V::Integer(1)),
        "1 is not a valid wal_level: expected one of minimal, replica, logical"
    );
    assert_eq!(
        err("default_transaction_isolation", s("repeatable  read")),
        "\"repeatable  read\" is not a valid default_transaction_isolation: expected one of serializable, repeatable read, read committed, read uncommitted (did you mean \"repeatable read\"?)"
    );
    assert_eq!(
        err("synchronous_commit", s("maybe")),
        "\"maybe\" is not a valid synchronous_commit: expected one of local, remote_write, remote_apply, on, off"
    );
    assert_eq!(
        err("synchronous_commit", V::Float(1.0)),
        "synchronous_commit expects true, false or a string, one of local, remote_write, remote_apply, on, off, not a float"
    );
    assert!(
        err("ssl_max_protocol_version", s("TLSv9"))
            .contains("expected one of \"\", TLSv1, TLSv1.1")
    );
    // aliases that only older majors had are refused
    assert!(desired("password_encryption", s("on")).is_err());
    // enum values need the exact text: no prefixes, no trimming
    assert!(desired("wal_level", s("rep")).is_err());
    assert!(desired("wal_level", s("replica ")).is_err());
    assert!(desired("synchronous_commit", s("t")).is_err());
}

#[test]
fn enums_observed_and_display() {
    let pairs: &[(&str, V, &str)] = &[
        ("wal_level", s("REPLICA"), "replica"),
        ("wal_level", s("hot_standby"), "replica"),
        ("synchronous_commit", V::Boolean(true), "on"),
        ("wal_compression", s("on"), "pglz"), // 15+ shows pglz
        ("wal_compression", V::Boolean(true), "on"), // 12-14 show on
        ("client_min_messages", s("debug"), "debug2"),
        ("ssl_min_protocol_version", s("tlsv1.2"), "TLSv1.2"),
        (
            "default_transaction_isolation",
            s("READ COMMITTED"),
            "read committed",
        ),
    ];
    for (name, v, setting) in pairs {
        assert_eq!(ok(name, v.clone()), observed(name, setting, None), "{name}");
    }
    // observed values unknown to the catalog are kept, not refused
    assert_eq!(
        observed("wal_sync_method", "fsync_writethrough", None),
        en("fsync_writethrough")
    );
    let d = def("ssl_min_protocol_version");
    assert_eq!(en("tlsv1.2").display_with_unit(d), "TLSv1.2");
    assert_eq!(en("tlsv1.2").to_sql_literal_value(d), "TLSv1.2");
    assert_eq!(en("replica").display_with_unit(def("wal_level")), "replica");
    assert_eq!(en("on").display_with_unit(def("wal_compression")), "on");
    assert_eq!(
        en("repeatable read").to_alter_system_value(def("default_transaction_isolation")),
        "'repeatable read'"
    );
}

#[test]
fn enum_case_insensitive_for_every_value() {
    for d in catalog().iter().filter(|d| d.vartype == VarType::Enum) {
        for v in d.enum_values {
            let want = normalize_desired(d, &s(v));
            assert!(want.is_ok(), "{} {v}", d.name);
            assert_eq!(
                normalize_desired(d, &s(&v.to_uppercase())),
                want,
                "{} {v}",
                d.name
            );
            assert_eq!(
                normalize_observed(d, v, None).ok(),
                want.clone().ok(),
                "{} {v}",
                d.name
            );
            let n = want.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                normalize_desired(d, &s(&n.to_sql_literal_value(d))),
                Ok(n.clone()),
                "{} {v}",
                d.name
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Strings and lists
// ---------------------------------------------------------------------------

fn st(v: &str) -> Normalized {
    Normalized::String(v.to_string())
}

#[test]
fn strings() {
    assert_eq!(
        ok("archive_command", s("cp %p /arch/%f")),
        st("cp %p /arch/%f")
    );
    assert_eq!(ok("archive_command", s("")), st(""));
    assert_eq!(ok("restore_command", s("  spaced  ")), st("  spaced  "));
    assert_eq!(ok("cluster_name", s("Main")), st("Main"));
    assert_eq!(
        ok("recovery_min_apply_delay", s("5min")),
        Normalized::Integer(300000)
    );
    assert_eq!(ok("application_name", V::Integer(5)), st("5"));
    assert_eq!(ok("application_name", V::Float(1.5)), st("1.5"));
    assert_eq!(
        err("archive_command", V::Boolean(true)),
        "archive_command expects a string, not a boolean"
    );
    assert_eq!(
        err("archive_command", V::Array(vec![s("a")])),
        "archive_command expects a string, not an array"
    );
    assert_eq!(
        ok("archive_command", s("a")),
        observed("archive_command", "a", None)
    );
    assert_ne!(
        ok("archive_command", s("a")),
        observed("archive_command", "A", None)
    );
    assert_eq!(
        st("x'y").to_alter_system_value(def("archive_command")),
        "'x''y'"
    );
    assert_eq!(
        st("C:\\dir").to_alter_system_value(def("archive_command")),
        "E'C:\\\\dir'"
    );
    // case-insensitive strings PostgreSQL canonicalises
    assert_eq!(ok("TimeZone", s("utc")), observed("TimeZone", "UTC", None));
    assert_eq!(
        ok("timezone", s("europe/berlin")),
        observed("TimeZone", "Europe/Berlin", None)
    );
    assert_eq!(
        ok("DateStyle", s("iso,dmy")),
        observed("DateStyle", "ISO, DMY", None)
    );
    assert_eq!(
        ok("log_timezone", s("Etc/UTC")),
        observed("log_timezone", "Etc/UTC", None)
    );
}

#[test]
fn lists() {
    let spl = def("shared_preload_libraries");
    assert_eq!(list_kind(spl), ListKind::QuotedList);
    assert_eq!(list_kind(def("listen_addresses")), ListKind::List);
    assert_eq!(list_kind(def("archive_command")), ListKind::NotList);

    let want = st("pg_stat_statements, auto_explain");
    assert_eq!(
        ok(
            "shared_preload_libraries",
            s("pg_stat_statements,auto_explain")
        ),
        want
    );
    assert_eq!(
        ok(
            "shared_preload_libraries",
            s(" pg_stat_statements ,  auto_explain ")
        ),
        want
    );
    assert_eq!(
        ok(
            "shared_preload_libraries",
            V::Array(vec![s("pg_stat_statements"), s("auto_explain")])
        ),
        want
    );
    assert_eq!(
        observed(
            "shared_preload_libraries",
            "pg_stat_statements, auto_explain",
            None
        ),
        want
    );
    assert_eq!(
        observed(
            "shared_preload_libraries",
            "'pg_stat_statements', auto_explain",
            None
        ),
        st("'pg_stat_statements', auto_explain")
    );
    assert_eq!(
        want.to_alter_system_value(spl),
        "'pg_stat_statements', 'auto_explain'"
    );
    assert_eq!(
        want.to_sql_literal_value(spl),
        "pg_stat_statements, auto_explain"
    );
    assert_eq!(ok("shared_preload_libraries", s("")), st(""));
    assert_eq!(ok("shared_preload_libraries", V::Array(vec![])), st(""));
    assert_eq!(st("").to_alter_system_value(spl), "DEFAULT");
    assert_eq!(
        ok("shared_preload_libraries", s("pg_stat_statements")).to_alter_system_value(spl),
        "'pg_stat_statements'"
    );
    assert!(desired("shared_preload_libraries", V::Array(vec![V::Boolean(true)])).is_err());

    // search_path: PostgreSQL quotes $user and mixed-case names
    let sp = def("search_path");
    let n = ok("search_path", s("\"$user\", public"));
    assert_eq!(n, st("$user, public"));
    assert_eq!(n, observed("search_path", "\"$user\", public", None));
    assert_eq!(n.to_alter_system_value(sp), "'$user', 'public'");
    assert_eq!(
        ok("search_path", s("MySchema, public")),
        st("myschema, public")
    );
    let quoted = ok("search_path", s("\"MySchema\", public"));
    assert_eq!(quoted, st("\"MySchema\", public"));
    assert_eq!(
        quoted,
        observed("search_path", "\"MySchema\", public", None)
    );
    assert_eq!(quoted.to_alter_system_value(sp), "'MySchema', 'public'");
    assert_eq!(ok("search_path", s("\"a,b\"")), st("\"a,b\""));
    assert_eq!(ok("search_path", s("\"a\"\"b\"")), st("\"a\"\"b\""));

    // plain lists: whitespace does not matter
    assert_eq!(
        ok("listen_addresses", s("10.0.0.1,localhost")),
        observed("listen_addresses", "10.0.0.1, localhost", None)
    );
    assert_eq!(ok("listen_addresses", s("*")), st("*"));
    assert_eq!(
        st("a, b").to_alter_system_value(def("listen_addresses")),
        "'a, b'"
    );
    assert_eq!(
        ok("log_destination", V::Array(vec![s("stderr"), s("csvlog")])),
        st("stderr, csvlog")
    );
    assert_eq!(
        ok("unix_socket_directories", s("/tmp, /var/run/postgresql")),
        st("/tmp, /var/run/postgresql")
    );
    assert_eq!(ok("unix_socket_directories", s("/my dir")), st("/my dir"));
}

#[test]
fn custom_settings() {
    assert_eq!(
        normalize_desired(&CUSTOM, &V::Integer(5000)),
        Ok(st("5000"))
    );
    assert_eq!(normalize_desired(&CUSTOM, &s("250ms")), Ok(st("250ms")));
    assert_eq!(normalize_desired(&CUSTOM, &V::Boolean(true)), Ok(st("on")));
    assert_eq!(normalize_desired(&CUSTOM, &V::Float(0.5)), Ok(st("0.5")));
    assert!(normalize_desired(&CUSTOM, &V::Array(vec![])).is_err());
    assert_eq!(normalize_observed(&CUSTOM, "5000", None), Ok(st("5000")));

    // once the extension is loaded, pg_settings knows the real type
    let d = def_from_pg_settings(
        "auto_explain.log_min_duration",
        "integer",
        Some("ms"),
        "superuser",
        &[],
        Some("-1"),
        Some("2147483647"),
    )
    .unwrap_or_else(|| panic!("def"));
    assert!(is_custom(d));
    assert_eq!(
        normalize_desired(d, &s("250ms")),
        normalize_observed(d, "250", Some("ms"))
    );
    assert_eq!(
        normalize_desired(d, &s("1s")),
        normalize_observed(d, "1000", Some("ms"))
    );
    assert_eq!(
        normalize_desired(d, &s("1S")).map_err(|e| e.to_string()),
        Err("invalid value \"1S\" for auto_explain.log_min_duration: time units are case-sensitive: use us, ms, s, min, h or d (did you mean \"1s\"?)".to_string())
    );
    let again = def_from_pg_settings(
        "auto_explain.log_min_duration",
        "integer",
        Some("ms"),
        "superuser",
        &[],
        Some("-1"),
        Some("2147483647"),
    );
    assert!(again.is_some_and(|a| std::ptr::eq(a, d)));
    let e = def_from_pg_settings(
        "auto_explain.log_format",
        "enum",
        None,
        "superuser",
        &[
            "text".to_string(),
            "xml".to_string(),
            "json".to_string(),
            "yaml".to_string(),
        ],
        None,
        None,
    )
    .unwrap_or_else(|| panic!("def"));
    assert_eq!(
        normalize_desired(e, &s("JSON")),
        normalize_observed(e, "json", None)
    );
    assert!(def_from_pg_settings("x.y", "complex", None, "user", &[], None, None).is_none());
    assert!(def_from_pg_settings("x.y", "bool", None, "sometimes", &[], None, None).is_none());
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

const MEMORY_GUCS: &[&str] = &[
    "work_mem",
    "maintenance_work_mem",
    "wal_keep_size",
    "max_wal_size",
    "shared_buffers",
    "effective_cache_size",
    "wal_buffers",
    "track_activity_query_size",
    "log_parameter_max_length",
    "max_slot_wal_keep_size",
    "autovacuum_work_mem",
    "temp_file_limit",
];

const TIME_GUCS: &[&str] = &[
    "statement_timeout",
    "checkpoint_timeout",
    "log_rotation_age",
    "wal_sender_timeout",
    "authentication_timeout",
    "log_min_duration_statement",
    "max_standby_streaming_delay",
    "archive_timeout",
    "idle_session_timeout",
];

fn int_guc_and_value(
    names: &'static [&'static str],
) -> impl Strategy<Value = (&'static GucDef, i64)> {
    prop::sample::select(names).prop_flat_map(|name| {
        let d = def(name);
        let lo = d.min.unwrap_or(0.0) as i64;
        let hi = d.max.unwrap_or(f64::from(i32::MAX)) as i64;
        // mostly "round" values, which get big units, plus arbitrary ones
        let round = (0i64..64, 0u32..31).prop_map(move |(m, sh)| (m << sh).clamp(lo, hi));
        (Just(d), prop_oneof![lo..=hi, round])
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn memory_display_round_trips((d, v) in int_guc_and_value(MEMORY_GUCS)) {
        let n = Normalized::Integer(v);
        // values a check hook raises (wal_buffers 0..3, autovacuum_work_mem 0..1023) are tested apart
        prop_assume!(normalize_desired(d, &V::Integer(v)) == Ok(n.clone()));
        let shown = n.display_with_unit(d);
        prop_assert_eq!(normalize_desired(d, &V::String(shown.clone())), Ok(n.clone()), "{} {}", d.name, shown);
        prop_assert_eq!(normalize_desired(d, &V::String(n.to_sql_literal_value(d))), Ok(n.clone()));
        prop_assert_eq!(normalize_desired(d, &V::Integer(v)), Ok(n.clone()));
        prop_assert_eq!(normalize_observed(d, &v.to_string(), d.unit), Ok(n));
    }

    #[test]
    fn time_display_round_trips((d, v) in int_guc_and_value(TIME_GUCS)) {
        let n = Normalized::Integer(v);
        let shown = n.display_with_unit(d);
        prop_assert_eq!(normalize_desired(d, &V::String(shown.clone())), Ok(n.clone()), "{} {}", d.name, shown);
        prop_assert_eq!(normalize_observed(d, &v.to_string(), d.unit), Ok(n));
    }

    #[test]
    fn whitespace_between_number_and_unit((d, v) in int_guc_and_value(MEMORY_GUCS), pre in "[ \t]{0,2}", mid in "[ \t]{0,2}", post in "[ \t]{0,2}") {
        prop_assume!(normalize_desired(d, &V::Integer(v)) == Ok(Normalized::Integer(v)));
        let shown = Normalized::Integer(v).display_with_unit(d);
        let split = shown.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(shown.len());
        let spaced = format!("{pre}{}{mid}{}{post}", &shown[..split], &shown[split..]);
        prop_assert_eq!(normalize_desired(d, &V::String(spaced)), Ok(Normalized::Integer(v)));
    }

    #[test]
    fn gigabytes_are_1024_megabytes(n in 0i64..2_097_151) {
        let d = def("wal_keep_size");
        prop_assert_eq!(normalize_desired(d, &V::String(format!("{n}GB"))), Ok(Normalized::Integer(n * 1024)));
        prop_assert_eq!(normalize_desired(d, &V::String(format!("{}MB", n * 1024))), Ok(Normalized::Integer(n * 1024)));
    }

    #[test]
    fn milliseconds_round_to_seconds(ms in 30_000i64..86_400_000) {
        prop_assume!(ms % 1000 != 500); // exact ties depend on binary rounding, as in PostgreSQL
        let d = def("checkpoint_timeout");
        let want = (ms as f64 / 1000.0).round_ties_even() as i64;
        prop_assert_eq!(normalize_desired(d, &V::String(format!("{ms}ms"))), Ok(Normalized::Integer(want)));
    }

    #[test]
    fn wrong_case_units_are_refused(n in 1i64..1000, unit in prop::sample::select(&["kb", "KB", "mb", "Mb", "gb", "gB", "tb", "b"][..])) {
        let d = def("work_mem");
        let e = normalize_desired(d, &V::String(format!("{n}{unit}"))).map_err(|e| e.to_string());
        prop_assert!(e.as_ref().is_err_and(|m| m.contains("case-sensitive") && m.contains("did you mean")), "{:?}", e);
    }

    #[test]
    fn reals_round_trip(f in 0.0f64..=1.0) {
        let d = def("checkpoint_completion_target");
        let n = Normalized::Real(f);
        prop_assert_eq!(normalize_desired(d, &V::String(n.display_with_unit(d))), Ok(n.clone()));
        prop_assert_eq!(normalize_desired(d, &V::Float(f)), Ok(n.clone()));
        // what pg_settings shows (%g, 6 digits) still compares equal
        let shown = format!("{:.5e}", f);
        prop_assert_eq!(normalize_observed(d, &shown, None), Ok(n));
    }

    #[test]
    fn real_time_round_trip(f in 0.0f64..=100.0) {
        let d = def("vacuum_cost_delay");
        let n = Normalized::Real(f);
        prop_assert_eq!(normalize_desired(d, &V::String(n.display_with_unit(d))), Ok(n.clone()));
        prop_assert_eq!(normalize_desired(d, &V::String(n.to_sql_literal_value(d))), Ok(n));
    }

    #[test]
    fn enum_case_does_not_matter(idx in 0usize..1000, flips in prop::collection::vec(any::<bool>(), 32)) {
        let enums: Vec<&GucDef> = catalog().iter().filter(|d| d.vartype == VarType::Enum).collect();
        let d = enums[idx % enums.len()];
        let v = d.enum_values[idx % d.enum_values.len()];
        let mixed: String = v.chars().zip(flips.iter().cycle()).map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() }).collect();
        prop_assert_eq!(normalize_desired(d, &V::String(mixed)), normalize_desired(d, &V::String(v.to_string())));
    }

    #[test]
    fn bool_prefixes(word in prop::sample::select(&["true", "false", "yes", "no", "off"][..]), len in 1usize..6, upper in any::<bool>()) {
        let d = def("hot_standby");
        let l = len.min(word.len());
        let p = if upper { word[..l].to_uppercase() } else { word[..l].to_string() };
        let r = normalize_desired(d, &V::String(p.clone()));
        if word == "off" && l == 1 {
            prop_assert!(r.is_err());
        } else {
            prop_assert_eq!(r, Ok(Normalized::Bool(matches!(word, "true" | "yes"))), "{}", p);
        }
    }

    #[test]
    fn never_panics_on_arbitrary_strings(idx in 0usize..10_000, text in any::<String>()) {
        let d = &catalog()[idx % catalog().len()];
        let _ = normalize_desired(d, &V::String(text.clone()));
        let _ = normalize_observed(d, &text, d.unit);
        let _ = normalize_observed(d, &text, Some(text.as_str()));
        let _ = suggest(&text);
        let _ = lookup(&text);
        let _ = owned_setting(&text);
    }

    #[test]
    fn never_panics_on_number_like_strings(idx in 0usize..10_000, text in "[ \t]{0,2}[+-]{0,2}(0[xX])?[0-9a-fA-F.]{0,12}([eEpP][+-]?[0-9]{0,4})?[ \t]{0,2}[a-zA-Z]{0,4}[ ]?[a-z]{0,3}") {
        let d = &catalog()[idx % catalog().len()];
        if let Ok(n) = normalize_desired(d, &V::String(text.clone())) {
            // whatever is accepted displays as something that parses back
            let again = normalize_desired(d, &V::String(n.to_sql_literal_value(d)));
            prop_assert_eq!(again, Ok(n.clone()), "{} {:?}", d.name, text);
            let _ = n.display_with_unit(d);
            let _ = n.to_alter_system_value(d);
        }
    }

    #[test]
    fn never_panics_on_arbitrary_toml(idx in 0usize..10_000, i in any::<i64>(), f in any::<f64>(), b in any::<bool>()) {
        let d = &catalog()[idx % catalog().len()];
        for v in [V::Integer(i), V::Float(f), V::Boolean(b), V::Array(vec![V::Integer(i)]), V::Table(toml::Table::new())] {
            if let Ok(n) = normalize_desired(d, &v) {
                let _ = n.display_with_unit(d);
                let _ = n.to_alter_system_value(d);
            }
        }
    }

    #[test]
    fn lists_are_whitespace_insensitive(items in prop::collection::vec("[a-z_][a-z0-9_]{0,10}", 0..5), seps in prop::collection::vec("[ ]{0,2},[ ]{0,2}", 5)) {
        let d = def("shared_preload_libraries");
        let mut text = String::new();
        for (i, item) in items.iter().enumerate() {
            if i > 0 { text.push_str(&seps[i % seps.len()]); }
            text.push_str(item);
        }
        let n = normalize_desired(d, &V::String(text));
        prop_assert_eq!(n.clone(), Ok(Normalized::String(items.join(", "))));
        let arr = V::Array(items.iter().map(|s| V::String(s.clone())).collect());
        prop_assert_eq!(normalize_desired(d, &arr), n);
    }
}
