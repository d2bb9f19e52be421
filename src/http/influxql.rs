//! The two InfluxQL statements `/query` answers: `CREATE DATABASE <name>`
//! (Telegraf's v1 output and the Python `influxdb` client send it before
//! writing) and `SHOW DATABASES`. Everything else is refused with a message
//! saying that queries are not served. Pure, allocation-free: names borrow
//! the query text.

/// A statement `/query` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Statement<'a> {
    /// `CREATE DATABASE name [WITH ...]` (the retention clause is accepted and ignored).
    CreateDatabase(&'a str),
    ShowDatabases,
}

/// Why a query is refused (400).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryRefused {
    #[error("missing required parameter \"q\"")]
    Missing,
    #[error(
        "metricsstream is a write-only InfluxDB endpoint: queries are not served \
         (only CREATE DATABASE and SHOW DATABASES are answered)"
    )]
    NotServed,
    #[error("error parsing query: bad database name (quoted names with escapes are not supported)")]
    BadName,
    #[error("error parsing query: one statement per request")]
    MultipleStatements,
}

/// Longest database name accepted (InfluxDB has no hard limit; a bound
/// keeps the registry of created names small).
pub const MAX_NAME_BYTES: usize = 128;

/// Parses `q`: one statement, keywords case-insensitive, an optional trailing `;`.
pub fn parse(q: &str) -> Result<Statement<'_>, QueryRefused> {
    let q = q.trim();
    let q = q.strip_suffix(';').unwrap_or(q).trim_end();
    if q.is_empty() {
        return Err(QueryRefused::Missing);
    }
    let mut words = Words { rest: q };
    let (first, second) = (words.keyword(), words.keyword());
    match (first, second) {
        (Some(a), Some(b)) if a.eq_ignore_ascii_case("show") && b.eq_ignore_ascii_case("databases") => {
            match words.rest.trim() {
                "" => Ok(Statement::ShowDatabases),
                rest if rest.contains(';') => Err(QueryRefused::MultipleStatements),
                _ => Err(QueryRefused::NotServed),
            }
        }
        (Some(a), Some(b)) if a.eq_ignore_ascii_case("create") && b.eq_ignore_ascii_case("database") => {
            let name = words.identifier()?;
            let rest = words.rest.trim();
            if rest.contains(';') {
                return Err(QueryRefused::MultipleStatements);
            }
            let with = rest.split_ascii_whitespace().next();
            if with.is_some_and(|w| !w.eq_ignore_ascii_case("with")) {
                return Err(QueryRefused::BadName);
            }
            Ok(Statement::CreateDatabase(name))
        }
        _ if q.contains(';') => Err(QueryRefused::MultipleStatements),
        _ => Err(QueryRefused::NotServed),
    }
}

struct Words<'a> {
    rest: &'a str,
}

impl<'a> Words<'a> {
    fn keyword(&mut self) -> Option<&'a str> {
        let s = self.rest.trim_start();
        let end = s.find(|c: char| c.is_ascii_whitespace()).unwrap_or(s.len());
        let (word, rest) = s.split_at(end);
        self.rest = rest;
        (!word.is_empty()).then_some(word)
    }

    /// A bare identifier (`[A-Za-z_][A-Za-z0-9_]*`) or a double-quoted one without escapes.
    fn identifier(&mut self) -> Result<&'a str, QueryRefused> {
        let s = self.rest.trim_start();
        let (name, rest) = if let Some(quoted) = s.strip_prefix('"') {
            let end = quoted.find('"').ok_or(QueryRefused::BadName)?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
            let name = &s[..end];
            if name.starts_with(|c: char| c.is_ascii_digit()) {
                return Err(QueryRefused::BadName);
            }
            (name, &s[end..])
        };
        if name.is_empty() || name.len() > MAX_NAME_BYTES || name.contains(['\\', '\n', '\r']) {
            return Err(QueryRefused::BadName);
        }
        self.rest = rest;
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statements_clients_send() {
        // Telegraf's v1 output, the Python influxdb client, curl users.
        assert_eq!(parse("CREATE DATABASE \"telegraf\""), Ok(Statement::CreateDatabase("telegraf")));
        assert_eq!(parse("CREATE DATABASE \"my db\";"), Ok(Statement::CreateDatabase("my db")));
        assert_eq!(parse("create database mydb"), Ok(Statement::CreateDatabase("mydb")));
        assert_eq!(
            parse("CREATE DATABASE x WITH DURATION 7d REPLICATION 1 NAME \"week\""),
            Ok(Statement::CreateDatabase("x"))
        );
        assert_eq!(parse("  SHOW   DATABASES ; "), Ok(Statement::ShowDatabases));
        assert_eq!(parse("show databases"), Ok(Statement::ShowDatabases));
    }

    #[test]
    fn everything_else_is_refused_with_a_reason() {
        assert_eq!(parse(""), Err(QueryRefused::Missing));
        assert_eq!(parse("SELECT * FROM cpu"), Err(QueryRefused::NotServed));
        assert_eq!(parse("SHOW MEASUREMENTS"), Err(QueryRefused::NotServed));
        assert_eq!(parse("DROP DATABASE x"), Err(QueryRefused::NotServed));
        assert_eq!(parse("SHOW DATABASES; SELECT 1"), Err(QueryRefused::MultipleStatements));
        assert_eq!(parse("CREATE DATABASE a; CREATE DATABASE b"), Err(QueryRefused::MultipleStatements));
        assert_eq!(parse("CREATE DATABASE"), Err(QueryRefused::BadName));
        assert_eq!(parse("CREATE DATABASE \"a\\\"b\""), Err(QueryRefused::BadName));
        assert_eq!(parse("CREATE DATABASE 1x"), Err(QueryRefused::BadName));
        assert_eq!(parse("CREATE DATABASE x y"), Err(QueryRefused::BadName));
        assert_eq!(parse("CREATE DATABASE \"unterminated"), Err(QueryRefused::BadName));
        assert!(QueryRefused::NotServed.to_string().contains("queries are not served"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = parse(&s);
        }
    }
}
