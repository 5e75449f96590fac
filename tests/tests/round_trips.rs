//! Redis round trips per step, read off Redis itself: a `MONITOR` connection records every command
//! Redis runs while one-step runs go through a real coordinator and worker, and the test counts the
//! commands that name each run.
//!
//! What is counted: commands sent by a client (not those a Lua script runs inside Redis) that name
//! the run (in a key or an argument) and may write: scripts (`FCALL` of the run scripts' function
//! library, or `EVALSHA` where Redis has no functions; both counted as `SCRIPT`) and plain writes. Left out,
//! and why:
//! - reads (`HGETALL`, `HMGET`, `XRANGE`, ...): the test's own `GetRun` polling, and the metrics'
//!   background reads of a step's times, which no call waits for;
//! - keys under `{<namespace>}:test:`: the test worker's own execution counters, not Baton's;
//! - the outbox (`<namespace>:outbox`): confirmed dispatches are cleared there in batches, off
//!   every call's path, and publishes still unconfirmed after a quarter lease are held there.
//!
//! Every command counted is at least one round trip of its own unless it shares a pipeline, so
//! the count after a run's creation bounds the synchronous round trips of its step from above.

use std::{collections::HashMap, time::Duration};

use baton_tests::{Cluster, status};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// One command as `MONITOR` shows it: who sent it (`lua` for a script's own calls) and its
/// arguments, the command name first.
#[derive(Debug, Clone)]
struct Seen {
    /// When Redis ran it, as `MONITOR` prints it (Unix seconds with microseconds).
    at: String,
    source: String,
    args: Vec<String>,
}

/// Parses a `MONITOR` line: `+1700000000.123456 [0 127.0.0.1:5000] "ZADD" "k" "1" "m"`.
fn parse_monitor_line(line: &str) -> Option<Seen> {
    let open = line.find('[')?;
    let at = line.get(..open)?.trim().trim_start_matches('+').to_string();
    let close = open + line[open..].find(']')?;
    let source = line[open + 1..close].split_whitespace().nth(1)?.to_string();
    let mut args = Vec::new();
    let mut chars = line[close + 1..].chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut arg = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => {
                    if let Some(e) = chars.next() {
                        arg.push(e);
                    }
                }
                c => arg.push(c),
            }
        }
        args.push(arg);
    }
    (!args.is_empty()).then_some(Seen { at, source, args })
}

/// Taken for writing while a test deletes the run scripts' function library from the shared Redis,
/// until its own coordinator has loaded it again; for reading by a test that counts script calls.
/// The library is one for every coordinator of this build, so any coordinator's next `FCALL` after
/// the delete fails with "Function not found" and is sent again once the library is loaded: two
/// script calls in `MONITOR` for one transition, which a counting test must not see.
static LIBRARY: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Commands that only read.
const READS: &[&str] = &[
    "GET",
    "MGET",
    "HGET",
    "HMGET",
    "HGETALL",
    "HKEYS",
    "HSTRLEN",
    "HEXISTS",
    "XRANGE",
    "XREVRANGE",
    "XREAD",
    "XLEN",
    "EXISTS",
    "ZRANK",
    "ZSCORE",
    "ZRANGE",
    "ZREVRANGE",
    "ZRANGEBYSCORE",
    "ZREVRANGEBYLEX",
    "ZRANGEBYLEX",
    "ZCARD",
    "LLEN",
    "LINDEX",
    "LRANGE",
    "SMEMBERS",
    "SCARD",
    "TTL",
    "PTTL",
    "TYPE",
    "SCAN",
];

/// Records every command Redis runs that mentions `needle`, until the returned sender is dropped
/// or sent to; answers them in order. Ready (MONITOR answered `+OK`) when this returns.
async fn monitor(needle: String) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<Vec<Seen>>) {
    let stream = tokio::net::TcpStream::connect("127.0.0.1:6379")
        .await
        .expect("connect to Redis");
    let (read, mut write) = stream.into_split();
    write.write_all(b"MONITOR\r\n").await.expect("MONITOR");
    let mut lines = BufReader::new(read).lines();
    let first = lines.next_line().await.expect("MONITOR answer").unwrap_or_default();
    assert_eq!(first, "+OK", "MONITOR answered {first:?}");
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _keep = write;
        let mut seen = Vec::new();
        loop {
            tokio::select! {
                _ = &mut stop_rx => break,
                line = lines.next_line() => match line {
                    Ok(Some(l)) if l.contains(&needle) => {
                        if let Some(s) = parse_monitor_line(&l) {
                            seen.push(s);
                        }
                    }
                    Ok(Some(_)) => {}
                    _ => break,
                },
            }
        }
        seen
    });
    (stop_tx, task)
}

#[test]
fn monitor_lines_parse_with_their_source_and_escapes() {
    let s = parse_monitor_line(r#"+1700000000.123456 [0 127.0.0.1:5000] "ZADD" "a\"b" "1""#).expect("parsed");
    assert_eq!(s.source, "127.0.0.1:5000");
    assert_eq!(s.args, ["ZADD", "a\"b", "1"]);
    let s = parse_monitor_line(r#"+1.0 [0 lua] "HSET" "k" "f" "v""#).expect("parsed");
    assert_eq!(s.source, "lua");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ordinary_step_costs_two_redis_round_trips_start_and_report() {
    let _library = LIBRARY.read().await;
    let mut cluster = Cluster::start("round-trips", &[]).await;
    cluster
        .register("name: one\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    cluster.spawn_worker("w1", 2);
    // Warm up: the worker's first task, its registration and the definition cache.
    let warm = cluster.submit("one", json!({"n": -1})).await;
    assert_eq!(
        status(&cluster.wait_run(&warm, Duration::from_secs(60)).await),
        "succeeded"
    );

    const RUNS: usize = 20;
    let (ids, seen) = monitored_runs(&cluster, RUNS).await;

    let test_keys = baton_shared::keys::Keys::new(cluster.namespace.clone()).namespaced("test:");
    let outbox = baton_shared::keys::Keys::new(cluster.namespace.clone()).outbox();
    // Per run: each counted call's kind (`SCRIPT` or the command) and what it was (the function or
    // script hash of a script, and its first key), so that a failure says which call was extra.
    let mut per_run: HashMap<&str, Vec<(String, String)>> = HashMap::new();
    let mut outbox_calls = 0usize;
    for s in &seen {
        if s.source == "lua" {
            continue;
        }
        let mut name = s.args[0].to_ascii_uppercase();
        if name == "FCALL" || name == "EVALSHA" {
            name = "SCRIPT".into();
        }
        if READS.contains(&name.as_str()) || s.args.iter().any(|a| a.starts_with(&test_keys)) {
            continue;
        }
        if s.args.get(1) == Some(&outbox) {
            outbox_calls += 1;
            continue;
        }
        let first_args = s.args.get(1..s.args.len().min(4)).unwrap_or_default().join(" ");
        let what = format!("{first_args} from {} at {}", s.source, s.at);
        for id in &ids {
            if s.args.iter().any(|a| a.contains(id.as_str())) {
                per_run
                    .entry(id.as_str())
                    .or_default()
                    .push((name.clone(), what.clone()));
            }
        }
    }
    for id in &ids {
        let detail = per_run.get(id.as_str()).cloned().unwrap_or_default();
        let calls: Vec<String> = detail.iter().map(|(name, _)| name.clone()).collect();
        // Creation: create_run.lua alone (one round trip), which writes the run's two index
        // entries itself (in the same commit as the run, so that a delete's count sees it).
        let create = calls
            .iter()
            .position(|c| c == "SCRIPT")
            .unwrap_or_else(|| panic!("run {id}: no create script among {calls:?}"));
        assert_eq!(
            &calls[..create],
            [] as [&str; 0],
            "run {id}: creation wrote more than its script: {detail:?}"
        );
        // The step: StartStep (start_step.lua) and ReportResult (complete_step.lua), nothing else.
        assert_eq!(
            &calls[create + 1..],
            ["SCRIPT", "SCRIPT"],
            "run {id}: its step made other Redis calls than start and report: {detail:?}"
        );
    }
    println!(
        "{RUNS} one-step runs: 2 synchronous Redis calls per step (start_step.lua, complete_step.lua) and one \
         script to create each run; {outbox_calls} outbox calls in all (batched confirms, holds)"
    );
}

/// A fan-out element's report dispatches the next element in the same commit that indexes it as
/// queued: no `note_dispatched` round trip of its own between the report and the next publish.
/// Only the first elements, dispatched by the script that starts the fan-out, are indexed in a
/// pipelined call of their own (one for the whole batch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_element_report_indexes_the_next_element_in_its_own_commit() {
    let mut cluster = Cluster::start("round-trips-fan", &[]).await;
    cluster
        .register(
            "name: fan\nversion: 1\nsteps:\n  - {id: each, handler: echo, for_each: input.items, max_parallel: 2}\n",
        )
        .await;
    cluster.spawn_worker("w1", 2);
    let warm = cluster.submit("fan", json!({"items": [0]})).await;
    assert_eq!(
        status(&cluster.wait_run(&warm, Duration::from_secs(60)).await),
        "succeeded"
    );

    let (stop, recorded) = monitor(cluster.namespace.clone()).await;
    const ELEMENTS: usize = 12;
    let id = cluster
        .submit("fan", json!({ "items": (0..ELEMENTS).collect::<Vec<_>>() }))
        .await;
    let run = cluster.wait_run(&id, Duration::from_secs(60)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = stop.send(());
    let seen = recorded.await.expect("monitor task");

    // Queued-index entries written outside a script: `ZADD <ns>:queued:echo NX <now> <run>|each#i|1`.
    let queued_key = baton_shared::keys::Keys::new(cluster.namespace.clone()).namespaced("queued:");
    let mut indexed_outside: Vec<String> = Vec::new();
    for s in &seen {
        if s.source == "lua" || !s.args[0].eq_ignore_ascii_case("ZADD") {
            continue;
        }
        if s.args.get(1).is_some_and(|k| k.starts_with(&queued_key)) {
            indexed_outside.extend(s.args.iter().filter(|a| a.starts_with(&format!("{id}|each#"))).cloned());
        }
    }
    assert!(
        indexed_outside.len() <= 2,
        "only the first batch (max_parallel 2) may be indexed outside a script; these were: {indexed_outside:?}"
    );
    println!(
        "fan-out of {ELEMENTS}: {} elements indexed outside a script (the first batch), the rest by the reports' commits",
        indexed_outside.len()
    );
}

/// Runs `runs` one-step runs of workflow `one` (input `{"n": i}`) on `cluster` one after the
/// other under `MONITOR`, each checked to succeed with its input as output, and answers their
/// ids and the commands `MONITOR` saw that name the cluster's namespace.
async fn monitored_runs(cluster: &Cluster, runs: usize) -> (Vec<String>, Vec<Seen>) {
    let (stop, recorded) = monitor(cluster.namespace.clone()).await;
    let mut ids = Vec::with_capacity(runs);
    for n in 0..runs {
        let id = cluster.submit("one", json!({ "n": n })).await;
        let run = cluster.wait_run(&id, Duration::from_secs(60)).await;
        assert_eq!(status(&run), "succeeded", "{run:#?}");
        assert_eq!(run.output_json, format!(r#"{{"a":{{"n":{n}}}}}"#));
        ids.push(id);
    }
    // The last report's writes are done before its answer; nothing else is waited for.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = stop.send(());
    (ids, recorded.await.expect("monitor task"))
}

/// Runs `runs` one-step runs of workflow `one` on `cluster` under `MONITOR` ([`monitored_runs`]),
/// and answers the script commands (`FCALL` or `EVALSHA`, with their first argument: the function
/// or the script's hash) that named one of them.
async fn script_calls(cluster: &Cluster, runs: usize) -> Vec<(String, String)> {
    let (ids, seen) = monitored_runs(cluster, runs).await;
    seen.into_iter()
        .filter(|s| s.source != "lua" && ids.iter().any(|id| s.args.iter().any(|a| a.contains(id.as_str()))))
        .filter_map(|s| {
            let name = s.args[0].to_ascii_uppercase();
            (name == "FCALL" || name == "EVALSHA").then(|| (name, s.args.get(1).cloned().unwrap_or_default()))
        })
        .collect()
}

/// The run scripts are functions of one library, which Redis loads once (`FCALL`); a Redis that
/// lost it (a restart without persistence, `FUNCTION FLUSH`) gets it again on the next call, and
/// where the coordinator may not load functions (an ACL without `FUNCTION`, or a Redis before 7.0)
/// the same scripts go by `EVALSHA`. Runs succeed either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_scripts_are_redis_functions_and_fall_back_to_evalsha_where_redis_refuses_them() {
    let mut cluster = Cluster::start("round-trips-functions", &[]).await;
    cluster
        .register("name: one\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    cluster.spawn_worker("w1", 2);

    let calls = script_calls(&cluster, 3).await;
    assert!(
        !calls.is_empty() && calls.iter().all(|(c, _)| c == "FCALL"),
        "the run scripts should go by FCALL on this Redis: {calls:?}"
    );
    let function = &calls[0].1;
    let library = function
        .strip_suffix("_create_run")
        .unwrap_or_else(|| panic!("the first script call should create the run: {calls:?}"));
    assert!(library.starts_with("baton_"), "{library}");

    // Redis loses the library (other tests' coordinators, sharing it, load it again as this one does;
    // those that count script calls wait: see LIBRARY).
    let reloaded = LIBRARY.write().await;
    let client = redis::Client::open(baton_tests::REDIS_URL).expect("redis url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
    let deleted: Result<String, _> = redis::cmd("FUNCTION")
        .arg("DELETE")
        .arg(library)
        .query_async(&mut conn)
        .await;
    // Another test may have deleted and not yet reloaded it: either way it is gone now.
    if let Err(e) = deleted {
        assert!(e.to_string().contains("not exist"), "FUNCTION DELETE {library}: {e}");
    }
    let calls = script_calls(&cluster, 2).await;
    drop(reloaded);
    assert!(
        calls.iter().all(|(c, _)| c == "FCALL"),
        "after the library was lost, the coordinator should load it again: {calls:?}"
    );

    // A coordinator whose Redis user may not run FUNCTION.
    let user = format!("nofn-{}", cluster.namespace);
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("on")
        .arg(">no-functions")
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .arg("-function")
        .query_async(&mut conn)
        .await
        .expect("ACL SETUSER");
    let url = format!("redis://{user}:no-functions@127.0.0.1:6379");
    let mut limited = Cluster::start("round-trips-no-functions", &[("BATON_REDIS_URL", url.as_str())]).await;
    limited
        .register("name: one\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    limited.spawn_worker("w1", 2);
    let calls = script_calls(&limited, 3).await;
    let _: Result<i64, _> = redis::cmd("ACL").arg("DELUSER").arg(&user).query_async(&mut conn).await;
    assert!(
        !calls.is_empty() && calls.iter().all(|(c, _)| c == "EVALSHA"),
        "without the right to load functions the run scripts should go by EVALSHA: {calls:?}"
    );
}
