//! The archive's figures (issue 20), measured on PostgreSQL alone: writes `--runs` finished
//! one-step runs in batches of `--batch` as the archiver does (one writer, one transaction per
//! batch), then times GetRun of random archived runs and a ListRuns search with a status + time +
//! input-field filter (`status = "failed" AND created > "-6h" AND input.customer.id = "c-N"`, 50
//! per page), and prints runs/s and the p50/p99 of each, in ms. The runs go in a schema of their
//! own (`bench_<random>`), dropped at the end unless `--keep`.
//!
//! ```sh
//! cargo run --release -p baton-coordinator --example archive_bench -- --runs 1000000
//! ```
//!
//! The runs look like the engine's: a one-step run with an input of a customer id (1,000
//! customers), an output, one attempt; 90% succeeded, 8% failed (error type `Timeout`), 2%
//! cancelled; created over the last 24 hours, finished 2 s later.

use std::time::{Duration, Instant};

use baton_coordinator::archive::{Archive, ArchiveConfig, ArchivedRun, search::RunConditions};
use baton_shared::proto::{self, Attempt, Run, RunStatus, StepRun, StepStatus};
use baton_shared::query::Filter;
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// PostgreSQL to measure (a schema of its own is made in it).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    url: String,
    /// Runs to write.
    #[arg(long, default_value_t = 100_000)]
    runs: u32,
    /// Runs per write (the archiver's `archive_batch`).
    #[arg(long, default_value_t = 500)]
    batch: u32,
    /// GetRun and ListRuns calls to time.
    #[arg(long, default_value_t = 1_000)]
    samples: u32,
    /// Keep the schema (and its runs) at the end.
    #[arg(long)]
    keep: bool,
}

fn ts(ms: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    })
}

/// Run `i` of the bench, created `ago_ms` before `now_ms`.
fn run(i: u32, now_ms: i64, ago_ms: i64) -> ArchivedRun {
    let created = now_ms - ago_ms;
    let finished = created + 2_000;
    let (status, step_status, outcome, error_types) = match i % 50 {
        0..=3 => (
            RunStatus::Failed,
            StepStatus::Failed,
            "failed",
            vec!["Timeout".to_string()],
        ),
        4 => (RunStatus::Cancelled, StepStatus::Cancelled, "cancelled", vec![]),
        _ => (RunStatus::Succeeded, StepStatus::Succeeded, "succeeded", vec![]),
    };
    let input = serde_json::json!({"customer": {"id": format!("c-{}", i % 1000)}, "order": i}).to_string();
    let output = if status == RunStatus::Succeeded {
        serde_json::json!({"charge": {"ok": true, "order": i}}).to_string()
    } else {
        String::new()
    };
    let error = if status == RunStatus::Failed {
        "step charge failed after 1 attempt(s): timed out"
    } else {
        ""
    };
    ArchivedRun {
        namespace: "bench".into(),
        run: Run {
            id: uuid::Uuid::new_v4().to_string(),
            workflow: "shop".into(),
            version: 1,
            status: status as i32,
            input_json: input.clone(),
            output_json: output.clone(),
            error: error.into(),
            created_at: ts(created),
            started_at: ts(created + 5),
            finished_at: ts(finished),
            steps: vec![StepRun {
                id: "charge".into(),
                handler: "charge".into(),
                status: step_status as i32,
                attempt: 1,
                max_attempts: 1,
                output_json: output,
                error: error.into(),
                dispatched_at: ts(created + 1),
                started_at: ts(created + 5),
                finished_at: ts(finished),
                kind: "task".into(),
                worker: "w-1".into(),
                attempts: vec![Attempt {
                    number: 1,
                    outcome: outcome.into(),
                    error: error.into(),
                    worker: "w-1".into(),
                    started_at: ts(created + 5),
                    finished_at: ts(finished),
                    input_json: input,
                    error_type: error_types.first().cloned().unwrap_or_default(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        },
        error_types,
        history: vec![proto::RunEvent {
            kind: "run".into(),
            ..Default::default()
        }],
        human_tasks: vec![],
    }
}

fn percentiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |p: f64| {
        v.get(((v.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    (at(0.5), at(0.99))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let archive = Archive::connect(&ArchiveConfig {
        url: args.url.clone(),
        schema: schema.clone(),
        retention: Duration::from_secs(30 * 86_400),
        grace: Duration::from_secs(300),
        batch: args.batch as usize,
        // The bench times reads; a stuck one should fail it, not hang it.
        read_timeout: Duration::from_secs(60),
    })
    .await?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let day_ms: i64 = 86_400_000;

    // Writes, one batch at a time.
    let mut ids = Vec::new();
    let began = Instant::now();
    let mut i = 0u32;
    while i < args.runs {
        let n = args.batch.min(args.runs - i);
        let batch: Vec<ArchivedRun> = (i..i + n)
            .map(|k| run(k, now_ms, (i64::from(k) * 7_919) % (day_ms - 10_000)))
            .collect();
        if ids.len() < 100_000 {
            ids.extend(batch.iter().map(|r| r.run.id.clone()));
        }
        archive.write(&batch).await?;
        i += n;
        if i.is_multiple_of(100_000) {
            eprintln!("{i} runs written");
        }
    }
    let secs = began.elapsed().as_secs_f64();
    println!(
        "write: {} runs in batches of {} in {secs:.1} s: {:.0} runs/s",
        args.runs,
        args.batch,
        f64::from(args.runs) / secs
    );

    // GetRun of random archived runs.
    let mut get = Vec::new();
    for k in 0..args.samples {
        let id = &ids[(k as usize * 7_877) % ids.len()];
        let t = Instant::now();
        let found = archive.get_run("bench", id).await?;
        get.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(found.is_some(), "run {id} not found");
    }
    let (p50, p99) = percentiles(get);
    println!(
        "GetRun of an archived run: p50 {p50:.3} ms, p99 {p99:.3} ms ({} calls)",
        args.samples
    );

    // ListRuns with a status + time + input-field filter, and its counts.
    let mut list = Vec::new();
    let mut count = Vec::new();
    let mut found = 0usize;
    for k in 0..args.samples {
        let q = format!(
            r#"status = "failed" AND created > "-6h" AND input.customer.id = "c-{}""#,
            (k * 50) % 1000
        );
        let filter = Filter::parse(&q).map_err(|e| anyhow::anyhow!("{e}"))?;
        let now = chrono::Utc::now();
        let t = Instant::now();
        let page = archive
            .list_runs("bench", &RunConditions::default(), Some(&filter), None, 50, now)
            .await?;
        list.push(t.elapsed().as_secs_f64() * 1000.0);
        found += page.len();
        let t = Instant::now();
        archive
            .count_by_status("bench", &RunConditions::default(), Some(&filter), now)
            .await?;
        count.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (p50, p99) = percentiles(list);
    println!(
        "ListRuns, status + time + input filter, 50 per page, {} runs archived: p50 {p50:.3} ms, p99 {p99:.3} ms ({} calls, {:.1} runs per answer)",
        args.runs,
        args.samples,
        found as f64 / f64::from(args.samples.max(1))
    );
    let (p50, p99) = percentiles(count);
    println!("  its counts by status: p50 {p50:.3} ms, p99 {p99:.3} ms");

    archive.close().await;
    if !args.keep {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&args.url).await?;
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&mut c)
            .await?;
    }
    Ok(())
}
