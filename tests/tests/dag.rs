//! A DAG with fan-out and fan-in runs in dependency order, passes outputs along, and streams its
//! events from the start.

use std::time::Duration;

use baton_shared::proto::WatchRunRequest;
use baton_tests::{Cluster, ms, status, step_status};
use serde_json::{Value, json};
use tokio_stream::StreamExt;

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
        .watch_run(WatchRunRequest { run_id: run_id.clone(), ..Default::default() })
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
        .watch_run(WatchRunRequest { run_id: run_id.clone(), ..Default::default() })
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
