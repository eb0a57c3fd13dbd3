//! What the deployment tests read: the repository's files (workspace members, the sources the
//! binary is built from), systemd units and environment files, in the forms systemd reads them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The repository root (the root package's manifest directory).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The workspace members as `Cargo.toml` lists them (`"."` is the root package).
pub fn workspace_members() -> Vec<String> {
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let start = manifest
        .find("members = [")
        .expect("Cargo.toml lists its workspace members");
    let list = &manifest[start + "members = [".len()..];
    let list = &list[..list.find(']').expect("the members list ends")];
    list.split(',')
        .map(|item| item.trim().trim_matches('"').to_string())
        .filter(|item| !item.is_empty())
        .collect()
}

/// Every `.rs` file under `dir`, recursively.
pub fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The code of each member's `src/` that goes into the binary: each file up to its
/// `#[cfg(test)] mod ...` (test modules come last in this codebase).
pub fn binary_sources() -> Vec<(PathBuf, String)> {
    let mut sources = Vec::new();
    for member in workspace_members() {
        for file in rust_files(&repo().join(&member).join("src")) {
            let text = std::fs::read_to_string(&file).unwrap();
            let code = match text.find("#[cfg(test)]\nmod ") {
                Some(end) => text[..end].to_string(),
                None => text,
            };
            sources.push((file, code));
        }
    }
    sources
}

/// The string literals passed to `marker` (such as `Command::new(`) in `code`.
pub fn literal_arguments(code: &str, marker: &str) -> Vec<String> {
    code.match_indices(marker)
        .filter_map(|(at, _)| {
            let rest = code[at + marker.len()..].trim_start();
            let rest = rest.strip_prefix('"')?;
            Some(rest[..rest.find('"')?].to_string())
        })
        .collect()
}

/// The programs the binary runs by name (`Command::new("pg_dump")`), each with the file that
/// runs it.
pub fn executed_programs() -> BTreeMap<String, PathBuf> {
    let mut programs = BTreeMap::new();
    for (file, code) in binary_sources() {
        for program in literal_arguments(&code, "Command::new(") {
            programs.entry(program).or_insert_with(|| file.clone());
        }
    }
    programs
}

/// A systemd unit file: `(section, key, value)` in order, continuation lines joined, comments
/// dropped.
pub struct Unit {
    pub path: PathBuf,
    pub entries: Vec<(String, String, String)>,
}

impl Unit {
    pub fn read(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap();
        let mut entries = Vec::new();
        let mut section = String::new();
        let mut pending = String::new();
        for line in text.lines() {
            let line = line.trim();
            if pending.is_empty() && (line.starts_with('#') || line.starts_with(';')) {
                continue;
            }
            if let Some(continued) = line.strip_suffix('\\') {
                pending.push_str(continued);
                pending.push(' ');
                continue;
            }
            let line = format!("{pending}{line}");
            pending.clear();
            if line.starts_with('[') && line.ends_with(']') {
                section = line[1..line.len() - 1].to_string();
            } else if let Some((key, value)) = line.split_once('=') {
                entries.push((
                    section.clone(),
                    key.trim().to_string(),
                    value.trim().to_string(),
                ));
            }
        }
        Self {
            path: path.to_path_buf(),
            entries,
        }
    }

    /// Every value of `key` in `[section]`.
    pub fn all(&self, section: &str, key: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    }

    /// The last value of `key` in `[section]` (systemd's rule for single-valued keys).
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.all(section, key).last().copied()
    }

    /// `[Service] key`, which must be set.
    pub fn service(&self, key: &str) -> &str {
        self.get("Service", key)
            .unwrap_or_else(|| panic!("{} sets no {key}", self.path.display()))
    }
}

/// Seconds of a systemd time span such as `45s`, `1min 30s` or `90`.
pub fn timespan_secs(value: &str) -> u64 {
    let mut total = 0;
    for part in value.split_whitespace() {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        let unit = &part[digits.len()..];
        let number: u64 = digits
            .parse()
            .unwrap_or_else(|_| panic!("{value:?} is not a time span"));
        total += number
            * match unit {
                "" | "s" | "sec" => 1,
                "m" | "min" => 60,
                "h" => 3600,
                other => panic!("unit {other:?} of {value:?}"),
            };
    }
    total
}

/// An environment file as systemd's `EnvironmentFile=` reads it: `KEY=value` lines, `#` and
/// `;` comments, values optionally in quotes.
pub fn read_env_file(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with(';'))
        .map(|line| {
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{}: {line:?} is not KEY=value", path.display()));
            let value = value.trim();
            let unquoted = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value);
            (key.trim().to_string(), unquoted.to_string())
        })
        .collect()
}

/// What the tests put where an example file says `change-me` (a secret the operator sets
/// before a deploy; production refuses a placeholder): one value per placeholder, so services
/// sharing a secret still share it.
pub const FILLED_IN: &str = "filled-in-by-the-operator";

/// `value` with the example files' placeholder filled in as the operator would.
pub fn filled_in(value: &str) -> String {
    value.replace(aragora_config::PLACEHOLDER, FILLED_IN)
}
