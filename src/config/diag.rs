//! Problems found in a cluster file, rendered with file, line, column, the
//! offending line and a caret, the way rustc and cargo show them.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in the file: where, what, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub span: Option<Range<usize>>,
    pub message: String,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn at(span: Range<usize>, message: impl Into<String>) -> Self {
        Diagnostic {
            span: Some(span),
            message: message.into(),
            help: None,
        }
    }

    pub fn whole_file(message: impl Into<String>) -> Self {
        Diagnostic {
            span: None,
            message: message.into(),
            help: None,
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// Every problem found in one file; nothing was contacted.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub path: PathBuf,
    pub source_text: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl std::error::Error for ConfigError {}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            render(f, &self.path, &self.source_text, d)?;
        }
        let n = self.diagnostics.len();
        write!(
            f,
            "\n{}: {n} problem{} found; nothing was contacted or changed.",
            self.path.display(),
            if n == 1 { "" } else { "s" }
        )
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(source, offset.min(source.len()));
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = source[line_start..offset].chars().count() + 1;
    (line, col)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn render(f: &mut fmt::Formatter<'_>, path: &Path, source: &str, d: &Diagnostic) -> fmt::Result {
    writeln!(f, "error: {}", d.message)?;
    match &d.span {
        Some(span) => {
            let (line, col) = line_col(source, span.start);
            let gutter = line.to_string().len();
            writeln!(f, "{:gutter$}--> {}:{line}:{col}", "", path.display())?;
            let text = source.lines().nth(line - 1).unwrap_or("");
            writeln!(f, "{:gutter$} |", "")?;
            writeln!(f, "{line} | {text}")?;
            let width = caret_width(source, span, text, col);
            writeln!(
                f,
                "{:gutter$} | {:pad$}{}",
                "",
                "",
                "^".repeat(width),
                pad = col - 1
            )?;
            if let Some(help) = &d.help {
                writeln!(f, "{:gutter$} = help: {help}", "")?;
            }
        }
        None => {
            writeln!(f, " --> {}", path.display())?;
            if let Some(help) = &d.help {
                writeln!(f, "  = help: {help}")?;
            }
        }
    }
    Ok(())
}

/// Carets under the span, clipped to the end of its first line, at least one.
fn caret_width(source: &str, span: &Range<usize>, line_text: &str, col: usize) -> usize {
    let start = floor_char_boundary(source, span.start.min(source.len()));
    let end = floor_char_boundary(source, span.end.min(source.len())).max(start);
    let spanned = source[start..end].split('\n').next().unwrap_or("");
    let rest_of_line = line_text.chars().count().saturating_sub(col - 1);
    spanned.chars().count().min(rest_of_line).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let s = "a = 1\nbb = 2\n";
        assert_eq!(line_col(s, 0), (1, 1));
        assert_eq!(line_col(s, 6), (2, 1));
        assert_eq!(line_col(s, 8), (2, 3));
        assert_eq!(line_col(s, 999), (3, 1));
    }

    #[test]
    fn line_col_survives_multibyte_offsets() {
        let s = "é = 1\n";
        assert_eq!(line_col(s, 1), (1, 1));
        assert_eq!(line_col(s, 2), (1, 2));
    }

    #[test]
    fn renders_caret_under_span() {
        let err = ConfigError {
            path: "c.toml".into(),
            source_text: "[cluster]\nprimry = \"db1\"\n".into(),
            diagnostics: vec![
                Diagnostic::at(10..16, "unknown key `primry`").help("did you mean `primary`?"),
            ],
        };
        let text = err.to_string();
        assert!(text.contains(" --> c.toml:2:1"), "{text}");
        assert!(text.contains("2 | primry = \"db1\""), "{text}");
        assert!(text.contains("  | ^^^^^^\n"), "{text}");
        assert!(text.contains("= help: did you mean `primary`?"), "{text}");
    }
}
