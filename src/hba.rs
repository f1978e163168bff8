//! pg_hba.conf as text: the markers of pgrepl's managed block, how one
//! rule line is written, and how the block is put into a file without
//! touching the lines outside it. A leaf: it imports nothing of pgrepl.

pub const HBA_BEGIN: &str = "# BEGIN pgrepl managed";
pub const HBA_END: &str = "# END pgrepl managed";

/// One rule line, its columns aligned as in PostgreSQL's sample file.
pub fn rule_line(
    kind: &str,
    database: &str,
    user: &str,
    address: Option<&str>,
    method: &str,
    options: Option<&str>,
) -> String {
    let mut l = format!("{kind:<8} {database:<12} {user:<16}");
    if let Some(a) = address {
        l.push_str(&format!(" {a:<20}"));
    }
    l.push(' ');
    l.push_str(method);
    if let Some(o) = options {
        l.push(' ');
        l.push_str(o);
    }
    l.trim_end().to_string()
}

/// A role name as a pg_hba word. Role names are free text in the file;
/// pg_hba needs quotes around anything that is not a plain word or could
/// read as a keyword.
pub fn quote_word(w: &str) -> String {
    let plain = !w.is_empty()
        && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !["all", "sameuser", "samerole", "samegroup", "replication"].contains(&w);
    if plain {
        w.to_string()
    } else {
        format!("\"{}\"", w.replace('"', "\"\""))
    }
}

/// pg_hba.conf with the managed block in place: the old block removed, the
/// new one before the first rule (after the leading comments, before the
/// comment lines that belong to that rule), every line outside the block
/// kept as it is. The caller checks first that every block is closed
/// ([`unclosed_block`]): an unclosed one would swallow the rules after it.
pub fn render(current: &str, block: &[String]) -> String {
    let outside = outside_block(current);
    let first_rule = block_position(&outside);
    let mut lines: Vec<&str> = outside[..first_rule].to_vec();
    // Keep one blank line before and after the block for readability.
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    let mut out = String::new();
    for l in &lines {
        out.push_str(l);
        out.push('\n');
    }
    if !lines.is_empty() {
        out.push('\n');
    }
    for l in block {
        out.push_str(l);
        out.push('\n');
    }
    let rest: Vec<&str> = outside[first_rule..].to_vec();
    let rest_start = rest
        .iter()
        .position(|l| !l.trim().is_empty())
        .unwrap_or(rest.len());
    if rest_start < rest.len() {
        out.push('\n');
        for l in &rest[rest_start..] {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// The lines of `current` outside every managed block.
fn outside_block(current: &str) -> Vec<&str> {
    let mut outside: Vec<&str> = Vec::new();
    let mut inside = false;
    for line in current.lines() {
        if line.starts_with(HBA_BEGIN) {
            inside = true;
            continue;
        }
        if inside {
            if line.starts_with(HBA_END) {
                inside = false;
            }
            continue;
        }
        outside.push(line);
    }
    outside
}

/// Where the block goes among the `outside` lines: before the first rule,
/// and before the comment lines right above it, which describe it (the
/// block never comes between a comment and its rule).
fn block_position(outside: &[&str]) -> usize {
    let mut first_rule = outside
        .iter()
        .position(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        })
        .unwrap_or(outside.len());
    if first_rule < outside.len() {
        while first_rule > 0 && outside[first_rule - 1].trim_start().starts_with('#') {
            first_rule -= 1;
        }
    }
    first_rule
}

/// The 1-based line of a `# BEGIN pgrepl managed` that no `# END pgrepl
/// managed` closes, if any.
pub fn unclosed_block(current: &str) -> Option<usize> {
    let mut open = None;
    for (i, line) in current.lines().enumerate() {
        if line.starts_with(HBA_BEGIN) {
            open = Some(i + 1);
        } else if line.starts_with(HBA_END) {
            open = None;
        }
    }
    open
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_when_needed() {
        assert_eq!(quote_word("replicator"), "replicator");
        assert_eq!(quote_word("all"), "\"all\"");
        assert_eq!(quote_word("we\"ird user"), "\"we\"\"ird user\"");
    }

    #[test]
    fn the_block_goes_before_the_first_rule_and_its_comments() {
        let block = vec![
            HBA_BEGIN.to_string(),
            "host all all ::1/128 trust".into(),
            HBA_END.into(),
        ];
        let current = "# header\n\n# local rule\nlocal all all peer\n";
        assert_eq!(
            render(current, &block),
            format!(
                "# header\n\n{HBA_BEGIN}\nhost all all ::1/128 trust\n{HBA_END}\n\n# local rule\nlocal all all peer\n"
            )
        );
        // Idempotent: the old block is replaced, not repeated.
        let once = render(current, &block);
        assert_eq!(render(&once, &block), once);
    }

    #[test]
    fn an_unclosed_block_is_found() {
        assert_eq!(unclosed_block(&format!("a\n{HBA_BEGIN}\nb\n")), Some(2));
        assert_eq!(unclosed_block(&format!("{HBA_BEGIN}\n{HBA_END}\n")), None);
    }
}
