//! Low-level value parsing that mirrors PostgreSQL's own
//! (`src/backend/utils/misc/guc.c`: `parse_int`, `parse_real`,
//! `convert_to_base_unit`, `convert_int_from_base_unit`,
//! `convert_real_from_base_unit`; `src/backend/utils/adt/bool.c`:
//! `parse_bool_with_len`), including the C library behaviour they rely on
//! (`strtol(…, 0)` accepts octal and hex, `strtod` accepts hex floats,
//! `inf` and `nan`, both skip leading white space).
//!
//! Nothing here panics on any input: all arithmetic is checked or done in
//! `f64`, all indexing is bounds-checked through iterators or `get`.

/// `isspace()` in the C locale.
pub(crate) fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn skip_space(s: &[u8], mut i: usize) -> usize {
    while s.get(i).copied().is_some_and(is_c_space) {
        i += 1;
    }
    i
}

/// An optional `+` or `-` at `i`: (negative, index after it).
fn sign_at(s: &[u8], i: usize) -> (bool, usize) {
    match s.get(i) {
        Some(b'-') => (true, i + 1),
        Some(b'+') => (false, i + 1),
        _ => (false, i),
    }
}

/// Result of [`strtol0`]: C `strtol(s, &end, 0)` on a 64-bit `long`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Strtol {
    pub value: i64,
    /// Bytes consumed; 0 when no conversion was performed (`endptr == nptr`).
    pub end: usize,
    /// `errno == ERANGE` (the value did not fit; `value` is clamped).
    pub overflow: bool,
}

/// C `strtol(s, &end, 0)`: leading white space, optional sign, then `0x`
/// hexadecimal, `0` octal, or decimal digits.
pub(crate) fn strtol0(s: &[u8]) -> Strtol {
    let none = Strtol {
        value: 0,
        end: 0,
        overflow: false,
    };
    let (negative, mut i) = sign_at(s, skip_space(s, 0));
    let base: u32;
    if s.get(i) == Some(&b'0')
        && matches!(s.get(i + 1), Some(b'x' | b'X'))
        && s.get(i + 2).is_some_and(|c| c.is_ascii_hexdigit())
    {
        base = 16;
        i += 2;
    } else if s.get(i) == Some(&b'0') {
        base = 8;
    } else {
        base = 10;
    }
    let start = i;
    let mut acc: i128 = 0;
    let mut overflow = false;
    while let Some(d) = s.get(i).and_then(|&c| (c as char).to_digit(base)) {
        if !overflow {
            acc = acc * i128::from(base) + i128::from(d);
            if acc > i128::from(i64::MAX) + 1 {
                overflow = true;
            }
        }
        i += 1;
    }
    if i == start {
        return none;
    }
    let signed = if negative { -acc } else { acc };
    let value = if overflow || signed > i128::from(i64::MAX) || signed < i128::from(i64::MIN) {
        overflow = true;
        if negative { i64::MIN } else { i64::MAX }
    } else {
        signed as i64
    };
    Strtol {
        value,
        end: i,
        overflow,
    }
}

/// Result of [`strtod`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Strtod {
    pub value: f64,
    /// Bytes consumed; 0 when no conversion was performed.
    pub end: usize,
    /// `errno == ERANGE`: overflow to infinity or underflow to a
    /// zero/subnormal result (glibc behaviour).
    pub range_error: bool,
}

fn starts_with_ci(s: &[u8], i: usize, word: &str) -> bool {
    s.get(i..i + word.len())
        .is_some_and(|w| w.eq_ignore_ascii_case(word.as_bytes()))
}

/// C `strtod`: leading white space, optional sign, then `inf`/`infinity`,
/// `nan`/`nan(chars)`, a hexadecimal float (`0x1.8p3`) or a decimal float
/// (`1`, `1.`, `.5`, `1e-3`).
pub(crate) fn strtod(s: &[u8]) -> Strtod {
    let none = Strtod {
        value: 0.0,
        end: 0,
        range_error: false,
    };
    let (negative, mut i) = sign_at(s, skip_space(s, 0));
    let sign = if negative { -1.0 } else { 1.0 };
    if starts_with_ci(s, i, "infinity") {
        return Strtod {
            value: sign * f64::INFINITY,
            end: i + 8,
            range_error: false,
        };
    }
    if starts_with_ci(s, i, "inf") {
        return Strtod {
            value: sign * f64::INFINITY,
            end: i + 3,
            range_error: false,
        };
    }
    if starts_with_ci(s, i, "nan") {
        let mut end = i + 3;
        if s.get(end) == Some(&b'(') {
            let mut j = end + 1;
            while s
                .get(j)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
            {
                j += 1;
            }
            if s.get(j) == Some(&b')') {
                end = j + 1;
            }
        }
        return Strtod {
            value: f64::NAN,
            end,
            range_error: false,
        };
    }
    if s.get(i) == Some(&b'0') && matches!(s.get(i + 1), Some(b'x' | b'X')) {
        if let Some(r) = hex_float(s, i + 2, sign) {
            return r;
        }
        // "0x" without hex digits: only the "0" is converted.
        return Strtod {
            value: sign * 0.0,
            end: i + 1,
            range_error: false,
        };
    }
    // Decimal: digits [. digits] [e [sign] digits]
    let mant_start = i;
    let mut digits = 0usize;
    let mut nonzero = false;
    while let Some(c) = s.get(i).filter(|c| c.is_ascii_digit()) {
        nonzero |= *c != b'0';
        digits += 1;
        i += 1;
    }
    if s.get(i) == Some(&b'.') {
        i += 1;
        while let Some(c) = s.get(i).filter(|c| c.is_ascii_digit()) {
            nonzero |= *c != b'0';
            digits += 1;
            i += 1;
        }
    }
    if digits == 0 {
        return none;
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(s.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if s.get(j).is_some_and(|c| c.is_ascii_digit()) {
            while s.get(j).is_some_and(|c| c.is_ascii_digit()) {
                j += 1;
            }
            i = j;
        }
    }
    // Only ASCII digits, '.', 'e' and a sign were consumed: valid UTF-8,
    // and a syntax Rust's float parser accepts ("1.", ".5", "1.e5").
    let text = match std::str::from_utf8(s.get(mant_start..i).unwrap_or_default()) {
        Ok(t) => t,
        Err(_) => return none,
    };
    let magnitude: f64 = match text.parse::<f64>() {
        Ok(v) => v,
        Err(_) => return none,
    };
    let range_error =
        magnitude.is_infinite() || (nonzero && (magnitude == 0.0 || magnitude.is_subnormal()));
    Strtod {
        value: sign * magnitude,
        end: i,
        range_error,
    }
}

/// Hexadecimal float after the `0x` prefix at `i`.
fn hex_float(s: &[u8], mut i: usize, sign: f64) -> Option<Strtod> {
    let mut mantissa: f64 = 0.0;
    let mut exp2: i64 = 0;
    let mut digits = 0usize;
    let mut nonzero = false;
    while let Some(d) = s.get(i).and_then(|&c| (c as char).to_digit(16)) {
        mantissa = mantissa * 16.0 + f64::from(d);
        nonzero |= d != 0;
        digits += 1;
        i += 1;
    }
    if s.get(i) == Some(&b'.') {
        let after_dot = i + 1;
        let mut j = after_dot;
        while let Some(d) = s.get(j).and_then(|&c| (c as char).to_digit(16)) {
            mantissa = mantissa * 16.0 + f64::from(d);
            nonzero |= d != 0;
            exp2 -= 4;
            digits += 1;
            j += 1;
        }
        if digits > 0 {
            i = j;
        }
    }
    if digits == 0 {
        return None;
    }
    if matches!(s.get(i), Some(b'p' | b'P')) {
        let (eneg, mut j) = sign_at(s, i + 1);
        if s.get(j).is_some_and(|c| c.is_ascii_digit()) {
            let mut e: i64 = 0;
            while let Some(c) = s.get(j).filter(|c| c.is_ascii_digit()) {
                e = e.saturating_mul(10).saturating_add(i64::from(c - b'0'));
                j += 1;
            }
            exp2 = exp2.saturating_add(if eneg { -e } else { e });
            i = j;
        }
    }
    let clamped = exp2.clamp(-2200, 2200) as i32;
    let magnitude = mantissa * 2f64.powi(clamped);
    let range_error =
        magnitude.is_infinite() || (nonzero && (magnitude == 0.0 || magnitude.is_subnormal()));
    Some(Strtod {
        value: sign * magnitude,
        end: i,
        range_error,
    })
}

/// PostgreSQL `parse_bool`: `true`/`false`/`yes`/`no` and any prefix of them,
/// `on`/`off` (at least two letters: `of` is off, `o` is invalid), `1`/`0`,
/// all case-insensitive. No white space is allowed.
pub(crate) fn parse_bool(value: &str) -> Option<bool> {
    let b = value.as_bytes();
    let len = b.len();
    let prefix_of =
        |word: &str| len <= word.len() && word.as_bytes()[..len].eq_ignore_ascii_case(b);
    match b.first()?.to_ascii_lowercase() {
        b't' => prefix_of("true").then_some(true),
        b'f' => prefix_of("false").then_some(false),
        b'y' => prefix_of("yes").then_some(true),
        b'n' => prefix_of("no").then_some(false),
        b'o' => {
            // pg_strncasecmp(value, "on", max(len, 2)) / "off"
            if len < 2 {
                None
            } else if b.eq_ignore_ascii_case(b"on") {
                Some(true)
            } else if prefix_of("off") {
                Some(false)
            } else {
                None
            }
        }
        b'1' if len == 1 => Some(true),
        b'0' if len == 1 => Some(false),
        _ => None,
    }
}

/// The kind of unit a GUC takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnitKind {
    Memory,
    Time,
}

/// A GUC base unit (`GUC_UNIT_*`), as named by `pg_settings.unit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BaseUnit {
    Bytes,
    Kilobytes,
    Megabytes,
    /// Pages of the given size in bytes (`8kB` for `BLCKSZ`/`XLOG_BLCKSZ`).
    Blocks(u32),
    Milliseconds,
    Seconds,
    Minutes,
}

pub(crate) const MEMORY_UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
pub(crate) const TIME_UNITS: [&str; 6] = ["us", "ms", "s", "min", "h", "d"];

impl BaseUnit {
    /// Parses a `pg_settings.unit` string: `B`, `kB`, `MB`, `8kB`, `16kB`,
    /// `ms`, `s`, `min`.
    pub(crate) fn from_pg(unit: &str) -> Option<BaseUnit> {
        match unit {
            "B" => Some(BaseUnit::Bytes),
            "kB" => Some(BaseUnit::Kilobytes),
            "MB" => Some(BaseUnit::Megabytes),
            "ms" => Some(BaseUnit::Milliseconds),
            "s" => Some(BaseUnit::Seconds),
            "min" => Some(BaseUnit::Minutes),
            _ => {
                let n = unit.strip_suffix("kB")?;
                let kb: u32 = n.parse().ok()?;
                if kb == 0 || kb > 1024 * 1024 {
                    return None;
                }
                Some(BaseUnit::Blocks(kb * 1024))
            }
        }
    }

    pub(crate) fn kind(self) -> UnitKind {
        match self {
            BaseUnit::Bytes | BaseUnit::Kilobytes | BaseUnit::Megabytes | BaseUnit::Blocks(_) => {
                UnitKind::Memory
            }
            BaseUnit::Milliseconds | BaseUnit::Seconds | BaseUnit::Minutes => UnitKind::Time,
        }
    }

    /// The size of one base unit in bytes (memory) or milliseconds (time).
    pub(crate) fn scale(self) -> f64 {
        match self {
            BaseUnit::Bytes => 1.0,
            BaseUnit::Kilobytes => 1024.0,
            BaseUnit::Megabytes => 1024.0 * 1024.0,
            BaseUnit::Blocks(bs) => f64::from(bs),
            BaseUnit::Milliseconds => 1.0,
            BaseUnit::Seconds => 1000.0,
            BaseUnit::Minutes => 60_000.0,
        }
    }

    /// PostgreSQL's conversion table for this base unit: (unit, multiplier
    /// to the base unit), greatest unit first, computed exactly as the C
    /// tables are.
    pub(crate) fn table(self) -> Vec<(&'static str, f64)> {
        const K: f64 = 1024.0;
        match self {
            BaseUnit::Bytes => vec![
                ("TB", K * K * K * K),
                ("GB", K * K * K),
                ("MB", K * K),
                ("kB", K),
                ("B", 1.0),
            ],
            BaseUnit::Kilobytes => vec![
                ("TB", K * K * K),
                ("GB", K * K),
                ("MB", K),
                ("kB", 1.0),
                ("B", 1.0 / K),
            ],
            BaseUnit::Megabytes => vec![
                ("TB", K * K),
                ("GB", K),
                ("MB", 1.0),
                ("kB", 1.0 / K),
                ("B", 1.0 / (K * K)),
            ],
            BaseUnit::Blocks(bs) => {
                // C: BLCKSZ / 1024 is an integer division.
                let kb = f64::from(bs / 1024);
                vec![
                    ("TB", (K * K * K) / kb),
                    ("GB", (K * K) / kb),
                    ("MB", K / kb),
                    ("kB", 1.0 / kb),
                    ("B", 1.0 / f64::from(bs)),
                ]
            }
            BaseUnit::Milliseconds => vec![
                ("d", 1000.0 * 60.0 * 60.0 * 24.0),
                ("h", 1000.0 * 60.0 * 60.0),
                ("min", 1000.0 * 60.0),
                ("s", 1000.0),
                ("ms", 1.0),
                ("us", 1.0 / 1000.0),
            ],
            BaseUnit::Seconds => vec![
                ("d", 60.0 * 60.0 * 24.0),
                ("h", 60.0 * 60.0),
                ("min", 60.0),
                ("s", 1.0),
                ("ms", 1.0 / 1000.0),
                ("us", 1.0 / (1000.0 * 1000.0)),
            ],
            BaseUnit::Minutes => vec![
                ("d", 60.0 * 24.0),
                ("h", 60.0),
                ("min", 1.0),
                ("s", 1.0 / 60.0),
                ("ms", 1.0 / (1000.0 * 60.0)),
                ("us", 1.0 / (1000.0 * 1000.0 * 60.0)),
            ],
        }
    }
}

/// PostgreSQL `convert_to_base_unit`: `unit` is the text after the number
/// and any white space (up to 3 characters of unit, then only white space).
/// The converted value is rounded to the nearest multiple of the next
/// smaller unit ("30.1GB" → whole MB), as PostgreSQL does.
pub(crate) fn convert_to_base_unit(value: f64, unit: &[u8], base: BaseUnit) -> Option<f64> {
    let mut n = 0;
    while n < unit.len() && n < 3 && !is_c_space(unit[n]) {
        n += 1;
    }
    let unitstr = &unit[..n];
    let rest = skip_space(unit, n);
    if rest != unit.len() {
        return None;
    }
    let table = base.table();
    let pos = table.iter().position(|(u, _)| u.as_bytes() == unitstr)?;
    let mult = table[pos].1;
    let mut cvalue = value * mult;
    if let Some((_, next)) = table.get(pos + 1) {
        cvalue = (cvalue / next).round_ties_even() * next;
    }
    Some(cvalue)
}

/// Why [`parse_number`] failed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NumError {
    /// Not a number at all (or NaN, or out of `double` range): PostgreSQL
    /// gives no hint.
    Syntax,
    /// A unit (the text after the number) on a unitless setting.
    UnitNotAllowed { unit: String },
    /// An unknown unit, or garbage after the unit.
    BadUnit { unit: String },
    /// The rounded integer does not fit in a C `int`.
    IntOverflow { value: f64 },
}

/// PostgreSQL `parse_int` (when `integer` is true) or `parse_real`.
/// Returns the value in the base unit; integers are rounded with `rint`
/// (ties to even) and checked against the C `int` range.
pub(crate) fn parse_number(
    text: &str,
    base: Option<BaseUnit>,
    integer: bool,
) -> Result<f64, NumError> {
    let s = text.as_bytes();
    let (mut val, end, bad) = if integer {
        let l = strtol0(s);
        let next = if l.end == 0 { s.first() } else { s.get(l.end) };
        if matches!(next, Some(b'.' | b'e' | b'E')) || l.overflow {
            let d = strtod(s);
            (d.value, d.end, d.range_error)
        } else {
            (l.value as f64, l.end, false)
        }
    } else {
        let d = strtod(s);
        (d.value, d.end, d.range_error)
    };
    if end == 0 || bad || val.is_nan() {
        return Err(NumError::Syntax);
    }
    let after = skip_space(s, end);
    if after < s.len() {
        let unit_text = String::from_utf8_lossy(&s[after..]).into_owned();
        let Some(base) = base else {
            return Err(NumError::UnitNotAllowed { unit: unit_text });
        };
        match convert_to_base_unit(val, &s[after..], base) {
            Some(v) => val = v,
            None => return Err(NumError::BadUnit { unit: unit_text }),
        }
    }
    if integer {
        val = val.round_ties_even();
        if val > f64::from(i32::MAX) || val < f64::from(i32::MIN) {
            return Err(NumError::IntOverflow { value: val });
        }
    }
    Ok(val)
}

/// PostgreSQL `convert_int_from_base_unit`: the greatest unit that
/// represents a positive value exactly.
pub(crate) fn int_with_best_unit(value: i64, base: BaseUnit) -> (i64, &'static str) {
    let table = base.table();
    for (unit, mult) in &table {
        if *mult <= 1.0 || value % (*mult as i64) == 0 {
            return ((value as f64 / mult).round_ties_even() as i64, unit);
        }
    }
    // Unreachable: every table ends with multipliers <= 1.
    (value, "")
}

/// PostgreSQL `convert_real_from_base_unit`: the greatest unit in which
/// the value is (within 1e-8) an integer, else the smallest unit.
pub(crate) fn real_with_best_unit(value: f64, base: BaseUnit) -> (f64, &'static str) {
    let table = base.table();
    let mut out = (value, "");
    for (unit, mult) in &table {
        let v = value / mult;
        out = (v, unit);
        if v > 0.0 && ((v.round_ties_even() / v) - 1.0).abs() <= 1e-8 {
            break;
        }
    }
    out
}

/// Formats a real the way a person (and PostgreSQL's parser) reads it:
/// plain decimal for ordinary magnitudes, exponent notation otherwise.
pub(crate) fn format_real(v: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    let a = v.abs();
    if a.is_finite() && !(1e-4..1e15).contains(&a) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}
