//! A DAG with fan-out and fan-in runs in dependency order, passes outputs along, and streams its
//! events from the start.

use std::time::Duration;

use baton_shared::proto::{RunEvent, WatchRunRequest, run_service_client::RunServiceClient};
use baton_tests::{Cluster, ms, status, step_status};
use serde_json::{Value, json};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

const DAG: &str = r#"
name: diamond
version: 1
description: a fans out to b and c, which fan in to d
input_schema:
  type: object
  required: [doc]
  properties: {doc: {type: string}}
steps:
  - {id: a, handler: trace}
  - {id: b, handler: trace, depends_on: [a]}
  - {id: c, handler: echo, depends_on: [a]}
  - {id: d, handler: trace, depends_on: [b, c]}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn fan_in_runs_in_dependency_order_with_outputs() {
    let mut cluster = Cluster::start("dag", &[]).await;
    cluster.spawn_worker("w1", 8);
    cluster.register(DAG).await;
    let run_id = cluster.submit("diamond", json!({"doc": "hello"})).await;
    let run = cluster.wait_run(&run_id, Duration::from_secs(60)).await;

    assert_eq!(status(&run), "succeeded", "{run:#?}");
    for s in ["a", "b", "c", "d"] {
        assert_eq!(step_status(&run, s), "succeeded");
        assert_eq!(cluster.executions(&run_id, s).await, 1, "step {s} ran once");
    }
    let step = |id: &str| run.steps.iter().find(|s| s.id == id).unwrap();
    // d started only after both of its parents finished; b and c only after a.
    assert!(ms(&step("d").started_at) >= ms(&step("b").finished_at));
    assert!(ms(&step("d").started_at) >= ms(&step("c").finished_at));
    assert!(ms(&step("b").started_at) >= ms(&step("a").finished_at));
    assert!(ms(&step("c").started_at) >= ms(&step("a").finished_at));

    // d received exactly its parents' outputs; the run output is the leaf's output.
    let output: Value = serde_json::from_str(&run.output_json).unwrap();
    let d = &output["d"];
    assert_eq!(d["step"], "d");
    assert_eq!(d["received"]["c"], json!({"doc": "hello"}), "c echoed the run input");
    assert_eq!(d["received"]["b"]["step"], "b");
    assert_eq!(d["received"]["b"]["received"]["a"]["step"], "a");
    assert_eq!(d["received"].as_object().unwrap().len(), 2);

    // A late subscriber gets the whole history, ending with the run's success.
    let mut stream = cluster
        .runs()
        .await
        .watch_run(WatchRunRequest {
            run_id: run_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    while let Some(e) = stream.next().await {
        events.push(e.unwrap());
    }
    let words: Vec<String> = events
        .iter()
        .map(|e| format!("{}:{}:{}", e.kind, e.step_id, e.status))
        .collect();
    assert_eq!(words.first().map(String::as_str), Some("run::pending"));
    assert_eq!(words.last().map(String::as_str), Some("run::succeeded"));
    for s in ["a", "b", "c", "d"] {
        for st in ["dispatched", "running", "succeeded"] {
            assert!(
                words.contains(&format!("step:{s}:{st}")),
                "missing step:{s}:{st} in {words:?}"
            );
        }
    }
    let pos = |w: &str| words.iter().position(|x| x == w).unwrap();
    assert!(pos("step:a:succeeded") < pos("step:b:dispatched"));
    assert!(pos("step:c:succeeded") < pos("step:d:dispatched"));
    assert!(pos("step:b:succeeded") < pos("step:d:dispatched"));
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_streams_live_events_until_the_run_ends() {
    let mut cluster = Cluster::start("watch", &[]).await;
    cluster.register("name: pause\nversion: 1\nsteps:\n  - {id: first, handler: slow}\n  - {id: second, handler: echo, depends_on: [first]}\n").await;
    let run_id = cluster.submit("pause", json!({"ms": 500})).await;
    // Subscribe before any worker runs: the stream must go on until the run ends.
    let mut stream = cluster
        .runs()
        .await
        .watch_run(WatchRunRequest {
            run_id: run_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    cluster.spawn_worker("w1", 4);
    let mut last = None;
    let mut n = 0;
    while let Some(e) = tokio::time::timeout(Duration::from_secs(60), stream.next())
        .await
        .expect("events keep coming")
    {
        let e = e.unwrap();
        n += 1;
        last = Some(format!("{}:{}", e.kind, e.status));
    }
    assert_eq!(last.as_deref(), Some("run:succeeded"));
    assert!(
        n >= 8,
        "run pending/running/succeeded and 2 steps x dispatched/running/succeeded, got {n}"
    );
}

/// Every message of run `run_id`'s WatchRun stream opened with `include_run` (and
/// `after_sequence`), until it ends.
async fn watch_all(mut runs: RunServiceClient<Channel>, run_id: &str, after: &str, include_run: bool) -> Vec<RunEvent> {
    let mut stream = runs
        .watch_run(WatchRunRequest {
            run_id: run_id.to_owned(),
            after_sequence: after.to_owned(),
            include_run,
        })
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    while let Some(e) = tokio::time::timeout(Duration::from_secs(60), stream.next())
        .await
        .expect("the stream ends when the run does")
    {
        events.push(e.unwrap());
    }
    events
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_with_include_run_ends_with_the_run_as_get_run_answers_it() {
    let mut cluster = Cluster::start("watch-final", &[]).await;
    cluster.register("name: pause\nversion: 1\nsteps:\n  - {id: first, handler: slow}\n  - {id: second, handler: echo, depends_on: [first]}\n").await;
    cluster
        .register("name: bad\nversion: 1\nsteps:\n  - {id: a, handler: fail, retry: {max_attempts: 1}}\n")
        .await;
    let run_id = cluster.submit("pause", json!({"ms": 300})).await;
    // Live: opened before any worker runs the run.
    let live = tokio::spawn({
        let runs = cluster.runs().await;
        let run_id = run_id.clone();
        async move { watch_all(runs, &run_id, "", true).await }
    });
    cluster.spawn_worker("w1", 4);
    let events = live.await.unwrap();
    let got = cluster.get_run(&run_id).await;
    let last = events.last().expect("events");
    assert_eq!(last.kind, "final", "{events:#?}");
    assert_eq!(last.status, "succeeded");
    assert_eq!(last.run_id, run_id);
    assert!(last.sequence.is_empty(), "a final message is no point to resume from");
    assert_eq!(last.run.as_ref(), Some(&got), "the final run is GetRun's answer");
    assert_eq!(status(&got), "succeeded");
    assert_eq!(got.steps.len(), 2);
    // The message before it is the run's end, as without `include_run`.
    let end = &events[events.len() - 2];
    assert_eq!(format!("{}:{}", end.kind, end.status), "run:succeeded");
    assert_eq!(events.iter().filter(|e| e.kind == "final").count(), 1);

    // Late, without `include_run`: the same history, and no final message.
    let plain = watch_all(cluster.runs().await, &run_id, "", false).await;
    assert_eq!(
        plain.iter().map(|e| &e.sequence).collect::<Vec<_>>(),
        events[..events.len() - 1]
            .iter()
            .map(|e| &e.sequence)
            .collect::<Vec<_>>()
    );
    assert!(plain.iter().all(|e| e.kind != "final" && e.run.is_none()));
    // Late, with it: the history, then the final run.
    let late = watch_all(cluster.runs().await, &run_id, "", true).await;
    assert_eq!(late.len(), plain.len() + 1);
    assert_eq!(late.last().and_then(|e| e.run.as_ref()), Some(&got));

    // Resumed after the run's last event: nothing more happened, and the final message still
    // comes (the run is found over from its status).
    let resumed = watch_all(cluster.runs().await, &run_id, &end.sequence, true).await;
    assert_eq!(resumed.len(), 1, "{resumed:#?}");
    assert_eq!(resumed[0].run.as_ref(), Some(&got));

    // A failed run ends the same way, with its error.
    let bad = cluster.submit("bad", json!({"fatal": true})).await;
    let failed = watch_all(cluster.runs().await, &bad, "", true).await;
    let last = failed.last().expect("events");
    assert_eq!((last.kind.as_str(), last.status.as_str()), ("final", "failed"));
    let run = last.run.as_ref().expect("the run");
    assert_eq!(status(run), "failed");
    assert!(!run.error.is_empty(), "{run:#?}");
    assert_eq!(run, &cluster.get_run(&bad).await);
}
