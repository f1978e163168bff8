//! Pure parsers for what the nodes print: the gather script's sections,
//! `pg_controldata`, conninfo strings (with passwords redacted).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use indexmap::IndexMap;

use super::{ControlData, DataDir, FileFacts, Lsn, Manager, ManagerFacts, PreloadCheck};

/// The read-only script run on each node:
/// `sh -c SCRIPT pgrepl DATA_DIR BIN_DIR CONF_DIR PASSFILE [MODE [LIBRARIES]]`,
/// MODE `repmgrd` (below) or `-`; LIBRARIES the names the file preloads,
/// one a line.
/// Paths arrive as positional arguments and are only ever used quoted, so
/// nothing in them is interpreted.
///
/// Cheap on purpose, because it runs on every node for every plan: shell
/// builtins, one `stat -f`, and for a passfile `sha256sum` and `stat`. A
/// running server's files (hba, auto.conf, histories, pg_control) are read
/// over SQL instead; only when no postmaster is alive does the script read
/// them itself, each file's content base64 on one line.
///
/// Another manager's signs are `manager NAME EVIDENCE` lines (SPEC section
/// 10): the live postmaster's parent process (Patroni and pg_autoctl run
/// PostgreSQL as their child), Patroni's header in postgresql.conf and its
/// patroni.dynamic.json, pg_auto_failover's postgresql-auto-failover.conf
/// beside postgresql.conf, and a live repmgrd whose repmgr.conf names this
/// data directory. Looking for repmgrd walks /proc, so the script does it
/// for a stopped node only; for a running one, gathering runs the script
/// again with the last argument `repmgrd` when the server preloads repmgr's
/// library, which repmgrd cannot run without. Evidence holds no text read
/// from the node, only fixed words, pids and a repmgr.conf path without a
/// newline, so it cannot forge output lines.
///
/// A stopped node is also asked what would keep it from starting: its
/// slots on disk (`replslots N`: PostgreSQL refuses to start with more than
/// `max_replication_slots`) and, when the file preloads libraries, which of
/// them are missing from the server's library directory (`pkglibdir DIR`,
/// `preload_missing INDEX`). That directory is `BIN_DIR/pg_config
/// --pkglibdir` when that exists, else the usual place beside BIN_DIR
/// (Debian's `/usr/lib/postgresql/MAJOR/lib`); either counts only when it
/// holds `plpgsql.so`, which every server has. A running server answers
/// both over SQL instead.
pub const GATHER_SCRIPT: &str = r##"D=$1; B=$2; C=$3; P=$4
emit() { n=$1; shift; if out=$("$@" 2>/dev/null | base64 -w0); then printf '%s %s\n' "$n" "$out"; fi; }
nl='
'
mgr() { printf 'manager %s %s\n' "$1" "$2"; }
# A live repmgrd whose repmgr.conf (its -f, else repmgr's own search: its
# working directory, then /etc) names $D; one whose file cannot be read
# may be this node's, and counts.
repmgrd_of() {
  for f in /proc/[0-9]*/comm; do
    c=; read -r c 2>/dev/null <"$f" || continue
    [ "$c" = repmgrd ] || continue
    q=${f%/comm}; n=${q#/proc/}; conf=; prev=; st=
    read -r st 2>/dev/null <"$q/stat"
    case ${st##*) } in Z*|X*) continue ;; esac
    args=$(tr '\0' '\n' 2>/dev/null <"$q/cmdline") || continue
    while IFS= read -r a; do
      case $prev in -f|--config-file) conf=$a ;; esac
      case $a in --config-file=*) conf=${a#*=} ;; -f?*) conf=${a#-f} ;; esac
      prev=$a
    done <<ARGS
$args
ARGS
    case $conf in
      '') for conf in "$q/cwd/repmgr.conf" /etc/repmgr.conf ''; do [ -f "$conf" ] && break; done ;;
      /*) ;;
      *) conf=$q/cwd/$conf ;;
    esac
    shown=${conf#"$q/cwd/"}; [ "$shown" = "$conf" ] || shown="$shown in its working directory"
    case $shown in *"$nl"*) shown='(a path with a newline)' ;; esac
    if [ -z "$conf" ] || ! [ -r "$conf" ]; then
      mgr repmgrd "repmgrd (pid $n) runs on this host and its repmgr.conf ${shown:-(not found)} cannot be read to tell which data directory it manages"
      continue
    fi
    v=
    while IFS= read -r l || [ -n "$l" ]; do
      k=${l%%=*}; k=${k#"${k%%[![:space:]]*}"}; k=${k%"${k##*[![:space:]]}"}
      [ "$k" = data_directory ] || continue
      v=${l#*=}; v=${v#"${v%%[![:space:]]*}"}
      case $v in
        \'*) v=${v#\'}; v=${v%%\'*} ;;
        \"*) v=${v#\"}; v=${v%%\"*} ;;
        *) v=${v%%[[:space:]#]*} ;;
      esac
    done <"$conf"
    while [ "${v%/}" != "$v" ]; do v=${v%/}; done
    dd=$D; while [ "${dd%/}" != "$dd" ]; do dd=${dd%/}; done
    if [ -n "$v" ] && { [ "$v" = "$dd" ] || [ "$v" = "$phys" ]; }; then
      mgr repmgrd "repmgrd (pid $n) runs for this data directory (data_directory in $shown)"
    fi
  done
}
phys=
if cd -P -- "$D" 2>/dev/null; then phys=$PWD; cd /; fi
if [ "${5-}" = repmgrd ]; then repmgrd_of; exit 0; fi
if [ -f "$D/PG_VERSION" ]; then
  echo "datadir initialised"
  case $phys in ''|*"$nl"*) ;; *) echo "datadir_physical $phys" ;; esac
  v=; read -r v 2>/dev/null <"$D/PG_VERSION"; echo "major $v"
  [ -e "$D/standby.signal" ] && echo "standby_signal 1"
  [ -e "$D/recovery.signal" ] && echo "recovery_signal 1"
  live=0; pid=
  [ -f "$D/postmaster.pid" ] && read -r pid 2>/dev/null <"$D/postmaster.pid"
  case $pid in ''|*[!0-9]*) ;; *) kill -0 "$pid" 2>/dev/null && live=1 ;; esac
  echo "postmaster_live $live"
  h1=; h2=
  [ -f "$C/postgresql.conf" ] && { read -r h1; read -r h2; } 2>/dev/null <"$C/postgresql.conf"
  case "$h1 $h2" in *"overwritten by Patroni"*) mgr patroni "postgresql.conf begins with Patroni's header (It will be overwritten by Patroni!)" ;; esac
  [ -f "$D/patroni.dynamic.json" ] && mgr patroni "patroni.dynamic.json is in the data directory"
  [ -f "$C/postgresql-auto-failover.conf" ] && mgr pg_auto_failover "postgresql-auto-failover.conf is beside postgresql.conf"
  if [ $live = 1 ]; then
    # /proc/PID/stat: the command name (field 2) may hold spaces and
    # parentheses; the parent's pid is the second field after the last `)`.
    st=; read -r st 2>/dev/null <"/proc/$pid/stat"
    set -- ${st##*)}
    pp=${2-}
    case $pp in ''|*[!0-9]*) ;; *)
      pc=; pa=
      read -r pc 2>/dev/null <"/proc/$pp/comm"
      case $pc in
        patroni) mgr patroni "the postmaster's parent process is patroni (pid $pp)" ;;
        pg_autoctl) mgr pg_auto_failover "the postmaster's parent process is pg_autoctl (pid $pp)" ;;
        # `python3 -m patroni`: only then the command line, which the
        # shell reads a byte per system call (NULs dropped).
        python*|pypy*)
          read -r pa 2>/dev/null <"/proc/$pp/cmdline"
          case $pa in *patroni*) mgr patroni "the postmaster's parent process (pid $pp) runs patroni" ;; esac ;;
      esac ;;
    esac
  else
    emit controldata env LC_ALL=C "$B/pg_controldata" "$D"
    [ -f "$C/pg_hba.conf" ] && emit hba cat "$C/pg_hba.conf"
    [ -f "$D/postgresql.auto.conf" ] && emit auto_conf cat "$D/postgresql.auto.conf"
    for f in "$D"/pg_wal/*.history; do [ -f "$f" ] && emit "history:${f##*/}" cat "$f"; done
    n=0
    for f in "$D"/pg_replslot/*; do case $f in *.tmp) ;; *) [ -d "$f" ] && n=$((n + 1)) ;; esac; done
    echo "replslots $n"
    if [ -n "${6-}" ]; then
      echo "preload_checked"
      L=
      for d in "$("$B/pg_config" --pkglibdir 2>/dev/null)" "${B%/bin}/lib" "${B%/bin}/lib/postgresql" "${B%/bin}/lib64"; do
        [ -n "$d" ] && [ -f "$d/plpgsql.so" ] && { L=$d; break; }
      done
      if [ -n "$L" ]; then
        case $L in *"$nl"*) ;; *) echo "pkglibdir $L" ;; esac
        i=0
        while IFS= read -r l; do
          case $l in
            '$libdir/'*) f=$L/${l#'$libdir/'} ;;
            */*) f=$l ;;
            *) f=$L/$l ;;
          esac
          [ -f "$f" ] || [ -f "$f.so" ] || echo "preload_missing $i"
          i=$((i + 1))
        done <<LIBS
$6
LIBS
      fi
    fi
    repmgrd_of
  fi
elif [ ! -e "$D" ]; then echo "datadir missing"
else
  dd=empty
  # A file, or a directory this user cannot list, is nothing to build into.
  { [ -d "$D" ] && [ -r "$D" ] && [ -x "$D" ]; } || dd=foreign
  [ $dd = empty ] && for f in "$D"/* "$D"/.[!.]* "$D"/..?*; do
    if [ -e "$f" ] || [ -L "$f" ]; then dd=foreign; break; fi
  done
  echo "datadir $dd"
fi
if [ "$C" != "$D" ]; then
  if [ -f "$C/postgresql.conf" ]; then echo "config_dir_has_conf 1"; else echo "config_dir_has_conf 0"; fi
fi
p=$D; while [ ! -e "$p" ]; do case $p in */*) p=${p%/*}; [ -n "$p" ] || p=/ ;; *) p=/ ;; esac; done
stat -f -c 'fs %S %b %a' "$p" 2>/dev/null
if [ -f "$P" ]; then
  h=$(sha256sum <"$P") && echo "passfile_sha256 ${h%% *}"
  stat -c 'passfile_mode %a' "$P"
fi
for f in "${P%/*}"/.pgrepl-*.pgpass; do
  { [ "$f" = "$P" ] || ! [ -f "$f" ]; } && continue
  n=${f##*/.pgrepl-}; n=${n%.pgpass}
  case $n in ''|*[!a-z0-9_-]*) continue ;; esac
  IFS= read -r h 2>/dev/null <"$f" || continue
  [ "$h" = "# pgrepl passfile: cluster $n, data directory $D" ] && echo "stale_cluster $n"
done
for f in "${P%/*}"/.pgrepl-*.lock.holder; do
  n=${f##*/.pgrepl-}; n=${n%.lock.holder}
  { [ "${P%/*}/.pgrepl-$n.pgpass" = "$P" ] || ! [ -f "$f" ]; } && continue
  case $n in ''|*[!a-z0-9_-]*) continue ;; esac
  while IFS= read -r h; do
    [ "$h" = "data_dir=$D" ] && { echo "stale_cluster $n"; break; }
  done 2>/dev/null <"$f"
done
[ -e "$D.pgrepl-rewinding" ] && echo "rewind_interrupted 1"
[ -d "$D.pgrepl-building" ] && du -sb -- "$D.pgrepl-building" 2>/dev/null | { read -r s _; echo "building_bytes $s"; }
exit 0
"##;

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

/// A value as a configuration file needs it: single-quoted, with `'` doubled
/// and `\` escaped (PostgreSQL's config parser reads backslash escapes in
/// quoted values).
pub fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
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
max_connections setting:              100
max_worker_processes setting:         8
max_wal_senders setting:              10
max_prepared_xacts setting:           0
max_locks_per_xact setting:           64
Data page checksum version:           0
";

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
    fn conf_quote_round_trips_through_the_parser() {
        for v in [
            "plain",
            "it's",
            "back\\slash",
            "'\\'",
            "a b=c",
            "",
            "$(x) `y`",
        ] {
            let line = format!("x = {}", conf_quote(v));
            assert_eq!(conf_settings(&line)["x"], v, "{line}");
        }
    }

    #[test]
    fn controldata_fields() {
        let c = parse_controldata(CONTROLDATA);
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
            b(CONTROLDATA),
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

    /// Runs the gather script itself with `sh`, on local directories.
    mod script {
        use super::*;
        use std::os::unix::fs::PermissionsExt;
        use std::path::Path;
        use std::process::Command;

        fn run(data_dir: &Path, bin_dir: &Path, passfile: &Path) -> String {
            let out = Command::new("sh")
                .args(["-c", GATHER_SCRIPT, "pgrepl-gather"])
                .arg(data_dir)
                .arg(bin_dir)
                .arg(data_dir)
                .arg(passfile)
                .output()
                .expect("sh runs");
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).expect("utf-8")
        }

        fn write(path: &Path, text: &str) {
            std::fs::write(path, text).expect("write");
        }

        /// A data directory named to break any unquoted use, inside `root`.
        fn hostile(root: &Path) -> std::path::PathBuf {
            root.join("it's a \"dir\" $(touch pwned) `touch pwned2`\nline2")
        }

        #[test]
        fn missing_empty_and_foreign() {
            let root = tempfile::tempdir().expect("tempdir");
            let d = hostile(root.path());
            let nothing = root.path().join("no-passfile");
            let f = parse_gather_output(&run(&d, root.path(), &nothing)).expect("parses");
            assert_eq!(f.data_dir, DataDir::Missing);
            assert!(
                f.disk_total_bytes.is_some_and(|t| t > 0),
                "statvfs of the parent"
            );
            std::fs::create_dir(&d).expect("mkdir");
            let f = parse_gather_output(&run(&d, root.path(), &nothing)).expect("parses");
            assert_eq!(f.data_dir, DataDir::Empty);
            write(&d.join(".hidden"), "x");
            let f = parse_gather_output(&run(&d, root.path(), &nothing)).expect("parses");
            assert_eq!(f.data_dir, DataDir::Foreign);
            let file = root.path().join("a file");
            write(&file, "");
            let f = parse_gather_output(&run(&file, root.path(), &nothing)).expect("parses");
            assert_eq!(f.data_dir, DataDir::Foreign, "a regular file is not empty");
            std::fs::remove_file(&file).expect("rm");
            assert!(f.passfile_sha256.is_none());
            let names: Vec<_> = std::fs::read_dir(root.path())
                .expect("ls")
                .map(|e| e.expect("entry").file_name())
                .collect();
            assert_eq!(names.len(), 1, "nothing executed: {names:?}");
        }

        /// A renamed cluster's passfile and lock holder beside the data
        /// directory are found by the data directory they name; another
        /// data directory's, a foreign file, and odd names are not.
        #[test]
        fn a_former_cluster_name_is_found_by_its_data_directory() {
            let root = tempfile::tempdir().expect("tempdir");
            let base = root.path().join("it's a \"dir\" $(touch pwned) `x` \\ -n");
            let d = base.join("main");
            std::fs::create_dir_all(&d).expect("mkdir");
            let dd = d.to_str().expect("utf-8");
            let header = |cluster: &str, dir: &str| {
                format!(
                    "{}\n*:*:*:r:secret\n",
                    crate::desired::passfile_header(cluster, dir)
                )
            };
            let current = base.join(".pgrepl-now.pgpass");
            write(&current, &header("now", dd));
            write(&base.join(".pgrepl-old.pgpass"), &header("old", dd));
            write(
                &base.join(".pgrepl-other.pgpass"),
                &header("other", "/elsewhere/main"),
            );
            write(&base.join(".pgrepl-bare.pgpass"), "*:*:*:r:secret\n");
            write(&base.join(".pgrepl-Bad$.pgpass"), &header("Bad$", dd));
            write(
                &base.join(".pgrepl-older.lock.holder"),
                &format!("pid=1\nholder=x\ndata_dir={dd}\n"),
            );
            write(
                &base.join(".pgrepl-now.lock.holder"),
                &format!("pid=1\ndata_dir={dd}\n"),
            );
            write(
                &base.join(".pgrepl-theirs.lock.holder"),
                "pid=1\ndata_dir=/elsewhere/main\n",
            );
            let f = parse_gather_output(&run(&d, root.path(), &current)).expect("parses");
            assert_eq!(f.stale_clusters, ["old", "older"]);
            assert!(!root.path().join("pwned").exists());
        }

        /// A stopped node: its slots on disk, and the preloaded libraries
        /// looked for in the library directory beside bin_dir (the one
        /// holding plpgsql.so), as `$libdir/NAME`, NAME or NAME.so.
        #[test]
        fn a_stopped_node_reports_its_slots_and_missing_libraries() {
            let root = tempfile::tempdir().expect("tempdir");
            let base = hostile(root.path());
            let d = base.join("main");
            let bin = base.join("bin");
            let lib = base.join("lib");
            for dir in [&d, &bin, &lib] {
                std::fs::create_dir_all(dir).expect("mkdir");
            }
            write(&d.join("PG_VERSION"), "15\n");
            for slot in ["node2", "node3", "barman", "gone.tmp"] {
                std::fs::create_dir_all(d.join("pg_replslot").join(slot)).expect("mkdir");
            }
            write(&lib.join("plpgsql.so"), "");
            write(&lib.join("pg_stat_statements.so"), "");
            write(&lib.join("auto_explain"), "");
            let libs: Vec<String> = [
                "pg_stat_statements",
                "pg_stat_statementz",
                "$libdir/auto_explain",
                "$(touch pwned3)",
                "plpgsql.so",
            ]
            .map(String::from)
            .to_vec();
            let out = Command::new("sh")
                .args(["-c", GATHER_SCRIPT, "pgrepl-gather"])
                .arg(&d)
                .arg(&bin)
                .arg(&d)
                .arg(root.path().join("no-passfile"))
                .arg("-")
                .arg(libs.join("\n"))
                .output()
                .expect("sh runs");
            assert!(out.status.success(), "{out:?}");
            let out = String::from_utf8(out.stdout).expect("utf-8");
            let f = parse_gather_output(&out).expect("parses");
            assert_eq!(f.slots_on_disk, Some(3), "{out}");
            let check = parse_preload_check(&out, &libs).expect("checked");
            assert_eq!(check.missing, ["pg_stat_statementz", "$(touch pwned3)"]);
            // A newline in the path is not printed: the line would be forged.
            assert_eq!(check.libdir, None, "{out}");
            assert!(!root.path().join("pwned3").exists());
            assert!(!d.join("pwned3").exists());
            // No library list: nothing checked.
            let plain = run(&d, &bin, &root.path().join("no-passfile"));
            assert_eq!(parse_preload_check(&plain, &libs), None);
            assert!(!plain.contains("pkglibdir"), "{plain}");
        }

        #[test]
        fn a_stopped_data_directory_is_read_from_disk() {
            let root = tempfile::tempdir().expect("tempdir");
            let d = hostile(root.path());
            let bin = root.path().join("bin");
            std::fs::create_dir_all(d.join("pg_wal")).expect("mkdir");
            std::fs::create_dir(&bin).expect("mkdir");
            write(&d.join("PG_VERSION"), "15\n");
            write(&d.join("standby.signal"), "");
            write(&d.join("pg_hba.conf"), "local all all peer\n");
            write(
                &d.join("postgresql.auto.conf"),
                "primary_conninfo = 'host=a password=pw'\n",
            );
            write(&d.join("pg_wal/00000002.history"), "1\t0/3000148\treason\n");
            // A postmaster.pid left by a crash: no such process.
            write(&d.join("postmaster.pid"), "2147483647\n");
            let tool = bin.join("pg_controldata");
            write(
                &tool,
                &format!("#!/bin/sh\ncat <<'EOF'\n{CONTROLDATA}EOF\n"),
            );
            std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            let passfile = root.path().join("pass file");
            write(&passfile, "h:5432:*:r:secret\n");
            std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o600))
                .expect("chmod");

            let f = parse_gather_output(&run(&d, &bin, &passfile)).expect("parses");
            assert_eq!(f.data_dir, DataDir::Initialised);
            assert_eq!(f.major, Some(15));
            assert!(!f.running && f.standby_signal && !f.recovery_signal);
            assert_eq!(f.control, Some(parse_controldata(CONTROLDATA)));
            assert_eq!(f.hba_conf.as_deref(), Some("local all all peer\n"));
            assert!(f.auto_conf_has_password);
            assert!(!f.auto_conf.as_deref().unwrap_or("").contains("pw"));
            assert_eq!(f.histories, vec![(2, "1\t0/3000148\treason\n".to_string())]);
            use sha2::Digest;
            let want = format!("{:x}", sha2::Sha256::digest(b"h:5432:*:r:secret\n"));
            assert_eq!(f.passfile_sha256.as_deref(), Some(want.as_str()));
            assert_eq!(f.passfile_mode.as_deref(), Some("600"));
            assert!(!root.path().join("pwned").exists() && !root.path().join("pwned2").exists());
        }

        #[test]
        fn a_separate_config_dir_is_checked_for_postgresql_conf() {
            let root = tempfile::tempdir().expect("tempdir");
            let (d, c) = (root.path().join("data"), root.path().join("etc main"));
            let run_split = || {
                let out = Command::new("sh")
                    .args(["-c", GATHER_SCRIPT, "pgrepl-gather"])
                    .args([&d, root.path(), &c, &root.path().join("none")])
                    .output()
                    .expect("sh runs");
                parse_gather_output(&String::from_utf8_lossy(&out.stdout)).expect("parses")
            };
            assert_eq!(run_split().config_dir_has_conf, Some(false));
            std::fs::create_dir(&c).expect("mkdir");
            write(&c.join("postgresql.conf"), "");
            assert_eq!(run_split().config_dir_has_conf, Some(true));
            // Configuration inside the data directory: nothing to check.
            let f = parse_gather_output(&run(&d, root.path(), &root.path().join("none")))
                .expect("parses");
            assert_eq!(f.config_dir_has_conf, None);
        }

        #[test]
        fn a_live_postmaster_leaves_the_files_to_sql() {
            let root = tempfile::tempdir().expect("tempdir");
            let d = root.path().join("data");
            std::fs::create_dir(&d).expect("mkdir");
            write(&d.join("PG_VERSION"), "17");
            write(&d.join("pg_hba.conf"), "local all all peer\n");
            // This test's own process stands in for the postmaster.
            write(
                &d.join("postmaster.pid"),
                &format!("{}\n{}\n", std::process::id(), d.display()),
            );
            let f = parse_gather_output(&run(&d, root.path(), &root.path().join("none")))
                .expect("parses");
            assert_eq!(f.major, Some(17), "PG_VERSION without a newline");
            assert!(f.running);
            assert!(f.control.is_none() && f.hba_conf.is_none());
        }

        /// The POSIX shells the script must run under: `sh` (dash on
        /// Debian), dash by name, and bash.
        const SHELLS: [&str; 3] = ["sh", "dash", "bash"];

        /// Tests that start fake managers, or look for repmgrd on this
        /// machine, one at a time: a fake repmgrd is seen machine-wide.
        static MANAGERS: std::sync::Mutex<()> = std::sync::Mutex::new(());

        fn run_in(shell: &str, d: &Path, bin: &Path, extra: &[&str]) -> String {
            let out = Command::new(shell)
                .args(["-c", GATHER_SCRIPT, "pgrepl-gather"])
                .args([d, bin, d, &bin.join("no-passfile")])
                .args(extra)
                .output()
                .unwrap_or_else(|e| panic!("{shell} runs: {e}"));
            assert!(out.status.success(), "{shell}: {out:?}");
            String::from_utf8(out.stdout).expect("utf-8")
        }

        fn executable(path: &Path, text: &str) {
            write(path, text);
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }

        /// A process whose command name is `path`'s file name (the kernel
        /// names a script's process after the script), running `sleep` as
        /// its child. Both end when it is dropped.
        struct Fake {
            parent: std::process::Child,
            child: u32,
        }

        impl Fake {
            fn start(path: &Path, args: &[&str]) -> Fake {
                executable(
                    path,
                    "#!/bin/sh\nfor a; do f=$a; done\nsleep 60 &\necho $! >\"$f.tmp\" && mv \"$f.tmp\" \"$f\"\nwait\n",
                );
                let pidfile = path.with_extension("child");
                let parent = Command::new(path)
                    .args(args)
                    .arg(&pidfile)
                    .stdin(std::process::Stdio::null())
                    .spawn()
                    .expect("spawn the fake manager");
                let mut fake = Fake { parent, child: 0 };
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                fake.child = loop {
                    if let Some(pid) = std::fs::read_to_string(&pidfile)
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                    {
                        break pid;
                    }
                    assert!(std::time::Instant::now() < deadline, "no child pid");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                };
                fake
            }
        }

        impl Drop for Fake {
            fn drop(&mut self) {
                if self.child != 0 {
                    let _ = Command::new("kill").arg(self.child.to_string()).status();
                } else {
                    let _ = self.parent.kill();
                }
                let _ = self.parent.wait();
            }
        }

        fn data_dir(d: &Path, postmaster_pid: Option<u32>) {
            std::fs::create_dir_all(d).expect("mkdir");
            write(&d.join("PG_VERSION"), "15\n");
            if let Some(pid) = postmaster_pid {
                write(
                    &d.join("postmaster.pid"),
                    &format!("{pid}\n{}\n", d.display()),
                );
            }
        }

        fn managers(out: &str) -> Vec<(Manager, Vec<String>)> {
            parse_gather_output(out)
                .expect("parses")
                .managers
                .into_iter()
                .map(|m| (m.manager, m.evidence))
                .collect()
        }

        #[test]
        fn patroni_and_pg_auto_failover_files_are_seen_on_a_stopped_node() {
            let _one = MANAGERS.lock().unwrap_or_else(|e| e.into_inner());
            let root = tempfile::tempdir().expect("tempdir");
            let d = hostile(root.path());
            data_dir(&d, None);
            for shell in SHELLS {
                assert!(managers(&run_in(shell, &d, root.path(), &[])).is_empty());
            }
            write(
                &d.join("postgresql.conf"),
                "# Do not edit this file manually!\n# It will be overwritten by Patroni!\ninclude 'postgresql.base.conf'\n",
            );
            write(&d.join("patroni.dynamic.json"), "{}");
            write(&d.join("postgresql-auto-failover.conf"), "");
            for shell in SHELLS {
                let out = run_in(shell, &d, root.path(), &[]);
                assert_eq!(
                    managers(&out),
                    [
                        (
                            Manager::Patroni,
                            vec![
                                "postgresql.conf begins with Patroni's header (It will be overwritten by Patroni!)".to_string(),
                                "patroni.dynamic.json is in the data directory".to_string(),
                            ]
                        ),
                        (
                            Manager::PgAutoFailover,
                            vec!["postgresql-auto-failover.conf is beside postgresql.conf".to_string()]
                        ),
                    ],
                    "{shell}:\n{out}"
                );
                let f = parse_gather_output(&out).expect("parses");
                assert!(!f.running && f.major == Some(15), "{shell}");
            }
            // Patroni's include line alone (no header) is not its sign.
            write(
                &d.join("postgresql.conf"),
                "include 'postgresql.base.conf'\n",
            );
            std::fs::remove_file(d.join("patroni.dynamic.json")).expect("rm");
            std::fs::remove_file(d.join("postgresql-auto-failover.conf")).expect("rm");
            for shell in SHELLS {
                assert!(managers(&run_in(shell, &d, root.path(), &[])).is_empty());
            }
            assert!(!root.path().join("pwned").exists() && !root.path().join("pwned2").exists());
        }

        #[test]
        fn the_postmasters_parent_process_names_its_manager() {
            let _one = MANAGERS.lock().unwrap_or_else(|e| e.into_inner());
            let root = tempfile::tempdir().expect("tempdir");
            let d = hostile(root.path());
            // (the parent's name, its arguments, the manager and evidence expected)
            type Case<'a> = (&'a str, &'a [&'a str], Option<(Manager, &'a str)>);
            let cases: [Case; 4] = [
                (
                    "patroni",
                    &["/etc/patroni.yml"],
                    Some((
                        Manager::Patroni,
                        "the postmaster's parent process is patroni (pid ",
                    )),
                ),
                (
                    "pg_autoctl",
                    &["run"],
                    Some((
                        Manager::PgAutoFailover,
                        "the postmaster's parent process is pg_autoctl (pid ",
                    )),
                ),
                // `python3 -m patroni`: the name is python3, the command line says patroni.
                (
                    "python3",
                    &["-m", "patroni", "/etc/patroni.yml"],
                    Some((Manager::Patroni, "the postmaster's parent process (pid ")),
                ),
                ("supervise", &["postgres"], None),
            ];
            for (name, args, want) in cases {
                let dir = root.path().join(format!("bin {name}"));
                std::fs::create_dir(&dir).expect("mkdir");
                let fake = Fake::start(&dir.join(name), args);
                data_dir(&d, Some(fake.child));
                for shell in SHELLS {
                    let out = run_in(shell, &d, root.path(), &[]);
                    let got = managers(&out);
                    let f = parse_gather_output(&out).expect("parses");
                    assert!(f.running, "{name} {shell}: {out}");
                    match want {
                        Some((manager, evidence)) => {
                            assert_eq!(got.len(), 1, "{name} {shell}: {out}");
                            assert_eq!(got[0].0, manager, "{name} {shell}");
                            let e = &got[0].1;
                            assert!(
                                e.len() == 1
                                    && e[0].starts_with(evidence)
                                    && e[0].contains(&fake.parent.id().to_string()),
                                "{name} {shell}: {e:?}"
                            );
                        }
                        None => assert!(got.is_empty(), "{name} {shell}: {got:?}"),
                    }
                }
                drop(fake);
            }
            assert!(!root.path().join("pwned").exists() && !root.path().join("pwned2").exists());
        }

        #[test]
        fn a_live_repmgrd_counts_when_its_repmgr_conf_names_this_data_directory() {
            let _one = MANAGERS.lock().unwrap_or_else(|e| e.into_inner());
            let root = tempfile::tempdir().expect("tempdir");
            let d = root.path().join("data dir");
            data_dir(&d, None);
            let conf = root.path().join("repmgr conf");
            let bin = root.path().join("bin");
            std::fs::create_dir(&bin).expect("mkdir");
            let conf_s = conf.to_str().expect("utf-8");
            let fake = Fake::start(&bin.join("repmgrd"), &["-f", conf_s, "--daemonize"]);
            let pid = fake.parent.id().to_string();
            // The whole script, and its search alone (`repmgrd` last).
            let found = |extra: &[&str]| -> Vec<Vec<(Manager, Vec<String>)>> {
                SHELLS
                    .iter()
                    .map(|shell| {
                        let out = run_in(shell, &d, root.path(), extra);
                        parse_manager_lines(&out)
                            .into_iter()
                            .map(|m| (m.manager, m.evidence))
                            .collect()
                    })
                    .collect()
            };
            // Its file cannot be read (here: it does not exist): it may be ours.
            for got in found(&[]).into_iter().chain(found(&["repmgrd"])) {
                assert!(
                    got.iter()
                        .any(|(m, e)| *m == Manager::Repmgrd
                            && e.iter().any(|e| e.contains(&format!("(pid {pid})"))
                                && e.contains("cannot be read"))),
                    "{got:?}"
                );
            }
            // Another data directory: not ours.
            write(
                &conf,
                "node_id=2\nconninfo='host=db2 user=repmgr'\ndata_directory='/srv/other'\n",
            );
            for got in found(&[]).into_iter().chain(found(&["repmgrd"])) {
                assert!(
                    !got.iter()
                        .any(|(_, e)| e.iter().any(|e| e.contains(&format!("(pid {pid})")))),
                    "{got:?}"
                );
            }
            // This data directory, written with a trailing slash, unquoted or quoted.
            for line in [
                format!("  data_directory = '{}/'  # the node's", d.display()),
                format!("data_directory=\"{}\"", d.display()),
            ] {
                write(&conf, &format!("node_id=2\n{line}\nlog_level=INFO"));
                for got in found(&[]).into_iter().chain(found(&["repmgrd"])) {
                    let want = format!(
                        "repmgrd (pid {pid}) runs for this data directory (data_directory in {conf_s})"
                    );
                    assert!(
                        got.iter()
                            .any(|(m, e)| *m == Manager::Repmgrd && e.contains(&want)),
                        "{line}: {got:?}"
                    );
                }
            }
            // `repmgrd` as the last argument prints the search alone.
            let out = run_in("dash", &d, root.path(), &["repmgrd"]);
            assert!(out.lines().all(|l| l.starts_with("manager ")), "{out}");
            drop(fake);
        }
    }
}
