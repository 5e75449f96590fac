//! Searching the PostgreSQL archive: for generated filters over a few hundred stored runs, the SQL
//! the filter compiles to (`Filter::to_sql`, run by `Archive::list_runs` and
//! `Archive::count_by_status`) selects exactly the runs the in-memory evaluator
//! (`Filter::matches`, used for the runs still in Redis) selects; and keyset pages walk every
//! match once. The test works in a PostgreSQL schema of its own, dropped at the end.

use std::collections::BTreeSet;

use baton_coordinator::archive::{
    Archive, ArchivedRun,
    search::{PageKey, RunConditions},
};
use baton_shared::{
    proto::{self, RunStatus},
    query::{Filter, RunFacts},
};
use chrono::{DateTime, Utc};
use proptest::prelude::*;

use baton_tests::pg::Schema;

/// A small deterministic generator (the runs are the same on every run of the test).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

fn ts(t: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    })
}

const PARENTS: [&str; 2] = [
    "0190c3e4-0000-7000-8000-0000000000a1",
    "0190c3e4-0000-7000-8000-0000000000a2",
];

/// `n` finished runs spread over the last 10 days, with every field a filter reads varied.
fn runs(n: usize, now: DateTime<Utc>) -> Vec<ArchivedRun> {
    let mut g = Lcg(42);
    let statuses = [
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
        RunStatus::TimedOut,
    ];
    (0..n)
        .map(|i| {
            let created = now - chrono::Duration::milliseconds(i64::try_from(g.next(10 * 86_400_000)).unwrap_or(0));
            let finished = created + chrono::Duration::milliseconds(i64::try_from(g.next(3_600_000)).unwrap_or(0));
            let mut input = serde_json::json!({"n": g.next(5), "tag": format!("t{}", g.next(3))});
            if g.next(2) == 0 {
                input["opt"] = serde_json::Value::Bool(g.next(2) == 0);
            }
            if g.next(4) == 0 {
                input["n"] = serde_json::Value::Null;
            }
            let status = statuses[usize::try_from(g.next(4)).unwrap_or(0)];
            let output = match (status, g.next(3)) {
                (RunStatus::Succeeded, 0) => String::new(),
                (RunStatus::Succeeded, k) => format!(r#"{{"ok":{},"k":{k}}}"#, k == 1),
                _ => String::new(),
            };
            let error_types: Vec<String> = match g.next(4) {
                0 => vec!["X".into()],
                1 => vec!["X".into(), "Y".into()],
                2 => vec!["Y".into()],
                _ => vec![],
            };
            ArchivedRun {
                namespace: "search".into(),
                run: proto::Run {
                    id: format!("0190c3e4-0000-7000-8000-{i:012}"),
                    workflow: ["a", "b", "c"][usize::try_from(g.next(3)).unwrap_or(0)].into(),
                    version: u32::try_from(g.next(3)).unwrap_or(0) + 1,
                    status: status as i32,
                    input_json: input.to_string(),
                    output_json: output,
                    idempotency_key: match g.next(3) {
                        0 => "k1".into(),
                        1 => format!("k-{i}"),
                        _ => String::new(),
                    },
                    parent_run_id: match g.next(3) {
                        0 => PARENTS[0].into(),
                        1 => PARENTS[1].into(),
                        _ => String::new(),
                    },
                    created_at: ts(created),
                    started_at: ts(created),
                    finished_at: ts(finished),
                    ..Default::default()
                },
                error_types,
                history: vec![],
                human_tasks: vec![],
            }
        })
        .collect()
}

/// The ids `Filter::matches` selects.
fn matched(filter: &Filter, runs: &[ArchivedRun], now: DateTime<Utc>) -> BTreeSet<String> {
    let time = |t: Option<&prost_types::Timestamp>| {
        t.and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
    };
    runs.iter()
        .filter(|a| {
            let r = &a.run;
            let input: Option<serde_json::Value> = serde_json::from_str(&r.input_json).ok();
            let output: Option<serde_json::Value> = serde_json::from_str(&r.output_json).ok();
            let facts = RunFacts {
                id: &r.id,
                workflow: &r.workflow,
                version: r.version,
                status: RunStatus::try_from(r.status).unwrap_or(RunStatus::Unspecified).word(),
                created: time(r.created_at.as_ref()).unwrap_or_default(),
                finished: time(r.finished_at.as_ref()),
                parent: (!r.parent_run_id.is_empty()).then_some(r.parent_run_id.as_str()),
                idempotency_key: (!r.idempotency_key.is_empty()).then_some(r.idempotency_key.as_str()),
                error_types: &a.error_types,
                input: input.as_ref(),
                output: output.as_ref(),
            };
            filter.matches(&facts, now)
        })
        .map(|a| a.run.id.clone())
        .collect()
}

/// One comparison of the filter language, over the fields the generated runs vary.
fn comparison() -> impl Strategy<Value = String> {
    let op = prop::sample::select(vec!["=", "!=", "<", "<=", ">", ">="]);
    prop_oneof![
        prop::sample::select(vec!["a", "b", "c", "d"]).prop_map(|w| format!("workflow = \"{w}\"")),
        prop::sample::select(vec!["a", "b"]).prop_map(|w| format!("workflow != \"{w}\"")),
        (op.clone(), 0u32..4).prop_map(|(o, v)| format!("version {o} {v}")),
        prop::sample::select(vec![
            "succeeded",
            "failed",
            "cancelled",
            "timed_out",
            "RUN_STATUS_FAILED"
        ])
        .prop_map(|s| format!("status = \"{s}\"")),
        (op.clone(), 0u32..12).prop_map(|(o, d)| format!("created {o} \"-{d}days\"")),
        (op.clone(), 0u32..12).prop_map(|(o, d)| format!("finished {o} \"-{d}days\"")),
        (
            prop::sample::select(vec!["=", "!="]),
            prop::sample::select(PARENTS.to_vec())
        )
            .prop_map(|(o, p)| format!("parent {o} \"{p}\"")),
        (
            prop::sample::select(vec!["=", "!="]),
            prop::sample::select(vec!["k1", "k-3", "zz"])
        )
            .prop_map(|(o, k)| format!("idempotency_key {o} \"{k}\"")),
        (
            prop::sample::select(vec!["=", "!="]),
            prop::sample::select(vec!["X", "Y", "Z"])
        )
            .prop_map(|(o, t)| format!("error_type {o} \"{t}\"")),
        Just("error_type IN (\"X\", \"Z\")".to_string()),
        (op.clone(), 0u32..5).prop_map(|(o, n)| format!("input.n {o} {n}")),
        Just("input.n = null".to_string()),
        Just("input.n IN (1, 3)".to_string()),
        (prop::sample::select(vec!["=", "!="]), 0u32..3).prop_map(|(o, t)| format!("input.tag {o} \"t{t}\"")),
        prop::sample::select(vec!["true", "false"]).prop_map(|b| format!("input.opt = {b}")),
        (
            prop::sample::select(vec!["=", "!="]),
            prop::sample::select(vec!["true", "false"])
        )
            .prop_map(|(o, b)| format!("output.ok {o} {b}")),
        (op, 0u32..3).prop_map(|(o, k)| format!("output.k {o} {k}")),
    ]
}

/// Comparisons combined with AND, OR, NOT and parentheses, a few levels deep.
fn filter_text() -> impl Strategy<Value = String> {
    comparison().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) AND ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) OR ({b})")),
            inner.prop_map(|a| format!("NOT ({a})")),
        ]
    })
}

#[test]
fn the_sql_and_the_in_memory_evaluator_select_the_same_runs() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let schema = Schema::new();
    let archive = rt.block_on(Archive::connect(&schema.config())).expect("connect");
    // Whole milliseconds, as Redis keeps a run's creation time.
    let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_default();
    let stored = runs(300, now);
    let report = rt.block_on(archive.write(&stored)).expect("write");
    assert_eq!(report.written, 300, "{report:?}");
    let cases = std::env::var("BATON_SEARCH_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&filter_text(), |text| {
        let filter = Filter::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let expected = matched(&filter, &stored, now);
        let listed = rt
            .block_on(archive.list_runs("search", &RunConditions::default(), Some(&filter), None, 1000, now))
            .map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let got: BTreeSet<String> = listed.iter().map(|l| l.run.id.clone()).collect();
        prop_assert_eq!(&got, &expected, "filter: {}", text);
        let counts = rt
            .block_on(archive.count_by_status("search", &RunConditions::default(), Some(&filter), now))
            .map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let total: u64 = counts.values().sum();
        prop_assert_eq!(total, expected.len() as u64, "counts of {}: {:?}", text, counts);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[tokio::test]
async fn keyset_pages_walk_every_matching_run_once_newest_first() {
    let schema = Schema::new();
    let archive = Archive::connect(&schema.config()).await.expect("connect");
    // Whole milliseconds, as Redis keeps a run's creation time.
    let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_default();
    let stored = runs(120, now);
    archive.write(&stored).await.expect("write");
    let filter = Filter::parse(r#"status = "failed" OR input.tag = "t1""#).expect("parse");
    let expected = matched(&filter, &stored, now);
    let conditions = RunConditions {
        workflow: None,
        ..RunConditions::default()
    };
    let mut seen = Vec::new();
    let mut after: Option<PageKey> = None;
    loop {
        let page = archive
            .list_runs("search", &conditions, Some(&filter), after.as_ref(), 7, now)
            .await
            .expect("page");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        // A page token round-trips to the same place.
        let last = page.last().map(|l| l.key.clone()).expect("a run");
        assert_eq!(PageKey::from_token(&last.token()), Some(last.clone()));
        seen.extend(page.into_iter().map(|l| (l.key, l.run.id)));
        after = Some(last);
    }
    let keys: Vec<&PageKey> = seen.iter().map(|(k, _)| k).collect();
    assert!(keys.windows(2).all(|w| w[0] > w[1]), "newest first, no repeats");
    let ids: BTreeSet<String> = seen.into_iter().map(|(_, id)| id).collect();
    assert_eq!(ids, expected);
}
