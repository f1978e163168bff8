#!/usr/bin/env python3
"""Generate src/guc/catalog.rs: every GUC of PostgreSQL 12-17 as static data.

How the data is obtained:

1. A throwaway PostgreSQL server of the installed major (15 by default) is
   started as the `postgres` OS user (initdb into a temporary directory owned
   by postgres, unix socket in that directory, listen_addresses='', a
   non-default port), `pg_settings` is dumped as superuser (which shows the
   settings hidden from ordinary users), then the server is stopped with
   `pg_ctl stop` and the directory removed.
2. The settings pg_settings never lists (GUC_NO_SHOW_ALL: default_with_oids,
   is_superuser, role, seed, session_authorization, ssl_renegotiation_limit)
   and the settings of the other majors are added from the tables below,
   written from the release notes of 12-17 and the upstream GUC tables.
3. The result is written as a sorted Rust table; src/guc/mod.rs looks names
   up by binary search.

Usage (as root, with PostgreSQL installed):
    scripts/gen-guc-catalog.py [--bindir /usr/lib/postgresql/15/bin] \
        [--out src/guc/catalog.rs]
    rustfmt --edition 2024 src/guc/catalog.rs
Or feed it a previous dump instead of starting a server:
    scripts/gen-guc-catalog.py --from-tsv dump.tsv
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

INT_MAX = 2147483647
DBL_MAX_SHOWN = "1.79769e+308"  # DBL_MAX as pg_settings prints it (%g)

# ---------------------------------------------------------------------------
# Version knowledge that a single server cannot show.
# ---------------------------------------------------------------------------

# Settings of the dumped major that appeared after 12 (first major).
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
    # Not listed on purpose (exist in every supported minor of 12-17):
    # allow_in_place_tablespaces (15, back-patched to 10-14 in Aug 2022),
    # restrict_nonsystem_relation_kind (back-patched in 12.20/13.16/14.13/
    # 15.8/16.4, Aug 2024).
}

# Settings of the dumped major that were removed later: name -> last major.
UNTIL = {
    "force_parallel_mode": 15,  # renamed debug_parallel_query in 16
    "lc_collate": 15,
    "lc_ctype": 15,
    "promote_trigger_file": 15,
    "vacuum_defer_cleanup_age": 15,
    "db_user_namespace": 16,
    "old_snapshot_threshold": 16,
    "trace_recovery_messages": 16,
}

HOT_STANDBY_SENSITIVE = {
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
}

MSG_LEVELS_CLIENT = "debug5,debug4,debug3,debug2,debug1,log,notice,warning,error"

# Settings absent from the dump: (name, vartype, unit, context, enumvals,
# min, max, since, until).
EXTRA = [
    # Hidden from pg_settings (GUC_NO_SHOW_ALL) but known to every major.
    ("default_with_oids", "bool", "", "user", "", "", "", 12, None),
    ("is_superuser", "bool", "", "internal", "", "", "", 12, None),
    ("role", "string", "", "user", "", "", "", 12, None),
    ("seed", "real", "", "user", "", "-1", "1", 12, None),
    ("session_authorization", "string", "", "user", "", "", "", 12, None),
    ("ssl_renegotiation_limit", "integer", "", "user", "", "0", "0", 12, None),
    # Removed before 15.
    ("wal_keep_segments", "integer", "", "sighup", "", "0", str(INT_MAX), 12, 12),
    ("operator_precedence_warning", "bool", "", "user", "", "", "", 12, 13),
    ("vacuum_cleanup_index_scale_factor", "real", "", "user", "", "0", "1e+10", 12, 13),
    ("stats_temp_directory", "string", "", "sighup", "", "", "", 12, 14),
    # New in 16.
    ("createrole_self_grant", "string", "", "user", "", "", "", 16, None),
    ("debug_io_direct", "string", "", "postmaster", "", "", "", 16, None),
    ("debug_logical_replication_streaming", "enum", "", "user", "buffered,immediate", "", "", 16, None),
    ("debug_parallel_query", "enum", "", "user", "off,on,regress", "", "", 16, None),
    ("enable_presorted_aggregate", "bool", "", "user", "", "", "", 16, None),
    ("gss_accept_delegation", "bool", "", "sighup", "", "", "", 16, None),
    ("icu_validation_level", "enum", "", "user", "disabled," + MSG_LEVELS_CLIENT, "", "", 16, None),
    ("max_parallel_apply_workers_per_subscription", "integer", "", "sighup", "", "0", "1024", 16, None),
    ("reserved_connections", "integer", "", "postmaster", "", "0", "262143", 16, None),
    ("scram_iterations", "integer", "", "user", "", "1", str(INT_MAX), 16, None),
    ("send_abort_for_crash", "bool", "", "sighup", "", "", "", 16, None),
    ("send_abort_for_kill", "bool", "", "sighup", "", "", "", 16, None),
    ("vacuum_buffer_usage_limit", "integer", "kB", "user", "", "0", "16777216", 16, None),
    # New in 17.
    ("allow_alter_system", "bool", "", "sighup", "", "", "", 17, None),
    ("commit_timestamp_buffers", "integer", "8kB", "postmaster", "", "0", "131072", 17, None),
    ("enable_group_by_reordering", "bool", "", "user", "", "", "", 17, None),
    ("event_triggers", "bool", "", "superuser", "", "", "", 17, None),
    ("huge_pages_status", "enum", "", "internal", "off,on,unknown", "", "", 17, None),
    ("io_combine_limit", "integer", "8kB", "user", "", "1", "32", 17, None),
    ("max_notify_queue_pages", "integer", "", "postmaster", "", "64", str(INT_MAX), 17, None),
    ("multixact_member_buffers", "integer", "8kB", "postmaster", "", "16", "131072", 17, None),
    ("multixact_offset_buffers", "integer", "8kB", "postmaster", "", "16", "131072", 17, None),
    ("notify_buffers", "integer", "8kB", "postmaster", "", "16", "131072", 17, None),
    ("serializable_buffers", "integer", "8kB", "postmaster", "", "16", "131072", 17, None),
    ("subtransaction_buffers", "integer", "8kB", "postmaster", "", "0", "131072", 17, None),
    ("summarize_wal", "bool", "", "sighup", "", "", "", 17, None),
    ("sync_replication_slots", "bool", "", "sighup", "", "", "", 17, None),
    ("synchronized_standby_slots", "string", "", "sighup", "", "", "", 17, None),
    ("trace_connection_negotiation", "bool", "", "postmaster", "", "", "", 17, None),
    ("transaction_buffers", "integer", "8kB", "postmaster", "", "0", "131072", 17, None),
    ("transaction_timeout", "integer", "ms", "user", "", "0", str(INT_MAX), 17, None),
    ("wal_summary_keep_time", "integer", "min", "sighup", "", "0", "35791394", 17, None),
]

# Comments attached to single entries in the generated file.
NOTES = {
    "extension_destdir": "Debian/Ubuntu (apt.postgresql.org) packaging patch; absent from upstream builds.",
    "wal_compression": "bool in 12-14 (on/off), enum in 15+ (pglz/lz4/zstd/on/off).",
    "primary_conninfo": "context postmaster in 12, sighup since 13 (see context_in).",
    "primary_slot_name": "context postmaster in 12, sighup since 13 (see context_in).",
    "restore_command": "context postmaster in 12-13, sighup since 14 (see context_in).",
    "allow_in_place_tablespaces": "added in 15, back-patched to 10-14 (Aug 2022 minors).",
    "restrict_nonsystem_relation_kind": "back-patched to 12.20/13.16/14.13/15.8/16.4.",
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

QUERY = (
    "SELECT name, vartype, coalesce(unit, ''), context, "
    "coalesce(array_to_string(enumvals, ','), ''), coalesce(min_val, ''), "
    "coalesce(max_val, '') FROM pg_settings ORDER BY name"
)


def run_as_postgres(args, **kw):
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--"] + args
    return subprocess.run(args, check=True, **kw)


def dump_from_server(bindir, port):
    tmp = tempfile.mkdtemp(prefix="pgrepl-guc-")
    started = False
    data = os.path.join(tmp, "data")
    try:
        if os.geteuid() == 0:
            shutil.chown(tmp, "postgres", "postgres")
        run_as_postgres([os.path.join(bindir, "initdb"), "-D", data, "-U", "postgres",
                         "--auth=trust"], stdout=subprocess.DEVNULL)
        run_as_postgres([os.path.join(bindir, "pg_ctl"), "-D", data, "-w",
                         "-l", os.path.join(tmp, "logfile"),
                         "-o", f"-c listen_addresses='' -c unix_socket_directories={tmp} -p {port}",
                         "start"], stdout=subprocess.DEVNULL)
        started = True
        out = run_as_postgres([os.path.join(bindir, "psql"), "-X", "-h", tmp, "-p", str(port),
                               "-U", "postgres", "-d", "postgres", "-At", "-F", "\t",
                               "-c", "SHOW server_version_num", "-c", QUERY],
                              stdout=subprocess.PIPE, text=True).stdout
        lines = out.splitlines()
        version_num = int(lines[0])
        return version_num // 10000, lines[1:]
    finally:
        if started:
            run_as_postgres([os.path.join(bindir, "pg_ctl"), "-D", data, "-w", "-m", "fast",
                             "stop"], stdout=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)


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


def entry(name, vartype, unit, context, enumvals, min_v, max_v, since, until):
    vals = [v for v in enumvals.split(",")] if vartype == "enum" else []
    enum_rs = "&[" + ", ".join(rust_str(v) for v in vals) + "]" if vals else "&[]"
    unit_rs = f"Some({rust_str(unit)})" if unit else "None"
    until_rs = f"Some({until})" if until else "None"
    return (
        f"    GucDef {{ name: {rust_str(name)}, vartype: VarType::{VARTYPES[vartype]}, "
        f"unit: {unit_rs}, context: Context::{CONTEXTS[context]}, enum_values: {enum_rs}, "
        f"min: {rust_num(min_v)}, max: {rust_num(max_v)}, since: {since}, until: {until_rs}, "
        f"hot_standby_sensitive: {'true' if name in HOT_STANDBY_SENSITIVE else 'false'} }},"
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bindir", default="/usr/lib/postgresql/15/bin")
    ap.add_argument("--port", type=int, default=54329)
    ap.add_argument("--from-tsv", help="use a saved dump (major 15) instead of a server")
    ap.add_argument("--out", default="src/guc/catalog.rs")
    args = ap.parse_args()

    if args.from_tsv:
        major = 15
        with open(args.from_tsv) as f:
            rows = f.read().splitlines()
    else:
        major, rows = dump_from_server(args.bindir, args.port)
    if major != 15:
        sys.exit(f"the version tables here are written relative to PostgreSQL 15, got {major}")

    defs = {}
    for line in rows:
        name, vartype, unit, context, enumvals, min_v, max_v = line.split("\t")[:7]
        if "." in name:
            continue  # custom (extension) settings are not part of the catalog
        defs[name.lower()] = (name, vartype, unit, context, enumvals, min_v, max_v,
                              SINCE.get(name, 12), UNTIL.get(name))
    dumped = len(defs)
    for e in EXTRA:
        if e[0].lower() in defs:
            sys.exit(f"{e[0]} is both dumped and in EXTRA")
        defs[e[0].lower()] = e
    for n in list(SINCE) + list(UNTIL):
        if n.lower() not in defs:
            sys.exit(f"{n} is in SINCE/UNTIL but unknown")

    out = []
    out.append("//! Every GUC of PostgreSQL 12-17, generated by `scripts/gen-guc-catalog.py`.")
    out.append("//!")
    out.append(f"//! {dumped} entries come from `pg_settings` of a throwaway PostgreSQL {major}")
    out.append("//! server (as superuser); the settings hidden from `pg_settings` and those of")
    out.append("//! the other majors come from the version tables in the generator.")
    out.append("//! Sorted by lower-case name (binary search). Do not edit by hand: change")
    out.append("//! the generator and run it again.")
    out.append("")
    out.append("use super::{Context, GucDef, VarType};")
    out.append("")
    out.append(f"/// All {len(defs)} known GUCs, sorted by lower-case name.")
    out.append("#[rustfmt::skip]")
    out.append("pub(super) static GUCS: &[GucDef] = &[")
    for key in sorted(defs):
        name = defs[key][0]
        if name in NOTES:
            out.append(f"    // {name}: {NOTES[name]}")
        out.append(entry(*defs[key]))
    out.append("];")
    out.append("")
    with open(args.out, "w") as f:
        f.write("\n".join(out))
    print(f"wrote {args.out}: {len(defs)} entries ({dumped} from PostgreSQL {major})")


if __name__ == "__main__":
    main()
