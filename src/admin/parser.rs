//! The admin console's command language: `SHOW POOLS`, `PAUSE appdb`, `KILL "My DB"`, ...
//! Keywords are case-insensitive; whitespace, `--` and `/* */` comments and empty statements
//! between `;` are ignored; a database argument is a bare word (taken as typed, not folded
//! to lower case, so it matches the config's spelling) or a double-quoted identifier (`""`
//! inside is one `"`).
//!
//! Sans-IO and total: any text gives commands or a [`ParseError`], never a panic. It does not
//! check that a database exists (the command does, against the config in force).

/// What `SHOW` can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    Help,
    Version,
    Pools,
    Clients,
    Servers,
    Databases,
    Replicas,
    Stats,
    Queries,
    Slow,
    Config,
}

impl Show {
    /// Every `SHOW` item, in `SHOW HELP` order, with its keyword.
    pub const ALL: [(Show, &'static str); 11] = [
        (Show::Help, "HELP"),
        (Show::Version, "VERSION"),
        (Show::Pools, "POOLS"),
        (Show::Clients, "CLIENTS"),
        (Show::Servers, "SERVERS"),
        (Show::Databases, "DATABASES"),
        (Show::Replicas, "REPLICAS"),
        (Show::Stats, "STATS"),
        (Show::Queries, "QUERIES"),
        (Show::Slow, "SLOW"),
        (Show::Config, "CONFIG"),
    ];

    fn from_word(word: &str) -> Option<Show> {
        Show::ALL
            .iter()
            .find(|(_, k)| k.eq_ignore_ascii_case(word))
            .map(|(s, _)| *s)
    }
}

/// One console command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Show(Show),
    Reload,
    /// `PAUSE` (every database) or `PAUSE db`.
    Pause(Option<String>),
    /// `RESUME` (everything paused) or `RESUME db`.
    Resume(Option<String>),
    Kill(String),
    Shutdown,
}

/// Why a text is not a list of commands: the message for the client (SQLSTATE `42601`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A bare word, as typed.
    Word(String),
    /// A double-quoted identifier, unescaped.
    Quoted(String),
    Semicolon,
}

/// Parses a Query message's text. An empty list means the text held no command (the client
/// gets EmptyQueryResponse). Nothing is returned unless every statement parses, so a typo
/// late in the text cannot leave the earlier commands half-run.
pub fn parse(text: &str) -> Result<Vec<Command>, ParseError> {
    let tokens = tokenize(text)?;
    tokens
        .split(|t| *t == Token::Semicolon)
        .filter(|s| !s.is_empty())
        .map(statement)
        .collect()
}

const UNKNOWN_HINT: &str = "SHOW HELP lists the commands";

fn unknown(what: &str) -> ParseError {
    ParseError(format!("unknown command \"{what}\": {UNKNOWN_HINT}"))
}

fn statement(tokens: &[Token]) -> Result<Command, ParseError> {
    let (first, args) = match tokens.split_first() {
        Some((Token::Word(w), args)) => (w.as_str(), args),
        Some((Token::Quoted(q), _)) => return Err(unknown(q)),
        // `split` removed the semicolons and `parse` the empty statements.
        Some((Token::Semicolon, _)) | None => return Err(unknown("")),
    };
    let keyword = first.to_ascii_uppercase();
    match keyword.as_str() {
        "SHOW" => {
            let Some(item) = args.first() else {
                return Err(ParseError(format!(
                    "SHOW needs what to show, e.g. SHOW POOLS: {UNKNOWN_HINT}"
                )));
            };
            let show = match item {
                Token::Word(w) => Show::from_word(w).ok_or_else(|| unknown(&format!("SHOW {w}"))),
                Token::Quoted(q) => Err(unknown(&format!("SHOW \"{q}\""))),
                Token::Semicolon => Err(unknown("SHOW")),
            }?;
            if args.len() > 1 {
                return Err(ParseError(format!(
                    "SHOW {} takes no argument",
                    Show::ALL
                        .iter()
                        .find(|(s, _)| *s == show)
                        .map_or("", |(_, k)| k)
                )));
            }
            Ok(Command::Show(show))
        }
        "RELOAD" => no_args("RELOAD", args).map(|()| Command::Reload),
        "SHUTDOWN" => no_args("SHUTDOWN", args).map(|()| Command::Shutdown),
        "PAUSE" => optional_database("PAUSE", args).map(Command::Pause),
        "RESUME" => optional_database("RESUME", args).map(Command::Resume),
        "KILL" => match optional_database("KILL", args)? {
            Some(db) => Ok(Command::Kill(db)),
            None => Err(ParseError(
                "KILL needs a database name: KILL db (PAUSE without one pauses everything)"
                    .to_owned(),
            )),
        },
        _ => Err(unknown(first)),
    }
}

fn no_args(command: &str, args: &[Token]) -> Result<(), ParseError> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(ParseError(format!("{command} takes no argument")))
    }
}

fn optional_database(command: &str, args: &[Token]) -> Result<Option<String>, ParseError> {
    match args {
        [] => Ok(None),
        [Token::Word(w) | Token::Quoted(w)] => Ok(Some(w.clone())),
        _ => Err(ParseError(format!(
            "{command} takes at most one argument, a database name"
        ))),
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, ParseError> {
    let mut tokens = Vec::new();
    let mut rest = text;
    loop {
        rest = skip_blank(rest)?;
        let Some(c) = rest.chars().next() else {
            return Ok(tokens);
        };
        match c {
            ';' => {
                tokens.push(Token::Semicolon);
                rest = &rest[1..];
            }
            '"' => {
                let (ident, after) = quoted(&rest[1..])?;
                tokens.push(Token::Quoted(ident));
                rest = after;
            }
            _ => {
                let end = word_end(rest);
                tokens.push(Token::Word(rest[..end].to_owned()));
                rest = &rest[end..];
            }
        }
    }
}

/// Skips whitespace and comments; an unterminated `/*` is an error, as in Postgres.
fn skip_blank(mut s: &str) -> Result<&str, ParseError> {
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix("--") {
            s = after.find('\n').map_or("", |i| &after[i + 1..]);
        } else if let Some(after) = s.strip_prefix("/*") {
            s = after
                .find("*/")
                .map(|i| &after[i + 2..])
                .ok_or_else(|| ParseError("unterminated /* comment".to_owned()))?;
        } else {
            return Ok(s);
        }
    }
}

/// Where a bare word ends: at whitespace, `;`, `"` or the start of a comment.
fn word_end(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let comment = (c == b'-' && b.get(i + 1) == Some(&b'-'))
            || (c == b'/' && b.get(i + 1) == Some(&b'*'));
        if c.is_ascii_whitespace() || c == b';' || c == b'"' || comment {
            break;
        }
        i += 1;
    }
    // Every stop byte is ASCII, so `i` is a char boundary.
    i
}

/// The identifier after an opening `"`, and the text after its closing one.
fn quoted(s: &str) -> Result<(String, &str), ParseError> {
    let mut ident = String::new();
    let mut rest = s;
    loop {
        let Some(i) = rest.find('"') else {
            return Err(ParseError("unterminated quoted identifier".to_owned()));
        };
        ident.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        match rest.strip_prefix('"') {
            Some(after) => {
                ident.push('"');
                rest = after;
            }
            None if ident.is_empty() => {
                return Err(ParseError("zero-length delimited identifier".to_owned()));
            }
            None => return Ok((ident, rest)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Command {
        match parse(text) {
            Ok(v) if v.len() == 1 => v.into_iter().next().unwrap_or(Command::Reload),
            other => panic!("{text:?}: {other:?}"),
        }
    }

    fn err(text: &str) -> String {
        parse(text).expect_err(text).0
    }

    #[test]
    fn keywords_are_case_insensitive_and_blanks_ignored() {
        assert_eq!(one("show pools"), Command::Show(Show::Pools));
        assert_eq!(one("  Show\tPOOLS ;  "), Command::Show(Show::Pools));
        assert_eq!(
            one("SHOW /* x */ slow -- trailing"),
            Command::Show(Show::Slow)
        );
        assert_eq!(one("-- first\nshow config;"), Command::Show(Show::Config));
        for (show, word) in Show::ALL {
            assert_eq!(
                one(&format!("show {}", word.to_lowercase())),
                Command::Show(show)
            );
        }
        assert_eq!(one("reload"), Command::Reload);
        assert_eq!(one("SHUTDOWN;"), Command::Shutdown);
    }

    #[test]
    fn database_arguments_bare_or_quoted() {
        assert_eq!(one("pause"), Command::Pause(None));
        assert_eq!(one("PAUSE appDB"), Command::Pause(Some("appDB".into())));
        assert_eq!(
            one("resume \"my \"\"db\"\";\""),
            Command::Resume(Some("my \"db\";".into()))
        );
        assert_eq!(one("kill app_db-2;"), Command::Kill("app_db-2".into()));
        assert_eq!(one("KILL\"x\""), Command::Kill("x".into()));
    }

    #[test]
    fn several_commands_and_empty_texts() {
        assert_eq!(
            parse("show pools; ; pause a;resume a").unwrap(),
            vec![
                Command::Show(Show::Pools),
                Command::Pause(Some("a".into())),
                Command::Resume(Some("a".into()))
            ]
        );
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(parse(" ;; -- nothing\n").unwrap(), vec![]);
    }

    #[test]
    fn unknown_commands_name_themselves_and_point_at_help() {
        let e = err("select 1");
        assert!(e.contains("\"select\"") && e.contains("SHOW HELP"), "{e}");
        let e = err("SHOW lists");
        assert!(
            e.contains("\"SHOW lists\"") && e.contains("SHOW HELP"),
            "{e}"
        );
        assert!(err("show").contains("SHOW HELP"));
        assert!(err("\"show\" pools").contains("unknown command"));
    }

    #[test]
    fn wrong_arguments() {
        assert!(err("show pools extra").contains("takes no argument"));
        assert!(err("reload now").contains("RELOAD takes no argument"));
        assert!(err("pause a b").contains("at most one"));
        assert!(err("kill").contains("KILL needs a database"));
        assert!(err("kill a b").contains("at most one"));
        assert!(err("pause \"a").contains("unterminated"));
        assert!(err("pause \"\"").contains("zero-length"));
        assert!(err("show pools /* open").contains("unterminated"));
    }

    #[test]
    fn a_bad_statement_anywhere_runs_nothing() {
        assert!(parse("pause a; shutdwn").is_err());
    }

    #[test]
    fn arbitrary_text_never_panics() {
        let mut rng = crate::test_rng::Rng(0xAD_317);
        let alphabet: Vec<char> = "sShowPOLaUEKi; \"-/*\n\té€x".chars().collect();
        for _ in 0..20_000 {
            let len = rng.below(24);
            let text: String = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            let _ = parse(&text);
        }
    }
}
