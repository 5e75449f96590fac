//! The harness leaves nothing behind on the shared servers: a test's queues, exchanges and keys go
//! when its cluster is dropped.

use std::time::Duration;

use baton_tests::{AMQP_URL, Cluster, REDIS_URL, TEST_WORKER_HANDLERS};
use lapin::{options::QueueDeclareOptions, types::FieldTable};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_cluster_removes_its_queues_and_keys() {
    let mut cluster = Cluster::start("harness", &[]).await;
    cluster
        .register("name: h\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    cluster.spawn_worker("w1", 1);
    let run_id = cluster.submit("h", json!({})).await;
    cluster.wait_run(&run_id, Duration::from_secs(30)).await;
    let namespace = cluster.namespace.clone();
    let topology = cluster.topology();
    drop(cluster);

    let conn = baton_shared::amqp::connect(AMQP_URL, "harness-test").await.unwrap();
    for h in TEST_WORKER_HANDLERS {
        // A passive declare of a missing queue closes the channel: use a fresh one each time.
        let ch = conn.create_channel().await.unwrap();
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let found = ch
            .queue_declare(topology.queue(h).as_str().into(), passive, FieldTable::default())
            .await;
        assert!(found.is_err(), "queue of {h} is still there");
    }
    let mut redis = redis::Client::open(REDIS_URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys = baton_tests::scan_keys(
        &mut redis,
        &baton_shared::keys::Keys::new(namespace.clone()).scan_pattern(),
    )
    .await;
    assert!(keys.is_empty(), "{keys:?}");
}
