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

/// Text from a node (an hba line, a server's error, a setting's value) as
/// a terminal may show it: every control character but newline and tab
/// (ESC, CR, BEL, backspace, DEL, the C1 range) written as `\xHH` or
/// `\u{HHHH}`, so a node cannot move the cursor, clear the screen or
/// rewrite a line already printed. A backslash is left as it is.
pub fn terminal(text: &str) -> std::borrow::Cow<'_, str> {
    escape_controls(text, false)
}

/// `terminal`, but keeping the colour sequences (`ESC [ digits;... m`) that
/// pgrepl's own rendering painted into text already escaped.
pub fn terminal_painted(text: &str) -> std::borrow::Cow<'_, str> {
    escape_controls(text, true)
}

fn escape_controls(text: &str, keep_colors: bool) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if keep_colors && c == '\x1b' {
            let params = rest[2.min(rest.len())..]
                .find(|p: char| !(p.is_ascii_digit() || p == ';'))
                .map(|n| n + 2);
            if rest.starts_with("\x1b[") && params.is_some_and(|n| rest[n..].starts_with('m')) {
                let n = params.unwrap_or(2) + 1;
                out.push_str(&rest[..n]);
                rest = &rest[n..];
                continue;
            }
        }
        match c {
            c if !unsafe_char(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
        rest = &rest[c.len_utf8()..];
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn terminal_text_has_no_control_characters_but_newline_and_tab() {
        assert_eq!(
            terminal("host all all 10.0.0.0/8 scram-sha-256"),
            "host all all 10.0.0.0/8 scram-sha-256"
        );
        assert_eq!(
            terminal("a\x1b[2Jb\rc\x07d\x7f"),
            "a\\x1b[2Jb\\x0dc\\x07d\\x7f"
        );
        assert_eq!(terminal("line\n\tnext"), "line\n\tnext");
        assert_eq!(terminal("csi \u{9b}2J"), "csi \\u{9b}2J");
        assert_eq!(terminal("ü \\ ok"), "ü \\ ok");
        assert_eq!(terminal("\x1b[31mred\x1b[0m"), "\\x1b[31mred\\x1b[0m");
        assert_eq!(
            terminal_painted("\x1b[31mred\x1b[0m \x1b[2J \x1b]0;t\x07 \x1b[1;32m \x1b["),
            "\x1b[31mred\x1b[0m \\x1b[2J \\x1b]0;t\\x07 \x1b[1;32m \\x1b["
        );
    }

    proptest! {
        #[test]
        fn terminal_text_never_holds_a_control_character(s in "\\PC*|[\\x00-\\x{a0}]*") {
            let t = terminal(&s);
            prop_assert!(!t.chars().any(|c| c.is_control() && c != '\n' && c != '\t'));
        }
    }

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
