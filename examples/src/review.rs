//! The logic behind the `review` example workflow (`examples/workflows/review.yaml`): listing a
//! directory (the `list` step), classifying a document (`classify`, once per file), summing them up
//! (`summarize`), and the review report that `report` and `rejected` write.

use std::{
    collections::HashSet,
    fmt, fs, io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    analysis::analyze,
    document::{DocumentError, ReadDocument, read_document, sha256_hex},
    store::{DocumentRecord, StoredJson, UpsertOutcome, Upserted, upsert_json},
};

/// The input of the `list` step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListInput {
    /// The directory to list.
    pub dir: String,
    /// At most this many files.
    pub limit: usize,
}

/// The output of the `list` step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileList {
    /// The directory, as an absolute path without symbolic links.
    pub dir: String,
    /// The files, `<dir>/<name>`, in name order; at most `limit` of them.
    pub files: Vec<String>,
    /// How many files the directory has, before the limit.
    pub total: usize,
}

/// Why a directory could not be listed. [`ListError::error_type`] is the error type the step
/// reports (the workflow lists the permanent ones in `non_retryable_errors`).
#[derive(Debug)]
pub enum ListError {
    /// There is nothing at the path.
    NotFound(String),
    /// The path is not a directory.
    NotADirectory(String),
    /// The directory holds no file to review (or the limit is 0).
    NoFiles(String),
    /// Any other I/O error (permissions, a flaky network mount...): may be transient.
    Io(String, io::Error),
}

impl ListError {
    /// The error type reported to the coordinator.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "NotFound",
            Self::NotADirectory(_) => "NotADirectory",
            Self::NoFiles(_) => "NoFiles",
            Self::Io(..) => "Io",
        }
    }

    /// Whether another attempt could succeed: only for unclassified I/O errors.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Io(..))
    }
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound(d) => write!(f, "no such directory: {d}"),
            Self::NotADirectory(d) => write!(f, "not a directory: {d}"),
            Self::NoFiles(d) => write!(f, "no files to review in {d}"),
            Self::Io(d, e) => write!(f, "cannot list {d}: {e}"),
        }
    }
}

impl std::error::Error for ListError {}

/// Lists the files to review in `dir` (blocking I/O): its regular files, in name order, at most
/// `limit` of them.
///
/// Symbolic links are followed, but a link to a file that the directory also holds under its own
/// name is left out, so that each text is reviewed once (`GPL -> GPL-3` lists `GPL-3` only).
/// Hidden files (`.name`) and names that are not UTF-8 are left out too. `dir` is made absolute
/// and free of links, and so are the paths listed.
///
/// # Errors
/// [`ListError`]: not found, not a directory, no files, or another I/O error.
pub fn list_files(dir: &str, limit: usize) -> Result<FileList, ListError> {
    let io_err = |e: io::Error| match e.kind() {
        io::ErrorKind::NotFound => ListError::NotFound(dir.to_string()),
        _ => ListError::Io(dir.to_string(), e),
    };
    let root = fs::canonicalize(dir).map_err(io_err)?;
    if !root.is_dir() {
        return Err(ListError::NotADirectory(dir.to_string()));
    }
    let root_text = root.to_str().ok_or_else(|| ListError::NotADirectory(dir.to_string()))?;
    // (name, is a link, the file it is)
    let mut found: Vec<(String, bool, PathBuf)> = Vec::new();
    for entry in fs::read_dir(&root).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let path = root.join(&name);
        let is_link = entry.file_type().map_err(io_err)?.is_symlink();
        // A dangling link, or one to a directory or a device, is not a file to review.
        let is_file = fs::metadata(&path).is_ok_and(|m| m.is_file());
        if !is_file {
            continue;
        }
        let target = if is_link {
            fs::canonicalize(&path).map_err(io_err)?
        } else {
            path
        };
        found.push((name, is_link, target));
    }
    let real: HashSet<PathBuf> = found
        .iter()
        .filter(|(_, is_link, _)| !is_link)
        .map(|(_, _, target)| target.clone())
        .collect();
    let mut names: Vec<String> = found
        .into_iter()
        .filter(|(_, is_link, target)| !is_link || !real.contains(target))
        .map(|(name, _, _)| name)
        .collect();
    names.sort();
    let total = names.len();
    if total == 0 || limit == 0 {
        return Err(ListError::NoFiles(root_text.to_string()));
    }
    let files = names
        .into_iter()
        .take(limit)
        .map(|name| format!("{}/{name}", root_text.trim_end_matches('/')))
        .collect();
    Ok(FileList {
        dir: root_text.to_string(),
        files,
        total,
    })
}

/// What the `classify` step finds in one document (its output, for one element of the fan-out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classification {
    /// The document's path.
    pub path: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its lines, as [`crate::analyze`] counts them.
    pub lines: usize,
    /// Its whitespace-separated words.
    pub words: usize,
    /// Its first non-empty line, trimmed, at most [`TITLE_CHARS`] characters.
    pub title: String,
    /// Whether it is under a copyleft licence (see [`copyleft_reason`]).
    pub copyleft: bool,
    /// Why it counts as copyleft, `None` when it does not.
    pub copyleft_reason: Option<String>,
    /// Why it could not be read (not UTF-8 text, too large, gone); `None` when it was read. An
    /// unreadable document has zero counts and is left out of the totals.
    pub error: Option<String>,
}

/// Longest title kept, in characters.
pub const TITLE_CHARS: usize = 120;

/// How many non-empty lines at the top of a document make its heading, where a licence names itself.
pub const HEADING_LINES: usize = 5;

/// Copyleft licence families, as their texts name themselves in their heading (lower case), and
/// the short name given as the reason. More specific names come first.
pub const COPYLEFT_TITLES: &[(&str, &str)] = &[
    ("gnu affero general public license", "GNU AGPL"),
    ("gnu lesser general public license", "GNU LGPL"),
    ("gnu library general public license", "GNU LGPL"),
    ("gnu general public license", "GNU GPL"),
    ("mozilla public license", "MPL"),
    ("eclipse public license", "EPL"),
];

/// SPDX licence identifiers (prefixes, lower case) of the same families, as a source file's
/// `SPDX-License-Identifier:` line gives them.
pub const COPYLEFT_SPDX_PREFIXES: &[&str] = &["agpl-", "lgpl-", "gpl-", "mpl-", "epl-"];

/// Why `text` counts as copyleft, or `None`. Decided from the text alone, in this order:
///
/// 1. its heading (the first [`HEADING_LINES`] non-empty lines) names a GPL, LGPL, AGPL, MPL or EPL
///    licence ([`COPYLEFT_TITLES`]): the text of such a licence, or a file whose header says it is
///    under one;
/// 2. the first licence of an `SPDX-License-Identifier:` line in its heading is of those families
///    ([`COPYLEFT_SPDX_PREFIXES`]);
/// 3. it mentions "copyleft" anywhere, in any case (the GNU FDL, for one).
///
/// A text that only refers to such a licence further down (the MPL 2.0's "Secondary Licenses", a
/// permissive licence saying it is GPL-compatible) is not counted by the first two rules.
///
/// ```
/// use baton_examples::copyleft_reason;
///
/// assert_eq!(
///     copyleft_reason("   GNU GENERAL PUBLIC LICENSE\n   Version 3, 29 June 2007\n").as_deref(),
///     Some("heading names the GNU GPL")
/// );
/// assert_eq!(copyleft_reason("MIT License\n\nPermission is hereby granted..."), None);
/// ```
pub fn copyleft_reason(text: &str) -> Option<String> {
    let heading: String = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(HEADING_LINES)
        .flat_map(|l| l.split_whitespace())
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    if let Some((_, name)) = COPYLEFT_TITLES.iter().find(|(title, _)| heading.contains(title)) {
        return Some(format!("heading names the {name}"));
    }
    const SPDX: &str = "spdx-license-identifier:";
    if let Some(at) = heading.find(SPDX) {
        let id = heading[at + SPDX.len()..]
            .trim_start()
            .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
            .find(|id| !id.is_empty())
            .unwrap_or("");
        if COPYLEFT_SPDX_PREFIXES.iter().any(|p| id.starts_with(p)) {
            return Some(format!("SPDX identifier {}", id.to_uppercase()));
        }
    }
    if text.to_lowercase().contains("copyleft") {
        return Some("mentions copyleft".to_string());
    }
    None
}

/// The first non-empty line of `text`, trimmed, cut to [`TITLE_CHARS`] characters (with `...`).
pub fn title(text: &str) -> String {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    if line.chars().count() <= TITLE_CHARS {
        return line.to_string();
    }
    let cut: String = line.chars().take(TITLE_CHARS - 3).collect();
    format!("{}...", cut.trim_end())
}

/// Classifies a document that was read.
pub fn classify(doc: &ReadDocument) -> Classification {
    let analysis = analyze(&doc.text);
    let reason = copyleft_reason(&doc.text);
    Classification {
        path: doc.path.clone(),
        bytes: doc.bytes,
        lines: analysis.lines,
        words: analysis.words,
        title: title(&doc.text),
        copyleft: reason.is_some(),
        copyleft_reason: reason,
        error: None,
    }
}

/// Reads and classifies the document at `path` (blocking I/O). A document that can never be read
/// (not found, not a file, too large, not UTF-8) is classified with its [`Classification::error`].
///
/// # Errors
/// Only the errors another attempt may not have ([`DocumentError::is_retryable`]).
pub fn classify_file(path: &str) -> Result<Classification, DocumentError> {
    match read_document(path) {
        Ok(doc) => Ok(classify(&doc)),
        Err(e) if e.is_retryable() => Err(e),
        Err(e) => Ok(Classification {
            path: path.to_string(),
            bytes: 0,
            lines: 0,
            words: 0,
            title: String::new(),
            copyleft: false,
            copyleft_reason: None,
            error: Some(format!("{}: {e}", e.error_type())),
        }),
    }
}

/// The input of the `summarize` step: the output of `classify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummarizeInput {
    /// Every classified document, in file order.
    pub documents: Vec<Classification>,
}

/// The output of the `summarize` step: totals over the documents that could be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Documents read.
    pub count: usize,
    /// Their words.
    pub words: usize,
    /// Their lines.
    pub lines: usize,
    /// The copyleft ones, in file order.
    pub copyleft: Vec<String>,
    /// How many are copyleft.
    pub copyleft_count: usize,
    /// The one with the most bytes (the first of them on a tie).
    pub largest: String,
    /// The documents that could not be read, in file order.
    pub unreadable: Vec<String>,
}

/// Sums up the classified documents; `None` when none could be read.
pub fn summarize(documents: &[Classification]) -> Option<Summary> {
    let (read, unreadable): (Vec<&Classification>, Vec<&Classification>) =
        documents.iter().partition(|d| d.error.is_none());
    // `max_by_key` keeps the last of equal elements; comparing in reverse keeps the first.
    let largest = read.iter().rev().max_by_key(|d| d.bytes)?;
    let copyleft: Vec<String> = read.iter().filter(|d| d.copyleft).map(|d| d.path.clone()).collect();
    Some(Summary {
        count: read.len(),
        words: read.iter().map(|d| d.words).sum(),
        lines: read.iter().map(|d| d.lines).sum(),
        copyleft_count: copyleft.len(),
        copyleft,
        largest: largest.path.clone(),
        unreadable: unreadable.iter().map(|d| d.path.clone()).collect(),
    })
}

/// The form data of the `approve` step (its output), `None` when the step was skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The reviewer's decision.
    pub approved: bool,
    /// Why, if they said.
    #[serde(default)]
    pub comment: Option<String>,
}

/// The outcome a review report records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// A reviewer approved the copyleft documents.
    Approved,
    /// No document was copyleft: there was nothing to approve.
    NotRequired,
    /// A reviewer rejected the copyleft documents.
    Rejected,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Approved => "approved",
            Self::NotRequired => "not_required",
            Self::Rejected => "rejected",
        })
    }
}

/// Which step writes the report: `report` (after an approval, or when none was needed) or
/// `rejected` (after a rejection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportStep {
    /// `report`, handler `docs.report`.
    Publish,
    /// `rejected`, handler `docs.reject`.
    Reject,
}

impl ReportStep {
    /// The decision the step records, given the `approve` step's output; an error when the step
    /// should not have run (the workflow's conditions rule that out).
    ///
    /// # Errors
    /// A message saying what does not fit.
    pub fn decision(self, approval: Option<&Approval>) -> Result<Decision, String> {
        match (self, approval) {
            (Self::Publish, None) => Ok(Decision::NotRequired),
            (Self::Publish, Some(a)) if a.approved => Ok(Decision::Approved),
            (Self::Publish, Some(_)) => Err("the review was rejected: there is no report to write".into()),
            (Self::Reject, Some(a)) if !a.approved => Ok(Decision::Rejected),
            (Self::Reject, Some(_)) => Err("the review was approved: there is no rejection to record".into()),
            (Self::Reject, None) => Err("nobody reviewed the documents: there is no rejection to record".into()),
        }
    }
}

/// The input of the `report` and `rejected` steps (their `input:` templates).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportInput {
    /// The directory reviewed (the output of `list`).
    pub dir: String,
    /// The output of `summarize`.
    pub summary: Summary,
    /// The output of `classify`.
    pub documents: Vec<Classification>,
    /// What the `documents` child run stored about the largest document (its `store` step's
    /// output); `None` for a rejection, which does not wait for it.
    #[serde(default)]
    pub largest: Option<UpsertOutcome>,
    /// The output of `approve`, `None` when it was skipped.
    #[serde(default)]
    pub approval: Option<Approval>,
}

/// The largest document as the `documents` child run stored it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LargestDocument {
    /// The record's file in the document store.
    pub file: PathBuf,
    /// The record: digest, counts and top terms.
    pub record: DocumentRecord,
}

/// A review report, as written to `<store>/reports/<run id>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewReport {
    /// The `review` run.
    pub run_id: String,
    /// The directory reviewed.
    pub dir: String,
    /// The outcome.
    pub decision: Decision,
    /// The reviewer's comment, if any.
    pub comment: Option<String>,
    /// The totals.
    pub summary: Summary,
    /// The largest document's record; `None` in a rejection.
    pub largest: Option<LargestDocument>,
    /// Every document classified, in file order.
    pub documents: Vec<Classification>,
    /// When the report was written, RFC 3339 UTC.
    pub written_at: String,
}

impl StoredJson for ReviewReport {
    /// Everything but `written_at`: a retried step that finds the same report keeps it.
    fn same_content(&self, other: &Self) -> bool {
        self.run_id == other.run_id
            && self.dir == other.dir
            && self.decision == other.decision
            && self.comment == other.comment
            && self.summary == other.summary
            && self.largest == other.largest
            && self.documents == other.documents
    }
}

impl ReviewReport {
    /// Builds the report of run `run_id` from the step's input, the decision and the largest
    /// document's record (when the input names one).
    pub fn new(
        run_id: &str,
        input: ReportInput,
        decision: Decision,
        largest: Option<LargestDocument>,
        written_at: &str,
    ) -> Self {
        Self {
            run_id: run_id.to_string(),
            dir: input.dir,
            decision,
            comment: input.approval.and_then(|a| a.comment).filter(|c| !c.trim().is_empty()),
            summary: input.summary,
            largest,
            documents: input.documents,
            written_at: written_at.to_string(),
        }
    }
}

/// The output of the `report` and `rejected` steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportOutcome {
    /// The report's file.
    pub file: PathBuf,
    /// SHA-256 of the file's bytes, hex (`sha256sum` of it).
    pub sha256: String,
    /// The decision it records.
    pub decision: Decision,
    /// True when there was no report of this run before.
    pub created: bool,
    /// True when this step wrote the file; false when an identical report was already there (a
    /// retried step).
    pub written: bool,
}

/// The directory of review reports under a store directory.
pub fn reports_dir(store_dir: &Path) -> PathBuf {
    store_dir.join("reports")
}

/// The file name (without `.json`) of run `run_id`'s report: the run id when it is a plain name,
/// its SHA-256 otherwise.
pub fn report_stem(run_id: &str) -> String {
    let plain = !run_id.is_empty()
        && !run_id.starts_with('.')
        && run_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if plain {
        run_id.to_string()
    } else {
        sha256_hex(run_id.as_bytes())
    }
}

/// Writes `report` to `<store_dir>/reports/<run id>.json` (blocking I/O), once: a report that says
/// the same is kept; one that differs (the run was rerun from `approve` with another decision, say)
/// is replaced. See [`upsert_json`].
///
/// # Errors
/// I/O errors of the reports directory.
pub fn write_report(store_dir: &Path, report: &ReviewReport) -> io::Result<ReportOutcome> {
    let Upserted {
        file,
        created,
        written,
        sha256,
    } = upsert_json(&reports_dir(store_dir), &report_stem(&report.run_id), report)?;
    Ok(ReportOutcome {
        file,
        sha256,
        decision: report.decision,
        created,
        written,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::store::{FileStore, tests::TempDir};

    fn doc(path: &str, text: &str) -> ReadDocument {
        ReadDocument {
            path: path.to_string(),
            bytes: text.len() as u64,
            text: text.to_string(),
        }
    }

    #[test]
    fn lists_regular_files_sorted_without_aliases_hidden_files_or_directories() {
        let dir = TempDir::new("list");
        let root = dir.path();
        for name in ["b.txt", "a.txt", "GPL-3", ".hidden"] {
            fs::write(root.join(name), name).unwrap();
        }
        fs::create_dir(root.join("sub")).unwrap();
        symlink(root.join("GPL-3"), root.join("GPL")).unwrap();
        symlink(root.join("missing"), root.join("dangling")).unwrap();
        symlink(root.join("sub"), root.join("to-dir")).unwrap();
        // A link to a file outside the directory is a file of its own.
        let outside = TempDir::new("list-outside");
        fs::write(outside.path().join("far.txt"), "far").unwrap();
        symlink(outside.path().join("far.txt"), root.join("far")).unwrap();

        let list = list_files(root.to_str().unwrap(), 50).unwrap();
        let canonical = fs::canonicalize(root).unwrap();
        let dir_text = canonical.to_str().unwrap();
        assert_eq!(list.dir, dir_text);
        let names: Vec<&str> = list.files.iter().map(|f| f.rsplit('/').next().unwrap()).collect();
        assert_eq!(names, ["GPL-3", "a.txt", "b.txt", "far"]);
        assert!(list.files.iter().all(|f| f.starts_with(&format!("{dir_text}/"))));
        assert_eq!(list.total, 4);

        let two = list_files(&format!("{}/./", root.display()), 2).unwrap();
        assert_eq!(two.files, list.files[..2]);
        assert_eq!(two.total, 4);
    }

    #[test]
    fn listing_errors_are_classified() {
        let dir = TempDir::new("list-errors");
        let missing = dir.path().join("missing");
        let e = list_files(missing.to_str().unwrap(), 10).unwrap_err();
        assert_eq!(e.error_type(), "NotFound");
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("missing"), "{e}");

        let file = dir.path().join("f.txt");
        fs::write(&file, "x").unwrap();
        assert_eq!(
            list_files(file.to_str().unwrap(), 10).unwrap_err().error_type(),
            "NotADirectory"
        );

        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        fs::write(empty.join(".only-hidden"), "x").unwrap();
        let e = list_files(empty.to_str().unwrap(), 10).unwrap_err();
        assert_eq!(e.error_type(), "NoFiles");
        assert!(!e.is_retryable());
        assert_eq!(
            list_files(dir.path().to_str().unwrap(), 0).unwrap_err().error_type(),
            "NoFiles"
        );
    }

    #[test]
    fn copyleft_licences_are_recognised_by_their_heading() {
        let cases = [
            (
                "\n\t\t    GNU GENERAL PUBLIC LICENSE\n\t\t       Version 2, June 1991\n",
                "GNU GPL",
            ),
            (
                "GNU LESSER GENERAL PUBLIC LICENSE\nVersion 3\n\nThis version of the GNU Lesser General Public License incorporates the GNU General Public License",
                "GNU LGPL",
            ),
            ("GNU LIBRARY GENERAL PUBLIC LICENSE\nVersion 2, June 1991\n", "GNU LGPL"),
            (
                "GNU AFFERO GENERAL PUBLIC LICENSE\nVersion 3, 19 November 2007\n",
                "GNU AGPL",
            ),
            (
                "Mozilla Public License Version 2.0\n==================================\n",
                "MPL",
            ),
            ("MOZILLA PUBLIC\n  LICENSE\nVersion 1.1\n", "MPL"),
            ("Eclipse Public License - v 2.0\n", "EPL"),
            (
                "This program is free software: you can redistribute it and/or modify\nit under the terms of the GNU General Public License as published by\n",
                "GNU GPL",
            ),
        ];
        for (text, name) in cases {
            assert_eq!(
                copyleft_reason(text),
                Some(format!("heading names the {name}")),
                "{text:?}"
            );
        }
    }

    #[test]
    fn spdx_identifiers_and_the_word_copyleft_count() {
        assert_eq!(
            copyleft_reason("// SPDX-License-Identifier: GPL-2.0-or-later\nint main() {}\n").as_deref(),
            Some("SPDX identifier GPL-2.0-OR-LATER")
        );
        assert_eq!(
            copyleft_reason("# SPDX-License-Identifier: (MPL-2.0 OR MIT)\n").as_deref(),
            Some("SPDX identifier MPL-2.0")
        );
        assert_eq!(copyleft_reason("// SPDX-License-Identifier: MIT\n"), None);
        assert_eq!(
            copyleft_reason(
                "GNU Free Documentation License\n\n...\nThis License is a kind of \"CopyLeft\", which means\n"
            )
            .as_deref(),
            Some("mentions copyleft")
        );
    }

    #[test]
    fn permissive_texts_and_later_references_are_not_copyleft() {
        for text in [
            "\t\t\t\t Apache License\n\t\t\t   Version 2.0, January 2004\n",
            "Copyright (c) The Regents of the University of California.\nAll rights reserved.\n",
            "Creative Commons Legal Code\n\nCC0 1.0 Universal\n",
            "",
            // The GPL named only past the heading (MPL 2.0's Secondary Licenses, say).
            "A License\n1\n2\n3\n4\n5\n\"Secondary License\" means the GNU General Public License, Version 2.0\n",
        ] {
            assert_eq!(copyleft_reason(text), None, "{text:?}");
        }
    }

    #[test]
    fn titles_are_the_first_non_empty_line_cut_short() {
        assert_eq!(
            title("\n\n\t\t\t The \"Artistic License\"\n\n\tPreamble\n"),
            "The \"Artistic License\""
        );
        assert_eq!(title(" \n\t\n"), "");
        let long = format!("{}\nnext", "é".repeat(200));
        let t = title(&long);
        assert_eq!(t.chars().count(), TITLE_CHARS);
        assert!(t.ends_with("..."));
    }

    #[test]
    fn classifies_a_document() {
        let c = classify(&doc(
            "/l/GPL-2",
            "  GNU GENERAL PUBLIC LICENSE\n  Version 2, June 1991\n\nFree software.\n",
        ));
        assert_eq!(c.path, "/l/GPL-2");
        assert_eq!((c.lines, c.words), (4, 10));
        assert_eq!(c.bytes, 68);
        assert_eq!(c.title, "GNU GENERAL PUBLIC LICENSE");
        assert!(c.copyleft);
        assert_eq!(c.copyleft_reason.as_deref(), Some("heading names the GNU GPL"));
        assert_eq!(c.error, None);
    }

    #[test]
    fn classify_file_reports_unreadable_files_instead_of_failing() {
        let dir = TempDir::new("classify");
        let text = dir.path().join("MIT");
        fs::write(&text, "MIT License\n\nPermission is hereby granted\n").unwrap();
        let c = classify_file(text.to_str().unwrap()).unwrap();
        assert_eq!((c.title.as_str(), c.copyleft, c.words), ("MIT License", false, 6));

        let binary = dir.path().join("logo.png");
        fs::write(&binary, [0x89, b'P', b'N', b'G', 0xff, 0x00]).unwrap();
        let c = classify_file(binary.to_str().unwrap()).unwrap();
        assert_eq!((c.bytes, c.words, c.copyleft), (0, 0, false));
        assert!(c.error.as_deref().unwrap().starts_with("NotText: "), "{c:?}");

        let gone = dir.path().join("gone");
        let c = classify_file(gone.to_str().unwrap()).unwrap();
        assert!(c.error.as_deref().unwrap().starts_with("NotFound: "), "{c:?}");
    }

    fn classified(path: &str, bytes: u64, words: usize, copyleft: bool) -> Classification {
        Classification {
            path: path.to_string(),
            bytes,
            lines: words / 2,
            words,
            title: path.to_uppercase(),
            copyleft,
            copyleft_reason: copyleft.then(|| "mentions copyleft".to_string()),
            error: None,
        }
    }

    #[test]
    fn summarizes_readable_documents() {
        let mut unreadable = classified("/d/bin", 0, 0, false);
        unreadable.error = Some("NotText: /d/bin is not UTF-8 text".into());
        let docs = [
            classified("/d/a", 100, 20, false),
            classified("/d/b", 300, 40, true),
            unreadable,
            classified("/d/c", 300, 60, true),
        ];
        let s = summarize(&docs).unwrap();
        assert_eq!(
            s,
            Summary {
                count: 3,
                words: 120,
                lines: 60,
                copyleft: vec!["/d/b".into(), "/d/c".into()],
                copyleft_count: 2,
                largest: "/d/b".into(),
                unreadable: vec!["/d/bin".into()],
            },
            "the first of the largest wins"
        );
        assert_eq!(summarize(&docs[2..3]), None, "nothing readable");
        assert_eq!(summarize(&[]), None);
        assert_eq!(summarize(&docs[..1]).unwrap().copyleft_count, 0);
    }

    #[test]
    fn summarize_reads_the_classify_output_it_is_given() {
        let input: SummarizeInput = serde_json::from_value(serde_json::json!({"documents": [
            {"path": "/d/a", "bytes": 5, "lines": 1, "words": 1, "title": "a", "copyleft": false,
             "copyleft_reason": null, "error": null}
        ]}))
        .unwrap();
        assert_eq!(summarize(&input.documents).unwrap().largest, "/d/a");
    }

    #[test]
    fn decisions_follow_the_approval() {
        let approval = |approved| Approval {
            approved,
            comment: None,
        };
        assert_eq!(ReportStep::Publish.decision(None), Ok(Decision::NotRequired));
        assert_eq!(
            ReportStep::Publish.decision(Some(&approval(true))),
            Ok(Decision::Approved)
        );
        assert!(ReportStep::Publish.decision(Some(&approval(false))).is_err());
        assert_eq!(
            ReportStep::Reject.decision(Some(&approval(false))),
            Ok(Decision::Rejected)
        );
        assert!(ReportStep::Reject.decision(Some(&approval(true))).is_err());
        assert!(ReportStep::Reject.decision(None).is_err());
        assert_eq!(
            serde_json::to_value([Decision::Approved, Decision::NotRequired, Decision::Rejected]).unwrap(),
            serde_json::json!(["approved", "not_required", "rejected"])
        );
    }

    #[test]
    fn report_input_reads_the_templates_rendered_by_the_coordinator() {
        let summary = summarize(&[classified("/d/a", 5, 2, true)]).unwrap();
        let input: ReportInput = serde_json::from_value(serde_json::json!({
            "dir": "/d",
            "summary": summary,
            "documents": [classified("/d/a", 5, 2, true)],
            "largest": {"key": "k", "file": "/s/k.json", "created": true, "written": true},
            "approval": null,
        }))
        .unwrap();
        assert_eq!(input.approval, None);
        assert_eq!(input.largest.unwrap().file, PathBuf::from("/s/k.json"));
        // The rejection's input has no `largest`.
        let input: ReportInput = serde_json::from_value(serde_json::json!({
            "dir": "/d", "summary": summary, "documents": [],
            "approval": {"approved": false, "comment": "no GPL here"},
        }))
        .unwrap();
        assert_eq!(input.largest, None);
        assert_eq!(input.approval.unwrap().comment.as_deref(), Some("no GPL here"));
    }

    fn report(run_id: &str, decision: Decision, comment: Option<&str>, written_at: &str) -> ReviewReport {
        let documents = vec![classified("/d/a", 5, 2, true), classified("/d/b", 9, 4, false)];
        let input = ReportInput {
            dir: "/d".into(),
            summary: summarize(&documents).unwrap(),
            documents,
            largest: None,
            approval: comment.map(|c| Approval {
                approved: decision != Decision::Rejected,
                comment: Some(c.to_string()),
            }),
        };
        ReviewReport::new(run_id, input, decision, None, written_at)
    }

    #[test]
    fn reports_are_written_once_per_content_and_replaced_when_it_changes() {
        let dir = TempDir::new("report");
        let store = dir.path().join("store");
        let first = report("run-1", Decision::Approved, Some("fine"), "2026-01-01T00:00:00.000Z");
        let out = write_report(&store, &first).unwrap();
        assert!(out.created && out.written, "{out:?}");
        assert_eq!(out.decision, Decision::Approved);
        assert_eq!(out.file, store.join("reports").join("run-1.json"));
        let bytes = fs::read(&out.file).unwrap();
        assert_eq!(out.sha256, sha256_hex(&bytes));
        let stored: ReviewReport = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(stored, first);
        assert_eq!(stored.comment.as_deref(), Some("fine"));

        // The step again, later (a retry): the report is kept as it was, with its digest.
        let again = report("run-1", Decision::Approved, Some("fine"), "2026-01-01T00:05:00.000Z");
        let out2 = write_report(&store, &again).unwrap();
        assert_eq!((out2.created, out2.written), (false, false));
        assert_eq!(out2.sha256, out.sha256);
        assert_eq!(fs::read(&out.file).unwrap(), bytes);

        // Rerun from `approve` and rejected: the rejection replaces the report.
        let rejected = report("run-1", Decision::Rejected, Some("no"), "2026-01-02T00:00:00.000Z");
        let out3 = write_report(&store, &rejected).unwrap();
        assert_eq!((out3.created, out3.written), (false, true));
        assert_ne!(out3.sha256, out.sha256);
        assert_eq!(out3.decision, Decision::Rejected);

        // Another run has its own report; nothing else is left in the directory.
        write_report(&store, &report("run-2", Decision::NotRequired, None, "t")).unwrap();
        let mut names: Vec<String> = fs::read_dir(store.join("reports"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["run-1.json", "run-2.json"]);
        // Reports stay out of the document records' directory.
        assert!(FileStore::new(&store).get("/d/a").unwrap().is_none());
    }

    #[test]
    fn blank_comments_are_dropped() {
        let r = report("run-1", Decision::Approved, Some("  "), "t");
        assert_eq!(r.comment, None);
    }

    #[test]
    fn report_file_names_are_safe() {
        assert_eq!(
            report_stem("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"),
            "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
        );
        for odd in ["../etc/passwd", "a/b", ".hidden", ""] {
            let stem = report_stem(odd);
            assert_eq!(stem, sha256_hex(odd.as_bytes()));
            assert_eq!(stem.len(), 64);
        }
    }
}
