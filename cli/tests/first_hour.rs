//! The first hour with the `baton` binary (issue 19's defects), against a real coordinator process
//! and test workers over the real Redis and RabbitMQ: `--reconnect-for 0s` is taken and gives up at
//! the first error; `--addr` pointed at Baton's HTTP port says so and names the gRPC port; after a
//! cancel then a retry, `run get` lists every attempt of a retried step and of a fan-out; and
//! `event purge` without `--key` names the keys that hold events.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use baton_tests::{Cluster, free_port, step_status};
use serde_json::{Value, json};

/// Runs `baton --addr ADDR ARGS` with `env` (and without the caller's `BATON_*` settings); answers
/// (exit code, stdout, stderr).
async fn baton_env(addr: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let addr = addr.to_string();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_baton"))
            .arg("--addr")
            .arg(&addr)
            .args(&args)
            .env_remove("BATON_ADDR")
            .env_remove("BATON_RECONNECT_FOR")
            .envs(env)
            .output()
            .expect("run baton");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("join")
}

async fn baton(addr: &str, args: &[&str]) -> (i32, String, String) {
    baton_env(addr, args, &[]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn reconnect_for_zero_is_taken_and_gives_up_at_the_first_error() {
    let mut cluster = Cluster::start("cli-reconnect-zero", &[]).await;
    let (code, out, err) = baton(&cluster.addr, &["--reconnect-for", "0s", "run", "list"]).await;
    assert_eq!(code, 0, "--reconnect-for 0s is taken: {out}{err}");
    let (code, out, err) = baton_env(&cluster.addr, &["run", "list"], &[("BATON_RECONNECT_FOR", "0s")]).await;
    assert_eq!(code, 0, "BATON_RECONNECT_FOR=0s is taken: {out}{err}");
    let (code, _, err) = baton(&cluster.addr, &["--reconnect-for", "25h", "run", "list"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("must be at most 1day"), "{err}");

    // `manual` is served by no worker: the run stays open while the CLI watches it.
    cluster
        .register("name: stuck\nversion: 1\nsteps:\n  - {id: a, handler: manual}\n")
        .await;
    let run_id = cluster.submit("stuck", json!({})).await;
    let watch = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args([
            "--addr",
            &cluster.addr,
            "run",
            "watch",
            &run_id,
            "--reconnect-for",
            "0s",
        ])
        .env_remove("BATON_RECONNECT_FOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn baton run watch");
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.stop_coordinator(true);
    let stopped = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || watch.wait_with_output().expect("wait for baton")),
    )
    .await
    .expect("baton run watch --reconnect-for 0s gave up within 30 s")
    .expect("join");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        !stderr.contains("retrying for up to"),
        "0s gives up at the first error, without riding the outage out: {stderr}"
    );
    assert!(
        stopped.elapsed() < Duration::from_secs(15),
        "gave up after {:?}",
        stopped.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_http_port_is_named_as_batons_http_port_with_the_grpc_port_to_use() {
    let http_port = free_port();
    let http = format!("127.0.0.1:{http_port}");
    let cluster = Cluster::start("cli-http-port", &[("BATON_HTTP_ADDR", &http)]).await;
    let grpc_port = cluster.addr.rsplit(':').next().unwrap_or_default().to_string();
    let http_addr = format!("http://{http}");

    let (code, out, err) = baton(&http_addr, &["run", "list"]).await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.starts_with(&format!(
            "error: no Baton gRPC API at {http_addr}: this is Baton's HTTP port"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("the gRPC API is on port {grpc_port}"))
            && err.contains(&format!("--addr http://127.0.0.1:{grpc_port}")),
        "{err}"
    );
    assert!(!err.contains("grpc-status header missing"), "{err}");

    // The same as host:port, and under -o json.
    let (code, out, err) = baton(&http, &["-o", "json", "workflow", "list"]).await;
    assert_eq!(code, 2);
    assert!(out.is_empty(), "{out}");
    let doc: Value = serde_json::from_str(err.trim()).expect("a JSON error");
    assert_eq!(doc["error"]["code"], "UNAVAILABLE", "{doc}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("this is Baton's HTTP port") && m.contains(&format!("port {grpc_port}"))),
        "{doc}"
    );

    // The gRPC port itself still answers.
    let (code, out, err) = baton(&cluster.addr, &["run", "list"]).await;
    assert_eq!(code, 0, "{out}{err}");
}

/// A step that fails its first two attempts at once and then waits out a 100 s backoff (so a
/// cancel finds it between attempts), beside a fan-out whose first round of elements runs for a
/// minute (so a cancel finds them running); their second attempts succeed at once.
const CANCEL_RETRY: &str = r#"
name: cancel-retry
version: 1
steps:
  - id: flaky
    handler: fail
    input:
      succeed_on_attempt: 4
    retry: {max_attempts: 5, initial_interval: 1s, backoff_coefficient: 100, max_interval: 1h}
  - id: fan
    handler: slow
    for_each: input.items
    max_parallel: 3
"#;

/// The lines of `run get`'s attempts section of `step`: its title, then its table (header first).
fn attempts_section<'a>(text: &'a str, step: &str) -> Vec<&'a str> {
    let title = format!("Attempts of step {step} ");
    text.lines()
        .skip_while(|l| !l.starts_with(&title))
        .take_while(|l| !l.trim().is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn after_cancel_then_retry_run_get_lists_every_attempt_of_a_retried_step_and_a_fan_out() {
    let mut cluster = Cluster::start("cli-cancel-retry", &[]).await;
    cluster.spawn_worker("cancel-retry-w", 8);
    cluster.register(CANCEL_RETRY).await;
    let items: Vec<Value> = (0..3).map(|_| json!({"ms": 60_000, "only_attempt": 1})).collect();
    let run_id = cluster.submit("cancel-retry", json!({"items": items})).await;

    // Cancel while flaky waits for its third attempt and the fan-out's elements run.
    let start = Instant::now();
    loop {
        let run = cluster.get_run(&run_id).await;
        let flaky = run.steps.iter().find(|s| s.id == "flaky");
        let fan = run.steps.iter().find(|s| s.id == "fan");
        let backing_off = step_status(&run, "flaky") == "retrying" && flaky.is_some_and(|s| s.attempt == 3);
        let fanning = fan.and_then(|s| s.items.as_ref()).is_some_and(|i| i.in_flight == 3);
        if backing_off && fanning {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "flaky never waited for attempt 3 beside a running fan-out: {run:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, out, err) = baton(&cluster.addr, &["run", "cancel", &run_id]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = baton(&cluster.addr, &["run", "retry", &run_id]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = baton(&cluster.addr, &["run", "watch", &run_id]).await;
    assert_eq!(code, 0, "the retried run succeeds: {out}{err}");

    let (code, text, err) = baton(&cluster.addr, &["run", "get", &run_id]).await;
    assert_eq!(code, 0, "{err}");
    let flaky = attempts_section(&text, "flaky");
    assert_eq!(
        flaky.first().copied(),
        Some("Attempts of step flaky (1 of at most 5 since the run was retried; 3 before):"),
        "{text}"
    );
    let rows: Vec<&str> = flaky.iter().skip(2).map(|l| l.trim()).collect();
    assert_eq!(rows.len(), 4, "every attempt, the cancelled one too:\n{text}");
    for (row, (number, outcome)) in rows
        .iter()
        .zip([(1, "failed"), (2, "failed"), (3, "cancelled"), (4, "succeeded")])
    {
        let mut cells = row.split_whitespace();
        assert_eq!(
            (cells.next(), cells.next()),
            (Some(format!("#{number}").as_str()), Some(outcome)),
            "{text}"
        );
    }
    assert!(
        rows.get(2)
            .is_some_and(|r| r.contains("run cancelled before this attempt was dispatched")),
        "{text}"
    );

    let fan = attempts_section(&text, "fan");
    assert!(
        fan.first()
            .is_some_and(|t| t.starts_with("Attempts of step fan (1 of at most") && t.ends_with("; 1 before):")),
        "{text}"
    );
    let rows: Vec<Vec<&str>> = fan.iter().skip(2).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows.len(),
        2,
        "the fan-out's attempts are listed, not an empty table:\n{text}"
    );
    assert_eq!(rows[0].get(..2), Some(&["#1", "cancelled"][..]), "{text}");
    assert_eq!(rows[1].get(..2), Some(&["#2", "succeeded"][..]), "{text}");

    // The same in JSON.
    let (code, out, err) = baton(&cluster.addr, &["-o", "json", "run", "get", &run_id]).await;
    assert_eq!(code, 0, "{err}");
    let run: Value = serde_json::from_str(&out).expect("JSON");
    let outcomes = |step: &str| -> Vec<(u64, String)> {
        run["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["id"] == step))
            .and_then(|s| s["attempts"].as_array())
            .map(|a| {
                a.iter()
                    .map(|a| {
                        (
                            a["number"].as_u64().unwrap_or(0),
                            a["outcome"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        outcomes("flaky"),
        [(1, "failed"), (2, "failed"), (3, "cancelled"), (4, "succeeded")].map(|(n, o)| (n, o.to_string())),
        "{out}"
    );
    assert_eq!(
        outcomes("fan"),
        [(1, "cancelled"), (2, "succeeded")].map(|(n, o)| (n, o.to_string())),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn event_purge_without_a_key_names_the_keys_that_hold_events() {
    let cluster = Cluster::start("cli-purge", &[]).await;
    for (key, n) in [("order-1", 1), ("order-1", 2), ("order-2", 3)] {
        let (code, out, err) = baton(
            &cluster.addr,
            &[
                "event",
                "publish",
                "payment",
                "--key",
                key,
                "-p",
                &format!("{{\"n\": {n}}}"),
            ],
        )
        .await;
        assert_eq!(code, 0, "{out}{err}");
    }

    let (code, out, err) = baton(&cluster.addr, &["event", "purge", "payment"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        "purged 0 buffered event(s)\n\
         no event of payment without a key is buffered; events of payment are buffered under key \"order-1\" (2), \"order-2\" (1)\n\
         purge one key with --key KEY, or every key of payment with --all-keys\n"
    );
    let (code, out, _) = baton(&cluster.addr, &["-o", "json", "event", "purge", "payment"]).await;
    assert_eq!(code, 0);
    let doc: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(doc["purged"], 0, "{doc}");
    assert_eq!(doc["buffered_keys"].as_array().map(Vec::len), Some(2), "{doc}");

    let (code, out, _) = baton(&cluster.addr, &["event", "purge", "payment", "--key", "order-1"]).await;
    assert_eq!((code, out.as_str()), (0, "purged 2 buffered event(s)\n"));
    let (code, out, _) = baton(&cluster.addr, &["event", "purge", "payment", "--all-keys"]).await;
    assert_eq!((code, out.as_str()), (0, "purged 1 buffered event(s)\n"));
    let (code, out, _) = baton(&cluster.addr, &["event", "purge", "payment"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("nor under any other key"), "{out}");
}
