//! The TOML layer: turns config text into the typed [`Config`] while collecting *every*
//! unknown key and type error, each with its dotted key path and line number.
//!
//! serde's `deny_unknown_fields` and the `toml` crate stop at the first error, which makes
//! fixing a config a one-error-per-restart loop. So we parse with `toml_edit` (which keeps byte
//! spans), check each table's keys against the fields serde itself declares (one source of
//! truth: [`field_names`]), drop unknown keys, then deserialize each section; when serde
//! rejects a value we report it, drop that key and retry, until the section deserializes.
//! Only a TOML syntax error stops early: past it there is no document to walk.

use std::collections::HashMap;
use std::ops::Range;

use serde::de::{DeserializeOwned, IntoDeserializer};
use toml_edit::{DocumentMut, ImDocument, Item, Table, TableLike, Value};

use super::Problem;
use super::model::{Config, DatabaseConfig, UserConfig};

/// The document's top-level keys: the sections of [`Config`].
const SECTIONS: &[&str] = &[
    "server",
    "tls",
    "pool",
    "routing",
    "slow_query",
    "users",
    "auth_query",
    "databases",
];

/// A typed config read from the document, and where each key was, for later problems.
pub(crate) struct Parsed {
    /// Sections that failed to read are at their defaults; broken entries are left out.
    pub config: Config,
    /// For each `config.users[i]`, its index among the file's `[[users]]` entries.
    pub user_index: Vec<usize>,
    /// For each `config.databases[i]`, its index among the file's `[[databases]]` entries.
    pub database_index: Vec<usize>,
    /// Line of every key path seen ("pool.size", "users[1].name", "users[1]").
    pub locations: Locations,
}

/// Line numbers of the key paths in the document, so semantic checks can say where.
#[derive(Default)]
pub(crate) struct Locations {
    lines: HashMap<String, usize>,
}

impl Locations {
    /// Line of `path`, else of its closest enclosing path (a defaulted key reports its
    /// section's line).
    pub fn line(&self, mut path: &str) -> Option<usize> {
        loop {
            if let Some(line) = self.lines.get(path) {
                return Some(*line);
            }
            path = &path[..path.rfind(['.', '['])?];
        }
    }

    /// A problem about `path`, located at its line.
    pub fn problem(&self, path: impl Into<String>, message: impl Into<String>) -> Problem {
        let path = path.into();
        Problem {
            line: self.line(&path),
            key: Some(path),
            message: message.into(),
        }
    }
}

/// Byte offset -> 1-based line number.
struct LineIndex {
    newlines: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let newlines = text.match_indices('\n').map(|(i, _)| i).collect();
        LineIndex { newlines }
    }

    fn line(&self, offset: usize) -> usize {
        self.newlines.partition_point(|&nl| nl < offset) + 1
    }

    fn span(&self, span: Option<Range<usize>>) -> Option<usize> {
        span.map(|s| self.line(s.start))
    }
}

/// Reads `text` into a [`Parsed`] plus the problems met on the way. A syntax error is the
/// only early exit (one problem, no config).
pub(crate) fn read(text: &str) -> Result<(Parsed, Vec<Problem>), Problem> {
    let lines = LineIndex::new(text);
    let doc = ImDocument::parse(text).map_err(|e| Problem {
        line: lines.span(e.span()),
        key: None,
        message: format!("TOML syntax error: {}", one_line(e.message())),
    })?;
    let mut root = doc.into_table();
    let mut reader = Reader {
        lines,
        locations: Locations::default(),
        problems: Vec::new(),
    };
    let server = reader.section(&mut root, "server");
    let tls = reader.section(&mut root, "tls");
    let pool = reader.section(&mut root, "pool");
    let routing = reader.section(&mut root, "routing");
    let slow_query = reader.section(&mut root, "slow_query");
    let (users, user_index) = reader.entries::<UserConfig>(&mut root, "users");
    let auth_query = reader.section(&mut root, "auth_query");
    let (databases, database_index) = reader.entries::<DatabaseConfig>(&mut root, "databases");
    reader.unknown_keys("", &mut root, SECTIONS);
    let config = Config {
        server,
        tls,
        pool,
        routing,
        slow_query,
        users,
        auth_query,
        databases,
    };
    let parsed = Parsed {
        config,
        user_index,
        database_index,
        locations: reader.locations,
    };
    Ok((parsed, reader.problems))
}

struct Reader {
    lines: LineIndex,
    locations: Locations,
    problems: Vec<Problem>,
}

impl Reader {
    fn problem(&mut self, line: Option<usize>, key: String, message: impl Into<String>) {
        self.problems.push(Problem {
            line,
            key: Some(key),
            message: message.into(),
        });
    }

    /// Records the line of `key` in `table` under `path` and returns it.
    fn locate(&mut self, path: &str, table: &dyn TableLike, key: &str) -> Option<usize> {
        let span = table.key(key).and_then(|k| k.span());
        let span = span.or_else(|| table.get(key).and_then(Item::span));
        let line = self.lines.span(span)?;
        self.locations.lines.insert(path.to_owned(), line);
        Some(line)
    }

    /// Takes the single-table section `name` out of `root`; absent or broken means defaults.
    fn section<T: DeserializeOwned + Default>(&mut self, root: &mut Table, name: &str) -> T {
        self.locate(name, root, name);
        match root.remove(name) {
            None => T::default(),
            Some(item) => self.read_struct(name, item).unwrap_or_default(),
        }
    }

    /// Takes the `[[name]]` entries out of `root`. Returns the entries that read, and for
    /// each its index in the file (broken entries are reported and left out).
    fn entries<T: DeserializeOwned>(
        &mut self,
        root: &mut Table,
        name: &str,
    ) -> (Vec<T>, Vec<usize>) {
        let line = self.locate(name, root, name);
        let elements: Vec<Item> = match root.remove(name) {
            None => return (Vec::new(), Vec::new()),
            Some(Item::ArrayOfTables(tables)) => tables.into_iter().map(Item::Table).collect(),
            Some(Item::Value(Value::Array(values))) => {
                values.into_iter().map(Item::Value).collect()
            }
            Some(other) => {
                let message = format!(
                    "expected `[[{name}]]` entries (an array of tables), found {}",
                    other.type_name()
                );
                self.problem(line, name.to_owned(), message);
                return (Vec::new(), Vec::new());
            }
        };
        let mut read = Vec::new();
        let mut index = Vec::new();
        for (i, element) in elements.into_iter().enumerate() {
            let path = format!("{name}[{i}]");
            if let Some(line) = self.lines.span(element.span()) {
                self.locations.lines.insert(path.clone(), line);
            }
            if let Some(value) = self.read_struct(&path, element) {
                read.push(value);
                index.push(i);
            }
        }
        (read, index)
    }

    /// Reads one table (`[section]` or one `[[entry]]`) at `path` as `T`, reporting every
    /// unknown key and every value serde rejects. `None` only when the table cannot become a
    /// `T` at all (not a table, or a required field missing).
    fn read_struct<T: DeserializeOwned>(&mut self, path: &str, mut item: Item) -> Option<T> {
        let Some(table) = item.as_table_like_mut() else {
            let line = self.locations.line(path);
            let message = format!("expected a table, found {}", item.type_name());
            self.problem(line, path.to_owned(), message);
            return None;
        };
        self.unknown_keys(path, table, field_names::<T>());
        // Each failed round removes one key, so this ends; the bound is belt and braces.
        for _ in 0..=table.len() {
            let error = match deserialize::<T>(item.clone()) {
                Ok(value) => return Some(value),
                Err(error) => error,
            };
            let line = self.lines.span(error.span());
            let message = plain_types(error.message());
            let table = item.as_table_like_mut()?;
            let culprit = error.span().and_then(|span| culprit(table, span.start));
            match culprit {
                Some(key) => {
                    self.problem(line, format!("{path}.{key}"), message);
                    table.remove(&key);
                }
                None => {
                    let line = line.or_else(|| self.locations.line(path));
                    self.problem(line, path.to_owned(), message);
                    return None;
                }
            }
        }
        None
    }

    /// Reports and removes every key of `table` not in `known`; records the others' lines.
    fn unknown_keys(&mut self, path: &str, table: &mut dyn TableLike, known: &[&str]) {
        let keys: Vec<String> = table.iter().map(|(k, _)| k.to_owned()).collect();
        for key in keys {
            let key_path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            let line = self.locate(&key_path, table, &key);
            if !known.contains(&key.as_str()) {
                self.problem(line, key_path, unknown_key_message(&key, known));
                table.remove(&key);
            }
        }
    }
}

/// serde names Rust types ("expected u32"); users wrote TOML, so say what to write.
fn plain_types(message: &str) -> String {
    message
        .replace(
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        )
        .replace("expected u64", "expected a whole number >= 0")
        .replace("expected usize", "expected a whole number >= 0")
        .replace("expected a boolean", "expected true or false")
}

/// `toml_edit` messages may span lines ("invalid table header\nduplicate key ..."); a problem
/// is one line.
fn one_line(message: &str) -> String {
    let parts: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    parts.join(": ")
}

/// The key of `table` whose key or value covers byte `offset`.
fn culprit(table: &dyn TableLike, offset: usize) -> Option<String> {
    let covers = |span: Option<Range<usize>>| span.is_some_and(|s| s.contains(&offset));
    table
        .iter()
        .find(|(key, item)| covers(item.span()) || covers(table.key(key).and_then(|k| k.span())))
        .map(|(key, _)| key.to_owned())
}

fn deserialize<T: DeserializeOwned>(item: Item) -> Result<T, toml_edit::de::Error> {
    match item {
        Item::Table(table) => toml_edit::de::from_document(DocumentMut::from(table)),
        Item::Value(value) => T::deserialize(value.into_deserializer()),
        other => Err(serde::de::Error::custom(format!(
            "expected a table, found {}",
            other.type_name()
        ))),
    }
}

/// "unknown key", with the closest known key when it looks like a typo, else the list.
fn unknown_key_message(key: &str, known: &[&str]) -> String {
    let closest = known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .min()
        .filter(|(d, k)| *d <= 2.max(k.len() / 4));
    match closest {
        Some((_, k)) => format!("unknown key; did you mean `{k}`?"),
        None => format!("unknown key; expected one of: {}", known.join(", ")),
    }
}

/// Levenshtein distance over chars; keys are short.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// The field names serde expects for struct `T`, read from serde itself: a deserializer that
/// records what `deserialize_struct` is called with, then stops. Keeps the known-key sets
/// from drifting away from the model.
pub(crate) fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    match T::deserialize(FieldNames) {
        Err(Captured(fields)) => fields,
        Ok(_) => &[],
    }
}

#[derive(Debug)]
struct Captured(&'static [&'static str]);

impl std::fmt::Display for Captured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field names captured")
    }
}

impl std::error::Error for Captured {}

impl serde::de::Error for Captured {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        Captured(&[])
    }
}

struct FieldNames;

impl<'de> serde::Deserializer<'de> for FieldNames {
    type Error = Captured;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Captured> {
        Err(Captured(&[]))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Captured> {
        Err(Captured(fields))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}
