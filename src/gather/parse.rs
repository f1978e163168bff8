//! Pure parsers for what the nodes print: the gather script's sections,
//! `pg_controldata`, conninfo strings (with passwords redacted).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use indexmap::IndexMap;

use super::model::{ControlData, DataDir, FileFacts, Lsn};

/// The read-only script run on each node:
/// `sh -c SCRIPT pgrepl DATA_DIR BIN_DIR CONF_DIR PASSFILE`.
/// Paths arrive as positional arguments and are only ever used quoted, so
/// nothing in them is interpreted. Each file's content is base64 on one line.
pub const GATHER_SCRIPT: &str = r#"D=$1; B=$2; C=$3; P=$4
emit() { n=$1; shift; if out=$("$@" 2>/dev/null | base64 -w0); then printf '%s %s\n' "$n" "$out"; fi; }
if [ -f "$D/PG_VERSION" ]; then dd=initialised
elif [ ! -e "$D" ]; then dd=missing
elif [ -z "$(ls -A "$D" 2>/dev/null)" ]; then dd=empty
else dd=foreign; fi
echo "datadir $dd"
if [ "$dd" = initialised ]; then
  emit pg_version cat "$D/PG_VERSION"
  "$B/pg_ctl" status -D "$D" >/dev/null 2>&1; echo "pg_ctl_status $?"
  [ -e "$D/standby.signal" ] && echo "standby_signal 1"
  [ -e "$D/recovery.signal" ] && echo "recovery_signal 1"
  emit controldata env LC_ALL=C "$B/pg_controldata" "$D"
  [ -f "$C/pg_hba.conf" ] && emit hba cat "$C/pg_hba.conf"
  [ -f "$D/postgresql.auto.conf" ] && emit auto_conf cat "$D/postgresql.auto.conf"
  for f in "$D"/pg_wal/*.history; do [ -f "$f" ] && emit "history:${f##*/}" cat "$f"; done
fi
p=$D; while [ ! -e "$p" ] && [ "$p" != / ]; do p=$(dirname "$p"); done
df -P -B1 "$p" 2>/dev/null | awk 'NR==2 {print "df", $2, $4}'
emit home printf %s "$HOME"
if [ -f "$P" ]; then
  echo "passfile_sha256 $(sha256sum < "$P" | cut -d' ' -f1)"
  echo "passfile_mode $(stat -c %a "$P")"
fi
exit 0
"#;

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
    for line in out.lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
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
    let (disk_total_bytes, disk_free_bytes) = match fields
        .get("df")
        .map(|v| v.split_whitespace().collect::<Vec<_>>())
    {
        Some(v) if v.len() == 2 => (v[0].parse().ok(), v[1].parse().ok()),
        _ => (None, None),
    };
    let raw_auto = text("auto_conf");
    let auto_conf_has_password = raw_auto.as_deref().is_some_and(auto_conf_has_password);
    histories.sort_by_key(|(t, _)| *t);
    Ok(FileFacts {
        data_dir,
        major: text("pg_version").and_then(|v| v.trim().parse().ok()),
        running: fields.get("pg_ctl_status").copied() == Some("0"),
        standby_signal: fields.contains_key("standby_signal"),
        recovery_signal: fields.contains_key("recovery_signal"),
        control: text("controldata").map(|t| parse_controldata(&t)),
        hba_conf: text("hba"),
        auto_conf: raw_auto.map(|t| redact_auto_conf(&t)),
        auto_conf_has_password,
        histories,
        disk_free_bytes,
        disk_total_bytes,
        home: text("home").filter(|h| !h.is_empty()),
        passfile_sha256: fields.get("passfile_sha256").map(|v| v.to_string()),
        passfile_mode: fields.get("passfile_mode").map(|v| v.to_string()),
    })
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
    }
}

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

fn auto_conf_has_password(text: &str) -> bool {
    text.lines()
        .filter(|l| l.trim_start().starts_with("primary_conninfo"))
        .filter_map(conf_value)
        .any(|v| conninfo_has_password(&v))
}

/// postgresql.auto.conf with any primary_conninfo that holds a password
/// replaced whole: the quoting inside the file makes a partial cut fragile.
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

#[cfg(test)]
mod tests {
    use super::*;

    const CONTROLDATA: &str = "pg_control version number:            1300
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
Data page checksum version:           0
";

    #[test]
    fn controldata_fields() {
        let c = parse_controldata(CONTROLDATA);
        assert_eq!(c.state, "shut down");
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
            "datadir initialised\npg_version {}\npg_ctl_status 3\nstandby_signal 1\ncontroldata {}\nhba {}\nhistory:00000002.history {}\ndf 1000 400\nhome {}\n",
            b("15\n"),
            b(CONTROLDATA),
            b("local all all peer\n"),
            b("1\t0/3000148\tno recovery target specified\n"),
            b("/var/lib/postgresql")
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
            (Some(1000), Some(400))
        );
        assert_eq!(f.home.as_deref(), Some("/var/lib/postgresql"));
    }

    #[test]
    fn empty_node_output() {
        let f = parse_gather_output("datadir missing\ndf 10 5\n").expect("parses");
        assert_eq!(f.data_dir, DataDir::Missing);
        assert!(!f.running && f.control.is_none() && f.major.is_none());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_gather_output("").is_err());
        assert!(parse_gather_output("datadir whatever\n").is_err());
        assert!(parse_gather_output("datadir empty\ndf x y\nhistory:zz.history !!\n").is_ok());
    }
}
