//! Problems found in a cluster file, rendered with file, line, column, the
//! offending line and a caret, the way rustc and cargo show them.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::excerpt::{SourceMap, clip_to};

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
#[derive(Clone)]
pub struct ConfigError {
    pub path: PathBuf,
    /// The whole file, inline passwords included: never printed as it is.
    pub source_text: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl std::error::Error for ConfigError {}

/// Without the file's text, which may hold an inline password.
impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigError")
            .field("path", &self.path)
            .field("diagnostics", &self.diagnostics)
            .finish_non_exhaustive()
    }
}

/// Characters of a message or hint printed at most (a value quoted in one
/// is cut where it is quoted; this bounds what any message prints).
const MAX_MESSAGE: usize = 1000;

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let map = SourceMap::new(&self.source_text);
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            render(f, &self.path, &map, d)?;
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

fn render(f: &mut fmt::Formatter<'_>, path: &Path, map: &SourceMap, d: &Diagnostic) -> fmt::Result {
    writeln!(f, "error: {}", clip_to(&d.message, MAX_MESSAGE))?;
    let help = d.help.as_deref().map(|h| clip_to(h, MAX_MESSAGE));
    match &d.span {
        Some(span) => {
            let e = map.excerpt(span);
            let line = e.line;
            let gutter = line.to_string().len();
            writeln!(f, "{:gutter$}--> {}:{line}:{}", "", path.display(), e.col)?;
            writeln!(f, "{:gutter$} |", "")?;
            writeln!(f, "{line} | {}", e.text)?;
            writeln!(
                f,
                "{:gutter$} | {:pad$}{}",
                "",
                "",
                "^".repeat(e.caret_width),
                pad = e.caret_pad
            )?;
            if let Some(help) = help {
                writeln!(f, "{:gutter$} = help: {help}", "")?;
            }
        }
        None => {
            writeln!(f, " --> {}", path.display())?;
            if let Some(help) = help {
                writeln!(f, "  = help: {help}")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(source: &str, d: Diagnostic) -> String {
        ConfigError {
            path: "c.toml".into(),
            source_text: source.into(),
            diagnostics: vec![d],
        }
        .to_string()
    }

    #[test]
    fn renders_caret_under_span() {
        let text = rendered(
            "[cluster]\nprimry = \"db1\"\n",
            Diagnostic::at(10..16, "unknown key `primry`").help("did you mean `primary`?"),
        );
        assert!(text.contains(" --> c.toml:2:1"), "{text}");
        assert!(text.contains("2 | primry = \"db1\""), "{text}");
        assert!(text.contains("  | ^^^^^^\n"), "{text}");
        assert!(text.contains("= help: did you mean `primary`?"), "{text}");
    }

    #[test]
    fn never_echoes_an_inline_password() {
        let source = "[replication]\nuser = \"r\" password = \"hunter2\"\n";
        let text = rendered(source, Diagnostic::at(25..26, "expected newline"));
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains("2 | user = \"r\" password = \"(sensitive)\"\n"),
            "{text}"
        );
        let debug = format!(
            "{:?}",
            ConfigError {
                path: "c.toml".into(),
                source_text: source.into(),
                diagnostics: vec![],
            }
        );
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn bounds_long_messages() {
        let text = rendered(
            "x = 1\n",
            Diagnostic::at(0..1, "y".repeat(5000)).help("z".repeat(5000)),
        );
        assert!(text.len() < 2 * MAX_MESSAGE + 200, "{}", text.len());
    }
}
