//! `baton worker list`, `baton queue list` and `baton workflow apply`'s warning about a handler no
//! live worker serves: the real `baton` binary against a real coordinator and worker (run in this
//! process, over the real Redis, RabbitMQ and gRPC).

use std::time::{Duration, Instant};

use baton_worker::{StepContext, StepError, Worker, WorkerConfig};
use serde_json::Value;

mod common;
use common::baton;

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_lists_workers_and_queues_and_is_warned_about_a_handler_nobody_serves() {
    baton_tests::ensure_services();
    let namespace = format!(
        "t-cli-ops-{:x}{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let port = baton_tests::free_port();
    let addr = format!("http://127.0.0.1:{port}");
    let config = baton_coordinator::CoordinatorConfig {
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
        namespace: namespace.clone(),
        timer_poll_interval: Duration::from_millis(50),
        queue_type: baton_shared::amqp::QueueType::Classic,
        ..Default::default()
    };
    let (stop, rx) = tokio::sync::watch::channel(false);
    let mut rx1 = rx.clone();
    tokio::spawn(baton_coordinator::serve(config, async move {
        let _ = rx1.changed().await;
    }));
    let start = Instant::now();
    while baton_tests::health_status(&addr, "").await != Ok(baton_tests::ServingStatus::Serving) {
        assert!(start.elapsed() < Duration::from_secs(60), "coordinator did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let worker = WorkerConfig {
        coordinator: addr.clone(),
        namespace: namespace.clone(),
        worker_id: "cli-ops-w1".into(),
        queue_type: baton_shared::amqp::QueueType::Classic,
        concurrency: 3,
        heartbeat_interval: Duration::from_millis(200),
        ..Default::default()
    };
    let mut rx2 = rx;
    tokio::spawn(
        Worker::new(worker)
            .handler("served", |_ctx: StepContext, input: Value| async move {
                Ok::<_, StepError>(input)
            })
            .run(async move {
                let _ = rx2.changed().await;
            }),
    );

    // The worker appears, running, with its handler.
    let start = Instant::now();
    let listed = loop {
        let (code, out, err) = baton(&addr, &["worker", "list"]).await;
        assert_eq!(code, 0, "{out}{err}");
        if out.contains("cli-ops-w1") {
            break out;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the worker never appeared: {out}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let lines: Vec<&str> = listed.lines().collect();
    assert!(
        lines[0].starts_with("WORKER") && lines[0].contains("LAST SEEN"),
        "{listed}"
    );
    let row = lines.iter().find(|l| l.starts_with("cli-ops-w1")).unwrap();
    assert!(
        row.contains("running") && row.contains("served") && row.contains("0/3"),
        "{listed}"
    );
    let (code, out, _) = baton(&addr, &["worker", "list", "-o", "json"]).await;
    assert_eq!(code, 0);
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json[0]["id"], "cli-ops-w1");
    assert_eq!(json[0]["state"], "running");
    assert_eq!(json[0]["handlers"], serde_json::json!(["served"]));

    // Applying a workflow whose handler no live worker serves warns (and still succeeds); one
    // whose handlers are served does not.
    let dir = tempfile::tempdir().unwrap();
    let orphan = dir.path().join("orphan.yaml");
    std::fs::write(
        &orphan,
        "name: orphan\nversion: 1\nsteps:\n  - {id: a, handler: served}\n  - {id: b, handler: nobody, depends_on: [a]}\n",
    )
    .unwrap();
    let (code, out, err) = baton(&addr, &["workflow", "apply", "-f", orphan.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("orphan") && out.contains("created"), "{out}");
    assert_eq!(
        err.trim_end(),
        "warning: no live worker serves handler `nobody` (step b): its tasks will wait in the queue until one starts"
    );
    let fine = dir.path().join("fine.yaml");
    std::fs::write(&fine, "name: fine\nversion: 1\nsteps:\n  - {id: a, handler: served}\n").unwrap();
    let (code, out, err) = baton(&addr, &["workflow", "apply", "-f", fine.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(err, "", "no warning when every handler is served");

    // The queues: one per handler, with consumers where a worker serves.
    let (code, out, err) = baton(&addr, &["queue", "list"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("HANDLER") && lines[0].contains("OLDEST WAITING"),
        "{out}"
    );
    let nobody = lines.iter().find(|l| l.starts_with("nobody")).expect("nobody row");
    let cells: Vec<&str> = nobody.split_whitespace().collect();
    // HANDLER QUEUE READY UNACKED CONSUMERS WORKERS WAITING OLDEST
    assert_eq!(cells[1], format!("{namespace}.step.nobody"), "{out}");
    assert_eq!(&cells[2..7], &["0", "0", "0", "0", "0"], "{out}");
    let served = lines.iter().find(|l| l.starts_with("served")).expect("served row");
    let cells: Vec<&str> = served.split_whitespace().collect();
    assert_eq!((cells[4], cells[5]), ("1", "1"), "{out}");
    let (code, out, _) = baton(&addr, &["queue", "list", "-o", "json"]).await;
    assert_eq!(code, 0);
    let json: Value = serde_json::from_str(&out).unwrap();
    let served = json
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["handler"] == "served")
        .unwrap();
    assert_eq!(served["consumers"], 1);
    assert_eq!(served["exists"], true);

    let _ = stop.send(true);
    tokio::time::sleep(Duration::from_millis(200)).await;
    baton_tests::cleanup_namespace(&namespace, &["served".to_string(), "nobody".to_string()]).await;
}
