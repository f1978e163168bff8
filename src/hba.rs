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

/// An `include`, `include_if_exists` or `include_dir` line of pg_hba.conf
/// (PostgreSQL 16+): its 1-based line, keyword and path as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    pub line: usize,
    pub keyword: String,
    pub path: String,
}

/// The include directives that stand before the managed block (all of
/// them when there is no block): the rules they pull in are matched
/// before the block's. A directive is kept where it is, like every line
/// outside the block.
pub fn includes_before_block(current: &str) -> Vec<Include> {
    let mut found = Vec::new();
    for (i, line) in current.lines().enumerate() {
        if line.starts_with(HBA_BEGIN) {
            break;
        }
        let mut words = line.split_whitespace();
        let Some(keyword) = words.next() else {
            continue;
        };
        if !["include", "include_if_exists", "include_dir"].contains(&keyword) {
            continue;
        }
        let rest = line.trim_start()[keyword.len()..].trim();
        let path = rest.split('#').next().unwrap_or("").trim();
        let path = path
            .strip_prefix('"')
            .and_then(|p| p.strip_suffix('"'))
            .unwrap_or(path);
        found.push(Include {
            line: i + 1,
            keyword: keyword.to_string(),
            path: path.to_string(),
        });
    }
    found
}

/// One rule as `pg_hba_file_rules` shows it, with the file it comes from
/// (PostgreSQL 16+: `rule_number`, `file_name`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileRule {
    /// Its place in the order PostgreSQL matches rules.
    pub rule_number: i32,
    pub file_name: String,
    pub line_number: i32,
    /// `host`, `hostssl`, `local`, ...
    pub kind: String,
    pub database: Vec<String>,
    pub user_name: Vec<String>,
    /// `all`, `samehost`, `samenet`, an IP address or a host name; `None`
    /// for `local`.
    pub address: Option<String>,
    pub netmask: Option<String>,
}

/// A connection a managed rule admits: TCP, to `database` (`replication`
/// for a walsender), as `user`, from `client` (an address or a host name).
pub struct Connection<'a> {
    pub database: &'a str,
    pub user: &'a str,
    pub client: &'a str,
}

impl FileRule {
    /// Whether this rule would be the first match of `c` if it came first:
    /// PostgreSQL's own matching, with what cannot be known here (group
    /// membership `+role`, `samenet`, host names, `@file` lists) counted
    /// as a match.
    pub fn may_match(&self, c: &Connection) -> bool {
        if self.kind == "local" {
            return false;
        }
        let db_ok = self.database.iter().any(|d| {
            d == c.database
                || d.starts_with('@')
                || (c.database != "replication"
                    && ["all", "sameuser", "samerole"].contains(&d.as_str()))
        });
        let user_ok = self
            .user_name
            .iter()
            .any(|u| u == "all" || u == c.user || u.starts_with('+') || u.starts_with('@'));
        db_ok && user_ok && self.address_may_match(c.client)
    }

    fn address_may_match(&self, client: &str) -> bool {
        let Some(address) = self.address.as_deref() else {
            return false;
        };
        let (Ok(ip), Ok(net)) = (
            client.parse::<core::net::IpAddr>(),
            address.parse::<core::net::IpAddr>(),
        ) else {
            // all, samehost, samenet, a host name: may match.
            return true;
        };
        let mask = self
            .netmask
            .as_deref()
            .and_then(|m| m.parse::<core::net::IpAddr>().ok());
        match (ip, net, mask) {
            (
                core::net::IpAddr::V4(a),
                core::net::IpAddr::V4(n),
                Some(core::net::IpAddr::V4(m)),
            ) => u32::from(a) & u32::from(m) == u32::from(n) & u32::from(m),
            (
                core::net::IpAddr::V6(a),
                core::net::IpAddr::V6(n),
                Some(core::net::IpAddr::V6(m)),
            ) => u128::from(a) & u128::from(m) == u128::from(n) & u128::from(m),
            (a, n, None) => a == n,
            _ => false,
        }
    }
}

/// The rules of included files that PostgreSQL matches before the
/// managed block of `current` (the main file, `hba_file`): those numbered
/// before the block's first rule, or all of them when the block has none
/// yet or the file no block.
pub fn included_before_block<'r>(
    current: &str,
    hba_file: &str,
    rules: &'r [FileRule],
) -> Vec<&'r FileRule> {
    let Some(begin) = current.lines().position(|l| l.starts_with(HBA_BEGIN)) else {
        return Vec::new();
    };
    let first_block_rule = rules
        .iter()
        .filter(|r| r.file_name == hba_file && r.line_number > begin as i32)
        .map(|r| r.rule_number)
        .min()
        .unwrap_or(i32::MAX);
    rules
        .iter()
        .filter(|r| r.file_name != hba_file && r.rule_number < first_block_rule)
        .collect()
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
    fn include_directives_before_the_block_are_found() {
        let current = format!(
            "# c\ninclude_dir conf.d\ninclude_if_exists \"/etc/x y.conf\" # note\nhost all all 0.0.0.0/0 md5\n{HBA_BEGIN}\ninclude after.conf\n{HBA_END}\ninclude late.conf\n"
        );
        let found = includes_before_block(&current);
        assert_eq!(
            found,
            vec![
                Include {
                    line: 2,
                    keyword: "include_dir".into(),
                    path: "conf.d".into()
                },
                Include {
                    line: 3,
                    keyword: "include_if_exists".into(),
                    path: "/etc/x y.conf".into()
                },
            ]
        );
        // `includes` in a word, or a comment, is not a directive.
        assert!(includes_before_block("# include x\nhost includex all all trust\n").is_empty());
    }

    #[test]
    fn include_lines_are_kept_and_the_block_goes_above_them() {
        let block = vec![
            HBA_BEGIN.to_string(),
            "host replication r 10.0.0.2/32 scram-sha-256".into(),
            HBA_END.into(),
        ];
        let current = format!(
            "include_dir conf.d\n{HBA_BEGIN}\nold\n{HBA_END}\ninclude_if_exists extra.conf\n"
        );
        let out = render(&current, &block);
        assert_eq!(
            out,
            format!(
                "{HBA_BEGIN}\nhost replication r 10.0.0.2/32 scram-sha-256\n{HBA_END}\n\ninclude_dir conf.d\ninclude_if_exists extra.conf\n"
            )
        );
        assert!(includes_before_block(&out).is_empty());
    }

    #[test]
    fn an_unclosed_block_is_found() {
        assert_eq!(unclosed_block(&format!("a\n{HBA_BEGIN}\nb\n")), Some(2));
        assert_eq!(unclosed_block(&format!("{HBA_BEGIN}\n{HBA_END}\n")), None);
    }
}
