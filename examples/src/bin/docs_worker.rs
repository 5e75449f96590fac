//! `docs-worker`: serves the handlers of the `documents` example workflow
//! (`examples/workflows/documents.yaml`):
//!
//! - `docs.read` reads the file at the run input's `path` → `{path, bytes, text}`; a missing file
//!   fails the run at once (non-retryable `NotFound`);
//! - `docs.analyze` counts lines, words and the top terms → `{lines, words, top_terms}`; it fails
//!   on purpose, with a retryable error, on a fraction `--failure-rate` of its attempts;
//! - `docs.digest` hashes the content → `{sha256, bytes}`;
//! - `docs.store` upserts a record of the document into the file store `--store-dir`
//!   → `{key, file, created, written}`; a retried step writes once;
//!
//! and those of the `review` example workflow (`examples/workflows/review.yaml`):
//!
//! - `docs.list` lists the files of `{dir, limit}` → `{dir, files, total}`;
//! - `docs.classify` reads one file (a fan-out element: its input is the path)
//!   → `{path, bytes, lines, words, title, copyleft, copyleft_reason, error}`;
//! - `docs.summarize` sums up `{documents}` → `{count, words, lines, copyleft, copyleft_count,
//!   largest, unreadable}`, and emits the totals as a progress event;
//! - `docs.report` and `docs.reject` write the review report (decision `approved` or
//!   `not_required`, or `rejected`) to `<store-dir>/reports/<run id>.json`
//!   → `{file, sha256, decision, created, written}`; a retried step writes once;
//!
//! and those of the `doc-scan` example workflow (`examples/workflows/scan.yaml`):
//!
//! - `docs.scan` walks `{dir, file_name, max_depth, limit}` and compares each file's SHA-256 with
//!   the record in the file store → `{dir, files: [{path, sha256}], found, new, changed, unchanged,
//!   deferred, skipped, unlisted}`, `files` being the new or changed ones (its step emits one
//!   `documents` run per file);
//! - `docs.scan_summary` checks which of them the store now holds → `{dir, found, unchanged,
//!   emitted, stored, not_stored, skipped, deferred}`.
//!
//! Run it with the coordinator's RabbitMQ URL and namespace, e.g.
//! `BATON_WORKER_ID=worker-1 docs-worker --failure-rate 0.3 --store-dir .baton/store`.

use std::{fmt, io, path::PathBuf, time::SystemTime};

use baton_examples::{
    Analysis, Classification, DocumentDigest, DocumentRecord, FailureRate, FileList, FileStore, LargestDocument,
    ListInput, ReadDocument, ReportInput, ReportOutcome, ReportStep, ReviewReport, ScanInput, ScanOutput, ScanSummary,
    ScanSummaryInput, SummarizeInput, Summary, analyze, classify_file, list_files, read_document, rfc3339_utc, scan,
    summarize, summarize_scan, write_report,
};
use baton_worker::{StepContext, StepError, Worker, WorkerArgs};
use clap::Parser;
use serde::Deserialize;

/// Worker for the `documents` example workflow (handlers docs.read, docs.analyze, docs.digest,
/// docs.store), the `review` one (docs.list, docs.classify, docs.summarize, docs.report,
/// docs.reject) and `doc-scan` (docs.scan, docs.scan_summary).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Fraction (0 to 1) of `docs.analyze` attempts that fail on purpose with a retryable error,
    /// so that retries show.
    #[arg(long, env = "DOCS_FAILURE_RATE", default_value = "0.3")]
    failure_rate: FailureRate,
    /// Directory of the document store (created if missing).
    #[arg(long, env = "DOCS_STORE_DIR", default_value = ".baton/store")]
    store_dir: PathBuf,
    /// Coordinator, RabbitMQ, namespace, concurrency and worker id.
    #[command(flatten)]
    worker: WorkerArgs,
}

/// The run input of the `documents` workflow.
#[derive(Deserialize)]
struct DocumentInput {
    path: String,
}

/// Runs blocking file-system work off the async runtime; a panic there is a retryable failure.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StepError> + Send + 'static,
) -> Result<T, StepError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StepError::retryable(format!("blocking task failed: {e}")))?
}

/// A failure of the library as a step error: retryable or not, and of the type, that it says.
fn step_error(e: impl fmt::Display, retryable: bool, error_type: &str) -> StepError {
    let err = if retryable {
        StepError::retryable(e)
    } else {
        StepError::non_retryable(e)
    };
    err.with_type(error_type)
}

/// A failure to read or write the file store: retryable, of type `Io`.
fn store_error(store: &FileStore, e: io::Error) -> StepError {
    StepError::retryable(format!("store {}: {e}", store.dir().display())).with_type("Io")
}

/// A handler that calls `f` with the step's context, its input and a clone of `store`.
fn with_store<I, Fut>(
    store: &FileStore,
    f: impl Fn(StepContext, I, FileStore) -> Fut + Send + Sync + 'static,
) -> impl Fn(StepContext, I) -> Fut + Send + Sync + 'static {
    let store = store.clone();
    move |ctx, input| f(ctx, input, store.clone())
}

async fn read(ctx: StepContext, input: DocumentInput) -> Result<ReadDocument, StepError> {
    let path = input.path.clone();
    let doc =
        blocking(move || read_document(&path).map_err(|e| step_error(&e, e.is_retryable(), e.error_type()))).await?;
    tracing::info!(run = ctx.run_id(), path = %doc.path, bytes = doc.bytes, "read");
    Ok(doc)
}

async fn analyze_step(ctx: StepContext, failure_rate: FailureRate) -> Result<Analysis, StepError> {
    if failure_rate.fails(rand::random::<f64>()) {
        tracing::info!(
            run = ctx.run_id(),
            attempt = ctx.attempt(),
            "analyze: failing on purpose"
        );
        return Err(StepError::retryable(format!(
            "simulated transient failure (attempt {}, --failure-rate {failure_rate})",
            ctx.attempt()
        ))
        .with_type("Flaky"));
    }
    let doc: ReadDocument = ctx.output_of("read")?;
    let analysis = blocking(move || Ok(analyze(&doc.text))).await?;
    tracing::info!(
        run = ctx.run_id(),
        attempt = ctx.attempt(),
        lines = analysis.lines,
        words = analysis.words,
        "analyzed"
    );
    Ok(analysis)
}

async fn digest(ctx: StepContext) -> Result<DocumentDigest, StepError> {
    let doc: ReadDocument = ctx.output_of("read")?;
    let digest = blocking(move || Ok(doc.digest())).await?;
    tracing::info!(run = ctx.run_id(), sha256 = %digest.sha256, "digested");
    Ok(digest)
}

async fn store(
    ctx: StepContext,
    input: DocumentInput,
    store: FileStore,
) -> Result<baton_examples::UpsertOutcome, StepError> {
    let digest: DocumentDigest = ctx.output_of("digest")?;
    let analysis: Analysis = ctx.output_of("analyze")?;
    let record = DocumentRecord::new(&input.path, &digest, analysis, ctx.run_id(), SystemTime::now());
    let outcome = blocking(move || store.upsert(&record).map_err(|e| store_error(&store, e))).await?;
    tracing::info!(
        run = ctx.run_id(),
        key = %outcome.key,
        created = outcome.created,
        written = outcome.written,
        "stored"
    );
    Ok(outcome)
}

async fn list(ctx: StepContext, input: ListInput) -> Result<FileList, StepError> {
    let ListInput { dir, limit } = input;
    let list =
        blocking(move || list_files(&dir, limit).map_err(|e| step_error(&e, e.is_retryable(), e.error_type()))).await?;
    tracing::info!(
        run = ctx.run_id(),
        dir = %list.dir,
        files = list.files.len(),
        total = list.total,
        "listed"
    );
    Ok(list)
}

async fn classify(ctx: StepContext, path: String) -> Result<Classification, StepError> {
    let c =
        blocking(move || classify_file(&path).map_err(|e| StepError::retryable(&e).with_type(e.error_type()))).await?;
    tracing::info!(
        run = ctx.run_id(),
        item = ?ctx.item_index(),
        path = %c.path,
        copyleft = c.copyleft,
        unreadable = c.error.is_some(),
        "classified"
    );
    Ok(c)
}

async fn summarize_step(ctx: StepContext, input: SummarizeInput) -> Result<Summary, StepError> {
    let summary = summarize(&input.documents).ok_or_else(|| {
        StepError::non_retryable(format!("none of the {} documents could be read", input.documents.len()))
            .with_type("NoDocuments")
    })?;
    tracing::info!(
        run = ctx.run_id(),
        count = summary.count,
        copyleft = summary.copyleft_count,
        largest = %summary.largest,
        "summarized"
    );
    // A progress event for `baton run watch`; the summary is the output either way.
    let event = serde_json::json!({
        "documents": summary.count,
        "copyleft": summary.copyleft_count,
        "unreadable": summary.unreadable.len(),
        "largest": summary.largest,
    });
    if let Err(e) = ctx.emit(event).await {
        tracing::warn!(run = ctx.run_id(), error = %e, "could not emit the summary event");
    }
    Ok(summary)
}

async fn report(
    ctx: StepContext,
    input: ReportInput,
    store: FileStore,
    step: ReportStep,
) -> Result<ReportOutcome, StepError> {
    let decision = step
        .decision(input.approval.as_ref())
        .map_err(|m| StepError::non_retryable(m).with_type("InvalidInput"))?;
    let run_id = ctx.run_id().to_string();
    let outcome = blocking(move || {
        // The record the `documents` child run stored about the largest document.
        let largest = match &input.largest {
            None => None,
            Some(stored) => {
                let record = store
                    .get(&input.summary.largest)
                    .map_err(|e| store_error(&store, e))?
                    .ok_or_else(|| {
                        StepError::non_retryable(format!(
                            "no record of {} in {}",
                            input.summary.largest,
                            store.dir().display()
                        ))
                        .with_type("MissingRecord")
                    })?;
                Some(LargestDocument {
                    file: stored.file.clone(),
                    record,
                })
            }
        };
        let report = ReviewReport::new(&run_id, input, decision, largest, &rfc3339_utc(SystemTime::now()));
        write_report(store.dir(), &report)
            .map_err(|e| StepError::retryable(format!("reports in {}: {e}", store.dir().display())).with_type("Io"))
    })
    .await?;
    tracing::info!(
        run = ctx.run_id(),
        decision = %outcome.decision,
        file = %outcome.file.display(),
        written = outcome.written,
        "review report"
    );
    Ok(outcome)
}

async fn scan_step(ctx: StepContext, input: ScanInput, store: FileStore) -> Result<ScanOutput, StepError> {
    let out =
        blocking(move || scan(&input, &store).map_err(|e| step_error(&e, e.is_retryable(), e.error_type()))).await?;
    tracing::info!(
        run = ctx.run_id(),
        dir = %out.dir,
        found = out.found,
        new = out.new,
        changed = out.changed,
        unchanged = out.unchanged,
        deferred = out.deferred,
        skipped = out.skipped.len(),
        unlisted = out.unlisted.len(),
        "scanned"
    );
    Ok(out)
}

async fn scan_summary(ctx: StepContext, input: ScanSummaryInput, store: FileStore) -> Result<ScanSummary, StepError> {
    let summary = blocking(move || summarize_scan(&input.scan, &store).map_err(|e| store_error(&store, e))).await?;
    tracing::info!(
        run = ctx.run_id(),
        emitted = summary.emitted,
        stored = summary.stored,
        not_stored = summary.not_stored.len(),
        "scan summary"
    );
    Ok(summary)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    baton_worker::init_tracing();
    let args = Args::parse();
    if let Err(e) = std::fs::create_dir_all(&args.store_dir) {
        eprintln!(
            "error: cannot create the store directory {}: {e}",
            args.store_dir.display()
        );
        return std::process::ExitCode::FAILURE;
    }
    let config = args.worker.config();
    tracing::info!(
        worker = %config.worker_id,
        failure_rate = %args.failure_rate,
        store_dir = %args.store_dir.display(),
        "docs-worker starting"
    );
    let failure_rate = args.failure_rate;
    let file_store = FileStore::new(args.store_dir);
    let worker = Worker::new(config)
        .handler("docs.read", read)
        .handler("docs.analyze", move |ctx, _input: serde::de::IgnoredAny| {
            analyze_step(ctx, failure_rate)
        })
        .handler("docs.digest", |ctx, _input: serde::de::IgnoredAny| digest(ctx))
        .handler("docs.store", with_store(&file_store, store))
        .handler("docs.list", list)
        .handler("docs.classify", classify)
        .handler("docs.summarize", summarize_step)
        .handler(
            "docs.report",
            with_store(&file_store, |ctx, input: ReportInput, store| {
                report(ctx, input, store, ReportStep::Publish)
            }),
        )
        .handler(
            "docs.reject",
            with_store(&file_store, |ctx, input: ReportInput, store| {
                report(ctx, input, store, ReportStep::Reject)
            }),
        )
        .handler("docs.scan", with_store(&file_store, scan_step))
        .handler("docs.scan_summary", with_store(&file_store, scan_summary));
    match worker.run(baton_worker::shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn flags_are_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn failure_rate_out_of_range_is_a_clear_error() {
        let err = Args::try_parse_from(["docs-worker", "--failure-rate", "1.5"]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("--failure-rate"), "{text}");
        assert!(text.contains("from 0 to 1"), "{text}");
        let ok = Args::try_parse_from(["docs-worker", "--failure-rate", "0", "--store-dir", "/tmp/s"]).unwrap();
        assert_eq!(ok.failure_rate.get(), 0.0);
        assert_eq!(ok.store_dir, PathBuf::from("/tmp/s"));
    }
}
