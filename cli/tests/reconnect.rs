//! The CLI's waiting commands across faults, with real processes: `run submit --wait` and `run watch`
//! ride out a coordinator restart and its Redis going away, print one line when the coordinator is
//! lost and one when it is back, and exit 2 only once an outage outlasts `--reconnect-for`.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use baton_tests::{Cluster, REDIS_URL, TcpProxy, status};
use serde_json::json;

mod common;
use common::baton;

/// Starts `baton --addr <addr> <args>` in the background; its output is collected by [`finish`].
fn spawn_baton(addr: &str, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("--addr")
        .arg(addr)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn baton")
}

/// Waits for a backgrounded `baton` to exit (at most `within`); returns (code, stdout, stderr).
async fn finish(child: std::process::Child, within: Duration) -> (i32, String, String) {
    let pid = child.id();
    let waited = tokio::time::timeout(
        within,
        tokio::task::spawn_blocking(move || child.wait_with_output().expect("wait for baton")),
    )
    .await;
    match waited {
        Ok(out) => {
            let out = out.expect("join");
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("baton did not exit within {within:?}");
        }
    }
}

/// The id of the only run of `workflow`, once there is one whose step `a` runs.
async fn running_run(cluster: &Cluster, workflow: &str) -> String {
    let start = Instant::now();
    loop {
        let runs = cluster
            .runs()
            .await
            .list_runs(baton_shared::proto::ListRunsRequest {
                workflow: workflow.into(),
                ..Default::default()
            })
            .await
            .expect("list runs")
            .into_inner()
            .runs;
        if let Some(run) = runs.first() {
            let run = cluster.get_run(&run.id).await;
            if baton_tests::step_status(&run, "a") == "running" {
                return run.id;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no run of {workflow} started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn run_submit_wait_rides_out_a_coordinator_restart_and_exits_0_with_the_result() {
    let mut cluster = Cluster::start("cli-wait-restart", &[("BATON_QUEUE_TYPE", "quorum")]).await;
    cluster
        .register(
            "name: nap\nversion: 1\nsteps:\n  - {id: a, handler: slow}\n  - {id: b, handler: echo, depends_on: [a]}\n",
        )
        .await;
    cluster.spawn_worker("w1", 2);
    let input = json!({"ms": 4000}).to_string();
    let cli = spawn_baton(&cluster.addr, &["run", "submit", "nap", "--input", &input, "--wait"]);
    let run_id = running_run(&cluster, "nap").await;
    cluster.stop_coordinator(true);
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.start_coordinator().await;
    let (code, stdout, stderr) = finish(cli, Duration::from_secs(90)).await;
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains(&run_id) && stdout.contains("succeeded"), "{stdout}");
    assert_eq!(
        stderr.matches("lost the coordinator").count(),
        1,
        "one line when the connection drops: {stderr}"
    );
    assert_eq!(
        stderr.matches("is back after").count(),
        1,
        "one line when it returns: {stderr}"
    );
    assert_eq!(status(&cluster.get_run(&run_id).await), "succeeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn run_watch_rides_out_the_coordinators_redis_going_away_and_blames_neither_addr() {
    let proxy = TcpProxy::start(REDIS_URL.trim_start_matches("redis://")).await;
    let redis = format!("redis://127.0.0.1:{}", proxy.port);
    let mut cluster = Cluster::start("cli-redis-cut", &[("BATON_REDIS_URL", redis.as_str())]).await;
    cluster
        .register(
            "name: nap\nversion: 1\nsteps:\n  - {id: a, handler: slow}\n  - {id: b, handler: echo, depends_on: [a]}\n",
        )
        .await;
    cluster.spawn_worker("w1", 2);
    let run_id = cluster.submit("nap", json!({"ms": 3000})).await;
    let cli = spawn_baton(&cluster.addr, &["run", "watch", &run_id]);
    cluster
        .wait_step(&run_id, "a", "running", Duration::from_secs(30))
        .await;
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Meanwhile a one-shot command says the coordinator answered: --addr is not the problem.
    let (code, _, err) = baton(&cluster.addr, &["run", "get", &run_id]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("UNAVAILABLE"), "{err}");
    assert!(
        !err.contains("--addr"),
        "the coordinator answered; its Redis was the problem: {err}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();
    let (code, stdout, stderr) = finish(cli, Duration::from_secs(90)).await;
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("succeeded"), "{stdout}");
    assert_eq!(stderr.matches("lost the coordinator").count(), 1, "{stderr}");
    assert_eq!(stderr.matches("is back after").count(), 1, "{stderr}");
    // Each event once, though the stream was opened again.
    let a_running = stdout
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("a") && l.contains("running"))
        .count();
    assert_eq!(a_running, 1, "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn run_watch_exits_2_once_the_coordinator_stays_away_longer_than_reconnect_for() {
    let mut cluster = Cluster::start("cli-give-up", &[]).await;
    // `manual` is served by no worker: the run stays open.
    cluster
        .register("name: stuck\nversion: 1\nsteps:\n  - {id: a, handler: manual}\n")
        .await;
    let run_id = cluster.submit("stuck", json!({})).await;
    let cli = spawn_baton(&cluster.addr, &["run", "watch", &run_id, "--reconnect-for", "2s"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.stop_coordinator(true);
    let stopped = Instant::now();
    let (code, _, stderr) = finish(cli, Duration::from_secs(60)).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("lost the coordinator"), "{stderr}");
    assert!(stderr.contains("gave up after 2s"), "{stderr}");
    assert!(
        stopped.elapsed() < Duration::from_secs(20),
        "gave up after {:?}",
        stopped.elapsed()
    );
}
