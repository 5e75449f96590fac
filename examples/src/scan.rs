//! The logic behind the `doc-scan` example workflow (`examples/workflows/scan.yaml`): finding the
//! documents of a directory tree that are new, or changed since the document store recorded them
//! (the `scan` step, which then emits one `documents` run per such file), and checking afterwards
//! what the store holds of them (`summary`).
//!
//! A file counts as unchanged when the store's record of its path carries the SHA-256 of its
//! content as it is now: the `store` step of the `documents` run that processed it wrote that
//! record. A file whose run failed has no such record, so the next scan finds it again.

use std::{
    collections::HashSet,
    fmt, fs, io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{document::read_document, store::FileStore};

/// The file name looked for when the input gives none: every Debian package leaves a `copyright`
/// file in `/usr/share/doc/<package>/`.
pub const DEFAULT_FILE_NAME: &str = "copyright";

/// How deep the scan looks when the input does not say: `<dir>/<name>` is depth 1,
/// `<dir>/<package>/<name>` depth 2.
pub const DEFAULT_MAX_DEPTH: usize = 2;

/// The deepest scan accepted.
pub const MAX_DEPTH_LIMIT: usize = 16;

fn default_file_name() -> String {
    DEFAULT_FILE_NAME.to_string()
}

fn default_max_depth() -> usize {
    DEFAULT_MAX_DEPTH
}

/// The input of the `scan` step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanInput {
    /// The directory to scan.
    pub dir: String,
    /// The name of the files to process (default [`DEFAULT_FILE_NAME`]).
    #[serde(default = "default_file_name")]
    pub file_name: String,
    /// How deep to look, from 1 to [`MAX_DEPTH_LIMIT`] (default [`DEFAULT_MAX_DEPTH`]).
    #[serde(default = "default_max_depth")]
    pub max_depth: usize,
    /// At most this many new or changed files per scan, the first ones in path order; the others
    /// are left for the next scan (`deferred`). No limit when absent.
    #[serde(default)]
    pub limit: Option<usize>,
}

impl ScanInput {
    /// Checks the input.
    ///
    /// # Errors
    /// [`ScanError::InvalidInput`] saying what is wrong.
    pub fn validate(&self) -> Result<(), ScanError> {
        let invalid = |m: String| Err(ScanError::InvalidInput(m));
        if self.dir.trim().is_empty() {
            return invalid("dir: must not be empty".into());
        }
        if self.file_name.is_empty() || self.file_name.contains('/') || matches!(self.file_name.as_str(), "." | "..") {
            return invalid(format!("file_name: {:?} is not a file name", self.file_name));
        }
        if !(1..=MAX_DEPTH_LIMIT).contains(&self.max_depth) {
            return invalid(format!(
                "max_depth: {} is not from 1 to {MAX_DEPTH_LIMIT}",
                self.max_depth
            ));
        }
        if self.limit == Some(0) {
            return invalid("limit: must be at least 1 (leave it out for no limit)".into());
        }
        Ok(())
    }
}

/// A new or changed file: one element of the list the `scan` step emits runs for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScannedFile {
    /// Its path, `<dir>/.../<file_name>`, with `dir` absolute and free of links.
    pub path: String,
    /// SHA-256 of its content, hex: what the `documents` run will record.
    pub sha256: String,
}

/// A file, or a directory, the scan had to leave out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Its path.
    pub path: String,
    /// Why, as an error type: for a file, those of the `read` step of `documents` (`TooLarge`,
    /// `NotText`, `NotFound`, `NotAFile`, `Io`); for a directory, `Io` or `NotUtf8` (its name).
    pub error_type: String,
    /// The error message.
    pub error: String,
}

/// The output of the `scan` step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanOutput {
    /// The directory scanned, absolute and free of links.
    pub dir: String,
    /// The new or changed files, sorted by path; at most `limit` of them. The step emits one
    /// `documents` run for each.
    pub files: Vec<ScannedFile>,
    /// Files named `file_name` found: `new + changed + unchanged + skipped.len()`.
    pub found: usize,
    /// Files the store has no record of.
    pub new: usize,
    /// Files whose record carries another SHA-256 (or that is not a record).
    pub changed: usize,
    /// Files whose record carries the SHA-256 they have now: not processed again.
    pub unchanged: usize,
    /// New or changed files left out by `limit`, for the next scan.
    pub deferred: usize,
    /// Files that cannot be read, or that the `read` step of `documents` would refuse (larger than
    /// [`MAX_DOCUMENT_BYTES`](crate::MAX_DOCUMENT_BYTES), not UTF-8): not emitted, since their runs could only fail.
    pub skipped: Vec<Skipped>,
    /// Directories that could not be listed: what they hold is not counted.
    pub unlisted: Vec<Skipped>,
}

/// Why a scan failed as a whole. [`ScanError::error_type`] is the error type the step reports
/// (the workflow lists the permanent ones in `non_retryable_errors`). A file or a subdirectory
/// that cannot be read does not fail the scan: it is listed in [`ScanOutput::skipped`] or
/// [`ScanOutput::unlisted`].
#[derive(Debug)]
pub enum ScanError {
    /// The input is not valid.
    InvalidInput(String),
    /// There is nothing at `dir`.
    NotFound(String),
    /// `dir` is not a directory.
    NotADirectory(String),
    /// `dir` could not be listed (permissions, a flaky network mount...): may be transient.
    Io(String, io::Error),
    /// The document store could not be read: may be transient.
    Store(PathBuf, io::Error),
}

impl ScanError {
    /// The error type reported to the coordinator.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::InvalidInput(_) => "InvalidInput",
            Self::NotFound(_) => "NotFound",
            Self::NotADirectory(_) => "NotADirectory",
            Self::Io(..) => "Io",
            Self::Store(..) => "Store",
        }
    }

    /// Whether another attempt could succeed: for I/O errors only.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Io(..) | Self::Store(..))
    }
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidInput(m) => write!(f, "invalid input: {m}"),
            Self::NotFound(d) => write!(f, "no such directory: {d}"),
            Self::NotADirectory(d) => write!(f, "not a directory: {d}"),
            Self::Io(d, e) => write!(f, "cannot list {d}: {e}"),
            Self::Store(d, e) => write!(f, "cannot read the document store {}: {e}", d.display()),
        }
    }
}

impl std::error::Error for ScanError {}

/// A file found by the walk.
struct Candidate {
    /// `<root>/.../<name>`.
    path: String,
    /// Whether it is a symbolic link.
    is_link: bool,
    /// The file it is (for a link, its target; the link itself when dangling).
    target: PathBuf,
}

/// The files named `file_name` in `root` and its subdirectories, `max_depth` levels down at most,
/// and the directories that could not be listed.
fn find_files(root: &str, file_name: &str, max_depth: usize) -> Result<(Vec<Candidate>, Vec<Skipped>), ScanError> {
    let mut found = Vec::new();
    let mut unlisted = Vec::new();
    let mut pending = vec![(root.to_string(), 1)];
    while let Some((dir, depth)) = pending.pop() {
        let entries = match fs::read_dir(&dir).and_then(|it| it.collect::<io::Result<Vec<_>>>()) {
            Ok(entries) => entries,
            Err(e) if dir == root => return Err(ScanError::Io(root.to_string(), e)),
            Err(e) => {
                unlisted.push(Skipped {
                    path: dir,
                    error_type: "Io".into(),
                    error: format!("cannot list the directory: {e}"),
                });
                continue;
            }
        };
        let base = dir.trim_end_matches('/');
        for entry in entries {
            let file_type = match entry.file_type() {
                Ok(t) => t,
                Err(_) => continue,
            };
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                if file_type.is_dir() && depth < max_depth {
                    unlisted.push(Skipped {
                        path: format!("{base}/{}", name.to_string_lossy()),
                        error_type: "NotUtf8".into(),
                        error: "the directory's name is not UTF-8: its files cannot be named in JSON".into(),
                    });
                }
                continue;
            };
            let path = format!("{base}/{name}");
            if file_type.is_dir() {
                if depth < max_depth && !name.starts_with('.') {
                    pending.push((path, depth + 1));
                }
            } else if name == file_name {
                let is_link = file_type.is_symlink();
                if is_link && fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
                    // A link to a directory is not followed (below).
                    continue;
                }
                let target = if is_link {
                    fs::canonicalize(&path).unwrap_or_else(|_| PathBuf::from(&path))
                } else {
                    PathBuf::from(&path)
                };
                found.push(Candidate { path, is_link, target });
            }
        }
    }
    Ok((found, unlisted))
}

/// Scans `input.dir` for the files named `input.file_name`, at most `input.max_depth` levels down
/// (blocking I/O: call it from a blocking thread), and compares each one with the record `store`
/// holds of its path.
///
/// Each file is read as the `read` step of `documents` reads it ([`read_document`]), so a file that
/// step would refuse (larger than [`MAX_DOCUMENT_BYTES`](crate::MAX_DOCUMENT_BYTES), not UTF-8) or cannot read is skipped and
/// listed rather than emitted to fail. Its SHA-256 is that of its bytes; the file is unchanged when
/// the store's record of its path carries the same hash.
///
/// Symbolic links to directories are not followed (in `/usr/share/doc` such a link names another
/// package's directory: the same documents again, under other paths), and neither are hidden
/// directories (`.name`). A link to a file is a file of its own, unless the scan also finds that
/// file under its own path. `dir` is made absolute and free of links, and so are the paths.
///
/// # Errors
/// [`ScanError`]: an invalid input, a `dir` that is missing, not a directory or cannot be listed,
/// or a store that cannot be read. A record that is not a record (hand-edited, say) counts as
/// changed: the `store` step replaces it.
pub fn scan(input: &ScanInput, store: &FileStore) -> Result<ScanOutput, ScanError> {
    input.validate()?;
    let dir = input.dir.as_str();
    let root = fs::canonicalize(dir).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ScanError::NotFound(dir.to_string()),
        _ => ScanError::Io(dir.to_string(), e),
    })?;
    if !root.is_dir() {
        return Err(ScanError::NotADirectory(dir.to_string()));
    }
    let root = root
        .to_str()
        .ok_or_else(|| ScanError::InvalidInput(format!("dir: {dir:?} is not UTF-8 once its links are resolved")))?
        .to_string();
    let (candidates, unlisted) = find_files(&root, &input.file_name, input.max_depth)?;
    let real: HashSet<&Path> = candidates
        .iter()
        .filter(|c| !c.is_link)
        .map(|c| c.target.as_path())
        .collect();
    let mut paths: Vec<&str> = candidates
        .iter()
        .filter(|c| !c.is_link || !real.contains(c.target.as_path()))
        .map(|c| c.path.as_str())
        .collect();
    paths.sort_unstable();

    let mut out = ScanOutput {
        dir: root.clone(),
        files: Vec::new(),
        found: paths.len(),
        new: 0,
        changed: 0,
        unchanged: 0,
        deferred: 0,
        skipped: Vec::new(),
        unlisted,
    };
    out.unlisted.sort_by(|a, b| a.path.cmp(&b.path));
    for path in paths {
        let sha256 = match read_document(path) {
            Ok(doc) => doc.digest().sha256,
            Err(e) => {
                out.skipped.push(Skipped {
                    path: path.to_string(),
                    error_type: e.error_type().to_string(),
                    error: e.to_string(),
                });
                continue;
            }
        };
        let recorded = match store.get(path) {
            Ok(record) => record.map(|r| r.sha256),
            // Not a record: no hash matches it, so it counts as changed.
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Some(String::new()),
            Err(e) => return Err(ScanError::Store(store.dir().to_path_buf(), e)),
        };
        match recorded {
            Some(known) if known == sha256 => {
                out.unchanged += 1;
                continue;
            }
            Some(_) => out.changed += 1,
            None => out.new += 1,
        }
        if input.limit.is_some_and(|limit| out.files.len() >= limit) {
            out.deferred += 1;
        } else {
            out.files.push(ScannedFile {
                path: path.to_string(),
                sha256,
            });
        }
    }
    Ok(out)
}

/// The input of the `summary` step: the output of `scan`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanSummaryInput {
    /// What the scan found and emitted runs for.
    pub scan: ScanOutput,
}

/// The output of the `summary` step: the scan's counts, and what became of the files it emitted
/// runs for, as the document store tells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanSummary {
    /// The directory scanned.
    pub dir: String,
    /// Files found.
    pub found: usize,
    /// Files not processed again: the store's record has their current SHA-256.
    pub unchanged: usize,
    /// Files the scan emitted a `documents` run for.
    pub emitted: usize,
    /// Of those, files whose record now carries the SHA-256 the scan saw.
    pub stored: usize,
    /// The others, sorted: their run failed (the next scan tries them again), or they changed
    /// again meanwhile.
    pub not_stored: Vec<String>,
    /// Files skipped (unreadable, or refused by the `read` step), and directories not listed.
    pub skipped: usize,
    /// New or changed files left for the next scan by the input's `limit`.
    pub deferred: usize,
}

/// Checks which of the files the scan emitted runs for the store now holds, with the content the
/// scan saw (blocking I/O).
///
/// # Errors
/// I/O errors of the store, other than a file that is not a record (counted as not stored).
pub fn summarize_scan(scan: &ScanOutput, store: &FileStore) -> io::Result<ScanSummary> {
    let mut not_stored = Vec::new();
    for file in &scan.files {
        let stored = match store.get(&file.path) {
            Ok(record) => record.is_some_and(|r| r.sha256 == file.sha256),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => false,
            Err(e) => return Err(e),
        };
        if !stored {
            not_stored.push(file.path.clone());
        }
    }
    not_stored.sort();
    Ok(ScanSummary {
        dir: scan.dir.clone(),
        found: scan.found,
        unchanged: scan.unchanged,
        emitted: scan.files.len(),
        stored: scan.files.len() - not_stored.len(),
        not_stored,
        skipped: scan.skipped.len() + scan.unlisted.len(),
        deferred: scan.deferred,
    })
}

#[cfg(test)]
mod tests {
    use std::{os::unix::fs::symlink, time::UNIX_EPOCH};

    use super::*;
    use crate::{
        analysis::analyze,
        document::{DocumentDigest, MAX_DOCUMENT_BYTES, sha256_hex},
        store::{DocumentRecord, tests::TempDir},
    };

    fn input(dir: &Path) -> ScanInput {
        serde_json::from_value(serde_json::json!({ "dir": dir.to_str().unwrap() })).unwrap()
    }

    /// Stores a record of `path` as a `documents` run would after reading `text`.
    fn store_record(store: &FileStore, path: &str, text: &str) {
        let digest = DocumentDigest {
            sha256: sha256_hex(text.as_bytes()),
            bytes: text.len() as u64,
        };
        let record = DocumentRecord::new(path, &digest, analyze(text), "run-1", UNIX_EPOCH);
        store.upsert(&record).unwrap();
    }

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn paths(out: &ScanOutput) -> Vec<&str> {
        out.files
            .iter()
            .map(|f| f.path.strip_prefix(&out.dir).unwrap())
            .collect()
    }

    #[test]
    fn input_defaults_and_validation() {
        let i: ScanInput = serde_json::from_value(serde_json::json!({"dir": "/usr/share/doc"})).unwrap();
        assert_eq!(i.file_name, "copyright");
        assert_eq!((i.max_depth, i.limit), (2, None));
        assert!(i.validate().is_ok());
        let i: ScanInput = serde_json::from_value(serde_json::json!({
            "dir": "/d", "file_name": "README", "max_depth": 3, "limit": 10
        }))
        .unwrap();
        assert_eq!((i.file_name.as_str(), i.max_depth, i.limit), ("README", 3, Some(10)));
        assert!(serde_json::from_value::<ScanInput>(serde_json::json!({"file_name": "x"})).is_err());

        for (field, value) in [
            ("dir", serde_json::json!(" ")),
            ("file_name", serde_json::json!("a/b")),
            ("file_name", serde_json::json!("..")),
            ("file_name", serde_json::json!("")),
            ("max_depth", serde_json::json!(0)),
            ("max_depth", serde_json::json!(17)),
            ("limit", serde_json::json!(0)),
        ] {
            let mut v = serde_json::json!({"dir": "/d"});
            v[field] = value;
            let e = serde_json::from_value::<ScanInput>(v).unwrap().validate().unwrap_err();
            assert_eq!(e.error_type(), "InvalidInput");
            assert!(!e.is_retryable());
            assert!(e.to_string().contains(field), "{e}");
        }
    }

    #[test]
    fn finds_new_changed_and_unchanged_files_by_their_hash() {
        let dir = TempDir::new("scan");
        let root = dir.path().join("doc");
        write(&root.join("alpha/copyright"), "alpha text\n");
        write(&root.join("beta/copyright"), "beta text\n");
        write(&root.join("gamma/copyright"), "gamma text, new version\n");
        write(&root.join("copyright"), "top level\n");
        write(&root.join("alpha/changelog"), "not this one\n");
        write(&root.join("deep/er/copyright"), "too deep for max_depth 2\n");
        write(&root.join(".hidden/copyright"), "hidden directory\n");
        let canonical = fs::canonicalize(&root).unwrap();
        let base = canonical.to_str().unwrap();
        let store = FileStore::new(dir.path().join("store"));
        store_record(&store, &format!("{base}/alpha/copyright"), "alpha text\n");
        store_record(&store, &format!("{base}/gamma/copyright"), "gamma text\n");

        let out = scan(&input(&root), &store).unwrap();
        assert_eq!(out.dir, base);
        assert_eq!(paths(&out), ["/beta/copyright", "/copyright", "/gamma/copyright"]);
        assert_eq!(out.files[0].sha256, sha256_hex(b"beta text\n"));
        assert_eq!((out.found, out.new, out.changed, out.unchanged), (4, 2, 1, 1));
        assert_eq!(out.deferred, 0);
        assert!(out.skipped.is_empty() && out.unlisted.is_empty(), "{out:?}");

        // Deeper, another name.
        let mut deep = input(&root);
        deep.max_depth = 3;
        let out = scan(&deep, &store).unwrap();
        assert_eq!(out.found, 5);
        assert!(paths(&out).contains(&"/deep/er/copyright"));
        let mut top = input(&root);
        top.max_depth = 1;
        assert_eq!(paths(&scan(&top, &store).unwrap()), ["/copyright"]);
        let mut changelogs = input(&root);
        changelogs.file_name = "changelog".into();
        assert_eq!(paths(&scan(&changelogs, &store).unwrap()), ["/alpha/changelog"]);

        // Once every run has stored its record, nothing is new.
        for f in ["beta", "gamma"] {
            let path = format!("{base}/{f}/copyright");
            store_record(&store, &path, &fs::read_to_string(&path).unwrap());
        }
        store_record(&store, &format!("{base}/copyright"), "top level\n");
        let out = scan(&input(&root), &store).unwrap();
        assert!(out.files.is_empty());
        assert_eq!((out.found, out.new, out.changed, out.unchanged), (4, 0, 0, 4));
    }

    #[test]
    fn limit_defers_the_rest_to_the_next_scan() {
        let dir = TempDir::new("scan-limit");
        let root = dir.path().join("doc");
        for p in ["d", "b", "a", "c"] {
            write(&root.join(p).join("copyright"), p);
        }
        let store = FileStore::new(dir.path().join("store"));
        let mut i = input(&root);
        i.limit = Some(3);
        let out = scan(&i, &store).unwrap();
        assert_eq!(paths(&out), ["/a/copyright", "/b/copyright", "/c/copyright"]);
        assert_eq!((out.found, out.new, out.deferred), (4, 4, 1));
        for f in &out.files {
            store_record(&store, &f.path, &fs::read_to_string(&f.path).unwrap());
        }
        let out = scan(&i, &store).unwrap();
        assert_eq!(paths(&out), ["/d/copyright"]);
        assert_eq!((out.unchanged, out.new, out.deferred), (3, 1, 0));
    }

    #[test]
    fn skips_what_the_read_step_would_refuse_without_failing() {
        let dir = TempDir::new("scan-skip");
        let root = dir.path().join("doc");
        write(&root.join("ok/copyright"), "fine\n");
        fs::create_dir_all(root.join("binary")).unwrap();
        fs::write(root.join("binary/copyright"), [0xff, 0xfe, 0x00]).unwrap();
        write(
            &root.join("big/copyright"),
            &"x".repeat(MAX_DOCUMENT_BYTES as usize + 1),
        );
        fs::create_dir_all(root.join("dangling")).unwrap();
        symlink(root.join("nowhere"), root.join("dangling/copyright")).unwrap();
        let store = FileStore::new(dir.path().join("store"));

        let out = scan(&input(&root), &store).unwrap();
        assert_eq!(paths(&out), ["/ok/copyright"]);
        assert_eq!(out.found, 4);
        let skipped: Vec<(&str, &str)> = out
            .skipped
            .iter()
            .map(|s| (s.path.strip_prefix(&out.dir).unwrap(), s.error_type.as_str()))
            .collect();
        assert_eq!(
            skipped,
            [
                ("/big/copyright", "TooLarge"),
                ("/binary/copyright", "NotText"),
                ("/dangling/copyright", "NotFound"),
            ]
        );
        assert!(out.skipped[0].error.contains("bytes"), "{:?}", out.skipped[0]);
    }

    #[test]
    fn links_to_directories_are_not_followed_and_aliases_are_left_out() {
        let dir = TempDir::new("scan-links");
        let root = dir.path().join("doc");
        write(&root.join("libfoo-common/copyright"), "foo\n");
        symlink(root.join("libfoo-common"), root.join("libfoo1")).unwrap();
        // A link to a file found under its own path is the same document.
        fs::create_dir_all(root.join("alias")).unwrap();
        symlink(root.join("libfoo-common/copyright"), root.join("alias/copyright")).unwrap();
        // A link to a file outside the tree is a document of its own.
        let outside = TempDir::new("scan-links-outside");
        write(&outside.path().join("copyright"), "far\n");
        fs::create_dir_all(root.join("far")).unwrap();
        symlink(outside.path().join("copyright"), root.join("far/copyright")).unwrap();
        let store = FileStore::new(dir.path().join("store"));

        let out = scan(&input(&root), &store).unwrap();
        assert_eq!(paths(&out), ["/far/copyright", "/libfoo-common/copyright"]);
        assert_eq!(out.found, 2);
        assert_eq!(out.files[0].sha256, sha256_hex(b"far\n"));
    }

    #[test]
    fn a_record_that_is_not_a_record_counts_as_changed() {
        let dir = TempDir::new("scan-corrupt");
        let root = dir.path().join("doc");
        write(&root.join("a/copyright"), "a\n");
        let store = FileStore::new(dir.path().join("store"));
        let path = format!("{}/a/copyright", fs::canonicalize(&root).unwrap().display());
        fs::create_dir_all(store.dir()).unwrap();
        fs::write(store.file_for(&path), "{ not json").unwrap();
        let out = scan(&input(&root), &store).unwrap();
        assert_eq!((out.changed, out.files.len()), (1, 1));
    }

    #[test]
    fn scan_errors_are_classified() {
        let dir = TempDir::new("scan-errors");
        let store = FileStore::new(dir.path().join("store"));
        let e = scan(&input(&dir.path().join("missing")), &store).unwrap_err();
        assert_eq!(e.error_type(), "NotFound");
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("missing"), "{e}");

        let file = dir.path().join("f");
        fs::write(&file, "x").unwrap();
        let e = scan(&input(&file), &store).unwrap_err();
        assert_eq!(e.error_type(), "NotADirectory");

        // An empty directory is a scan that finds nothing, not an error.
        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        let out = scan(&input(&empty), &store).unwrap();
        assert_eq!((out.found, out.files.len()), (0, 0));

        // A store that cannot be read fails the scan (with a retryable error): emitting every file
        // again would be wrong.
        let blocked = FileStore::new(file.join("store"));
        write(&empty.join("a/copyright"), "a\n");
        let e = scan(&input(&empty), &blocked).unwrap_err();
        assert_eq!(e.error_type(), "Store");
        assert!(e.is_retryable());
    }

    #[test]
    fn summary_checks_what_the_store_holds() {
        let dir = TempDir::new("scan-summary");
        let root = dir.path().join("doc");
        for p in ["a", "b", "c"] {
            write(&root.join(p).join("copyright"), p);
        }
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("bin/copyright"), [0xff]).unwrap();
        let store = FileStore::new(dir.path().join("store"));
        let out = scan(&input(&root), &store).unwrap();
        assert_eq!(out.files.len(), 3);
        // The run of `a` stored its record; that of `b` failed; `c` changed while its run went.
        store_record(&store, &out.files[0].path, "a");
        store_record(&store, &out.files[2].path, "c, changed");

        // The step reads the scan's output as the coordinator renders `${{ steps.scan.output }}`.
        let input: ScanSummaryInput =
            serde_json::from_value(serde_json::json!({ "scan": serde_json::to_value(&out).unwrap() })).unwrap();
        let summary = summarize_scan(&input.scan, &store).unwrap();
        assert_eq!(
            (summary.found, summary.unchanged, summary.emitted, summary.stored),
            (4, 0, 3, 1)
        );
        assert_eq!(
            summary.not_stored,
            [out.files[1].path.clone(), out.files[2].path.clone()]
        );
        assert_eq!((summary.skipped, summary.deferred), (1, 0));
        assert_eq!(summary.dir, out.dir);
    }
}
