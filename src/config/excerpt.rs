//! The line of the cluster file a diagnostic echoes: found through an index
//! of line starts (so thousands of diagnostics cost one pass over the file),
//! with every inline password shown as `"(sensitive)"` and a long line cut
//! to a window around the caret.

use std::ops::Range;

/// Characters of a source line shown at most, ellipses aside.
pub const MAX_SHOWN: usize = 200;
/// With a cut line, characters shown before the caret.
const BEFORE_CARET: usize = 50;
/// What an inline password is shown as.
const MASK: &str = "\"(sensitive)\"";

/// Where each line starts, and where inline passwords are: built once per file.
pub struct SourceMap<'a> {
    source: &'a str,
    line_starts: Vec<usize>,
    secrets: Vec<Range<usize>>,
}

/// One echoed line: its text as shown, and the caret under the span.
#[derive(Debug, PartialEq, Eq)]
pub struct Excerpt {
    pub line: usize,
    /// 1-based column of the span's start in the file's line, in characters.
    pub col: usize,
    pub text: String,
    /// Characters before the first caret in `text`.
    pub caret_pad: usize,
    pub caret_width: usize,
}

impl<'a> SourceMap<'a> {
    pub fn new(source: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(source.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceMap {
            source,
            line_starts,
            secrets: secret_ranges(source),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(self.source, offset.min(self.source.len()));
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self.line_starts[line - 1];
        (line, self.source[start..offset].chars().count() + 1)
    }

    /// The line holding `span.start`, masked and cut, with its caret.
    pub fn excerpt(&self, span: &Range<usize>) -> Excerpt {
        let (line, col) = self.line_col(span.start);
        let start = self.line_starts[line - 1];
        let end = self
            .line_starts
            .get(line)
            .map_or(self.source.len(), |next| next - 1);
        let raw = &self.source[start..end];
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let masked = Masked::new(raw, start, &self.secrets);
        // Carets under the span, clipped to the end of its line, at least one.
        let from = floor_char_boundary(self.source, span.start.min(self.source.len()));
        let to = floor_char_boundary(self.source, span.end.min(self.source.len()))
            .clamp(from, start + raw.len());
        let caret_from = masked.column(col - 1, false);
        let caret_to = masked.column(col - 1 + self.source[from..to].chars().count(), true);
        let shown = window(&masked.text, caret_from);
        let caret_pad = caret_from - shown.from + usize::from(shown.from > 0);
        let caret_width = caret_to.min(shown.end).saturating_sub(caret_from).max(1);
        let text = shown.text;
        Excerpt {
            line,
            col,
            text,
            caret_pad,
            caret_width,
        }
    }
}

/// A line with its inline passwords replaced by [`MASK`].
struct Masked {
    text: String,
    /// (first masked column, masked columns) in the file's line, in characters.
    masks: Vec<(usize, usize)>,
}

impl Masked {
    fn new(line: &str, line_start: usize, secrets: &[Range<usize>]) -> Self {
        let line_end = line_start + line.len();
        let first = secrets.partition_point(|s| s.end <= line_start);
        let mut text = String::with_capacity(line.len());
        let mut masks = Vec::new();
        let mut at = line_start;
        for s in secrets[first..].iter().take_while(|s| s.start < line_end) {
            let (from, to) = (s.start.max(at), s.end.min(line_end));
            text.push_str(&line[at - line_start..from - line_start]);
            let col = line[..from - line_start].chars().count();
            masks.push((
                col,
                line[from - line_start..to - line_start].chars().count(),
            ));
            text.push_str(MASK);
            at = to;
        }
        text.push_str(&line[at - line_start..]);
        Masked { text, masks }
    }

    /// The shown column of the file line's 0-based column `col`: a column
    /// inside a masked password is the start of its mask (`end`: its end).
    fn column(&self, col: usize, end: bool) -> usize {
        let mask_len = MASK.chars().count();
        let mut shown = col;
        for &(from, len) in &self.masks {
            if col < from {
                break;
            }
            let mask_start = shown - (col - from);
            if col < from + len {
                return if end {
                    mask_start + mask_len
                } else {
                    mask_start
                };
            }
            shown = mask_start + mask_len + (col - from - len);
        }
        shown
    }
}

/// Up to [`MAX_SHOWN`] characters of a line, with `…` where it was cut.
struct Window {
    text: String,
    /// The first character of the line shown.
    from: usize,
    /// One past the last character of the line shown.
    end: usize,
}

/// At most [`MAX_SHOWN`] characters of `text`, the caret at column `caret`
/// among them.
fn window(text: &str, caret: usize) -> Window {
    let len = text.chars().count();
    if len <= MAX_SHOWN {
        return Window {
            text: text.to_string(),
            from: 0,
            end: len,
        };
    }
    let from = if caret < MAX_SHOWN - BEFORE_CARET {
        0
    } else {
        (caret - BEFORE_CARET).min(len - MAX_SHOWN)
    };
    let end = from + MAX_SHOWN;
    let mut shown = String::new();
    if from > 0 {
        shown.push('…');
    }
    shown.extend(text.chars().skip(from).take(MAX_SHOWN));
    if end < len {
        shown.push('…');
    }
    Window {
        text: shown,
        from,
        end,
    }
}

/// Cuts a value quoted in a message to [`MAX_SHOWN`] characters, with `…`.
pub fn clip(text: &str) -> String {
    clip_to(text, MAX_SHOWN)
}

/// Cuts `text` to `max` characters, with `…`.
pub fn clip_to(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

pub fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Byte ranges (quotes included) of the string values of every key named
/// `password` (any case; bare, quoted or the last part of a dotted key; in
/// a table or an inline table), in order. A lexical scan, so it finds them
/// in a file TOML cannot parse too; it may mask more than a password (a
/// commented-out one), never less. An unterminated string runs to the end
/// of its line (of the file, for `"""` and `'''`).
pub fn secret_ranges(source: &str) -> Vec<Range<usize>> {
    const KEY: &str = "password";
    let bytes = source.as_bytes();
    let lower = source.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = lower[from..].find(KEY) {
        let key_start = from + found;
        from = key_start + KEY.len();
        let before = key_start.checked_sub(1).map(|i| bytes[i]).unwrap_or(b'\n');
        if !matches!(
            before,
            b'\n' | b' ' | b'\t' | b'{' | b',' | b'.' | b'"' | b'\''
        ) {
            continue;
        }
        let mut i = from;
        if matches!(bytes.get(i), Some(b'"' | b'\'')) {
            i += 1;
        }
        i = skip_blanks(bytes, i);
        if bytes.get(i) != Some(&b'=') {
            continue;
        }
        i = skip_blanks(bytes, i + 1);
        if let Some(end) = string_end(source, i) {
            out.push(i..end);
            from = end;
        }
    }
    out
}

fn skip_blanks(bytes: &[u8], mut i: usize) -> usize {
    while matches!(bytes.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

/// The end (after the closing quote) of the TOML string starting at `i`,
/// or `None` when no string starts there.
fn string_end(source: &str, i: usize) -> Option<usize> {
    let rest = source.get(i..)?;
    let line_end = rest.find('\n').map_or(source.len(), |n| i + n);
    for (open, escapes) in [("\"\"\"", true), ("'''", false)] {
        if rest.starts_with(open) {
            let body = i + 3;
            return Some(closing(source, body, open, escapes).unwrap_or(source.len()));
        }
    }
    for (open, escapes) in [("\"", true), ("'", false)] {
        if rest.starts_with(open) {
            let end = closing(&source[..line_end], i + 1, open, escapes);
            return Some(end.unwrap_or(line_end));
        }
    }
    None
}

/// The end of the first `close` at or after `from`, a `\`-escaped one skipped.
fn closing(source: &str, from: usize, close: &str, escapes: bool) -> Option<usize> {
    let bytes = source.as_bytes();
    let mut i = from;
    while i < bytes.len() {
        if escapes && bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if source[i..].starts_with(close) {
            return Some(i + close.len());
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(source: &str) -> Vec<&str> {
        secret_ranges(source)
            .into_iter()
            .map(|r| &source[r])
            .collect()
    }

    #[test]
    fn finds_every_form_of_an_inline_password() {
        let s = "password = \"a\\\"b\"\nx.password='c'\nr = { user = \"u\", password = \"d\" }\n\"password\" = \"e\"\nPassWord=\"f\"\n";
        assert_eq!(shown(s), ["\"a\\\"b\"", "'c'", "\"d\"", "\"e\"", "\"f\""]);
    }

    #[test]
    fn leaves_other_keys_and_tables_alone() {
        let s = "old_password = \"a\"\npassword = { env = \"X\" }\nuser = \"password\"\npasswords = \"b\"\n";
        assert!(shown(s).is_empty(), "{:?}", shown(s));
    }

    #[test]
    fn an_unterminated_password_runs_to_the_end_of_its_line() {
        assert_eq!(shown("password = \"abc\nnext = 1\n"), ["\"abc"]);
        assert_eq!(
            shown("password = \"\"\"ab\ncd\"\"\"\nx = 1"),
            ["\"\"\"ab\ncd\"\"\""]
        );
    }

    #[test]
    fn masks_the_password_and_maps_the_caret() {
        let s = "x = 1\npassword = \"hunter2\" # c\n";
        let map = SourceMap::new(s);
        let e = map.excerpt(&(17..26));
        assert_eq!(e.text, "password = \"(sensitive)\" # c");
        assert_eq!((e.line, e.col, e.caret_pad, e.caret_width), (2, 12, 11, 13));
        // A caret after the password moves with the longer mask.
        let e = map.excerpt(&(29..30));
        assert_eq!((e.caret_pad, e.caret_width), (27, 1));
    }

    #[test]
    fn cuts_a_long_line_around_the_caret() {
        let line = format!("{} = 1", "x".repeat(1000));
        let map = SourceMap::new(&line);
        let e = map.excerpt(&(0..1000));
        assert_eq!(e.text.chars().count(), MAX_SHOWN + 1);
        assert!(e.text.ends_with('…'));
        assert_eq!((e.caret_pad, e.caret_width), (0, MAX_SHOWN));
        let e = map.excerpt(&(1001..1002));
        assert!(
            e.text.starts_with('…') && e.text.ends_with("= 1"),
            "{}",
            e.text
        );
        assert_eq!(e.text.chars().nth(e.caret_pad), Some('='));
    }

    #[test]
    fn line_col_counts_from_one() {
        let s = "a = 1\nbb = 2\n";
        let map = SourceMap::new(s);
        assert_eq!(map.line_col(0), (1, 1));
        assert_eq!(map.line_col(6), (2, 1));
        assert_eq!(map.line_col(8), (2, 3));
        assert_eq!(map.line_col(999), (3, 1));
    }

    #[test]
    fn line_col_survives_multibyte_offsets() {
        let map = SourceMap::new("é = 1\n");
        assert_eq!(map.line_col(1), (1, 1));
        assert_eq!(map.line_col(2), (1, 2));
    }

    #[test]
    fn clip_cuts_long_values() {
        assert_eq!(clip("abc"), "abc");
        let long = "é".repeat(MAX_SHOWN + 5);
        assert_eq!(clip(&long).chars().count(), MAX_SHOWN + 1);
    }
}
