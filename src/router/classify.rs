//! STUB (replaced by the classify branch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Read,
    Begin,
    Write,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hint {
    Primary,
    Replica,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub class: Class,
    pub hint: Option<Hint>,
}
pub struct Classifier;
impl Classifier {
    pub fn new(_write_functions: &[String], _cache_entries: usize) -> Classifier {
        Classifier
    }
    pub fn classify(&self, sql: &[u8], _std_strings: bool) -> Verdict {
        let t = String::from_utf8_lossy(sql).to_ascii_lowercase();
        let hint = if t.contains("lagoon:primary") {
            Some(Hint::Primary)
        } else if t.contains("lagoon:replica") {
            Some(Hint::Replica)
        } else {
            None
        };
        let t = t.trim_start();
        let class =
            if t.starts_with("select") && !t.contains("for update") && !t.contains("nextval") {
                Class::Read
            } else if t.starts_with("begin read only") {
                Class::Read
            } else if t.starts_with("begin") {
                Class::Begin
            } else {
                Class::Write
            };
        Verdict { class, hint }
    }
}
