//! The document store of the `store` step: one JSON file per document, keyed by the SHA-256 of the
//! document's path, written atomically (temporary file, then link or rename) and only when its
//! content changed, so that a retried or redelivered step writes once. The review reports of the
//! `review` workflow are kept the same way, in its `reports/` subdirectory ([`upsert_json`]).

use std::{
    fs, io,
    io::Write as _,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{
    analysis::{Analysis, TermCount},
    document::{DocumentDigest, sha256_hex},
};

/// What the store keeps about one document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentRecord {
    /// The document's path (the store key is its SHA-256).
    pub path: String,
    /// SHA-256 of the document's content, hex.
    pub sha256: String,
    /// Lines in the document.
    pub lines: usize,
    /// Words in the document.
    pub words: usize,
    /// Its most frequent terms.
    pub top_terms: Vec<TermCount>,
    /// The run that wrote this record.
    pub run_id: String,
    /// When the record was written, RFC 3339 UTC.
    pub stored_at: String,
}

impl DocumentRecord {
    /// Builds the record of the document at `path` from the outputs of the `digest` and `analyze`
    /// steps.
    pub fn new(path: &str, digest: &DocumentDigest, analysis: Analysis, run_id: &str, stored_at: SystemTime) -> Self {
        Self {
            path: path.to_string(),
            sha256: digest.sha256.clone(),
            lines: analysis.lines,
            words: analysis.words,
            top_terms: analysis.top_terms,
            run_id: run_id.to_string(),
            stored_at: rfc3339_utc(stored_at),
        }
    }
}

/// A JSON document kept in a file of its own by [`upsert_json`], which rewrites the file only when
/// what the document says changed.
pub trait StoredJson: Serialize + DeserializeOwned {
    /// Whether `other` says the same as `self`, leaving out who wrote it and when.
    fn same_content(&self, other: &Self) -> bool;
}

impl StoredJson for DocumentRecord {
    /// Whether `other` says the same about the same document, whichever run wrote it and when.
    fn same_content(&self, other: &Self) -> bool {
        self.path == other.path
            && self.sha256 == other.sha256
            && self.lines == other.lines
            && self.words == other.words
            && self.top_terms == other.top_terms
    }
}

/// The output of the `store` step: where the record is and what the upsert did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpsertOutcome {
    /// The store key: SHA-256 of the document's path, hex.
    pub key: String,
    /// The record's file.
    pub file: PathBuf,
    /// True when there was no record of this document before.
    pub created: bool,
    /// True when this call wrote the file (created it, or replaced a record with different
    /// content); false when an identical record was already there (a retried step, say).
    pub written: bool,
}

/// A directory of [`DocumentRecord`]s, one `<key>.json` file per document.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

/// Makes temporary file names unique within the process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl FileStore {
    /// A store in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key of the document at `path`.
    pub fn key(path: &str) -> String {
        sha256_hex(path.as_bytes())
    }

    /// The file holding the record of the document at `path`.
    pub fn file_for(&self, path: &str) -> PathBuf {
        self.dir.join(format!("{}.json", Self::key(path)))
    }

    /// The record of the document at `path`, if there is one.
    ///
    /// # Errors
    /// I/O errors other than "not found", and a file that is not a record (`InvalidData`).
    pub fn get(&self, path: &str) -> io::Result<Option<DocumentRecord>> {
        read_record(&self.file_for(path))
    }

    /// Inserts or replaces the record of `record.path` (blocking I/O), as [`upsert_json`] does.
    ///
    /// Nothing is written when a record with the same content is already stored (the stored one,
    /// with its `run_id` and `stored_at`, is kept): a step retried after it wrote writes once.
    ///
    /// # Errors
    /// I/O errors of the store directory.
    pub fn upsert(&self, record: &DocumentRecord) -> io::Result<UpsertOutcome> {
        let key = Self::key(&record.path);
        let done = upsert_json(&self.dir, &key, record)?;
        Ok(UpsertOutcome {
            key,
            file: done.file,
            created: done.created,
            written: done.written,
        })
    }
}

/// What [`upsert_json`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upserted {
    /// The document's file, `<dir>/<stem>.json`.
    pub file: PathBuf,
    /// True when there was no such file before.
    pub created: bool,
    /// True when this call wrote the file; false when it already said the same.
    pub written: bool,
    /// SHA-256 of the file's bytes as they now are (what this call wrote, or the file it kept), hex.
    pub sha256: String,
}

/// Inserts or replaces `<dir>/<stem>.json` with `value` as pretty JSON (blocking I/O), creating
/// `dir` if needed.
///
/// Nothing is written when the file already holds a document with the same content
/// ([`StoredJson::same_content`]): the stored one is kept. A new document is first written in full
/// to a temporary file in the same directory, then linked into place, which fails if another
/// writer created the file meanwhile (this call then compares against that one); a changed
/// document replaces the old one by an atomic rename. Readers therefore never see a partial file.
///
/// # Errors
/// I/O errors of the directory.
pub fn upsert_json<T: StoredJson>(dir: &Path, stem: &str, value: &T) -> io::Result<Upserted> {
    fs::create_dir_all(dir)?;
    let file = dir.join(format!("{stem}.json"));
    let mut body = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    body.push(b'\n');
    let outcome = |created, written, bytes: &[u8]| Upserted {
        file: file.clone(),
        created,
        written,
        sha256: sha256_hex(bytes),
    };
    // Two passes at most: the second one runs only when another writer created the file
    // between this call's read and its link.
    for _ in 0..2 {
        let replace = match read_json::<T>(&file) {
            Ok(None) => false,
            Ok(Some((old, bytes))) if old.same_content(value) => return Ok(outcome(false, false, &bytes)),
            Ok(Some(_)) => true,
            // A file that is not such a document (hand-edited, say) is replaced.
            Err(e) if e.kind() == io::ErrorKind::InvalidData => true,
            Err(e) => return Err(e),
        };
        let tmp = write_temp(dir, stem, &body)?;
        if replace {
            if let Err(e) = fs::rename(&tmp, &file) {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
            return Ok(outcome(false, true, &body));
        }
        match fs::hard_link(&tmp, &file) {
            Ok(()) => {
                fs::remove_file(&tmp)?;
                return Ok(outcome(true, true, &body));
            }
            // Another writer created it since the read: compare with theirs.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => fs::remove_file(&tmp)?,
            // A file system without hard links: a rename is atomic too, only it cannot
            // tell whether another writer got there first.
            Err(_) => {
                if let Err(e) = fs::rename(&tmp, &file) {
                    let _ = fs::remove_file(&tmp);
                    return Err(e);
                }
                return Ok(outcome(true, true, &body));
            }
        }
    }
    Err(io::Error::other(format!(
        "{} keeps changing under concurrent writers",
        file.display()
    )))
}

/// Writes `body` to a new temporary file in `dir` and syncs it.
fn write_temp(dir: &Path, stem: &str, body: &[u8]) -> io::Result<PathBuf> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{stem}.{}.{nanos}.{n}.tmp", std::process::id()));
    let written = fs::File::create_new(&tmp).and_then(|mut f| {
        f.write_all(body)?;
        f.sync_all()
    });
    match written {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Reads a record file: `Ok(None)` when there is none, `InvalidData` when it is not a record.
fn read_record(file: &Path) -> io::Result<Option<DocumentRecord>> {
    Ok(read_json(file)?.map(|(record, _)| record))
}

/// Reads a JSON document and the file's bytes: `Ok(None)` when there is no file, `InvalidData`
/// when it does not hold a `T`.
fn read_json<T: DeserializeOwned>(file: &Path) -> io::Result<Option<(T, Vec<u8>)>> {
    match fs::read(file) {
        Ok(data) => serde_json::from_slice(&data)
            .map(|value| Some((value, data)))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Formats `t` as RFC 3339 in UTC with milliseconds (`2026-11-21T06:10:00.123Z`); times before
/// 1970 are written as the epoch.
pub fn rfc3339_utc(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date of a day number counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::analysis::analyze;

    /// A directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(PathBuf);

    impl TempDir {
        pub(crate) fn new(label: &str) -> Self {
            let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
            let dir = std::env::temp_dir().join(format!("baton-examples-{label}-{}-{nanos}-{n}", std::process::id()));
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn record(path: &str, text: &str, run_id: &str, at_secs: u64) -> DocumentRecord {
        let digest = DocumentDigest {
            sha256: sha256_hex(text.as_bytes()),
            bytes: text.len() as u64,
        };
        DocumentRecord::new(
            path,
            &digest,
            analyze(text),
            run_id,
            UNIX_EPOCH + Duration::from_secs(at_secs),
        )
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn builds_the_record_from_step_outputs() {
        let r = record("/docs/a.txt", "Hello hello world\n", "run-1", 1_700_000_000);
        assert_eq!(r.path, "/docs/a.txt");
        assert_eq!(r.sha256, sha256_hex(b"Hello hello world\n"));
        assert_eq!((r.lines, r.words), (1, 3));
        assert_eq!(r.top_terms[0].term, "hello");
        assert_eq!(r.top_terms[0].count, 2);
        assert_eq!(r.run_id, "run-1");
        assert_eq!(r.stored_at, "2023-11-14T22:13:20.000Z");
    }

    #[test]
    fn upsert_writes_once_and_reports_created() {
        let dir = TempDir::new("store");
        let store = FileStore::new(dir.path().join("store"));
        let first = record("/docs/a.txt", "alpha beta\n", "run-1", 10);

        let out = store.upsert(&first).unwrap();
        assert!(out.created && out.written, "{out:?}");
        assert_eq!(out.key, FileStore::key("/docs/a.txt"));
        assert_eq!(out.file, store.file_for("/docs/a.txt"));
        assert_eq!(store.get("/docs/a.txt").unwrap(), Some(first.clone()));
        let modified = fs::metadata(&out.file).unwrap().modified().unwrap();

        // The same record again (a retried step): nothing is written.
        let again = store.upsert(&first).unwrap();
        assert_eq!((again.created, again.written), (false, false));
        assert_eq!(again.key, out.key);
        assert_eq!(fs::metadata(&out.file).unwrap().modified().unwrap(), modified);

        // The same content from another run: the stored record is kept as it was.
        let other_run = record("/docs/a.txt", "alpha beta\n", "run-2", 20);
        let kept = store.upsert(&other_run).unwrap();
        assert_eq!((kept.created, kept.written), (false, false));
        assert_eq!(store.get("/docs/a.txt").unwrap(), Some(first));

        // No temporary files are left behind; one file per document.
        assert_eq!(files_in(store.dir()), [format!("{}.json", out.key)]);
    }

    #[test]
    fn upsert_replaces_a_changed_document() {
        let dir = TempDir::new("store-update");
        let store = FileStore::new(dir.path());
        store.upsert(&record("/docs/a.txt", "old text\n", "run-1", 10)).unwrap();
        let newer = record("/docs/a.txt", "new text, longer\n", "run-2", 20);
        let out = store.upsert(&newer).unwrap();
        assert_eq!((out.created, out.written), (false, true));
        assert_eq!(store.get("/docs/a.txt").unwrap(), Some(newer));

        // Another document gets its own file.
        let b = store.upsert(&record("/docs/b.txt", "old text\n", "run-3", 30)).unwrap();
        assert!(b.created);
        assert_ne!(b.key, out.key);
        assert_eq!(files_in(store.dir()).len(), 2);
    }

    #[test]
    fn upsert_replaces_a_file_that_is_not_a_record() {
        let dir = TempDir::new("store-corrupt");
        let store = FileStore::new(dir.path());
        fs::write(store.file_for("/docs/a.txt"), b"{ not json").unwrap();
        assert_eq!(store.get("/docs/a.txt").unwrap_err().kind(), io::ErrorKind::InvalidData);
        let r = record("/docs/a.txt", "text\n", "run-1", 10);
        let out = store.upsert(&r).unwrap();
        assert_eq!((out.created, out.written), (false, true));
        assert_eq!(store.get("/docs/a.txt").unwrap(), Some(r));
    }

    #[test]
    fn concurrent_upserts_of_one_document_create_it_once() {
        let dir = TempDir::new("store-race");
        let store = FileStore::new(dir.path());
        let r = record("/docs/a.txt", "same text\n", "run-1", 10);
        let outcomes: Vec<UpsertOutcome> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| store.upsert(&r))).collect();
            handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
        });
        assert_eq!(outcomes.iter().filter(|o| o.created).count(), 1);
        assert_eq!(outcomes.iter().filter(|o| o.written).count(), 1);
        assert_eq!(files_in(store.dir()).len(), 1);
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_utc(UNIX_EPOCH + Duration::from_millis(951_825_600_250)),
            "2000-02-29T12:00:00.250Z"
        );
        assert_eq!(
            rfc3339_utc(UNIX_EPOCH + Duration::from_secs(4_102_444_799)),
            "2099-12-31T23:59:59.000Z"
        );
        assert_eq!(
            rfc3339_utc(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000Z"
        );
    }
}
