//! Emitter workflows and event triggers, end to end.

use std::{collections::HashSet, time::Duration};

use baton_shared::proto::{GetRunRequest, ListRunsRequest, PublishEventRequest, RerunRunRequest, Run};
use baton_tests::{Cluster, status, step_status};
use serde_json::{Value, json};

async fn runs_of(cluster: &Cluster, workflow: &str) -> Vec<Run> {
    list_all(cluster, workflow, "").await
}

/// Every run of `workflow` (all workflows when empty) started by `parent` (any when empty).
async fn list_all(cluster: &Cluster, workflow: &str, parent: &str) -> Vec<Run> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = cluster
            .runs()
            .await
            .list_runs(ListRunsRequest {
                workflow: workflow.into(),
                status: 0,
                limit: 1000,
                page_token: token.clone(),
                parent_run_id: parent.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        out.extend(page.runs);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

const PROCESS: &str =
    "name: process\nversion: 1\ninput_schema: {type: object, required: [n]}\nsteps:\n  - {id: work, handler: echo}\n";

const EMITTER: &str = r#"
name: emitter
version: 1
steps:
  - {id: scan, handler: echo}
  - id: fan
    handler: echo
    depends_on: [scan]
    input: "${{ steps.scan.output }}"
    emit:
      workflow: process
      items: steps.fan.output.items
      key: string(item)
      input: {n: "${{ item }}", position: "${{ index }}"}
      max_in_flight: 200
  - {id: after, handler: echo, depends_on: [fan], input: {done: true}}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn an_emitter_of_a_thousand_items_rerun_after_it_emitted_still_has_a_thousand_children() {
    let mut cluster = Cluster::start("emit", &[]).await;
    cluster.register(PROCESS).await;
    cluster.register(EMITTER).await;
    cluster.spawn_worker("w1", 32);
    let items: Vec<i64> = (0..1000).collect();
    let run_id = cluster.submit("emitter", json!({"items": items})).await;
    let run = cluster.wait_run(&run_id, Duration::from_secs(120)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    let fan = run.steps.iter().find(|s| s.id == "fan").unwrap();
    let emitted = fan.emitted.expect("rolled-up counts");
    assert_eq!(
        (
            emitted.total,
            emitted.pending,
            emitted.running,
            emitted.succeeded,
            emitted.failed
        ),
        (1000, 0, 0, 1000, 0)
    );
    let children = runs_of(&cluster, "process").await;
    assert_eq!(children.len(), 1000);
    assert!(children.iter().all(|r| status(r) == "succeeded"));
    let child = cluster
        .runs()
        .await
        .get_run(GetRunRequest {
            run_id: children[0].id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(child.parent_run_id, run_id);
    assert_eq!(child.parent_step_id, "fan");
    let input: Value = serde_json::from_str(&child.input_json).unwrap();
    assert!(input["n"].is_i64() && input["position"] == input["n"], "{input}");

    // Run the emitter again: the same keys find the same children; none is made twice.
    cluster
        .runs()
        .await
        .rerun_run(RerunRunRequest {
            run_id: run_id.clone(),
            from_step: "fan".into(),
            input_json: String::new(),
        })
        .await
        .unwrap();
    let run = cluster.wait_run(&run_id, Duration::from_secs(120)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    let children = runs_of(&cluster, "process").await;
    assert_eq!(children.len(), 1000, "1,000 children, not 2,000");
    let ids: HashSet<&str> = children.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 1000);
    let fan = run.steps.iter().find(|s| s.id == "fan").unwrap();
    assert_eq!(
        fan.emitted.unwrap().succeeded,
        1000,
        "the re-run counts the children it found"
    );
    let listed = list_all(&cluster, "", &run_id).await;
    assert_eq!(listed.len(), 1000, "ListRuns by parent finds the emitted runs");
    assert!(listed.iter().all(|r| r.parent_run_id == run_id));
    assert_eq!(step_status(&run, "after"), "succeeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_emitter_that_does_not_wait_finishes_once_its_children_are_started() {
    let mut cluster = Cluster::start("emit-nowait", &[]).await;
    cluster
        .register("name: slowchild\nversion: 1\nsteps:\n  - {id: work, handler: slow}\n")
        .await;
    cluster
        .register("name: launcher\nversion: 1\nsteps:\n  - id: go\n    handler: echo\n    emit: {workflow: slowchild, items: steps.go.output.items, key: string(item.k), input: {ms: 1500}, wait: false}\n")
        .await;
    cluster.spawn_worker("w1", 8);
    let items: Vec<Value> = (0..5).map(|k| json!({"k": k})).collect();
    let run_id = cluster.submit("launcher", json!({"items": items})).await;
    let run = cluster.wait_run(&run_id, Duration::from_secs(30)).await;
    assert_eq!(status(&run), "succeeded");
    let emitted = run.steps[0].emitted.unwrap();
    assert_eq!(emitted.total, 5);
    assert!(emitted.running > 0, "done before its children: {emitted:?}");
    for child in runs_of(&cluster, "slowchild").await {
        assert_eq!(
            status(&cluster.wait_run(&child.id, Duration::from_secs(30)).await),
            "succeeded"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_starts_the_workflows_that_subscribe_to_it() {
    let mut cluster = Cluster::start("trigger", &[]).await;
    cluster
        .register("name: on-upload\nversion: 1\non: {event: file.uploaded, filter: 'input.size > 10'}\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    cluster
        .register("name: on-upload-too\nversion: 1\non: {event: file.uploaded}\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    cluster
        .register("name: unrelated\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    cluster.spawn_worker("w1", 4);
    let mut events = cluster.events().await;
    let big = events
        .publish_event(PublishEventRequest {
            name: "file.uploaded".into(),
            key: "f1".into(),
            payload_json: json!({"size": 100}).to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(big.started_run_ids.len(), 2, "{big:?}");
    for id in &big.started_run_ids {
        let run = cluster.wait_run(id, Duration::from_secs(30)).await;
        assert_eq!(status(&run), "succeeded");
        assert_eq!(run.input_json, r#"{"size":100}"#);
    }
    let small = events
        .publish_event(PublishEventRequest {
            name: "file.uploaded".into(),
            key: "f2".into(),
            payload_json: json!({"size": 1}).to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(small.started_run_ids.len(), 1, "the filter left one out");
    let run = cluster
        .wait_run(&small.started_run_ids[0], Duration::from_secs(30))
        .await;
    assert_eq!(run.workflow, "on-upload-too");
    assert!(runs_of(&cluster, "unrelated").await.is_empty());
}
