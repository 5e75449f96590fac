//! Upgrades: a coordinator checks the layout version its namespace holds in Redis before it serves
//! it. Runs in flight from the previous releases (which kept no mark, or kept their keys without
//! the namespace's hash tag) are migrated and finish, also when two coordinators migrate at once;
//! a namespace of a layout it cannot read is refused with a message naming the drain procedure,
//! and left as it was.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use baton_coordinator::store::LAYOUT_VERSION;
use baton_shared::keys::Keys;
use baton_tests::{AMQP_URL, Cluster, REDIS_URL, bin, free_port, scan_keys, status};
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
    redis::AsyncCommands::get(&mut conn, Keys::new(namespace.to_string()).layout())
        .await
        .expect("GET layout")
}

/// Puts the namespace back as layouts 1 to 3 kept it: every key renamed from `{<ns>}:<rest>` to
/// `<ns>:<rest>`, and the layout mark `mark` (`None`: none, as layout 1) under its old name.
/// Returns how many keys were renamed.
async fn untag(namespace: &str, mark: Option<&str>) -> usize {
    let keys = Keys::new(namespace.to_string());
    let mut conn = redis().await;
    let found = scan_keys(&mut conn, &keys.scan_pattern()).await;
    let tag = keys.tag(baton_shared::keys::Scope::Namespace);
    let mut renamed = 0;
    for key in found {
        let Some(rest) = key.strip_prefix(&format!("{tag}:")) else {
            continue;
        };
        if key == keys.layout() {
            let _: i64 = redis::AsyncCommands::del(&mut conn, &key).await.expect("DEL layout");
            continue;
        }
        let _: () = redis::AsyncCommands::rename(&mut conn, &key, keys.untagged(rest))
            .await
            .expect("RENAME");
        renamed += 1;
    }
    if let Some(mark) = mark {
        let _: () = redis::AsyncCommands::set(&mut conn, keys.untagged("layout"), mark)
            .await
            .expect("SET layout");
    }
    renamed
}

/// The namespace's keys without its hash tag (`<ns>:*`).
async fn untagged_keys(namespace: &str) -> Vec<String> {
    let mut conn = redis().await;
    scan_keys(&mut conn, &Keys::new(namespace.to_string()).untagged_scan_pattern()).await
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
    // The previous release's coordinator stops and leaves the namespace as it kept it: no mark,
    // no hash tag.
    cluster.stop_coordinator(false);
    let renamed = untag(&cluster.namespace, None).await;
    assert!(
        renamed >= 5,
        "the run, its steps, events, timers and indexes: {renamed}"
    );

    // Two coordinators of this release start at once and both migrate.
    cluster.spawn_coordinator_unwaited(&[]);
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
    assert_eq!(
        untagged_keys(&cluster.namespace).await,
        Vec::<String>::new(),
        "every key was renamed"
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
    // The previous release's coordinator stops; its runs kept no graph (layout 2) and its keys
    // no hash tag.
    cluster.stop_coordinator(false);
    let mut conn = redis().await;
    let ns = cluster.namespace.clone();
    let keys = Keys::new(ns.clone());
    let _: i64 = redis::AsyncCommands::hdel(&mut conn, keys.run(&run_id), "leaves")
        .await
        .expect("HDEL leaves");
    let _: i64 = redis::AsyncCommands::hdel(
        &mut conn,
        keys.steps(&run_id),
        &["a:children", "b:children", "c:children"],
    )
    .await
    .expect("HDEL children");
    untag(&ns, Some("2")).await;

    cluster.start_coordinator().await;
    assert_eq!(layout_mark(&ns).await, Some(LAYOUT_VERSION.to_string()));
    assert_eq!(
        untagged_keys(&ns).await,
        Vec::<String>::new(),
        "every key was renamed, the old mark too"
    );
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
    let _: () = redis::AsyncCommands::set(&mut conn, Keys::new(cluster.namespace.clone()).layout(), "99")
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
