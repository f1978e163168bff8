//! Value normalisation: a value from the cluster file and a live value from
//! `pg_settings` are both brought to a [`Normalized`] form that compares
//! equal exactly when PostgreSQL would hold the same setting.

use super::parse::{self, BaseUnit, MEMORY_UNITS, NumError, TIME_UNITS, UnitKind};
use super::{GucDef, ListKind, VarType, closest, is_custom, list_kind};
use crate::quote::sql_literal;

/// A GUC value in canonical form.
#[derive(Debug, Clone)]
pub enum Normalized {
    /// A boolean.
    Bool(bool),
    /// An integer in the GUC's base unit, i.e. as `pg_settings.setting`
    /// shows it (`shared_buffers = "128MB"` is `Integer(16384)`, 8kB pages).
    Integer(i64),
    /// A real in the GUC's base unit. Compares with a relative tolerance of
    /// 1e-5, because `pg_settings.setting` prints reals with six significant
    /// digits (`%g`).
    Real(f64),
    /// A string. Lists (see [`super::list_kind`]) are canonical: elements
    /// trimmed and joined with `", "`; `TimeZone`, `log_timezone`,
    /// `DateStyle` and `client_encoding`, which PostgreSQL reads
    /// case-insensitively, are lower-cased.
    String(String),
    /// An enum value, lower-case, hidden aliases resolved to the value
    /// PostgreSQL stores (`wal_level = "hot_standby"` is `Enum("replica")`,
    /// `synchronous_commit = true` is `Enum("on")`).
    Enum(String),
}

impl PartialEq for Normalized {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Normalized::Bool(a), Normalized::Bool(b)) => a == b,
            (Normalized::Integer(a), Normalized::Integer(b)) => a == b,
            (Normalized::Real(a), Normalized::Real(b)) => reals_equal(*a, *b),
            (Normalized::String(a), Normalized::String(b)) => a == b,
            (Normalized::Enum(a), Normalized::Enum(b)) => a == b,
            _ => false,
        }
    }
}

/// Equal, or within a relative 1e-5 (pg_settings shows 6 significant digits).
fn reals_equal(a: f64, b: f64) -> bool {
    a == b || (a.is_finite() && b.is_finite() && (a - b).abs() <= 1e-5 * a.abs().max(b.abs()))
}

/// A value that PostgreSQL would refuse for a GUC. The message says what
/// is wrong and what is accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    /// Not a boolean.
    #[error("{value} is not a boolean for {name}: use true or false")]
    NotBoolean {
        /// The GUC.
        name: String,
        /// The value as written (strings quoted).
        value: String,
    },
    /// Not one of the enum's values.
    #[error("{value} is not a valid {name}: expected one of {expected}{hint}")]
    NotInEnum {
        /// The GUC.
        name: String,
        /// The value as written (strings quoted).
        value: String,
        /// The accepted values, comma-separated.
        expected: String,
        /// `" (did you mean \"x\"?)"` or empty.
        hint: String,
    },
    /// Outside the GUC's range (or the C `int` range).
    #[error("{value} is out of range for {name} ({min} .. {max})")]
    OutOfRange {
        /// The GUC.
        name: String,
        /// The value as written, with its base-unit equivalent when a unit converted it.
        value: String,
        /// The minimum, with unit.
        min: String,
        /// The maximum, with unit.
        max: String,
    },
    /// Not parseable: bad number, bad or wrongly-cased unit, unit where none
    /// is allowed.
    #[error("invalid value {value} for {name}: {reason}")]
    Invalid {
        /// The GUC.
        name: String,
        /// The value as written (strings quoted).
        value: String,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// The TOML type cannot express this GUC's type.
    #[error("{name} expects {expected}, not {found}")]
    WrongType {
        /// The GUC.
        name: String,
        /// What the GUC takes.
        expected: String,
        /// The TOML type given ("a boolean", "an array", ...).
        found: String,
    },
}

fn quote(s: &str) -> String {
    format!("{s:?}")
}

fn toml_type(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date/time",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

fn base_unit(def: &GucDef) -> Option<BaseUnit> {
    def.unit.and_then(BaseUnit::from_pg)
}

fn unit_kind(def: &GucDef) -> Option<UnitKind> {
    base_unit(def).map(BaseUnit::kind)
}

fn enum_list(def: &GucDef) -> String {
    def.enum_values
        .iter()
        .map(|v| {
            if v.is_empty() {
                "\"\"".to_string()
            } else {
                (*v).to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn bool_like(def: &GucDef) -> bool {
    def.vartype == VarType::Enum
        && def.enum_values.iter().any(|v| v.eq_ignore_ascii_case("on"))
        && def
            .enum_values
            .iter()
            .any(|v| v.eq_ignore_ascii_case("off"))
}

fn expected_text(def: &GucDef) -> String {
    let number = if def.vartype == VarType::Real {
        "a number"
    } else {
        "an integer"
    };
    match (unit_kind(def), def.unit) {
        (Some(UnitKind::Memory), Some(u)) => format!(
            "expected {number} with an optional memory unit (B, kB, MB, GB, TB), e.g. \"64MB\"; a bare number is in {}",
            unit_words(u)
        ),
        (Some(UnitKind::Time), Some(u)) => format!(
            "expected {number} with an optional time unit (us, ms, s, min, h, d), e.g. \"30s\"; a bare number is in {}",
            unit_words(u)
        ),
        _ => format!("expected {number}"),
    }
}

fn unit_words(u: &str) -> String {
    match u {
        "8kB" => "8kB pages".to_string(),
        "ms" => "milliseconds".to_string(),
        "s" => "seconds".to_string(),
        "min" => "minutes".to_string(),
        "B" => "bytes".to_string(),
        other => other.to_string(),
    }
}

fn type_expected(def: &GucDef) -> String {
    match def.vartype {
        VarType::Bool => "true or false".to_string(),
        VarType::Integer => match unit_kind(def) {
            Some(UnitKind::Memory) => {
                "an integer, or a string with a memory unit such as \"64MB\"".to_string()
            }
            Some(UnitKind::Time) => {
                "an integer, or a string with a time unit such as \"30s\"".to_string()
            }
            None => "an integer".to_string(),
        },
        VarType::Real => match unit_kind(def) {
            Some(UnitKind::Time) => {
                "a number, or a string with a time unit such as \"2ms\"".to_string()
            }
            _ => "a number".to_string(),
        },
        VarType::String if is_log_connections_list(def) => format!(
            "true, false, or a string or an array of strings, each one of {}",
            LOG_CONNECTIONS_ASPECTS.join(", ")
        ),
        VarType::String if list_kind(def) != ListKind::NotList => {
            "a string or an array of strings".to_string()
        }
        VarType::String => "a string".to_string(),
        VarType::Enum if bool_like(def) => {
            format!("true, false or a string, one of {}", enum_list(def))
        }
        VarType::Enum => format!("a string, one of {}", enum_list(def)),
    }
}

fn wrong_type(def: &GucDef, v: &toml::Value) -> ValueError {
    ValueError::WrongType {
        name: def.name.to_string(),
        expected: type_expected(def),
        found: toml_type(v).to_string(),
    }
}

fn not_boolean(def: &GucDef, shown: String) -> ValueError {
    ValueError::NotBoolean {
        name: def.name.to_string(),
        value: shown,
    }
}

// ---------------------------------------------------------------------------
// Units: friendly diagnostics for units PostgreSQL refuses.
// ---------------------------------------------------------------------------

/// Common spellings people write instead of PostgreSQL's units.
fn unit_alias(kind: UnitKind, unit: &str) -> Option<&'static str> {
    let u = unit.to_ascii_lowercase();
    match kind {
        UnitKind::Memory => match u.as_str() {
            "k" | "kib" | "kbyte" | "kbytes" | "kilobyte" | "kilobytes" => Some("kB"),
            "m" | "mib" | "mbyte" | "mbytes" | "megabyte" | "megabytes" => Some("MB"),
            "g" | "gib" | "gbyte" | "gbytes" | "gigabyte" | "gigabytes" => Some("GB"),
            "t" | "tib" | "tbyte" | "tbytes" | "terabyte" | "terabytes" => Some("TB"),
            "byte" | "bytes" => Some("B"),
            _ => None,
        },
        UnitKind::Time => match u.as_str() {
            "usec" | "usecs" | "microsecond" | "microseconds" => Some("us"),
            "msec" | "msecs" | "millisecond" | "milliseconds" => Some("ms"),
            "sec" | "secs" | "second" | "seconds" => Some("s"),
            "m" | "mins" | "minute" | "minutes" => Some("min"),
            "hr" | "hrs" | "hour" | "hours" => Some("h"),
            "day" | "days" => Some("d"),
            _ => None,
        },
    }
}

fn units_of(kind: UnitKind) -> &'static [&'static str] {
    match kind {
        UnitKind::Memory => &MEMORY_UNITS,
        UnitKind::Time => &TIME_UNITS,
    }
}

fn units_sentence(kind: UnitKind) -> &'static str {
    match kind {
        UnitKind::Memory => "use B, kB, MB, GB or TB",
        UnitKind::Time => "use us, ms, s, min, h or d",
    }
}

fn bad_unit_reason(def: &GucDef, text: &str, unit_text: &str) -> String {
    let Some(kind) = unit_kind(def) else {
        return format!("{} takes a plain number without unit", def.name);
    };
    let trimmed = unit_text.trim_end_matches(|c: char| c.is_ascii() && parse::is_c_space(c as u8));
    let first = trimmed
        .split(|c: char| c.is_ascii() && parse::is_c_space(c as u8))
        .next()
        .unwrap_or("");
    let prefix = text
        .get(..text.len().saturating_sub(unit_text.len()))
        .unwrap_or("");
    let (kind_name, other, other_name) = match kind {
        UnitKind::Memory => ("memory", UnitKind::Time, "a time"),
        UnitKind::Time => ("time", UnitKind::Memory, "a memory size"),
    };
    let own = units_of(kind);
    if own.contains(&first) && first.len() < trimmed.len() {
        return format!("unexpected text after the unit \"{first}\"");
    }
    if let Some(fixed) = own.iter().find(|u| u.eq_ignore_ascii_case(trimmed)) {
        return format!(
            "{kind_name} units are case-sensitive: {} (did you mean \"{prefix}{fixed}\"?)",
            units_sentence(kind)
        );
    }
    if let Some(fixed) = unit_alias(kind, trimmed) {
        return format!(
            "\"{trimmed}\" is not a {kind_name} unit: {} (did you mean \"{prefix}{fixed}\"?)",
            units_sentence(kind)
        );
    }
    if units_of(other)
        .iter()
        .any(|u| u.eq_ignore_ascii_case(trimmed))
        || unit_alias(other, trimmed).is_some()
    {
        let this = match kind {
            UnitKind::Memory => "a memory size",
            UnitKind::Time => "a time",
        };
        return format!(
            "{} takes {this}, not {other_name}: {}",
            def.name,
            units_sentence(kind)
        );
    }
    format!(
        "unknown {kind_name} unit \"{trimmed}\": {} (units are case-sensitive)",
        units_sentence(kind)
    )
}

fn format_in_unit(def: &GucDef, v: f64) -> String {
    match def.vartype {
        VarType::Integer if v.fract() == 0.0 && v.abs() < 9.0e15 => {
            Normalized::Integer(v as i64).display_with_unit(def)
        }
        _ => Normalized::Real(v).display_with_unit(def),
    }
}

fn range_bounds(def: &GucDef) -> (String, String) {
    let (lo, hi) = match def.vartype {
        VarType::Integer => (
            def.min.unwrap_or(f64::from(i32::MIN)),
            def.max.unwrap_or(f64::from(i32::MAX)),
        ),
        _ => (def.min.unwrap_or(f64::MIN), def.max.unwrap_or(f64::MAX)),
    };
    (format_in_unit(def, lo), format_in_unit(def, hi))
}

fn out_of_range(def: &GucDef, shown: String) -> ValueError {
    let (min, max) = range_bounds(def);
    ValueError::OutOfRange {
        name: def.name.to_string(),
        value: shown,
        min,
        max,
    }
}

/// How to show a value that failed the range check: as written, plus its
/// base-unit value when a unit was converted.
fn shown_value(def: &GucDef, written: &str, is_string: bool, base_value: f64) -> String {
    let mut shown = if is_string {
        quote(written)
    } else {
        written.to_string()
    };
    if is_string && def.unit.is_some() {
        let conv = format_in_unit(def, base_value);
        if conv != written.trim() {
            shown.push_str(&format!(" (= {conv})"));
        }
    }
    shown
}

fn check_range(def: &GucDef, v: f64, written: &str, is_string: bool) -> Result<(), ValueError> {
    let int_bad =
        def.vartype == VarType::Integer && (v > f64::from(i32::MAX) || v < f64::from(i32::MIN));
    let below = def.min.is_some_and(|m| v < m);
    let above = def.max.is_some_and(|m| v > m);
    if int_bad || below || above || v.is_nan() {
        return Err(out_of_range(def, shown_value(def, written, is_string, v)));
    }
    Ok(())
}

/// `strtol(…, 0)` reads `08` as octal `0` followed by the "unit" `8`:
/// explain that instead of complaining about a unit.
fn octal_trap(def: &GucDef, s: &str) -> Option<String> {
    if def.vartype != VarType::Integer {
        return None;
    }
    let t = s.trim_start_matches(|c: char| c.is_ascii() && parse::is_c_space(c as u8));
    let t = t.strip_prefix(['+', '-']).unwrap_or(t);
    let digits: String = t.chars().take_while(char::is_ascii_digit).collect();
    (digits.len() > 1 && digits.starts_with('0') && digits.contains(['8', '9'])).then(|| {
        format!(
            "PostgreSQL reads an integer with a leading 0 as octal, so {} is not a number: remove the leading zero",
            quote(&digits)
        )
    })
}

fn number_from_string(def: &GucDef, s: &str) -> Result<f64, ValueError> {
    let integer = def.vartype == VarType::Integer;
    if let Some(reason) = octal_trap(def, s) {
        return Err(ValueError::Invalid {
            name: def.name.to_string(),
            value: quote(s),
            reason,
        });
    }
    match parse::parse_number(s, base_unit(def), integer) {
        Ok(v) => {
            check_range(def, v, s, true)?;
            Ok(v)
        }
        Err(NumError::Syntax) => Err(ValueError::Invalid {
            name: def.name.to_string(),
            value: quote(s),
            reason: expected_text(def),
        }),
        Err(NumError::UnitNotAllowed { .. }) => Err(ValueError::Invalid {
            name: def.name.to_string(),
            value: quote(s),
            reason: format!(
                "{} takes a plain number without unit",
                if is_custom(def) {
                    "this setting"
                } else {
                    def.name
                }
            ),
        }),
        Err(NumError::BadUnit { unit }) => Err(ValueError::Invalid {
            name: def.name.to_string(),
            value: quote(s),
            reason: bad_unit_reason(def, s, &unit),
        }),
        Err(NumError::IntOverflow { value }) => {
            Err(out_of_range(def, shown_value(def, s, true, value)))
        }
    }
}

// ---------------------------------------------------------------------------
// Enums
// ---------------------------------------------------------------------------

const BOOLISH: &[(&str, &str)] = &[
    ("true", "on"),
    ("yes", "on"),
    ("1", "on"),
    ("false", "off"),
    ("no", "off"),
    ("0", "off"),
];

/// Hidden enum entries PostgreSQL accepts (the `hidden = true` rows of its
/// `config_enum_entry` tables), mapped to the canonical value compared on.
/// Only aliases valid in every major 12–18 are listed (`password_encryption
/// = on` meant md5 only up to 13, so it is refused).
fn enum_aliases(name: &str) -> &'static [(&'static str, &'static str)] {
    match name {
        "archive_mode"
        | "backslash_quote"
        | "compute_query_id"
        | "constraint_exclusion"
        | "synchronous_commit"
        | "huge_pages"
        | "recovery_prefetch"
        | "force_parallel_mode"
        | "debug_parallel_query" => BOOLISH,
        // "on" means pglz, and 15+ shows it as "pglz"; "on" is what every
        // major (12-14: a bool) accepts, so it is the canonical spelling.
        "wal_compression" => &[
            ("pglz", "on"),
            ("true", "on"),
            ("yes", "on"),
            ("1", "on"),
            ("false", "off"),
            ("no", "off"),
            ("0", "off"),
        ],
        "wal_level" => &[("archive", "replica"), ("hot_standby", "replica")],
        // "debug" is debug2; "info" is a hidden level of its own.
        "client_min_messages" | "trace_recovery_messages" | "icu_validation_level" => {
            &[("debug", "debug2"), ("info", "info")]
        }
        "log_min_messages" | "log_min_error_statement" => &[("debug", "debug2")],
        _ => &[],
    }
}

/// The canonical (lower-case) value of an enum input, if PostgreSQL accepts
/// it. Matching is ASCII case-insensitive, exact otherwise (no trimming).
fn canonical_enum(def: &GucDef, s: &str) -> Option<String> {
    if let Some((_, c)) = enum_aliases(def.name)
        .iter()
        .find(|(a, _)| a.eq_ignore_ascii_case(s))
    {
        return Some((*c).to_string());
    }
    def.enum_values
        .iter()
        .find(|v| v.eq_ignore_ascii_case(s))
        .map(|v| v.to_ascii_lowercase())
}

fn not_in_enum(def: &GucDef, shown: String, raw: &str) -> ValueError {
    let hint = closest(
        raw,
        def.enum_values.iter().copied().filter(|v| !v.is_empty()),
    )
    .map(|c| format!(" (did you mean \"{c}\"?)"))
    .unwrap_or_default();
    ValueError::NotInEnum {
        name: def.name.to_string(),
        value: shown,
        expected: enum_list(def),
        hint,
    }
}

// ---------------------------------------------------------------------------
// Strings and lists
// ---------------------------------------------------------------------------

/// String GUCs PostgreSQL reads case-insensitively (and shows in its own
/// canonical case).
fn case_insensitive_string(name: &str) -> bool {
    matches!(
        name,
        "TimeZone" | "log_timezone" | "DateStyle" | "client_encoding"
    )
}

/// Lists whose unquoted elements PostgreSQL down-cases (identifier lists).
fn identifier_list(name: &str) -> bool {
    matches!(name, "search_path" | "temp_tablespaces")
}

/// Splits a comma-separated GUC list into elements: white space around
/// elements is dropped, a double-quoted element is unquoted (`""` is a
/// quote), unquoted elements of identifier lists are down-cased.
fn split_list(s: &str, downcase: bool) -> Vec<String> {
    let mut out = Vec::new();
    if s.trim().is_empty() {
        return out;
    }
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut element = String::new();
        let mut quoted_only = false;
        if chars.peek() == Some(&'"') {
            chars.next();
            quoted_only = true;
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        element.push('"');
                    }
                    Some('"') | None => break,
                    Some(c) => element.push(c),
                }
            }
        }
        let mut rest = String::new();
        while let Some(&c) = chars.peek() {
            if c == ',' {
                break;
            }
            rest.push(c);
            chars.next();
        }
        let rest = rest.trim();
        if quoted_only && rest.is_empty() {
            out.push(element);
        } else {
            // Unquoted (or a quoted part followed by more text: keep as is).
            let raw = if quoted_only {
                format!("\"{}\"{rest}", element.replace('"', "\"\""))
            } else {
                rest.to_string()
            };
            out.push(if downcase && !quoted_only {
                raw.to_lowercase()
            } else {
                raw
            });
        }
        if chars.next().is_none() {
            break;
        }
    }
    out
}

fn join_list(elements: &[String], ident: bool) -> String {
    elements
        .iter()
        .map(|e| {
            let needs_quotes = e.is_empty()
                || e.contains([',', '"'])
                || e.trim() != e
                || (ident && e.chars().any(|c| c.is_uppercase()));
            if needs_quotes {
                format!("\"{}\"", e.replace('"', "\"\""))
            } else {
                e.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn canonical_string(def: &GucDef, s: &str) -> String {
    let s = if case_insensitive_string(def.name) {
        s.to_lowercase()
    } else {
        s.to_string()
    };
    match list_kind(def) {
        ListKind::NotList => s,
        _ => {
            let ident = identifier_list(def.name);
            join_list(&split_list(&s, ident), ident)
        }
    }
}

/// The elements of a list setting written as a TOML array (strings, or
/// integers taken as their text).
fn array_items(def: &GucDef, items: &[toml::Value]) -> Result<Vec<String>, ValueError> {
    items
        .iter()
        .map(|item| match item {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            other => Err(ValueError::WrongType {
                name: def.name.to_string(),
                expected: "an array of strings".to_string(),
                found: format!("an array containing {}", toml_type(other)),
            }),
        })
        .collect()
}

// ---------------------------------------------------------------------------
// log_connections (18+)
// ---------------------------------------------------------------------------

/// What 18's `log_connections` logs, besides the booleans of 12–17.
const LOG_CONNECTIONS_ASPECTS: &[&str] = &[
    "receipt",
    "authentication",
    "authorization",
    "setup_durations",
    "all",
];

/// `log_connections` from 18 on: a list of [`LOG_CONNECTIONS_ASPECTS`]
/// (case-insensitive, white space ignored), or one of the booleans 12–17
/// took, spelled out (`on`, `true`, `yes`, `1`, `off`, `false`, `no`, `0`;
/// no prefixes), or empty (nothing).
fn is_log_connections_list(def: &GucDef) -> bool {
    def.name == "log_connections" && def.vartype == VarType::String
}

/// 18's `log_connections` (see [`is_log_connections_list`]) normalised: a
/// boolean, or the empty list, is `Bool` (what the bool of 12–17
/// normalises to, so a value compares the same whichever major's definition
/// read it); a list is `String`, lower-case, joined with `", "`. With
/// `check`, an unknown aspect is refused.
fn log_connections(def: &GucDef, s: &str, check: bool) -> Result<Normalized, ValueError> {
    let elements: Vec<String> = split_list(s, true)
        .into_iter()
        .map(|e| e.to_lowercase())
        .collect();
    match elements.as_slice() {
        [] => return Ok(Normalized::Bool(false)),
        [one] => match one.as_str() {
            "on" | "true" | "yes" | "1" => return Ok(Normalized::Bool(true)),
            "off" | "false" | "no" | "0" => return Ok(Normalized::Bool(false)),
            _ => {}
        },
        _ => {}
    }
    if check
        && let Some(bad) = elements
            .iter()
            .find(|e| !LOG_CONNECTIONS_ASPECTS.contains(&e.as_str()))
    {
        return Err(ValueError::Invalid {
            name: def.name.to_string(),
            value: quote(s),
            reason: format!(
                "{} is not something it logs: write on or off, or a list of {}",
                quote(bad),
                LOG_CONNECTIONS_ASPECTS.join(", ")
            ),
        });
    }
    Ok(Normalized::String(elements.join(", ")))
}

fn normalize_log_connections(def: &GucDef, value: &toml::Value) -> Result<Normalized, ValueError> {
    use toml::Value as V;
    match value {
        V::Boolean(b) => Ok(Normalized::Bool(*b)),
        V::String(s) => log_connections(def, s, true),
        V::Integer(i @ (0 | 1)) => log_connections(def, &i.to_string(), true),
        V::Array(items) => log_connections(def, &join_list(&array_items(def, items)?, false), true),
        other => Err(wrong_type(def, other)),
    }
}

// ---------------------------------------------------------------------------
// Public entry points
// ---------------------------------------------------------------------------

/// The parts of PostgreSQL's check hooks that change or refuse an
/// in-range integer, so that a desired value compares equal to what the
/// server will really hold. (Hooks that depend on other settings or on the
/// platform, such as max_connections + max_worker_processes + ... <=
/// 262143, are left to the server.)
fn int_check_hook(def: &GucDef, v: i64, written: &str) -> Result<i64, ValueError> {
    let refuse = |reason: String| ValueError::Invalid {
        name: def.name.to_string(),
        value: written.to_string(),
        reason,
    };
    match def.name {
        // check_wal_buffers: -1 is automatic, anything below 4 pages becomes 4.
        "wal_buffers" if (0..4).contains(&v) => Ok(4),
        // check_autovacuum_work_mem: -1 falls back to maintenance_work_mem,
        // anything below 1MB becomes 1MB.
        "autovacuum_work_mem" if (0..1024).contains(&v) => Ok(1024),
        // check_vacuum_buffer_usage_limit (16+)
        "vacuum_buffer_usage_limit" if (1..128).contains(&v) => Err(refuse(
            "it must be 0 (no limit) or between 128kB and 16GB".to_string(),
        )),
        // check_slru_buffers (17+): whole banks of 16 pages
        "commit_timestamp_buffers"
        | "multixact_member_buffers"
        | "multixact_offset_buffers"
        | "notify_buffers"
        | "serializable_buffers"
        | "subtransaction_buffers"
        | "transaction_buffers"
            if v % 16 != 0 =>
        {
            Err(refuse(format!(
                "it must be a multiple of 16 pages (128kB), e.g. \"{}\"",
                Normalized::Integer((v / 16 + 1) * 16).display_with_unit(def)
            )))
        }
        _ => Ok(v),
    }
}

fn normalize_bool(def: &GucDef, value: &toml::Value) -> Result<Normalized, ValueError> {
    use toml::Value as V;
    match value {
        V::Boolean(b) => Ok(Normalized::Bool(*b)),
        V::String(s) => parse::parse_bool(s)
            .map(Normalized::Bool)
            .ok_or_else(|| not_boolean(def, quote(s))),
        V::Integer(1) => Ok(Normalized::Bool(true)),
        V::Integer(0) => Ok(Normalized::Bool(false)),
        V::Integer(i) => Err(not_boolean(def, i.to_string())),
        other => Err(wrong_type(def, other)),
    }
}

/// A value from the cluster file (TOML string/integer/float/bool) checked
/// against the GUC's type and normalised, as PostgreSQL would parse it:
///
/// - bool: TOML `true`/`false`; strings as PostgreSQL reads them (`on`,
///   `off`, `yes`, `no`, `1`, `0`, unique prefixes, case-insensitive);
///   integers 1 and 0.
/// - integer: a TOML integer (or float, rounded like PostgreSQL does) is in
///   the base unit; a string may carry a case-sensitive unit (`"1GB"`,
///   `"5min"`), fractions are rounded to the base unit.
/// - real: a TOML float or integer, or a string (with a unit if the GUC has one).
/// - enum: a string, case-insensitive, hidden aliases included; TOML
///   `true`/`false` for the enums that have on/off.
/// - string: any string (integers and floats are taken as their text);
///   list settings also take an array of strings.
pub fn normalize_desired(def: &GucDef, value: &toml::Value) -> Result<Normalized, ValueError> {
    use toml::Value as V;
    match def.vartype {
        VarType::Bool if def.name == "default_with_oids" => match normalize_bool(def, value)? {
            Normalized::Bool(true) => Err(ValueError::Invalid {
                name: def.name.to_string(),
                value: value.to_string(),
                reason: "WITH OIDS is no longer supported: only false is accepted".to_string(),
            }),
            n => Ok(n),
        },
        VarType::Bool => normalize_bool(def, value),
        VarType::String if is_log_connections_list(def) => normalize_log_connections(def, value),
        VarType::Integer => {
            let (v, written) = match value {
                V::Integer(i) => {
                    check_range(def, *i as f64, &i.to_string(), false)?;
                    (*i, i.to_string())
                }
                V::Float(f) => {
                    if f.is_nan() {
                        return Err(ValueError::Invalid {
                            name: def.name.to_string(),
                            value: "nan".to_string(),
                            reason: expected_text(def),
                        });
                    }
                    let v = f.round_ties_even();
                    check_range(def, v, &f.to_string(), false)?;
                    (v as i64, f.to_string())
                }
                V::String(s) => (number_from_string(def, s)? as i64, quote(s)),
                other => return Err(wrong_type(def, other)),
            };
            int_check_hook(def, v, &written).map(Normalized::Integer)
        }
        VarType::Real => match value {
            V::Integer(i) => {
                let v = *i as f64;
                check_range(def, v, &i.to_string(), false)?;
                Ok(Normalized::Real(v))
            }
            V::Float(f) => {
                if f.is_nan() {
                    return Err(ValueError::Invalid {
                        name: def.name.to_string(),
                        value: "nan".to_string(),
                        reason: expected_text(def),
                    });
                }
                check_range(def, *f, &f.to_string(), false)?;
                Ok(Normalized::Real(*f))
            }
            V::String(s) => number_from_string(def, s).map(Normalized::Real),
            other => Err(wrong_type(def, other)),
        },
        VarType::Enum => match value {
            V::String(s) => canonical_enum(def, s)
                .map(Normalized::Enum)
                .ok_or_else(|| not_in_enum(def, quote(s), s)),
            V::Boolean(b) if bool_like(def) => {
                Ok(Normalized::Enum(if *b { "on" } else { "off" }.to_string()))
            }
            V::Integer(i) => canonical_enum(def, &i.to_string())
                .map(Normalized::Enum)
                .ok_or_else(|| not_in_enum(def, i.to_string(), &i.to_string())),
            other => Err(wrong_type(def, other)),
        },
        VarType::String => match value {
            V::String(s) => Ok(Normalized::String(canonical_string(def, s))),
            V::Integer(i) => Ok(Normalized::String(canonical_string(def, &i.to_string()))),
            V::Float(f) if f.is_finite() => Ok(Normalized::String(canonical_string(
                def,
                &parse::format_real(*f),
            ))),
            V::Boolean(b) if is_custom(def) => Ok(Normalized::String(
                if *b { "on" } else { "off" }.to_string(),
            )),
            V::Array(items) if list_kind(def) != ListKind::NotList => {
                let mut elements = array_items(def, items)?;
                let ident = identifier_list(def.name);
                if case_insensitive_string(def.name) {
                    for e in &mut elements {
                        *e = e.to_lowercase();
                    }
                }
                Ok(Normalized::String(join_list(&elements, ident)))
            }
            other => Err(wrong_type(def, other)),
        },
    }
}

/// A live value from `pg_settings` (`setting`, `unit`) normalised the same
/// way as [`normalize_desired`]. The unit is the row's `unit` column; when it
/// differs from the catalog's (a server built with another page size) the
/// value is converted to the catalog's base unit. Values are not
/// range-checked (the server's own limits apply) and unknown enum values
/// are kept (lower-cased).
pub fn normalize_observed(
    def: &GucDef,
    setting: &str,
    unit: Option<&str>,
) -> Result<Normalized, ValueError> {
    let invalid = |what: &str| ValueError::Invalid {
        name: def.name.to_string(),
        value: quote(setting),
        reason: format!("pg_settings reported a value that is not {what}"),
    };
    let convert = |v: f64| -> f64 {
        match (
            unit.filter(|u| !u.is_empty()).and_then(BaseUnit::from_pg),
            base_unit(def),
        ) {
            (Some(from), Some(to)) if from != to && from.kind() == to.kind() => {
                v * from.scale() / to.scale()
            }
            _ => v,
        }
    };
    match def.vartype {
        VarType::Bool => parse::parse_bool(setting)
            .map(Normalized::Bool)
            .ok_or_else(|| invalid("a boolean")),
        VarType::Integer => {
            let v = parse::parse_number(setting, None, true).map_err(|_| invalid("an integer"))?;
            Ok(Normalized::Integer(convert(v).round_ties_even() as i64))
        }
        VarType::Real => {
            let v = parse::parse_number(setting, None, false).map_err(|_| invalid("a number"))?;
            Ok(Normalized::Real(convert(v)))
        }
        VarType::Enum => Ok(Normalized::Enum(
            canonical_enum(def, setting).unwrap_or_else(|| setting.to_ascii_lowercase()),
        )),
        VarType::String if is_log_connections_list(def) => log_connections(def, setting, false),
        VarType::String => Ok(Normalized::String(canonical_string(def, setting))),
    }
}

impl Normalized {
    /// For people: `"1GB"`, `"on"`, `"30s"`, `"replica"`. Integers and reals
    /// with a unit use the largest unit that represents them exactly (as
    /// `SHOW` does); zero and negative values (`-1` sentinels) are shown
    /// bare. Enums use the spelling of [`GucDef::enum_values`]
    /// (`"TLSv1.2"`). Strings are returned verbatim (not quoted).
    pub fn display_with_unit(&self, def: &GucDef) -> String {
        match self {
            Normalized::Bool(b) => if *b { "on" } else { "off" }.to_string(),
            Normalized::Integer(v) => match base_unit(def) {
                Some(base) if *v > 0 => {
                    let (n, unit) = parse::int_with_best_unit(*v, base);
                    format!("{n}{unit}")
                }
                _ => v.to_string(),
            },
            Normalized::Real(v) => match base_unit(def) {
                Some(base) if *v > 0.0 && v.is_finite() => {
                    let (n, unit) = parse::real_with_best_unit(*v, base);
                    format!("{}{unit}", parse::format_real(n))
                }
                _ => parse::format_real(*v),
            },
            Normalized::String(s) => s.clone(),
            Normalized::Enum(s) => def
                .enum_values
                .iter()
                .find(|v| v.eq_ignore_ascii_case(s))
                .map_or_else(|| s.clone(), |v| (*v).to_string()),
        }
    }

    /// The value text to put, quoted by the caller, in
    /// `ALTER SYSTEM SET name = '...'`. Integers carry an exact unit
    /// (`"128MB"`, independent of the server's page size), reals are bare
    /// numbers in the base unit (exact), booleans `on`/`off`.
    ///
    /// For [`ListKind::QuotedList`] settings a single quoted string is
    /// wrong (PostgreSQL would make it one element): use
    /// [`Normalized::to_alter_system_value`].
    pub fn to_sql_literal_value(&self, def: &GucDef) -> String {
        match self {
            Normalized::Real(v) => parse::format_real(*v),
            _ => self.display_with_unit(def),
        }
    }

    /// The complete right-hand side of `ALTER SYSTEM SET name = <rhs>`,
    /// already quoted: `'1GB'`, `'on'`, `E'C:\\dir'`; for
    /// [`ListKind::QuotedList`] settings one literal per element
    /// (`'pg_stat_statements', 'auto_explain'`), and `DEFAULT` for an empty
    /// list (PostgreSQL would turn `''` into the element `""`).
    pub fn to_alter_system_value(&self, def: &GucDef) -> String {
        if let Normalized::String(s) = self
            && list_kind(def) == ListKind::QuotedList
        {
            let elements = split_list(s, false);
            if elements.is_empty() {
                return "DEFAULT".to_string();
            }
            return elements
                .iter()
                .map(|e| sql_literal(e))
                .collect::<Vec<_>>()
                .join(", ");
        }
        sql_literal(&self.to_sql_literal_value(def))
    }
}
