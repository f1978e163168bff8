//! Pure parsers for what the nodes print: the gather script's sections,
//! `pg_controldata`, conninfo strings (with passwords redacted).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use indexmap::IndexMap;

use super::{ControlData, DataDir, FileFacts, Lsn, Manager, ManagerFacts, PreloadCheck};

fn decode(b64: &str) -> Option<String> {
    STANDARD
        .decode(b64.trim())
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Parses the gather script's output into file facts.
pub fn parse_gather_output(out: &str) -> Result<FileFacts, String> {
    let mut fields: IndexMap<&str, &str> = IndexMap::new();
    let mut histories = Vec::new();
    let managers = parse_manager_lines(out);
    for line in out.lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        if key == "manager" {
            continue;
        }
        if let Some(name) = key.strip_prefix("history:") {
            let tli = name
                .strip_suffix(".history")
                .and_then(|h| u32::from_str_radix(h, 16).ok());
            if let (Some(tli), Some(text)) = (tli, decode(value)) {
                histories.push((tli, text));
            }
        } else {
            fields.insert(key, value);
        }
    }
    let data_dir = match fields.get("datadir").copied() {
        Some("initialised") => DataDir::Initialised,
        Some("missing") => DataDir::Missing,
        Some("empty") => DataDir::Empty,
        Some("foreign") => DataDir::Foreign,
        other => return Err(format!("unexpected gather output (datadir {other:?})")),
    };
    let text = |k: &str| fields.get(k).and_then(|v| decode(v));
    // `fs BLOCK_SIZE TOTAL_BLOCKS AVAILABLE_BLOCKS` (statvfs, as df uses it).
    let fs: Vec<u64> = fields
        .get("fs")
        .map(|v| {
            v.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let (disk_total_bytes, disk_free_bytes) = match fs[..] {
        [size, total, avail] => (size.checked_mul(total), size.checked_mul(avail)),
        _ => (None, None),
    };
    let raw_auto = text("auto_conf");
    let auto_conf_has_password = raw_auto.as_deref().is_some_and(auto_conf_has_password);
    histories.sort_by_key(|(t, _)| *t);
    Ok(FileFacts {
        data_dir,
        major: fields.get("major").and_then(|v| v.trim().parse().ok()),
        running: fields.get("postmaster_live").copied() == Some("1"),
        standby_signal: fields.contains_key("standby_signal"),
        recovery_signal: fields.contains_key("recovery_signal"),
        control: text("controldata").map(|t| parse_controldata(&t)),
        hba_conf: text("hba"),
        auto_conf: raw_auto.map(|t| redact_auto_conf(&t)),
        auto_conf_has_password,
        histories,
        disk_free_bytes,
        disk_total_bytes,
        config_dir_has_conf: fields.get("config_dir_has_conf").map(|v| *v == "1"),
        data_dir_physical: fields.get("datadir_physical").map(|v| v.to_string()),
        passfile_sha256: fields.get("passfile_sha256").map(|v| v.to_string()),
        passfile_mode: fields.get("passfile_mode").map(|v| v.to_string()),
        rewind_interrupted: fields.contains_key("rewind_interrupted"),
        building_bytes: fields
            .get("building_bytes")
            .and_then(|v| v.trim().parse().ok()),
        managers,
        slots_on_disk: fields.get("replslots").and_then(|v| v.trim().parse().ok()),
        stale_clusters: out
            .lines()
            .filter_map(|l| l.strip_prefix("stale_cluster "))
            .map(str::to_string)
            .fold(Vec::new(), |mut v, n| {
                if !v.contains(&n) {
                    v.push(n);
                }
                v
            }),
        preload: None,
    })
}

/// The gather script's check of `libraries` (the names it was given, in
/// order) on a stopped node; `None` when it did not check.
pub fn parse_preload_check(out: &str, libraries: &[String]) -> Option<PreloadCheck> {
    let mut checked = false;
    let mut libdir = None;
    let mut missing = Vec::new();
    for line in out.lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            "preload_checked" => checked = true,
            "pkglibdir" => libdir = Some(value.to_string()),
            "preload_missing" => {
                if let Some(name) = value
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| libraries.get(i))
                {
                    missing.push(name.clone());
                }
            }
            _ => {}
        }
    }
    checked.then_some(PreloadCheck { libdir, missing })
}

/// The library names of a `shared_preload_libraries` value, as PostgreSQL
/// splits it: comma-separated, surrounding blanks dropped, double quotes
/// around a name removed.
pub fn preload_names(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|n| n.trim())
        .map(|n| {
            n.strip_prefix('"')
                .and_then(|n| n.strip_suffix('"'))
                .unwrap_or(n)
                .to_string()
        })
        .filter(|n| !n.is_empty())
        .collect()
}

/// Whether `shared_preload_libraries` (as `SHOW` prints it) loads repmgr's
/// library: `repmgr`, `'$libdir/repmgr'`, `repmgr.so`. repmgrd refuses to
/// run without it, so only such a server can have a repmgrd.
pub fn preloads_repmgr(shared_preload_libraries: &str) -> bool {
    shared_preload_libraries.split(',').any(|lib| {
        let lib = lib.trim().trim_matches(|c| c == '"' || c == '\'');
        let base = lib.rsplit('/').next().unwrap_or(lib);
        base.strip_suffix(".so").unwrap_or(base) == "repmgr"
    })
}

/// The `manager NAME EVIDENCE` lines of the gather script's output: one
/// entry per manager in the order first seen, its evidence in line order.
/// Unknown names are left out: the script prints none.
pub fn parse_manager_lines(out: &str) -> Vec<ManagerFacts> {
    let mut found: Vec<ManagerFacts> = Vec::new();
    for line in out.lines() {
        let Some(rest) = line.strip_prefix("manager ") else {
            continue;
        };
        let (token, evidence) = rest.split_once(' ').unwrap_or((rest, ""));
        let Some(manager) = Manager::from_token(token) else {
            continue;
        };
        let evidence = evidence.trim();
        let i = match found.iter().position(|m| m.manager == manager) {
            Some(i) => i,
            None => {
                found.push(ManagerFacts {
                    manager,
                    evidence: Vec::new(),
                });
                found.len() - 1
            }
        };
        if !evidence.is_empty() && !found[i].evidence.iter().any(|e| e == evidence) {
            found[i].evidence.push(evidence.to_string());
        }
    }
    found
}

/// `LC_ALL=C pg_controldata` output.
pub fn parse_controldata(text: &str) -> ControlData {
    let mut map: IndexMap<&str, &str> = IndexMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(':') {
            map.insert(k.trim(), v.trim());
        }
    }
    let lsn = |k: &str| map.get(k).and_then(|v| v.parse::<Lsn>().ok());
    let num = |k: &str| map.get(k).and_then(|v| v.parse::<u32>().ok());
    ControlData {
        state: map
            .get("Database cluster state")
            .copied()
            .unwrap_or("")
            .to_string(),
        system_identifier: map
            .get("Database system identifier")
            .copied()
            .unwrap_or("")
            .to_string(),
        checkpoint_lsn: lsn("Latest checkpoint location"),
        checkpoint_redo_lsn: lsn("Latest checkpoint's REDO location"),
        checkpoint_timeline: num("Latest checkpoint's TimeLineID"),
        min_recovery_end_lsn: lsn("Minimum recovery ending location").filter(|l| l.0 != 0),
        min_recovery_end_timeline: num("Min recovery ending loc's timeline").filter(|t| *t != 0),
        wal_log_hints: map.get("wal_log_hints setting").map(|v| *v == "on"),
        data_checksums: num("Data page checksum version").map(|v| v > 0),
        recorded_settings: CONTROLDATA_SETTINGS
            .iter()
            .filter_map(|(label, guc)| {
                let v = map.get(label)?.parse::<i64>().ok()?;
                Some((guc.to_string(), v))
            })
            .collect(),
    }
}

/// pg_controldata's labels of the hot-standby-sensitive values, and their GUCs.
const CONTROLDATA_SETTINGS: [(&str, &str); 5] = [
    ("max_connections setting", "max_connections"),
    ("max_worker_processes setting", "max_worker_processes"),
    ("max_wal_senders setting", "max_wal_senders"),
    ("max_prepared_xacts setting", "max_prepared_transactions"),
    ("max_locks_per_xact setting", "max_locks_per_transaction"),
];

/// Byte ranges of the values of every `password` keyword in a libpq
/// conninfo string (`key = value`, values bare or `'...'` with `\` escapes).
fn password_spans(conninfo: &str) -> Vec<std::ops::Range<usize>> {
    let mut spans = Vec::new();
    let bytes = conninfo.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let key_start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &conninfo[key_start..i];
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] != b'=' {
            if key.is_empty() {
                i += 1;
            }
            continue;
        }
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let (value, _) = split_conninfo_value(&conninfo[i..]);
        if key.eq_ignore_ascii_case("password") {
            spans.push(i..i + value.len());
        }
        i += value.len().max(1);
    }
    spans
}

/// Replaces the value of every `password` keyword in a libpq conninfo
/// string with `(sensitive)`; everything else is kept byte for byte.
pub fn redact_conninfo(conninfo: &str) -> String {
    let mut out = conninfo.to_string();
    for span in password_spans(conninfo).into_iter().rev() {
        out.replace_range(span, "(sensitive)");
    }
    out
}

pub fn conninfo_has_password(conninfo: &str) -> bool {
    !password_spans(conninfo).is_empty()
}

/// The value of a `name = 'value'` line of a PostgreSQL configuration file.
fn conf_value(line: &str) -> Option<String> {
    let (_, rest) = line.split_once('=')?;
    let inner = rest.trim().strip_prefix('\'')?;
    let mut out = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' if chars.peek() == Some(&'\'') => {
                chars.next();
                out.push('\'');
            }
            '\'' => return Some(out),
            '\\' => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            c => out.push(c),
        }
    }
    Some(out)
}

/// Splits one conninfo value (quoted with `'...'` and `\` escapes, or bare).
fn split_conninfo_value(s: &str) -> (&str, &str) {
    if let Some(inner) = s.strip_prefix('\'') {
        let mut escaped = false;
        for (i, c) in inner.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '\'' if !escaped => return (&s[..i + 2], &s[i + 2..]),
                _ => escaped = false,
            }
        }
        (s, "")
    } else {
        let end = s.find(char::is_whitespace).unwrap_or(s.len());
        (&s[..end], &s[end..])
    }
}

pub fn auto_conf_has_password(text: &str) -> bool {
    text.lines()
        .filter(|l| l.trim_start().starts_with("primary_conninfo"))
        .filter_map(conf_value)
        .any(|v| conninfo_has_password(&v))
}

/// postgresql.auto.conf with any primary_conninfo that holds a password
/// replaced whole: the quoting inside the file makes a partial cut fragile.
/// The settings of a postgresql.auto.conf (or postgresql.conf) text, by
/// lower-case name, the last line winning as in PostgreSQL; values unquoted.
pub fn conf_settings(text: &str) -> IndexMap<String, String> {
    let mut out = IndexMap::new();
    for line in text.lines() {
        let l = line.trim_start();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let Some((name, rest)) = l.split_once('=') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty() || name.contains(char::is_whitespace) {
            continue;
        }
        let value = if rest.trim_start().starts_with('\'') {
            conf_value(l).unwrap_or_default()
        } else {
            rest.split('#').next().unwrap_or("").trim().to_string()
        };
        out.shift_remove(&name);
        out.insert(name, value);
    }
    out
}

pub fn redact_auto_conf(text: &str) -> String {
    text.lines()
        .map(|l| {
            let holds_password = l.trim_start().starts_with("primary_conninfo")
                && conf_value(l).is_none_or(|v| conninfo_has_password(&v));
            if holds_password {
                "primary_conninfo = '(sensitive)'".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What `pg_controldata` prints for a cleanly stopped standby-to-be, for tests.
#[cfg(test)]
pub(crate) const SAMPLE_CONTROLDATA: &str = "pg_control version number:            1300
Catalog version number:               202209061
Database system identifier:           7300000000000000001
Database cluster state:               shut down
pg_control last modified:             Sun 22 Nov 2026 02:10:04 AM UTC
Latest checkpoint location:           0/3000148
Latest checkpoint's REDO location:    0/3000148
Latest checkpoint's TimeLineID:       2
Minimum recovery ending location:     0/0
Min recovery ending loc's timeline:   0
wal_log_hints setting:                on
max_connections setting:              100
max_worker_processes setting:         8
max_wal_senders setting:              10
max_prepared_xacts setting:           0
max_locks_per_xact setting:           64
Data page checksum version:           0
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_settings_last_line_wins_and_values_unquote() {
        let text = "# Do not edit\nmax_wal_senders = '7'\nWORK_MEM = 64MB # c\nprimary_conninfo = 'host=a passfile=''/x y'''\nmax_wal_senders = '8'\nbroken line\n";
        let m = conf_settings(text);
        assert_eq!(m["max_wal_senders"], "8");
        assert_eq!(m["work_mem"], "64MB");
        assert_eq!(m["primary_conninfo"], "host=a passfile='/x y'");
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn controldata_fields() {
        let c = parse_controldata(SAMPLE_CONTROLDATA);
        assert_eq!(c.state, "shut down");
        assert_eq!(
            c.recorded_settings
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
            [
                "max_connections=100",
                "max_locks_per_transaction=64",
                "max_prepared_transactions=0",
                "max_wal_senders=10",
                "max_worker_processes=8",
            ]
        );
        assert_eq!(c.system_identifier, "7300000000000000001");
        assert_eq!(c.checkpoint_lsn, Some(Lsn(0x3000148)));
        assert_eq!(c.checkpoint_timeline, Some(2));
        assert_eq!(c.min_recovery_end_lsn, None);
        assert_eq!(c.min_recovery_end_timeline, None);
        assert_eq!(c.wal_log_hints, Some(true));
        assert_eq!(c.data_checksums, Some(false));
    }

    #[test]
    fn redacts_passwords_in_conninfo() {
        let cases = [
            (
                "host=a password=hunter2 user=r",
                "host=a password=(sensitive) user=r",
            ),
            (
                "host=a password='a\\'b c' user=r",
                "host=a password=(sensitive) user=r",
            ),
            ("password = secret host=a", "password = (sensitive) host=a"),
            ("PASSWORD=x", "PASSWORD=(sensitive)"),
            ("host=a user=r passfile=/p", "host=a user=r passfile=/p"),
            ("  host = a   user=r ", "  host = a   user=r "),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(redact_conninfo(input), want, "{input}");
        }
        assert!(conninfo_has_password("host=a password=x"));
        assert!(!conninfo_has_password("host=a passfile=/x user=password"));
    }

    #[test]
    fn redaction_never_panics_and_never_leaks() {
        for input in [
            "password",
            "password=",
            "password='",
            "=",
            "a=b=c",
            "password='x\\",
            " = = ",
            "pass word=x",
            "é=é password=ü",
        ] {
            let _ = redact_conninfo(input);
        }
        let got = redact_conninfo("host=x password='it\\'s a secret' port=5");
        assert!(!got.contains("secret"), "{got}");
    }

    #[test]
    fn flags_a_password_in_auto_conf() {
        let text = "# Do not edit\nprimary_conninfo = 'user=replicator password=pw host=x'\n";
        assert!(auto_conf_has_password(text));
        assert!(!redact_auto_conf(text).contains("pw host"));
        assert!(!auto_conf_has_password(
            "primary_conninfo = 'user=r passfile=/x host=h'\n"
        ));
        assert!(!auto_conf_has_password(
            "primary_conninfo = 'host=h port=5432 user=r passfile=/p application_name=n sslmode=prefer'\n"
        ));
        assert!(auto_conf_has_password(
            "primary_conninfo = 'host=h password=''x'''\n"
        ));
    }

    #[test]
    fn parses_gather_output() {
        let b = |s: &str| STANDARD.encode(s);
        let out = format!(
            "datadir initialised\nmajor 15\nstandby_signal 1\npostmaster_live 0\ncontroldata {}\nhba {}\nhistory:00000002.history {}\nfs 4096 1000 400\n",
            b(SAMPLE_CONTROLDATA),
            b("local all all peer\n"),
            b("1\t0/3000148\tno recovery target specified\n"),
        );
        let f = parse_gather_output(&out).expect("parses");
        assert_eq!(f.data_dir, DataDir::Initialised);
        assert_eq!(f.major, Some(15));
        assert!(!f.running);
        assert!(f.standby_signal && !f.recovery_signal);
        assert_eq!(
            f.control.as_ref().map(|c| c.state.as_str()),
            Some("shut down")
        );
        assert_eq!(f.hba_conf.as_deref(), Some("local all all peer\n"));
        assert_eq!(f.histories.len(), 1);
        assert_eq!(f.histories[0].0, 2);
        assert_eq!(
            (f.disk_total_bytes, f.disk_free_bytes),
            (Some(4096 * 1000), Some(4096 * 400))
        );
    }

    #[test]
    fn a_live_postmaster_is_running() {
        let f = parse_gather_output("datadir initialised\nmajor 16\npostmaster_live 1\n")
            .expect("parses");
        assert!(f.running && f.control.is_none() && f.hba_conf.is_none());
        assert_eq!(f.major, Some(16));
    }

    #[test]
    fn empty_node_output() {
        let f = parse_gather_output("datadir missing\nfs 4096 10 5\n").expect("parses");
        assert_eq!(f.data_dir, DataDir::Missing);
        assert!(!f.running && f.control.is_none() && f.major.is_none());
        assert_eq!(f.disk_free_bytes, Some(4096 * 5));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_gather_output("").is_err());
        assert!(parse_gather_output("datadir whatever\n").is_err());
        for odd in [
            "datadir empty\nfs x y z\nhistory:zz.history !!\n",
            "datadir empty\nfs 4096 10\n",
            "datadir empty\nfs 18446744073709551615 2 1\n",
            "datadir initialised\nmajor \npostmaster_live\n",
        ] {
            let f = parse_gather_output(odd).expect(odd);
            assert_eq!((f.disk_total_bytes, f.major), (None, None), "{odd}");
        }
    }

    #[test]
    fn manager_lines_group_by_manager_in_order() {
        let out = "datadir initialised\nmajor 15\npostmaster_live 1\n\
manager pg_auto_failover postgresql-auto-failover.conf is beside postgresql.conf\n\
manager patroni the postmaster's parent process is patroni (pid 7)\n\
manager patroni patroni.dynamic.json is in the data directory\n\
manager patroni patroni.dynamic.json is in the data directory\n\
manager slony something\n\
manager repmgrd\n\
fs 4096 10 5\n";
        let f = parse_gather_output(out).expect("parses");
        assert_eq!(
            f.managers,
            vec![
                ManagerFacts {
                    manager: Manager::PgAutoFailover,
                    evidence: vec![
                        "postgresql-auto-failover.conf is beside postgresql.conf".into()
                    ],
                },
                ManagerFacts {
                    manager: Manager::Patroni,
                    evidence: vec![
                        "the postmaster's parent process is patroni (pid 7)".into(),
                        "patroni.dynamic.json is in the data directory".into(),
                    ],
                },
                ManagerFacts {
                    manager: Manager::Repmgrd,
                    evidence: Vec::new(),
                },
            ]
        );
        assert_eq!(f.major, Some(15), "manager lines do not disturb the others");
        let plain = parse_gather_output("datadir missing\n").expect("parses");
        assert!(plain.managers.is_empty());
    }

    #[test]
    fn preload_names_split_as_postgres_does() {
        assert_eq!(
            preload_names(" pg_stat_statements, \"auto_explain\" ,,$libdir/x "),
            ["pg_stat_statements", "auto_explain", "$libdir/x"]
        );
        assert!(preload_names("").is_empty());
    }

    #[test]
    fn repmgr_in_shared_preload_libraries() {
        for yes in [
            "repmgr",
            "pg_stat_statements, repmgr",
            "'$libdir/repmgr'",
            "\"repmgr.so\"",
            " repmgr ,auto_explain",
        ] {
            assert!(preloads_repmgr(yes), "{yes}");
        }
        for no in [
            "",
            "pg_stat_statements",
            "repmgr_ext",
            "myrepmgr",
            "pglogical",
        ] {
            assert!(!preloads_repmgr(no), "{no}");
        }
    }
}
