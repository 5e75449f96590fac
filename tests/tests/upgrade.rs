//! Upgrades: a coordinator checks the layout version its namespace holds in Redis before it serves
//! it. Runs in flight from the previous release (which kept no mark) are migrated and finish; a
//! namespace of a layout it cannot read is refused with a message naming the drain procedure, and
//! left as it was.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use baton_coordinator::store::LAYOUT_VERSION;
use baton_tests::{AMQP_URL, Cluster, REDIS_URL, bin, free_port, status};
use serde_json::json;

async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(REDIS_URL)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis")
}

async fn layout_mark(namespace: &str) -> Option<String> {
    let mut conn = redis().await;
    redis::AsyncCommands::get(&mut conn, format!("{namespace}:layout"))
        .await
        .expect("GET layout")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_in_flight_from_the_previous_layout_is_migrated_and_finishes() {
    let mut cluster = Cluster::start("upgrade-old", &[]).await;
    assert_eq!(
        layout_mark(&cluster.namespace).await,
        Some(LAYOUT_VERSION.to_string()),
        "a new namespace is marked"
    );
    cluster
        .register(
            "name: pair\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n  - {id: b, handler: echo, depends_on: [a]}\n",
        )
        .await;
    // No worker yet: the run's first step is dispatched and waits in its queue.
    let run_id = cluster.submit("pair", json!({"v": 7})).await;
    cluster
        .wait_step(&run_id, "a", "dispatched", Duration::from_secs(30))
        .await;
    // The previous release's coordinator stops and leaves the namespace as it kept it: no mark.
    cluster.stop_coordinator(false);
    let mut conn = redis().await;
    let _: i64 = redis::AsyncCommands::del(&mut conn, format!("{}:layout", cluster.namespace))
        .await
        .expect("DEL layout");

    cluster.start_coordinator().await;
    assert_eq!(
        layout_mark(&cluster.namespace).await,
        Some(LAYOUT_VERSION.to_string()),
        "the namespace is migrated to this layout"
    );
    let log = std::fs::read_to_string(cluster.log_path("coordinator")).unwrap_or_default();
    assert!(
        log.contains("migrated the namespace's layout"),
        "the coordinator says it migrated: {log}"
    );
    cluster.spawn_worker("w1", 2);
    let run = cluster.wait_run(&run_id, Duration::from_secs(60)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    assert_eq!(run.output_json, r#"{"b":{"v":7}}"#);
    assert_eq!(cluster.executions(&run_id, "a").await, 1);
    assert_eq!(cluster.executions(&run_id, "b").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_in_flight_from_layout_2_without_a_stored_graph_finish_and_fan_out() {
    let mut cluster = Cluster::start("upgrade-graph", &[]).await;
    cluster
        .register(
            "name: diamond\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n  - {id: b, handler: echo, depends_on: [a]}\n  - {id: c, handler: echo, depends_on: [a]}\n  - {id: d, handler: echo, depends_on: [b, c]}\n",
        )
        .await;
    let run_id = cluster.submit("diamond", json!({"v": 3})).await;
    cluster
        .wait_step(&run_id, "a", "dispatched", Duration::from_secs(30))
        .await;
    // The previous release's coordinator stops; its runs kept no graph (layout 2).
    cluster.stop_coordinator(false);
    let mut conn = redis().await;
    let ns = cluster.namespace.clone();
    let _: () = redis::AsyncCommands::set(&mut conn, format!("{ns}:layout"), "2")
        .await
        .expect("SET layout");
    let _: i64 = redis::AsyncCommands::hdel(&mut conn, format!("{ns}:{{{run_id}}}:run"), "leaves")
        .await
        .expect("HDEL leaves");
    let _: i64 = redis::AsyncCommands::hdel(
        &mut conn,
        format!("{ns}:{{{run_id}}}:steps"),
        &["a:children", "b:children", "c:children"],
    )
    .await
    .expect("HDEL children");

    cluster.start_coordinator().await;
    assert_eq!(layout_mark(&ns).await, Some(LAYOUT_VERSION.to_string()));
    cluster.spawn_worker("w1", 2);
    let run = cluster.wait_run(&run_id, Duration::from_secs(60)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    assert_eq!(run.output_json, r#"{"d":{"v":3}}"#);
    for step in ["a", "b", "c", "d"] {
        assert_eq!(cluster.executions(&run_id, step).await, 1, "{step}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_of_a_newer_layout_is_refused_with_the_drain_procedure_and_left_unchanged() {
    let cluster = Cluster::start("upgrade-new", &[]).await;
    let mut conn = redis().await;
    let _: () = redis::AsyncCommands::set(&mut conn, format!("{}:layout", cluster.namespace), "99")
        .await
        .expect("SET layout");

    let log_path = cluster.log_path("refused-coordinator");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = Command::new(bin("test-coordinator"))
        .env("BATON_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("BATON_NAMESPACE", &cluster.namespace)
        .env("BATON_REDIS_URL", REDIS_URL)
        .env("BATON_AMQP_URL", AMQP_URL)
        .env("BATON_QUEUE_TYPE", "classic")
        .env("RUST_LOG", "info,lapin=warn")
        .stdout(Stdio::from(log.try_clone().expect("log file")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn test-coordinator");
    let start = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the coordinator did not refuse the namespace within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!exit.success(), "the coordinator exits with an error: {exit}");
    let said = std::fs::read_to_string(&log_path).unwrap_or_default();
    for want in [
        "layout 99",
        "newer Baton release",
        "Drain the namespace",
        "Upgrades and the namespace layout",
    ] {
        assert!(said.contains(want), "the refusal says {want:?}: {said}");
    }
    assert_eq!(
        layout_mark(&cluster.namespace).await.as_deref(),
        Some("99"),
        "nothing changed"
    );
}
