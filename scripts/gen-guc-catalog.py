#!/usr/bin/env python3
"""Generate src/guc/catalog.rs: every GUC of PostgreSQL 12-18 as static data.

How the data is obtained:

1. For every major of DUMPED (15, 16, 17, 18), one after the other, a
   throwaway server is started as the `postgres` OS user: initdb into a
   temporary directory owned by postgres, unix socket in that directory,
   listen_addresses='', port 54000 + major. As superuser (which shows the
   settings hidden from ordinary users), `pg_settings` is dumped and the
   settings pg_settings never lists (GUC_NO_SHOW_ALL: default_with_oids,
   is_superuser, role, seed, session_authorization, ssl_renegotiation_limit)
   are probed with current_setting(name, true). The server is stopped with
   `pg_ctl stop` and the directory removed, also when something failed.
2. For 15-18 everything comes from these dumps: which majors have a setting,
   its vartype, unit, context, enum values, min and max. Where a setting's
   facts differ between majors, it gets one entry per run of majors with the
   same facts (`log_connections`: a bool in 12-17, a string in 18;
   `autovacuum_max_workers`: restart in 12-17, reload in 18), so that a node
   of major N is checked with N's facts (src/guc/mod.rs `lookup_in`).
   Corrections the dumps need, each written out below: BUILD_OPTIONAL (enum
   values a build option adds, which the PyPI wheels of 16 and 18 lack),
   BACKPATCHED (settings added in a minor release newer than a dumped one),
   PACKAGING (Debian's extension_destdir, absent from upstream builds),
   VERSION_RANGE (server_version_num's min and max are the server version).
3. 12-14 are not dumped: their facts are 15's, minus the settings that
   appeared later (SINCE), plus those removed before 15 (OLD), with the
   differences written in OLDER_FACTS, all from the release notes of 12-15.
   The hidden settings' facts come from HIDDEN (their existence in 15-18
   from the probe).
4. The result is written as a Rust table sorted by lower-case name and
   first major; src/guc/mod.rs looks names up by binary search. The header
   records each dump's server version and SHA-256, and a SHA-256 of every
   major's derived facts that src/guc/tests.rs recomputes from the table.

Usage (as root, with PostgreSQL 15-18 in /usr/lib/postgresql/MAJOR/bin;
`bash lab/lab.sh --pg N install` installs 16-18):
    scripts/gen-guc-catalog.py [--pg-root /usr/lib/postgresql] \
        [--save-dumps DIR] [--out src/guc/catalog.rs]
    rustfmt --edition 2024 src/guc/catalog.rs
Or use dumps saved by --save-dumps instead of starting servers:
    scripts/gen-guc-catalog.py --from-dumps DIR
"""

import argparse
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile

FIRST = 12  # oldest major described
DUMPED = (15, 16, 17, 18)  # majors dumped from live servers
MAJORS = tuple(range(FIRST, DUMPED[-1] + 1))

INT_MAX = 2147483647
DBL_MAX_SHOWN = "1.79769e+308"  # DBL_MAX as pg_settings prints it (%g)
TIMEOUT = 120  # seconds, for every program run

# ---------------------------------------------------------------------------
# Corrections of the dumps (15-18).
# ---------------------------------------------------------------------------

# Enum values compiled in only with a build option, in upstream order. The
# PyPI wheels the lab installs for 16 and 18 are built without lz4, zstd and
# liburing; Debian's and apt.postgresql.org's builds have them. A dump's
# values must be these, in this order, with some left out.
BUILD_OPTIONAL = {
    "default_toast_compression": ("pglz", "lz4"),  # lz4: --with-lz4
    "wal_compression": ("pglz", "lz4", "zstd", "on", "off"),  # --with-lz4, --with-zstd
    "io_method": ("sync", "worker", "io_uring"),  # io_uring: --with-liburing
}

# Settings added in minor releases, with the first major that has them: a
# dump of an older minor lacks them, so they are taken from the dump of the
# nearest major that has them.
BACKPATCHED = {
    # added in 15, back-patched to 10-14 (Aug 2022 minors)
    "allow_in_place_tablespaces": 12,
    # 12.20/13.16/14.13/15.8/16.4 (Aug 2024); the 16 dump is 16.2
    "restrict_nonsystem_relation_kind": 12,
    # 17.8 and the other Feb 2026 minors of 16-18; the 16 dump is 16.2
    "file_extend_method": 16,
    # 14.24/15.19/16.15/17.11/18.6 (Sep 2026, CVE-2026-6471)
    "output_plugin_libraries": 14,
}

# Settings that only some builds have, in every major since the given one.
PACKAGING = {
    "extension_destdir": 12,  # Debian/apt.postgresql.org packaging patch
}

# Internal settings whose range is the server version itself: no range.
VERSION_RANGE = {"server_version_num"}

# ---------------------------------------------------------------------------
# Version knowledge for 12-14, which are not dumped.
# ---------------------------------------------------------------------------

# Settings of the 15 dump that appeared after 12 (first major).
SINCE = {
    # 13
    "autovacuum_vacuum_insert_scale_factor": 13,
    "autovacuum_vacuum_insert_threshold": 13,
    "backtrace_functions": 13,
    "enable_incremental_sort": 13,
    "hash_mem_multiplier": 13,
    "ignore_invalid_pages": 13,
    "log_min_duration_sample": 13,
    "log_parameter_max_length": 13,
    "log_parameter_max_length_on_error": 13,
    "log_statement_sample_rate": 13,  # committed for 12, reverted, re-added in 13
    "logical_decoding_work_mem": 13,
    "maintenance_io_concurrency": 13,
    "max_slot_wal_keep_size": 13,
    "wal_keep_size": 13,
    "wal_receiver_create_temp_slot": 13,
    "wal_skip_threshold": 13,
    # 14
    "client_connection_check_interval": 14,
    "compute_query_id": 14,
    "debug_discard_caches": 14,
    "default_toast_compression": 14,
    "enable_async_append": 14,
    "enable_memoize": 14,
    "huge_page_size": 14,
    "idle_session_timeout": 14,
    "in_hot_standby": 14,
    "log_recovery_conflict_waits": 14,
    "min_dynamic_shared_memory": 14,
    "recovery_init_sync_method": 14,
    "remove_temp_files_after_crash": 14,
    "ssl_crl_dir": 14,
    "track_wal_io_timing": 14,
    "vacuum_failsafe_age": 14,
    "vacuum_multixact_failsafe_age": 14,
    # 15
    "archive_library": 15,
    "log_startup_progress_interval": 15,
    "recovery_prefetch": 15,
    "recursive_worktable_factor": 15,
    "shared_memory_size": 15,
    "shared_memory_size_in_huge_pages": 15,
    "stats_fetch_consistency": 15,
    "wal_decode_buffer_size": 15,
}

# Settings removed before 15: (name, vartype, unit, context, enumvals, min,
# max, first major, last major).
OLD = [
    ("wal_keep_segments", "integer", "", "sighup", "", "0", str(INT_MAX), 12, 12),
    ("operator_precedence_warning", "bool", "", "user", "", "", "", 12, 13),
    ("vacuum_cleanup_index_scale_factor", "real", "", "user", "", "0", "1e+10", 12, 13),
    ("stats_temp_directory", "string", "", "sighup", "", "", "", 12, 14),
]

# Facts of 12-14 that differ from 15's: (name, first, last, {field: value}).
OLDER_FACTS = [
    ("primary_conninfo", 12, 12, {"context": "postmaster"}),
    ("primary_slot_name", 12, 12, {"context": "postmaster"}),
    ("restore_command", 12, 13, {"context": "postmaster"}),
    ("compute_query_id", 14, 14, {"enumvals": ("auto", "on", "off")}),  # regress: 15
]

# Settings pg_settings never lists (GUC_NO_SHOW_ALL): (name, vartype, unit,
# context, enumvals, min, max). They exist in 12-14; the probe says for 15-18.
HIDDEN = [
    ("default_with_oids", "bool", "", "user", "", "", ""),
    ("is_superuser", "bool", "", "internal", "", "", ""),
    ("role", "string", "", "user", "", "", ""),
    ("seed", "real", "", "user", "", "-1", "1"),
    ("session_authorization", "string", "", "user", "", "", ""),
    ("ssl_renegotiation_limit", "integer", "", "user", "", "0", "0"),
]

HOT_STANDBY_SENSITIVE = {
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
}

# Comments attached to a setting's first entry in the generated file.
NOTES = {
    "extension_destdir": "Debian/Ubuntu (apt.postgresql.org) packaging patch; absent from upstream builds.",
    "wal_compression": "bool in 12-14 (on/off), enum in 15+; lz4 and zstd need --with-lz4/--with-zstd.",
    "default_toast_compression": "lz4 needs --with-lz4 (Debian's builds have it).",
    "io_method": "io_uring needs --with-liburing (Debian's builds have it).",
    "primary_conninfo": "restart in 12, reload since 13.",
    "primary_slot_name": "restart in 12, reload since 13.",
    "restore_command": "restart in 12-13, reload since 14.",
    "log_connections": "bool in 12-17; 18: a list (receipt, authentication, authorization, setup_durations, all) that still takes on/off.",
    "ssl_ecdh_curve": "18 renamed it ssl_groups and keeps the old name as an alias.",
    "autovacuum_max_workers": "restart in 12-17; reload in 18 (up to autovacuum_worker_slots).",
    "allow_in_place_tablespaces": "added in 15, back-patched to 10-14 (Aug 2022 minors).",
    "restrict_nonsystem_relation_kind": "back-patched to 12.20/13.16/14.13/15.8/16.4.",
    "file_extend_method": "added in the Feb 2026 minors of 16-18 (17.8).",
    "output_plugin_libraries": "added in 14.24/15.19/16.15/17.11/18.6 (CVE-2026-6471).",
    "server_version_num": "min and max are the server version itself: left out.",
    "ssl_renegotiation_limit": "hidden (GUC_NO_SHOW_ALL); only 0 is accepted.",
    "default_with_oids": "hidden (GUC_NO_SHOW_ALL); only false is accepted.",
    "seed": "hidden (GUC_NO_SHOW_ALL); SET SEED, never in a file.",
}

VARTYPES = {"bool": "Bool", "integer": "Integer", "real": "Real", "string": "String", "enum": "Enum"}
CONTEXTS = {
    "internal": "Internal",
    "postmaster": "Postmaster",
    "sighup": "Sighup",
    "superuser-backend": "SuperuserBackend",
    "backend": "Backend",
    "superuser": "Superuser",
    "user": "User",
}
FIELDS = ("name", "vartype", "unit", "context", "enumvals", "min", "max")

QUERY = (
    "SELECT name, vartype, coalesce(unit, ''), context, "
    "coalesce(array_to_string(enumvals, ','), ''), coalesce(min_val, ''), "
    "coalesce(max_val, '') FROM pg_settings ORDER BY name"
)


def hidden_probe():
    names = ", ".join(f"'{h[0]}'" for h in HIDDEN)
    return (
        "SELECT coalesce(string_agg(n, ',' ORDER BY n), '') "
        f"FROM unnest(ARRAY[{names}]) AS n WHERE current_setting(n, true) IS NOT NULL"
    )


# ---------------------------------------------------------------------------
# Dumps
# ---------------------------------------------------------------------------


def run_as_postgres(args, **kw):
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--"] + args
    return subprocess.run(args, check=True, timeout=TIMEOUT, **kw)


def stop_server(bindir, data):
    """Stops the throwaway server if its postmaster.pid is there."""
    if not os.path.exists(os.path.join(data, "postmaster.pid")):
        return
    for mode in ("fast", "immediate"):
        try:
            run_as_postgres([os.path.join(bindir, "pg_ctl"), "-D", data, "-w", "-t", "60",
                             "-m", mode, "stop"], stdout=subprocess.DEVNULL)
            return
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
            print(f"pg_ctl stop -m {mode} failed: {e}", file=sys.stderr)


def dump_from_server(bindir, port):
    """The dump text of one throwaway server (see parse_dump)."""
    tmp = tempfile.mkdtemp(prefix="pgrepl-guc-")
    data = os.path.join(tmp, "data")
    try:
        if os.geteuid() == 0:
            shutil.chown(tmp, "postgres", "postgres")
        run_as_postgres([os.path.join(bindir, "initdb"), "-D", data, "-U", "postgres",
                         "--auth=trust"], stdout=subprocess.DEVNULL)
        run_as_postgres([os.path.join(bindir, "pg_ctl"), "-D", data, "-w", "-t", "60",
                         "-l", os.path.join(tmp, "logfile"),
                         "-o", f"-c listen_addresses='' -c unix_socket_directories={tmp} -p {port}",
                         "start"], stdout=subprocess.DEVNULL)
        out = run_as_postgres([os.path.join(bindir, "psql"), "-X", "-h", tmp, "-p", str(port),
                               "-U", "postgres", "-d", "postgres", "-At", "-F", "\t",
                               "-v", "ON_ERROR_STOP=1",
                               "-c", "SHOW server_version_num", "-c", hidden_probe(),
                               "-c", QUERY],
                              stdout=subprocess.PIPE, text=True).stdout
        lines = out.splitlines()
        return "".join(f"{line}\n" for line in
                       [f"# server_version_num\t{lines[0]}", f"# hidden\t{lines[1]}"] + lines[2:])
    finally:
        stop_server(bindir, data)
        shutil.rmtree(tmp, ignore_errors=True)


def parse_dump(text):
    """(server_version_num, hidden names, {lower name: facts}) of a dump."""
    lines = text.splitlines()
    head = dict(line[2:].split("\t", 1) for line in lines[:2])
    version_num = int(head["server_version_num"])
    hidden = set(filter(None, head["hidden"].split(",")))
    facts = {}
    for line in lines[2:]:
        name, vartype, unit, context, enumvals, min_v, max_v = line.split("\t")[:7]
        if "." in name:
            continue  # custom (extension) settings are not part of the catalog
        vals = tuple(enumvals.split(",")) if vartype == "enum" else ()
        facts[name.lower()] = (name, vartype, unit, context, vals, min_v, max_v)
    return version_num, hidden, facts


# ---------------------------------------------------------------------------
# Facts per major
# ---------------------------------------------------------------------------


def fill_build_options(major, facts):
    for key, full in BUILD_OPTIONAL.items():
        f = facts.get(key)
        if f is None:
            continue
        it = iter(full)
        if not all(v in it for v in f[4]):  # a subsequence of the full list
            sys.exit(f"{major}: {key} has enum values {f[4]}, not some of {full}: update BUILD_OPTIONAL")
        facts[key] = f[:4] + (full,) + f[5:]


def facts_of_dumps(dumps):
    """{major: {lower name: facts}} for the dumped majors, corrected."""
    out = {}
    for major in DUMPED:
        version_num, hidden, facts = parse_dump(dumps[major])
        if version_num // 10000 != major:
            sys.exit(f"the dump for {major} is of PostgreSQL {version_num}")
        for key in VERSION_RANGE:
            if key in facts:
                facts[key] = facts[key][:5] + ("", "")
        fill_build_options(major, facts)
        for h in HIDDEN:
            if h[0] in facts:
                sys.exit(f"{major}: {h[0]} is both in pg_settings and in HIDDEN")
            if h[0] in hidden:
                facts[h[0]] = h[:4] + (tuple(h[4].split(",")) if h[4] else (),) + h[5:]
        out[major] = facts
    for name, since in list(BACKPATCHED.items()) + list(PACKAGING.items()):
        having = [m for m in DUMPED if name in out[m]]
        if not having:
            sys.exit(f"{name} (BACKPATCHED/PACKAGING) is in no dump")
        for m in DUMPED:
            if m >= since and name not in out[m]:
                nearest = min(having, key=lambda h: (abs(h - m), -h))
                out[m][name] = out[nearest][name]
    return out


def facts_of_old_majors(facts15):
    """{major: {lower name: facts}} for 12-14, from 15's and the tables above."""
    first = {}
    for name, since in list(SINCE.items()) + list(BACKPATCHED.items()) + list(PACKAGING.items()):
        first[name] = since
    for name in SINCE:
        if name not in facts15:
            sys.exit(f"{name} is in SINCE but not in the 15 dump")
    out = {}
    for m in range(FIRST, DUMPED[0]):
        facts = {k: f for k, f in facts15.items() if first.get(k, FIRST) <= m}
        for o in OLD:
            if o[0] in facts15:
                sys.exit(f"{o[0]} is in OLD but in the 15 dump")
            if o[7] <= m <= o[8]:
                facts[o[0]] = o[:4] + (tuple(o[4].split(",")) if o[4] else (),) + o[5:7]
        for name, lo, hi, changes in OLDER_FACTS:
            if lo <= m <= hi:
                if name not in facts:
                    sys.exit(f"{name} is in OLDER_FACTS but not in {m}")
                f = dict(zip(FIELDS, facts[name]))
                f.update(changes)
                facts[name] = tuple(f[k] for k in FIELDS)
        out[m] = facts
    return out


def variants(per_major):
    """{lower name: [(facts, since, until or None)]}: one entry per run of
    majors with the same facts; a setting missing from a major in between
    is an error (a back-patch or a build difference to write down)."""
    out = {}
    for key in sorted({k for facts in per_major.values() for k in facts}):
        runs = []
        for m in MAJORS:
            f = per_major[m].get(key)
            if f is None:
                continue
            if runs and runs[-1][2] == m - 1 and runs[-1][0] == f:
                runs[-1][2] = m
            elif runs and runs[-1][2] != m - 1:
                sys.exit(f"{key} is missing from PostgreSQL {runs[-1][2] + 1}..{m - 1}")
            else:
                runs.append([f, m, m])
        out[key] = [(f, lo, None if hi == MAJORS[-1] else hi) for f, lo, hi in runs]
    return out


def num(s):
    return sys.float_info.max if s == DBL_MAX_SHOWN else float(s)


def facts_sha256(facts):
    """Must match `facts_sha256` in src/guc/tests.rs."""
    lines = []
    for key in sorted(facts):
        name, vartype, unit, context, vals, min_v, max_v = facts[key]
        bits = ["" if v == "" else struct.pack(">d", num(v)).hex() for v in (min_v, max_v)]
        lines.append("\t".join([name, vartype, unit, context, ",".join(vals)] + bits) + "\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def rust_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def rust_num(s):
    if s == "":
        return "None"
    if s == DBL_MAX_SHOWN:
        return "Some(f64::MAX)"
    v = float(s)
    if v == int(v) and abs(v) < 1e15:
        return f"Some({int(v)}.0)"
    return f"Some({s})"


def entry(facts, since, until):
    name, vartype, unit, context, vals, min_v, max_v = facts
    enum_rs = "&[" + ", ".join(rust_str(v) for v in vals) + "]"
    unit_rs = f"Some({rust_str(unit)})" if unit else "None"
    until_rs = f"Some({until})" if until else "None"
    return (
        f"    GucDef {{ name: {rust_str(name)}, vartype: VarType::{VARTYPES[vartype]}, "
        f"unit: {unit_rs}, context: Context::{CONTEXTS[context]}, enum_values: {enum_rs}, "
        f"min: {rust_num(min_v)}, max: {rust_num(max_v)}, since: {since}, until: {until_rs}, "
        f"hot_standby_sensitive: {'true' if name in HOT_STANDBY_SENSITIVE else 'false'} }},"
    )


def version_text(version_num):
    return f"{version_num // 10000}.{version_num % 10000}"


def render(dumps, per_major, by_name):
    entries = sum(len(v) for v in by_name.values())
    split = sorted(k for k, v in by_name.items() if len(v) > 1)
    out = [
        f"//! Every GUC of PostgreSQL {FIRST}-{MAJORS[-1]}, generated by `scripts/gen-guc-catalog.py`.",
        "//!",
        f"//! Facts of {DUMPED[0]}-{DUMPED[-1]} come from `pg_settings` of throwaway servers (as",
        "//! superuser), corrected where the generator says why; those of",
        f"//! {FIRST}-{DUMPED[0] - 1} and of the settings hidden from `pg_settings` come from its",
        "//! version tables. A setting whose facts differ between majors has one",
        "//! entry per run of majors with the same facts.",
        "//!",
        "//! Dumps:",
    ]
    for m in DUMPED:
        version_num = parse_dump(dumps[m])[0]
        sha = hashlib.sha256(dumps[m].encode()).hexdigest()
        out.append(f"//! - PostgreSQL {version_text(version_num)}: sha256 {sha}")
    out += [
        "//!",
        "//! Sorted by lower-case name, then first major (binary search). Do not edit",
        "//! by hand: change the generator and run it again.",
        "",
        "use super::{Context, GucDef, VarType};",
        "",
        "/// SHA-256 of each major's facts as the generator derived them (see",
        "/// `facts_sha256` in the tests, which recomputes them from [`GUCS`]).",
        "#[cfg(test)]",
        "pub(super) static FACTS_SHA256: &[(u32, &str)] = &[",
    ]
    for m in MAJORS:
        out.append(f"    (\n        {m},\n        \"{facts_sha256(per_major[m])}\",\n    ),")
    out += [
        "];",
        "",
        f"/// All {len(by_name)} known GUCs in {entries} entries ({len(split)} have facts that",
        "/// differ between majors), sorted by lower-case name, then first major.",
        "#[rustfmt::skip]",
        "pub(super) static GUCS: &[GucDef] = &[",
    ]
    for key in sorted(by_name):
        name = by_name[key][0][0][0]
        if name in NOTES:
            out.append(f"    // {name}: {NOTES[name]}")
        for facts, since, until in by_name[key]:
            out.append(entry(facts, since, until))
    out += ["];", ""]
    return "\n".join(out), entries, split


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg-root", default="/usr/lib/postgresql",
                    help="where MAJOR/bin of every dumped major is")
    ap.add_argument("--port-base", type=int, default=54000, help="port = base + major")
    ap.add_argument("--from-dumps", help="a directory of MAJOR.tsv saved by --save-dumps")
    ap.add_argument("--save-dumps", help="write each dump to DIR/MAJOR.tsv")
    ap.add_argument("--out", default="src/guc/catalog.rs")
    args = ap.parse_args()

    dumps = {}
    for m in DUMPED:
        if args.from_dumps:
            with open(os.path.join(args.from_dumps, f"{m}.tsv")) as f:
                dumps[m] = f.read()
        else:
            bindir = os.path.join(args.pg_root, str(m), "bin")
            if not os.path.exists(os.path.join(bindir, "postgres")):
                sys.exit(f"PostgreSQL {m} is not in {bindir} (bash lab/lab.sh --pg {m} install)")
            print(f"dumping PostgreSQL {m} ...", file=sys.stderr)
            dumps[m] = dump_from_server(bindir, args.port_base + m)
        if args.save_dumps:
            os.makedirs(args.save_dumps, exist_ok=True)
            with open(os.path.join(args.save_dumps, f"{m}.tsv"), "w") as f:
                f.write(dumps[m])

    per_major = facts_of_dumps(dumps)
    per_major.update(facts_of_old_majors(per_major[DUMPED[0]]))
    by_name = variants(per_major)
    for name in NOTES:
        if name not in by_name:
            sys.exit(f"{name} is in NOTES but unknown")
    text, entries, split = render(dumps, per_major, by_name)
    with open(args.out, "w") as f:
        f.write(text)
    print(f"wrote {args.out}: {len(by_name)} settings in {entries} entries; "
          f"facts differ between majors for: {', '.join(split)}")


if __name__ == "__main__":
    main()
