//! The web console in a real browser: a coordinator with its HTTP API (which serves the console),
//! a test worker, Redis and RabbitMQ; `console/e2e/console.mjs` drives Debian's Chromium through
//! `playwright-core`: the expense approval (the task in the inbox, a form error found by the page
//! and one found by the coordinator shown next to their fields, the approval, the run's steps
//! turning green, a rerun from a step), a fan-out's progress, cancelling a running run and
//! retrying a failed one from their pages, a schedule triggered from its page, and the token
//! prompt of a coordinator with auth on; and (`console/e2e/operate.mjs`) the console's operations:
//! a run started from a workflow's page with errors by field, bulk cancel and retry, search and
//! hidden child runs, a schedule created, edited, paused, resumed and deleted, a workflow version
//! deleted (refused while a run of it is unfinished), an event published, times with their zone,
//! the timeline and history download, "my tasks", and the layout on a 390 px phone; and
//! (`console/e2e/step_logs.mjs`) a step's live logs, inputs and errors in its panel.
//!
//! Needs Node, `console/node_modules` (`console/build.sh` installs it) and `/usr/bin/chromium`
//! (`apt-get install -y chromium`); the coordinator must have been built after `console/build.sh`
//! (it embeds `console/dist`). A missing piece fails the test with the command that installs it.
//! Screenshots go to `target/console-screenshots/` (printed).

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use baton_tests::{Cluster, free_port};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One HTTP/1.1 GET over a fresh connection: (status, body). Plain std I/O, so the test needs no
/// HTTP client crate for its two readiness checks.
fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// What the browser test needs on this machine; panics with how to install what is missing.
fn check_prerequisites() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: install Debian's Chromium with `apt-get install -y chromium` (as root), \
         or set CHROMIUM to a Chromium binary"
    );
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is missing: install Node 20 or later (`apt-get install -y nodejs npm`)"
    );
    let pw = repo_root().join("console/node_modules/playwright-core");
    assert!(
        pw.exists(),
        "{} is missing: run `console/build.sh` (npm ci from console/package-lock.json)",
        pw.display()
    );
}

const EXPENSE: &str = include_str!("../../examples/workflows/expense.yaml");

const FANOUT: &str = r#"
name: fanout
version: 1
description: Squares each element, two at a time, then echoes the squares.
steps:
  - id: squares
    handler: square
    for_each: input.items
    max_parallel: 2
    timeout: 30s
  - id: total
    handler: echo
    depends_on: [squares]
    input:
      squares: "${{ steps.squares.output }}"
"#;

const LONGRUN: &str = r#"
name: longrun
version: 1
description: One step that runs for a minute unless cancelled.
steps:
  - id: wait
    handler: patient
    timeout: 5m
  - id: after
    handler: echo
    depends_on: [wait]
"#;

const FLAKY: &str = r#"
name: flaky
version: 1
description: Fails its one attempt; a retry of the run succeeds.
steps:
  - id: charge
    handler: fail
    input:
      succeed_on_attempt: 2
    retry:
      max_attempts: 1
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_approves_an_expense_shows_a_fan_out_and_cancels_and_retries_runs_in_chromium() {
    check_prerequisites();
    let http = format!("127.0.0.1:{}", free_port());
    let mut cluster = Cluster::start("console", &[("BATON_HTTP_ADDR", &http)]).await;
    cluster.spawn_worker("console-worker", 8);
    for yaml in [EXPENSE, FANOUT, LONGRUN, FLAKY] {
        cluster.register(yaml).await;
    }

    let stdout = run_script(&cluster, &http, "console.mjs", &[]).await;
    assert!(
        stdout.contains("all console scenarios passed"),
        "the script stopped early:\n{stdout}"
    );
}

const ORDER: &str = r#"
name: order
version: 1
description: An order whose quantity comes in fives (a rule the console's form does not check).
input_schema:
  type: object
  required: [customer, quantity]
  additionalProperties: false
  properties:
    customer: {type: string, title: Customer, minLength: 1, maxLength: 100}
    quantity: {type: integer, title: Quantity, minimum: 5, multipleOf: 5}
steps:
  - {id: check, handler: echo}
  - {id: ship, handler: echo, depends_on: [check]}
"#;

const KID: &str = "name: kid\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n";
const PARENT: &str = "name: parent\nversion: 1\nsteps:\n  - {id: child, workflow: {name: kid}}\n";
const WIDE: &str = "name: wide\nversion: 1\ndescription: Six steps side by side, then a join.\nsteps:\n  - {id: alpha, handler: echo}\n  - {id: bravo, handler: echo}\n  - {id: charlie, handler: echo}\n  - {id: delta, handler: echo}\n  - {id: echo_step, handler: echo}\n  - {id: foxtrot, handler: echo}\n  - {id: join, handler: echo, depends_on: [alpha, bravo, charlie, delta, echo_step, foxtrot]}\n";
const WAITER: &str = "name: waiter\nversion: 1\nsteps:\n  - {id: first, handler: echo}\n  - id: paid\n    depends_on: [first]\n    wait_for_event: {event: payment, key: input.order, timeout: 1h}\n";
const DOOMED_1: &str = "name: doomed\nversion: 1\nsteps:\n  - {id: wait, handler: patient, timeout: 5m}\n";
const DOOMED_2: &str = "name: doomed\nversion: 2\nsteps:\n  - {id: wait, handler: patient, timeout: 5m}\n  - {id: after, handler: echo, depends_on: [wait]}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_starts_runs_cancels_in_bulk_edits_schedules_deletes_a_version_and_fits_a_phone_in_chromium() {
    check_prerequisites();
    let http = format!("127.0.0.1:{}", free_port());
    let mut cluster = Cluster::start("console-operate", &[("BATON_HTTP_ADDR", &http)]).await;
    cluster.spawn_worker("op-worker", 8);
    for yaml in [
        ORDER, LONGRUN, FLAKY, KID, PARENT, WIDE, WAITER, EXPENSE, DOOMED_1, DOOMED_2,
    ] {
        cluster.register(yaml).await;
    }
    let stdout = run_script(&cluster, &http, "operate.mjs", &[]).await;
    assert!(
        stdout.contains("all operate scenarios passed"),
        "the script stopped early:\n{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_asks_for_a_token_when_the_api_answers_401_and_keeps_it_for_the_tab() {
    check_prerequisites();
    let viewer = "tok-console-viewer-7c1e9a";
    let http = format!("127.0.0.1:{}", free_port());
    let tokens = format!("viewer:vera:{viewer}");
    let cluster = Cluster::start(
        "console-token",
        &[("BATON_HTTP_ADDR", &http), ("BATON_AUTH_TOKENS", &tokens)],
    )
    .await;
    let stdout = run_script(&cluster, &http, "token.mjs", &[("TOKEN", viewer)]).await;
    assert!(
        stdout.contains("all token scenarios passed"),
        "the script stopped early:\n{stdout}"
    );
}

const LONG_ERRORS: &str = r#"
name: longerrors
version: 1
description: Fails twice with a 600-byte error of one word, then succeeds.
steps:
  - id: charge
    handler: fail
    input:
      succeed_on_attempt: 3
      message_bytes: 600
    retry: {max_attempts: 3, initial_interval: 100ms}
"#;

const FANOUT18: &str = r#"
name: fanout18
version: 1
description: Squares 18 elements, two at a time, then echoes.
steps:
  - id: squares
    handler: square
    for_each: input.items
    max_parallel: 2
  - id: total
    handler: echo
    depends_on: [squares]
"#;

/// Issue 19: a step's long attempt errors stay in its card (1400 px and a phone), and a fan-out
/// node never pairs an event's status with an older fetch's counts (`console/e2e/run_page.mjs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_page_keeps_long_attempt_errors_in_the_card_and_a_fan_out_node_consistent_in_chromium() {
    check_prerequisites();
    let http = format!("127.0.0.1:{}", free_port());
    let mut cluster = Cluster::start("console-run-page", &[("BATON_HTTP_ADDR", &http)]).await;
    cluster.spawn_worker("console-run-page-worker", 8);
    for yaml in [LONG_ERRORS, FANOUT18] {
        cluster.register(yaml).await;
    }
    let stdout = run_script(&cluster, &http, "run_page.mjs", &[]).await;
    assert!(
        stdout.contains("all run page scenarios passed"),
        "the script stopped early:\n{stdout}"
    );
}

const STEP_LOGS: &str = r#"
name: steplogs
version: 1
description: Logs a line every 120 ms at every level; fails attempt 1 (Flaky), then succeeds.
steps:
  - id: charge
    handler: chatty
    input:
      order: "${{ input.order }}"
      lines: 40
      ms: 120
      succeed_on_attempt: 2
    retry: {max_attempts: 2, initial_interval: 500ms}
"#;

/// Issue 19: a step's data in its panel (`console/e2e/step_logs.mjs`): log lines arriving live and
/// read back after a reload, the level filter, auto-scroll, times in the zone picked, a failed
/// attempt's resolved input, error type and details, at 1400 px and on a 390 px phone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_panel_shows_live_logs_each_attempts_input_and_its_error_in_chromium() {
    check_prerequisites();
    let http = format!("127.0.0.1:{}", free_port());
    let mut cluster = Cluster::start("console-step-logs", &[("BATON_HTTP_ADDR", &http)]).await;
    cluster.spawn_worker("console-step-logs-worker", 4);
    cluster.register(STEP_LOGS).await;
    let stdout = run_script(&cluster, &http, "step_logs.mjs", &[]).await;
    assert!(
        stdout.contains("all step logs scenarios passed"),
        "the script stopped early:\n{stdout}"
    );
}

/// Waits until the HTTP server at `http` answers health and serves the built console, then runs
/// `node console/e2e/<script>` with `env`; prints its output and answers its stdout, panicking
/// when it fails.
async fn run_script(cluster: &Cluster, http: &str, script: &str, env: &[(&str, &str)]) -> String {
    let start = Instant::now();
    loop {
        if let Ok((200, _)) = http_get(http, "/healthz") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the coordinator's HTTP API at {http} did not answer /healthz within 30 s; see {}",
            cluster.log_path("coordinator").display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, index) = http_get(http, "/").expect("GET /");
    assert_eq!(status, 200, "GET / answered {status}: {index}");
    assert!(
        !index.contains("the console was not built"),
        "the coordinator embeds the placeholder page: run `console/build.sh`, then build the tests again \
         (`cargo test -p baton-tests --test console` rebuilds the coordinator with console/dist)"
    );

    let shots = repo_root().join("target/console-screenshots");
    let path = repo_root().join("console/e2e").join(script);
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new("node")
            .arg(&path)
            .current_dir(repo_root().join("console"))
            .env("CONSOLE_URL", format!("http://{http}/"))
            .env("SCREENSHOT_DIR", &shots)
            .envs(env.iter().copied())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser test did not finish within 5 minutes")
    .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    println!("screenshots: {}", shots.display());
    assert!(
        out.status.success(),
        "node {} failed ({}); its output is above; coordinator log: {}",
        path.display(),
        out.status,
        cluster.log_path("coordinator").display()
    );
    stdout
}

/// Issue 20: run search in the console (`console/e2e/search.mjs`), over runs the archive holds:
/// a filter on a field of the input, AND/NOT, counts over every match, a filter that does not
/// parse, and an archived run's page. The coordinator archives into a PostgreSQL schema of the
/// test's own; the browser starts once every run is in PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runs_page_searches_and_counts_archived_runs_in_chromium() {
    check_prerequisites();
    let schema = baton_tests::pg::Schema::new();
    let http = format!("127.0.0.1:{}", free_port());
    let mut cluster = Cluster::start(
        "console-search",
        &[
            ("BATON_HTTP_ADDR", &http),
            ("BATON_ARCHIVE_URL", baton_tests::POSTGRES_URL),
            ("BATON_ARCHIVE_SCHEMA", &schema.0),
        ],
    )
    .await;
    cluster.spawn_worker("console-search-worker", 4);
    cluster
        .register("name: search-ok\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    cluster
        .register("name: search-bad\nversion: 1\nsteps:\n  - {id: a, handler: fail, retry: {max_attempts: 1}}\n")
        .await;
    let mut made = serde_json::json!({"c42_ok": [], "c42_failed": [], "c7_ok": []});
    let mut ids = Vec::new();
    for (list, workflow, customer) in [
        ("c42_ok", "search-ok", "c-42"),
        ("c42_ok", "search-ok", "c-42"),
        ("c42_failed", "search-bad", "c-42"),
        ("c7_ok", "search-ok", "c-7"),
        ("c7_ok", "search-ok", "c-7"),
    ] {
        let id = cluster
            .submit(workflow, serde_json::json!({"customer": customer, "fatal": true}))
            .await;
        made[list].as_array_mut().expect("a list").push(id.clone().into());
        ids.push(id);
    }
    for id in &ids {
        cluster.wait_run(id, Duration::from_secs(60)).await;
    }
    // Every run reaches the archive (the archiver writes each finished run once).
    let start = Instant::now();
    loop {
        let n = schema
            .count(&format!(
                "SELECT count(*) FROM runs WHERE namespace = '{}'",
                cluster.namespace
            ))
            .await;
        if n == 5 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the 5 runs were not archived within 60 s (last count: {n}); see {}",
            cluster.log_path("coordinator").display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let runs = made.to_string();
    let stdout = run_script(&cluster, &http, "search.mjs", &[("RUNS", &runs)]).await;
    assert!(
        stdout.contains("all search scenarios passed"),
        "the script stopped early:\n{stdout}"
    );
}
