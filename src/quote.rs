//! Quoting for PostgreSQL's own parsers, where a value cannot travel as a
//! query parameter: SQL literals and identifiers (`ALTER SYSTEM`,
//! `CREATE ROLE`), setting names, and configuration-file values
//! (postgresql.auto.conf written while the server is stopped). A leaf: the
//! planner and the nodes' SQL use the same rules.
//!
//! PostgreSQL text cannot hold a NUL byte; `node::sql` refuses to send a
//! statement that holds one.

/// A single-quoted SQL literal: `'` doubled; `E'...'` with `\` doubled when
/// a backslash is present, so the value reads the same whatever
/// `standard_conforming_strings` says.
pub fn sql_literal(s: &str) -> String {
    let body = s.replace('\'', "''");
    if s.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

/// A double-quoted SQL identifier (a role name): `"` doubled.
pub fn sql_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A setting name as `ALTER SYSTEM`, `SET` and a configuration file take it
/// bare: names come from the catalog or are `ext.name`, plain lower-case
/// words only; anything else is refused.
pub fn setting_name(name: &str) -> anyhow::Result<&str> {
    let ok = !name.is_empty()
        && name.split('.').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
    if ok {
        Ok(name)
    } else {
        anyhow::bail!("refusing to set a setting named {name:?}")
    }
}

/// A value as a configuration file needs it: single-quoted, with `'`
/// doubled and `\` escaped (PostgreSQL's configuration parser reads
/// backslash escapes in quoted values).
pub fn conf_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// PostgreSQL's lexer for a string constant, as its documentation
    /// (4.1.2.1, 4.1.2.2) describes it: `'...'` with `''`, or `E'...'`
    /// with `''` and backslash escapes (only `\\` and `\'` used here).
    fn lex_literal(lit: &str) -> Option<String> {
        let (escapes, body) = match lit.strip_prefix("E'") {
            Some(b) => (true, b),
            None => (false, lit.strip_prefix('\'')?),
        };
        let mut out = String::new();
        let mut chars = body.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    out.push('\'');
                }
                '\'' => return chars.next().is_none().then_some(out),
                '\\' if escapes => out.push(chars.next()?),
                c => out.push(c),
            }
        }
        None
    }

    fn lex_ident(ident: &str) -> Option<String> {
        let body = ident.strip_prefix('"')?.strip_suffix('"')?;
        let mut out = String::new();
        let mut chars = body.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '"' {
                (chars.next() == Some('"')).then_some(())?;
            }
            out.push(c);
        }
        Some(out)
    }

    const HOSTILE: [&str; 12] = [
        "",
        "it's",
        "'",
        "''",
        "back\\slash",
        "\\'; DROP ROLE postgres; --",
        "E'x'",
        "$$ $tag$ $1",
        "\"quoted\"",
        "line1\nline2\ttab",
        "ünïcødé ☃ 𝄞",
        "host=a passfile='/x y' \\",
    ];

    #[test]
    fn literals_read_back_as_their_value() {
        for v in HOSTILE {
            let lit = sql_literal(v);
            assert_eq!(lex_literal(&lit).as_deref(), Some(v), "{lit}");
        }
        assert_eq!(sql_literal("it's"), "'it''s'");
        assert_eq!(sql_literal("C:\\dir"), "E'C:\\\\dir'");
        assert_eq!(sql_literal(""), "''");
    }

    #[test]
    fn identifiers_read_back_as_their_name() {
        for v in HOSTILE {
            let ident = sql_ident(v);
            assert_eq!(lex_ident(&ident).as_deref(), Some(v), "{ident}");
        }
        assert_eq!(sql_ident("replicator"), "\"replicator\"");
        assert_eq!(sql_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn setting_names_are_plain_words() {
        for ok in ["work_mem", "pg_stat_statements.max", "x1.y_2"] {
            assert_eq!(setting_name(ok).ok(), Some(ok));
        }
        for bad in [
            "",
            "Work_mem",
            "work_mem = 1; DROP",
            "a..b",
            ".a",
            "a.",
            "a b",
            "ä",
            "x\0",
            "-x",
        ] {
            assert!(setting_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn conf_values_read_back_through_pgrepls_parser() {
        for v in HOSTILE {
            let line = format!("x = {}", conf_value(v));
            let read = crate::observed::parse::conf_settings(&line);
            // A newline ends a configuration line: never a value's.
            if !v.contains('\n') {
                assert_eq!(read["x"], v, "{line}");
            }
        }
    }

    proptest! {
        #[test]
        fn any_text_survives_quoting(s in "\\PC*") {
            prop_assert_eq!(lex_literal(&sql_literal(&s)), Some(s.clone()));
            prop_assert_eq!(lex_ident(&sql_ident(&s)), Some(s));
        }
    }
}
