//! Reads of issue 20 that the archive left open, through a real coordinator, worker, Redis,
//! RabbitMQ and PostgreSQL (a schema of each test's own):
//!
//! - ListRuns while PostgreSQL is away answers the runs still in Redis, said `partial` with a
//!   reason, over gRPC, HTTP and the CLI (a warning on stderr), counts included;
//! - `error_type` finds a failed run still in Redis, as it does once the run is archived;
//! - paging walks past the bound of one call's Redis scan (`list_scan_entries`) and reaches every
//!   run, and counts past that bound say they are partial;
//! - a fan-out step reads the same (GetRun, the HTTP step view) after its run is archived;
//! - a PostgreSQL that goes silent (no answer, no error) holds ListRuns and GetRun of an archived
//!   run no longer than `archive_read_timeout`.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use baton_coordinator::archive::{Archive, ArchivedRun};
use baton_shared::proto::{GetRunRequest, ListRunsRequest, ListRunsResponse, Run, RunStatus};
use baton_tests::{Cluster, REDIS_URL, TcpProxy, pg::Schema, status, step_status};
use serde_json::{Value, json};

/// PostgreSQL as the tests use it (trust auth), at `port` (5432, or a proxy's).
fn pg_url(port: u16) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/test")
}

/// Starts a cluster whose coordinator archives into `schema` through port `pg_port`, with an
/// HTTP API at the answered port, and `extra` settings.
async fn start(test: &str, schema: &Schema, pg_port: u16, extra: &[(&str, &str)]) -> (Cluster, u16) {
    let http_port = baton_tests::free_port();
    let http_addr = format!("127.0.0.1:{http_port}");
    let url = pg_url(pg_port);
    let mut env = vec![
        ("BATON_ARCHIVE_URL", url.as_str()),
        ("BATON_ARCHIVE_SCHEMA", schema.0.as_str()),
        ("BATON_ARCHIVE_GRACE", "2s"),
        ("BATON_HTTP_ADDR", http_addr.as_str()),
    ];
    env.extend_from_slice(extra);
    (Cluster::start(test, &env).await, http_port)
}

async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(REDIS_URL)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis at 127.0.0.1:6379")
}

/// Holds the namespace's archiver lease for the test, so that finished runs stay in Redis.
async fn hold_archiver(c: &Cluster) {
    let _: () = redis::cmd("SET")
        .arg(baton_shared::keys::Keys::new(c.namespace.clone()).archiver_lease())
        .arg("held-by-the-test")
        .arg("PX")
        .arg(600_000)
        .query_async(&mut redis().await)
        .await
        .expect("SET");
}

/// Lets the archivers go on.
async fn release_archiver(c: &Cluster) {
    let _: () = redis::cmd("DEL")
        .arg(baton_shared::keys::Keys::new(c.namespace.clone()).archiver_lease())
        .query_async(&mut redis().await)
        .await
        .expect("DEL");
}

/// Waits until Redis holds run `run_id` only as its tombstone (it is archived).
async fn wait_archived(c: &Cluster, run_id: &str) {
    let start = Instant::now();
    loop {
        let h: HashMap<String, String> = redis::AsyncCommands::hgetall(
            &mut redis().await,
            baton_shared::keys::Keys::new(c.namespace.clone()).run(run_id),
        )
        .await
        .expect("HGETALL");
        if h.contains_key("archived_at") {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "run {run_id} was not archived within 30 s; Redis holds {h:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn list(query: &str, limit: u32, token: &str, counts: bool) -> ListRunsRequest {
    ListRunsRequest {
        query: query.into(),
        limit,
        page_token: token.into(),
        with_counts: counts,
        ..Default::default()
    }
}

async fn list_runs(c: &Cluster, req: ListRunsRequest) -> ListRunsResponse {
    c.runs().await.list_runs(req).await.expect("ListRuns").into_inner()
}

fn ids(page: &ListRunsResponse) -> Vec<&str> {
    page.runs.iter().map(|r| r.id.as_str()).collect()
}

/// Every run `query` finds, walking pages of `limit` to the end; also how many pages it took.
async fn walk(c: &Cluster, query: &str, limit: u32) -> (Vec<String>, usize) {
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = list_runs(c, list(query, limit, &token, false)).await;
        pages += 1;
        assert!(!page.partial, "{}", page.partial_reason);
        seen.extend(page.runs.into_iter().map(|r| r.id));
        if page.next_page_token.is_empty() {
            return (seen, pages);
        }
        assert_ne!(page.next_page_token, token, "the token moves on");
        token = page.next_page_token;
        assert!(pages < 1_000, "pages do not end: {seen:?}");
    }
}

/// A finished run as the archiver would have written it, created `minutes_ago`.
fn archived(namespace: &str, input: Value, minutes_ago: i64) -> ArchivedRun {
    let created = chrono::Utc::now() - chrono::Duration::minutes(minutes_ago);
    let ts = |t: chrono::DateTime<chrono::Utc>| {
        Some(prost_types::Timestamp {
            seconds: t.timestamp(),
            nanos: i32::try_from(t.timestamp_subsec_millis() * 1_000_000).unwrap_or(0),
        })
    };
    ArchivedRun {
        namespace: namespace.into(),
        run: Run {
            id: uuid::Uuid::new_v4().to_string(),
            workflow: "one".into(),
            version: 1,
            status: RunStatus::Succeeded as i32,
            input_json: input.to_string(),
            created_at: ts(created),
            started_at: ts(created),
            finished_at: ts(created + chrono::Duration::seconds(1)),
            ..Default::default()
        },
        error_types: vec![],
        history: vec![],
        human_tasks: vec![],
    }
}

/// `GET path` on the coordinator's HTTP API: the status and the JSON body.
async fn http_get(port: u16, path: &str) -> (u16, Value) {
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
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// The `baton` binary cargo built beside this test (`cargo build -p baton-cli`).
fn baton_cli() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let p = profile.join("baton");
    assert!(
        p.exists(),
        "{} is missing: build it first (`cargo build -p baton-cli`)",
        p.display()
    );
    p
}

const ONE: &str = "name: one\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n";

#[tokio::test(flavor = "multi_thread")]
async fn list_runs_while_the_archive_is_down_answers_the_runs_in_redis_said_partial() {
    let schema = Schema::new();
    let proxy = TcpProxy::start("127.0.0.1:5432").await;
    let (mut c, http_port) = start("areads-down", &schema, proxy.port, &[]).await;
    c.register(ONE).await;
    c.spawn_worker("w1", 4);
    hold_archiver(&c).await;
    let live: Vec<String> = {
        let mut ids = Vec::new();
        for n in 0..2 {
            ids.push(c.submit("one", json!({"n": n})).await);
        }
        ids
    };
    for id in &live {
        assert_eq!(status(&c.wait_run(id, Duration::from_secs(60)).await), "succeeded");
    }
    // An older run only the archive holds.
    let archive = Archive::connect(&schema.config()).await.expect("archive");
    let old = archived(&c.namespace, json!({"n": 9}), 30);
    archive.write(std::slice::from_ref(&old)).await.expect("write");
    let order = newest_first(&c, &live).await;
    let newest_first = [order[0].as_str(), order[1].as_str()];

    let whole = list_runs(&c, list("", 0, "", true)).await;
    assert_eq!(ids(&whole), [newest_first[0], newest_first[1], old.run.id.as_str()]);
    assert!(!whole.partial && whole.partial_reason.is_empty(), "{whole:?}");
    assert_eq!(whole.status_counts.get("succeeded"), Some(&3));

    // PostgreSQL goes away (for this coordinator only): the runs in Redis are still listed and
    // counted, and the answer says what is missing.
    proxy.cut();
    let page = list_runs(&c, list("", 0, "", true)).await;
    assert_eq!(ids(&page), newest_first);
    assert!(page.partial);
    assert!(
        page.partial_reason.starts_with("the archive is unavailable: "),
        "{}",
        page.partial_reason
    );
    assert_eq!(
        page.status_counts.get("succeeded"),
        Some(&2),
        "{:?}",
        page.status_counts
    );
    // A filter still applies to the runs in Redis.
    let one = list_runs(&c, list("input.n = 1", 0, "", false)).await;
    assert_eq!(ids(&one), [live[1].as_str()]);
    assert!(one.partial);

    // HTTP says the same in its JSON.
    let (code, body) = http_get(http_port, "/v1/runs?counts=true").await;
    assert_eq!(code, 200, "{body}");
    let http_ids: Vec<&str> = body["runs"]
        .as_array()
        .map(|runs| runs.iter().filter_map(|r| r["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(http_ids, newest_first);
    assert_eq!(body["partial"], json!(true), "{body}");
    assert!(
        body["partial_reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("the archive is unavailable: ")),
        "{body}"
    );
    assert_eq!(body["status_counts"], json!({"succeeded": 2}), "{body}");

    // The CLI prints the runs, and a warning on stderr.
    let out = tokio::process::Command::new(baton_cli())
        .args(["--addr", &c.addr, "run", "list", "--counts"])
        .output()
        .await
        .expect("run baton");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&live[0]) && stdout.contains(&live[1]), "{stdout}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("warning: partial answer: the archive is unavailable: ")),
        "{stderr}"
    );

    // PostgreSQL back: the whole answer again, not partial.
    proxy.restore();
    let start = Instant::now();
    loop {
        let page = list_runs(&c, list("", 0, "", true)).await;
        if !page.partial {
            assert_eq!(ids(&page), ids(&whole));
            assert_eq!(page.status_counts, whole.status_counts);
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "still partial: {}",
            page.partial_reason
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.stop_coordinator(false);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_archive_holds_list_runs_and_get_run_no_longer_than_archive_read_timeout() {
    let schema = Schema::new();
    let proxy = TcpProxy::start("127.0.0.1:5432").await;
    let (mut c, _) = start(
        "areads-silent",
        &schema,
        proxy.port,
        &[("BATON_ARCHIVE_READ_TIMEOUT", "500ms")],
    )
    .await;
    c.register(ONE).await;
    c.spawn_worker("w1", 2);
    hold_archiver(&c).await;
    let live = c.submit("one", json!({"n": 1})).await;
    assert_eq!(status(&c.wait_run(&live, Duration::from_secs(60)).await), "succeeded");
    let archive = Archive::connect(&schema.config()).await.expect("archive");
    let old = archived(&c.namespace, json!({"n": 9}), 30);
    archive.write(std::slice::from_ref(&old)).await.expect("write");
    let whole = list_runs(&c, list("", 0, "", true)).await;
    assert_eq!(ids(&whole), [live.as_str(), old.run.id.as_str()]);
    assert!(!whole.partial, "{whole:?}");

    // PostgreSQL goes silent: its connections stay open and nothing comes back (a host that died).
    proxy.pause();
    let began = Instant::now();
    let page = list_runs(&c, list("", 0, "", true)).await;
    let took = began.elapsed();
    assert_eq!(
        ids(&page),
        [live.as_str()],
        "the runs in Redis, without waiting for the archive"
    );
    assert!(page.partial);
    assert!(
        page.partial_reason
            .starts_with("the archive is unavailable: archive: no answer from PostgreSQL within 500ms"),
        "{}",
        page.partial_reason
    );
    assert_eq!(
        page.status_counts.get("succeeded"),
        Some(&1),
        "{:?}",
        page.status_counts
    );
    // 500 ms for the page (the counts skip the archive once it failed); the bound leaves room for
    // a loaded machine, far under the 5 s the pool's acquire took before.
    assert!(took < Duration::from_secs(4), "ListRuns took {took:?}");

    let began = Instant::now();
    let e = c
        .runs()
        .await
        .get_run(GetRunRequest {
            run_id: old.run.id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("an archived run while the archive is silent");
    let took = began.elapsed();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(
        e.message().contains("no answer from PostgreSQL within 500ms"),
        "{}",
        e.message()
    );
    assert!(took < Duration::from_secs(4), "GetRun took {took:?}");
    // A run in Redis reads as ever.
    assert_eq!(status(&c.get_run(&live).await), "succeeded");

    // PostgreSQL answers again: the whole answer.
    proxy.restore();
    let began = Instant::now();
    loop {
        let page = list_runs(&c, list("", 0, "", true)).await;
        if !page.partial {
            assert_eq!(ids(&page), ids(&whole));
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "still partial: {}",
            page.partial_reason
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.stop_coordinator(false);
}

#[tokio::test(flavor = "multi_thread")]
async fn error_type_finds_a_failed_run_still_in_redis_as_it_does_once_archived() {
    let schema = Schema::new();
    let (mut c, _) = start("areads-etype", &schema, 5432, &[]).await;
    c.register(
        "name: typed\nversion: 1\nsteps:\n  - id: a\n    handler: fail\n    retry: {max_attempts: 2, initial_interval: 10ms}\n",
    )
    .await;
    c.spawn_worker("w1", 4);
    hold_archiver(&c).await;
    // Fails for good with `Fatal`; succeeds; fails twice with `Flaky`.
    let fatal = c.submit("typed", json!({"fatal": true})).await;
    let ok = c.submit("typed", json!({})).await;
    let flaky = c.submit("typed", json!({"error_type": "Flaky"})).await;
    for (id, want) in [(&fatal, "failed"), (&ok, "succeeded"), (&flaky, "failed")] {
        assert_eq!(status(&c.wait_run(id, Duration::from_secs(60)).await), want);
    }
    let (fatal, ok, flaky) = (fatal.as_str(), ok.as_str(), flaky.as_str());
    let cases: [(&str, Vec<&str>); 5] = [
        (r#"error_type = "Fatal""#, vec![fatal]),
        (r#"error_type = "Flaky""#, vec![flaky]),
        (r#"error_type != "Fatal""#, vec![flaky, ok]),
        (
            r#"error_type IN ("Nope", "Fatal", "Flaky") AND workflow = "typed""#,
            vec![flaky, fatal],
        ),
        (r#"NOT error_type = "Flaky" AND status = "failed""#, vec![fatal]),
    ];
    // Still in Redis (the archiver is held).
    check_searches(&c, &cases, "in Redis").await;
    // Archived: the same answers from PostgreSQL.
    release_archiver(&c).await;
    for id in [fatal, ok, flaky] {
        wait_archived(&c, id).await;
    }
    check_searches(&c, &cases, "archived").await;
    c.stop_coordinator(false);
}

#[tokio::test(flavor = "multi_thread")]
async fn paging_reaches_every_run_past_the_scan_bound_and_counts_past_it_say_partial() {
    let schema = Schema::new();
    // One call reads at most 10 entries of Redis's run index.
    let (mut c, _) = start("areads-bound", &schema, 5432, &[("BATON_LIST_SCAN_ENTRIES", "10")]).await;
    c.register(ONE).await;
    c.spawn_worker("w1", 8);
    hold_archiver(&c).await;
    let mut live = Vec::new();
    for n in 0..25 {
        live.push(c.submit("one", json!({"n": n})).await);
    }
    for id in &live {
        c.wait_run(id, Duration::from_secs(60)).await;
    }
    let archive = Archive::connect(&schema.config()).await.expect("archive");
    let old: Vec<ArchivedRun> = (0..3)
        .map(|i| archived(&c.namespace, json!({"n": 0, "old": i}), 30 + i))
        .collect();
    archive.write(&old).await.expect("write");

    // The oldest run in Redis matches, behind 24 newer ones: the pages before it are empty, with
    // a token that goes on, and the walk reaches it and then the archived runs.
    let (found, pages) = walk(&c, "input.n = 0", 50).await;
    let mut want = vec![live[0].clone()];
    want.extend(old.iter().map(|a| a.run.id.clone()));
    assert_eq!(found, want);
    assert!(pages >= 3, "{pages} pages: the scan bound was not reached");
    // Every run, once, newest first, in small pages.
    let (all, _) = walk(&c, "", 4).await;
    let mut want: Vec<String> = newest_first(&c, &live).await;
    want.extend(old.iter().map(|a| a.run.id.clone()));
    assert_eq!(all, want);

    // Counts cover the newest 10 entries in Redis (and the archive), and say so.
    let page = list_runs(&c, list("", 1, "", true)).await;
    assert!(page.partial);
    assert!(
        page.partial_reason.contains("list_scan_entries"),
        "{}",
        page.partial_reason
    );
    assert_eq!(
        page.status_counts.get("succeeded"),
        Some(&13),
        "{:?}",
        page.status_counts
    );
    // A time range within the bound is counted whole.
    let created = |r: &Run| r.created_at;
    let newest = c.get_run(&live[24]).await;
    let ninth = c.get_run(&live[16]).await;
    let within = list_runs(
        &c,
        ListRunsRequest {
            created_after: created(&ninth),
            created_before: Some(prost_types::Timestamp {
                seconds: newest.created_at.as_ref().map_or(0, |t| t.seconds) + 1,
                nanos: 0,
            }),
            with_counts: true,
            ..Default::default()
        },
    )
    .await;
    assert!(!within.partial, "{}", within.partial_reason);
    assert_eq!(within.runs.len() as u64, within.status_counts.values().sum::<u64>());
    c.stop_coordinator(false);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fan_out_step_reads_the_same_after_its_run_is_archived() {
    let schema = Schema::new();
    let (mut c, http_port) = start("areads-fan", &schema, 5432, &[]).await;
    c.register(
        r#"
name: fan
version: 1
steps:
  - id: each
    handler: fail
    for_each: input.items
    max_parallel: 1
    retry: {max_attempts: 2, initial_interval: 10ms}
  - {id: after, handler: echo, depends_on: [each]}
"#,
    )
    .await;
    c.spawn_worker("w1", 4);
    hold_archiver(&c).await;
    // Every element succeeds (one on its second attempt); then one that fails for good.
    let ok = c
        .submit("fan", json!({"items": [{"n": 1}, {"succeed_on_attempt": 2}, {"n": 3}]}))
        .await;
    let bad = c
        .submit("fan", json!({"items": [{"n": 1}, {"fatal": true}, {"n": 3}]}))
        .await;
    let mut before = Vec::new();
    for (id, want) in [(&ok, "succeeded"), (&bad, "failed")] {
        let run = c.wait_run(id, Duration::from_secs(60)).await;
        assert_eq!(status(&run), want);
        assert_eq!(step_status(&run, "each"), want);
        let step = get(&c, id, "each").await;
        let items = step.steps[0].items.expect("a fan-out's progress");
        assert_eq!(items.total, 3);
        let (_, http_step) = http_get(http_port, &format!("/v1/runs/{id}?step_id=each")).await;
        before.push((id.clone(), get(&c, id, "").await, step, http_step));
    }
    // What a user reads of the fan-out: its elements' outputs in order, their counts, the error.
    let ok_step = &before[0].2.steps[0];
    assert_eq!(
        serde_json::from_str::<Value>(&ok_step.output_json).expect("json"),
        json!([{"attempt": 1}, {"attempt": 2}, {"attempt": 1}])
    );
    assert_eq!(ok_step.items.as_ref().map(|i| (i.succeeded, i.failed)), Some((3, 0)));
    let bad_step = &before[1].2.steps[0];
    assert_eq!(bad_step.items.as_ref().map(|i| i.failed), Some(1));
    assert!(!bad_step.error.is_empty());

    release_archiver(&c).await;
    for (id, run, step, http_step) in &before {
        wait_archived(&c, id).await;
        assert_eq!(&get(&c, id, "").await, run, "GetRun of {id}");
        assert_eq!(&get(&c, id, "each").await, step, "GetRun of {id}'s fan-out step");
        let (code, after) = http_get(http_port, &format!("/v1/runs/{id}?step_id=each")).await;
        assert_eq!(code, 200, "{after}");
        assert_eq!(&after, http_step, "the HTTP step view of {id}");
    }
    c.stop_coordinator(false);
}

/// `runs` in ListRuns' order: newest first by creation time (ms), then by id (two runs submitted
/// in the same millisecond are ordered by id).
async fn newest_first(c: &Cluster, runs: &[String]) -> Vec<String> {
    let mut keyed = Vec::new();
    for id in runs {
        keyed.push((baton_tests::ms(&c.get_run(id).await.created_at), id.clone()));
    }
    keyed.sort_by(|a, b| b.cmp(a));
    keyed.into_iter().map(|(_, id)| id).collect()
}

/// Each query finds exactly its runs (newest first), whole (not partial), and counts them.
async fn check_searches(c: &Cluster, cases: &[(&str, Vec<&str>)], when: &str) {
    for (query, want) in cases {
        let page = list_runs(c, list(query, 0, "", true)).await;
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(ids(&page), newest_first(c, &want).await, "{when}: {query}");
        assert!(!page.partial, "{when}: {}", page.partial_reason);
        let counted: u64 = page.status_counts.values().sum();
        assert_eq!(counted, want.len() as u64, "{when}: {query}: {:?}", page.status_counts);
    }
}

async fn get(c: &Cluster, run_id: &str, step: &str) -> Run {
    c.runs()
        .await
        .get_run(GetRunRequest {
            run_id: run_id.into(),
            step_id: step.into(),
        })
        .await
        .expect("GetRun")
        .into_inner()
}
