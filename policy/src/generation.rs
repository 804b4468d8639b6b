//! Policy generations: which files (and settings) a policy was built from.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::diagnostics::Sources;
use crate::model::PolicySettings;

/// A policy generation: the SHA-256 of its files' names and texts (in name order) and
/// of the settings it was loaded with, as lower-case hex. The same files under the same
/// settings give the same generation on any machine, so an audit record names the
/// policy it ran under and a reviewer can tell which files that was.
///
/// It also keeps each file's own digest, so a reload can say which files changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Generation {
    id: String,
    /// File name -> SHA-256 of its text (hex).
    files: Arc<BTreeMap<String, String>>,
}

/// How one policy file differs between two generations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileChange {
    pub file: String,
    /// `added`, `removed` or `modified`.
    pub change: &'static str,
}

impl Generation {
    pub(crate) fn of(sources: &Sources, settings: &PolicySettings) -> Generation {
        let mut files: Vec<(&Path, &str)> = sources.files().collect();
        files.sort();
        let mut digest = Sha256::new();
        let mut digests = BTreeMap::new();
        for (path, text) in files {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            // Lengths first, so no two lists of files hash alike.
            for part in [name.as_bytes(), text.as_bytes()] {
                digest.update((part.len() as u64).to_be_bytes());
                digest.update(part);
            }
            digests.insert(name, hex::encode(Sha256::digest(text.as_bytes())));
        }
        let settings = format!("{settings:?}");
        digest.update((settings.len() as u64).to_be_bytes());
        digest.update(settings.as_bytes());
        Generation {
            id: hex::encode(digest.finalize()),
            files: Arc::new(digests),
        }
    }

    /// The whole digest.
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// Its first 12 hex digits, for people and logs.
    pub fn short(&self) -> &str {
        &self.id[..12]
    }

    /// The files of `self` that were added, removed or modified since `before`, in
    /// name order.
    pub fn changes_since(&self, before: &Generation) -> Vec<FileChange> {
        let mut changes = Vec::new();
        for (file, digest) in self.files.iter() {
            match before.files.get(file) {
                None => changes.push(FileChange {
                    file: file.clone(),
                    change: "added",
                }),
                Some(old) if old != digest => changes.push(FileChange {
                    file: file.clone(),
                    change: "modified",
                }),
                Some(_) => {}
            }
        }
        for file in before.files.keys() {
            if !self.files.contains_key(file) {
                changes.push(FileChange {
                    file: file.clone(),
                    change: "removed",
                });
            }
        }
        changes.sort_by(|a, b| a.file.cmp(&b.file));
        changes
    }
}

impl std::fmt::Display for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.short())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use time::Date;

    use super::*;
    use crate::Policy;

    fn generation(files: &[(&str, &str)], settings: PolicySettings) -> Generation {
        let today = Date::from_calendar_date(2026, time::Month::March, 2).unwrap();
        let files = files
            .iter()
            .map(|(p, t)| (PathBuf::from(p), t.to_string()))
            .collect();
        match Policy::from_texts(files, settings, today) {
            Ok(loaded) => loaded.policy.generation().clone(),
            Err(rejected) => rejected.generation,
        }
    }

    const A: &str = "[labels]\n\"pii.x\" = \"x\"\n";
    const B: &str = "[labels]\n\"pii.y\" = \"y\"\n";

    #[test]
    fn the_same_files_and_settings_give_the_same_generation() {
        let one = generation(
            &[("/p/a.toml", A), ("/p/b.toml", B)],
            PolicySettings::default(),
        );
        let again = generation(
            &[("/q/b.toml", B), ("/q/a.toml", A)],
            PolicySettings::default(),
        );
        assert_eq!(one, again, "order and directory do not matter");
        assert_eq!(one.as_str().len(), 64);
        let changed = generation(
            &[("/p/a.toml", B), ("/p/b.toml", A)],
            PolicySettings::default(),
        );
        assert_ne!(one, changed, "which file holds what matters");
        let settings = PolicySettings {
            search_path: vec!["other".into()],
            ..PolicySettings::default()
        };
        assert_ne!(
            one,
            generation(&[("/p/a.toml", A), ("/p/b.toml", B)], settings)
        );
    }

    #[test]
    fn changes_name_added_removed_and_modified_files() {
        let settings = PolicySettings::default;
        let before = generation(&[("/p/a.toml", A), ("/p/b.toml", B)], settings());
        let after = generation(
            &[("/p/b.toml", A), ("/p/c.toml", "[broken"), ("/p/d.toml", B)],
            settings(),
        );
        let named: Vec<(String, &str)> = after
            .changes_since(&before)
            .into_iter()
            .map(|c| (c.file, c.change))
            .collect();
        let expected = [
            ("a.toml", "removed"),
            ("b.toml", "modified"),
            ("c.toml", "added"),
            ("d.toml", "added"),
        ]
        .map(|(f, c)| (f.to_owned(), c));
        assert_eq!(named, expected);
        assert!(before.changes_since(&before).is_empty());
    }
}
