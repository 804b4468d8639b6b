//! What `maskgate policy check` prints: every problem with its place in the files.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::Location;

/// Errors refuse the whole policy; warnings are printed but the policy is used, so an
/// operator can tell "this will not load" from "this loads but looks suspicious".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Something the reader should look at; the policy still loads.
    Warning,
    /// The policy is refused.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// One finding, pointing at the key or value it is about. Messages never contain a
/// verifier or a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where to look.
    pub location: Location,
    /// Whether it blocks loading.
    pub severity: Severity,
    /// What is wrong.
    pub message: String,
    /// What to do about it, when there is something useful to say.
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.location, self.severity, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every error found in a policy (never only the first), so one `check` run is enough to
/// fix a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors(pub Vec<Diagnostic>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, diagnostic) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

/// A position before it is turned into line and column: which loaded file, which byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub file: usize,
    pub offset: usize,
}

/// The loaded files, kept so positions can be resolved once at the end.
#[derive(Debug, Default)]
pub(crate) struct Sources {
    files: Vec<(PathBuf, String)>,
}

impl Sources {
    pub fn add(&mut self, path: PathBuf, text: String) -> usize {
        self.files.push((path, text));
        self.files.len() - 1
    }

    pub fn text(&self, file: usize) -> &str {
        &self.files[file].1
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// The files with their text, in the order they were read.
    pub fn files(&self) -> impl Iterator<Item = (&Path, &str)> {
        self.files
            .iter()
            .map(|(path, text)| (path.as_path(), text.as_str()))
    }

    pub fn location(&self, pos: Pos) -> Location {
        let (path, text) = &self.files[pos.file];
        Location::at(path.clone(), text, pos.offset)
    }
}

/// Collects findings while validating; resolved into [`Diagnostic`]s at the end.
#[derive(Debug, Default)]
pub(crate) struct Diags {
    items: Vec<(Pos, Severity, String, Option<String>)>,
    /// Findings that already have a resolved location (e.g. an unreadable file).
    resolved: Vec<Diagnostic>,
}

impl Diags {
    pub fn error(&mut self, pos: Pos, message: impl Into<String>, hint: Option<String>) {
        self.items
            .push((pos, Severity::Error, message.into(), hint));
    }

    pub fn warn(&mut self, pos: Pos, message: impl Into<String>, hint: Option<String>) {
        self.items
            .push((pos, Severity::Warning, message.into(), hint));
    }

    pub fn push_resolved(&mut self, diagnostic: Diagnostic) {
        self.resolved.push(diagnostic);
    }

    pub fn error_count(&self) -> usize {
        self.resolved
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
            + self
                .items
                .iter()
                .filter(|(_, s, _, _)| *s == Severity::Error)
                .count()
    }

    /// Splits into (errors, warnings), each in file and position order.
    pub fn finish(self, sources: &Sources) -> (Vec<Diagnostic>, Vec<Diagnostic>) {
        let mut items = self.items;
        items.sort_by_key(|(pos, _, _, _)| *pos);
        items.dedup();
        let mut all = self.resolved;
        all.extend(
            items
                .into_iter()
                .map(|(pos, severity, message, hint)| Diagnostic {
                    location: sources.location(pos),
                    severity,
                    message,
                    hint,
                }),
        );
        all.into_iter()
            .partition(|diagnostic| diagnostic.severity == Severity::Error)
    }
}
