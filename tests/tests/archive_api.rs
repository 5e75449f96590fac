//! ListRuns over the archive and Redis together, through a real coordinator with `archive_url`
//! set: a `query` finds archived runs and runs still in Redis alike, counts by status cover every
//! match, pages walk them newest first, and a filter that does not parse is INVALID_ARGUMENT
//! naming `query` and the column. The archive lives in a PostgreSQL schema of the test's own.

use std::{collections::BTreeSet, time::Duration};

use baton_coordinator::archive::{Archive, ArchivedRun};
use baton_shared::proto::{self, ListRunsRequest, RunStatus};
use baton_tests::{Cluster, POSTGRES_URL, pg::Schema};
use serde_json::json;

fn archived(namespace: &str, id: &str, status: RunStatus, customer: &str, minutes_ago: i64) -> ArchivedRun {
    let created = chrono::Utc::now() - chrono::Duration::minutes(minutes_ago);
    let ts = |t: chrono::DateTime<chrono::Utc>| {
        Some(prost_types::Timestamp {
            seconds: t.timestamp(),
            nanos: i32::try_from(t.timestamp_subsec_millis() * 1_000_000).unwrap_or(0),
        })
    };
    ArchivedRun {
        namespace: namespace.into(),
        run: proto::Run {
            id: id.into(),
            workflow: "shop".into(),
            version: 1,
            status: status as i32,
            input_json: json!({"customer": {"id": customer}}).to_string(),
            created_at: ts(created),
            started_at: ts(created),
            finished_at: ts(created + chrono::Duration::seconds(2)),
            ..Default::default()
        },
        error_types: if status == RunStatus::Failed {
            vec!["CardDeclined".into()]
        } else {
            vec![]
        },
        history: vec![],
        human_tasks: vec![],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_finds_archived_runs_and_runs_in_redis_alike() {
    let schema = Schema::new();
    let http_port = baton_tests::free_port();
    let http_addr = format!("127.0.0.1:{http_port}");
    let mut cluster = Cluster::start(
        "asearch",
        &[
            ("BATON_ARCHIVE_URL", POSTGRES_URL),
            ("BATON_ARCHIVE_SCHEMA", &schema.0),
            ("BATON_HTTP_ADDR", &http_addr),
        ],
    )
    .await;
    cluster
        .register("name: shop\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    cluster.spawn_worker("w1", 4);
    // Runs in Redis (finished there: nothing moves them to the archive in this test).
    let live_42 = cluster.submit("shop", json!({"customer": {"id": "c-42"}})).await;
    let live_7 = cluster.submit("shop", json!({"customer": {"id": "c-7"}})).await;
    for id in [&live_42, &live_7] {
        cluster.wait_run(id, Duration::from_secs(60)).await;
    }
    // Runs already in the archive (as the archiver would have written them), older.
    let archive = Archive::connect(&schema.config()).await.expect("archive");
    let old_42_failed = uuid::Uuid::new_v4().to_string();
    let old_42_ok = uuid::Uuid::new_v4().to_string();
    let old_9 = uuid::Uuid::new_v4().to_string();
    let report = archive
        .write(&[
            archived(&cluster.namespace, &old_42_failed, RunStatus::Failed, "c-42", 30),
            archived(&cluster.namespace, &old_42_ok, RunStatus::Succeeded, "c-42", 40),
            archived(&cluster.namespace, &old_9, RunStatus::Succeeded, "c-9", 50),
            // Another namespace's run is never listed.
            archived(
                "other",
                &uuid::Uuid::new_v4().to_string(),
                RunStatus::Failed,
                "c-42",
                10,
            ),
        ])
        .await
        .expect("write");
    assert_eq!(report.written, 4);

    let mut runs = cluster.runs().await;
    let list = |query: &str, limit: u32, token: &str, counts: bool| ListRunsRequest {
        query: query.into(),
        limit,
        page_token: token.into(),
        with_counts: counts,
        ..Default::default()
    };
    // One query over both, newest first: the run in Redis, then the archived ones.
    let page = runs
        .list_runs(list(r#"input.customer.id = "c-42""#, 0, "", true))
        .await
        .expect("list")
        .into_inner();
    let ids: Vec<&str> = page.runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, [live_42.as_str(), old_42_failed.as_str(), old_42_ok.as_str()]);
    assert!(page.next_page_token.is_empty());
    // Counted once each, wherever they are: the finished run still in Redis too.
    assert_eq!(
        page.status_counts.get("succeeded"),
        Some(&2),
        "{:?}",
        page.status_counts
    );
    assert_eq!(page.status_counts.get("failed"), Some(&1), "{:?}", page.status_counts);
    // The archived run answers with its input, as Redis would.
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&page.runs[1].input_json).expect("json"),
        json!({"customer": {"id": "c-42"}})
    );
    // Error types are searchable once archived; with the other fields combined.
    let failed = runs
        .list_runs(list(
            r#"error_type = "CardDeclined" AND workflow = "shop""#,
            0,
            "",
            false,
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(
        failed.runs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [old_42_failed.as_str()]
    );
    // Pages of one walk every run of the namespace once, newest first, across both stores.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = runs
            .list_runs(list(r#"workflow = "shop""#, 1, &token, false))
            .await
            .expect("page")
            .into_inner();
        seen.extend(page.runs.into_iter().map(|r| r.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        assert!(seen.len() <= 10, "pages do not end: {seen:?}");
    }
    assert_eq!(
        seen,
        [
            live_7.as_str(),
            live_42.as_str(),
            old_42_failed.as_str(),
            old_42_ok.as_str(),
            old_9.as_str()
        ],
    );
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 5);
    // The same over HTTP: `GET /v1/runs?query=...&counts=true`.
    let (status, body) = http_get(
        http_port,
        "/v1/runs?query=input.customer.id%20%3D%20%22c-42%22&counts=true",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let http_ids: Vec<&str> = body["runs"]
        .as_array()
        .map(|runs| runs.iter().filter_map(|r| r["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(http_ids, [live_42.as_str(), old_42_failed.as_str(), old_42_ok.as_str()]);
    assert_eq!(body["status_counts"], json!({"succeeded": 2, "failed": 1}), "{body}");
    let (status, body) = http_get(http_port, "/v1/runs?query=status%20%3D").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "query", "{body}");
    // A filter that does not parse names `query` and the column.
    let err = runs
        .list_runs(list(r#"status = "failed" AND"#, 0, "", false))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().starts_with("query: column 22:"), "{}", err.message());
}

/// `GET path` on the coordinator's HTTP API: the status and the JSON body.
async fn http_get(port: u16, path: &str) -> (u16, serde_json::Value) {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = hyper::Request::get(format!("http://127.0.0.1:{port}{path}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .expect("an answer within 30 s")
        .expect("an answer");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}
