//! How a command reaches the node, and the one place an argument vector
//! becomes the remote command line. sshd hands that line to the login shell,
//! so every argument is single-quoted: nothing in an argument is ever
//! interpreted.
//!
//! `Access` is where other ways in slot in (SSH + `sudo -n -u postgres`,
//! SSH + `docker exec CONTAINER`): each wraps the argument vector before it
//! is quoted (`wrap`), and nothing above this module changes. A variant
//! that needs data (a container name) borrows it from the cluster file, so
//! that `Access`, and `Node` with it, stay `Copy`.

use crate::config;
use crate::transport::RemoteCommand;

/// How commands run on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// SSH as `[ssh].user`, the user that runs PostgreSQL: a command runs
    /// as it is.
    Direct,
}

impl Access {
    /// The way in that the cluster file gives `node`.
    pub fn of(_node: &config::Node) -> Access {
        Access::Direct
    }

    /// The argument vector that runs `argv` on the node this way.
    fn wrap<'a, S: AsRef<str>>(&self, argv: &'a [S]) -> Vec<&'a str> {
        match self {
            Access::Direct => argv.iter().map(AsRef::as_ref).collect(),
        }
    }

    /// The remote command for `argv`: wrapped, then each argument quoted.
    pub fn command<S: AsRef<str>>(&self, argv: &[S]) -> RemoteCommand {
        RemoteCommand {
            line: command_line(&self.wrap(argv)),
            program: argv.first().map_or("", AsRef::as_ref).to_string(),
        }
    }
}

/// Quotes one argument for a POSIX shell: `'...'` with each `'` as `'\''`.
/// Plain words made only of safe characters are left bare for readability.
fn shell_quote(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if safe {
        return arg.to_string();
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('\'');
    for ch in arg.chars() {
        if ch == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(ch);
        }
    }
    out.push('\'');
    out
}

/// The command line for an argument vector: each argument quoted, joined by spaces.
fn command_line<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|a| shell_quote(a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Runs the quoted line through a real `sh` and returns the argv it saw.
    fn roundtrip(args: &[&str]) -> Vec<String> {
        let line = format!("printf '%s\\0' {}", command_line(args));
        let out = Command::new("sh")
            .arg("-c")
            .arg(&line)
            .output()
            .expect("sh");
        assert!(out.status.success(), "{line}");
        let text = String::from_utf8(out.stdout).expect("utf8");
        text.split('\0')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    #[test]
    fn plain_words_stay_bare() {
        assert_eq!(shell_quote("pg_ctl"), "pg_ctl");
        assert_eq!(
            shell_quote("/var/lib/postgresql/15/main"),
            "/var/lib/postgresql/15/main"
        );
        assert_eq!(shell_quote("-D"), "-D");
    }

    #[test]
    fn empty_argument_is_kept() {
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn hostile_arguments_reach_the_program_intact() {
        let hostile = [
            "it's",
            "a b",
            "$(touch /tmp/pgrepl-pwned)",
            "`id`",
            "line1\nline2",
            "\"double\"",
            "back\\slash",
            "semi;colon && rm -rf /nonexistent",
            "*",
            "~",
            "$HOME",
            "'",
            "''",
            "tab\there",
            "ünïcødé",
            "-n",
        ];
        assert_eq!(roundtrip(&hostile), hostile);
        assert!(!std::path::Path::new("/tmp/pgrepl-pwned").exists());
    }

    #[test]
    fn command_line_joins_with_spaces() {
        assert_eq!(command_line(&["ls", "-l", "a b"]), "ls -l 'a b'");
    }

    #[test]
    fn direct_access_runs_the_command_as_it_is() {
        let cmd = Access::Direct.command(&["pg_ctl", "status", "-D", "/data dir"]);
        assert_eq!(cmd.line, "pg_ctl status -D '/data dir'");
        assert_eq!(cmd.program, "pg_ctl");
    }
}
