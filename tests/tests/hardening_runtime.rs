//! Hardening of the coordinator's runtime, end to end (issue 8): supervised loops that park a
//! panicking item, health that tells the truth, listening before start-up is done, the gRPC
//! server's message limits and malformed requests, TCP_NODELAY, and configuration errors.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use baton_shared::proto::{
    CancelRunRequest, GetRunRequest, ReportResultRequest, SubmitRunRequest, WatchRunRequest,
    report_result_request::Outcome,
};
use baton_tests::{Cluster, REDIS_URL, ServingStatus, free_port, health_status, ms, status};
use serde_json::json;
use tokio_stream::StreamExt;

async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(REDIS_URL)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis")
}

/// A throwaway redis-server on `port` (no persistence), killed on drop.
struct ScratchRedis(Child, u16);

impl ScratchRedis {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "scratch redis did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self(child, port)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.1)
    }
}

impl Drop for ScratchRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const PANICS: &str = "name: panics\nversion: 1\nsteps:\n  - {id: boom_nap, sleep: 1s}\n";
const NAPS: &str = "name: naps\nversion: 1\nsteps:\n  - {id: nap, sleep: 2s}\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_timer_that_panics_is_parked_and_the_timer_loop_serves_other_runs() {
    // Every background item whose member contains the marker panics (the test coordinator's
    // injected fault), so this holds whatever bug makes an item panic.
    let env = [("BATON_TEST_PANIC_ON", "|boom_nap|")];
    let mut cluster = Cluster::start("park", &env).await;
    cluster.register(PANICS).await;
    cluster.register(NAPS).await;

    let doomed = cluster.submit("panics", json!({})).await;
    // The doomed sleep's wake panics first; then another run's sleep must still end on time.
    let parked = {
        let start = Instant::now();
        loop {
            let run = cluster.get_run(&doomed).await;
            if !run.parked_items.is_empty() {
                break run;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "never parked: {run:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    assert_eq!(parked.parked_items.len(), 1, "{:?}", parked.parked_items);
    let entry = &parked.parked_items[0];
    assert!(
        entry.starts_with("timers wake|") && entry.contains("|boom_nap|1: panicked: injected fault"),
        "{entry}"
    );
    assert_eq!(
        status(&parked),
        "running",
        "a parked item does not end its run by itself"
    );

    let other = cluster.submit("naps", json!({})).await;
    let run = cluster.wait_run(&other, Duration::from_secs(60)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    let nap = run.steps.iter().find(|s| s.id == "nap").expect("nap");
    // A sleep counts from its dispatch (core/kinds/sleep.rs), which its start may follow by a
    // millisecond or more.
    let slept = ms(&nap.finished_at) - ms(&nap.dispatched_at);
    assert!(
        (2_000..20_000).contains(&slept),
        "the other run's sleep took {slept} ms"
    );
    assert_eq!(cluster.health("").await, Ok(ServingStatus::Serving));

    // The run's history says so too.
    let mut watch = cluster
        .runs()
        .await
        .watch_run(WatchRunRequest {
            run_id: doomed.clone(),
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();
    let saw_parked = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(e)) = watch.next().await {
            if e.kind == "parked" {
                return Some(e);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("a parked event in the run's history");
    assert_eq!(saw_parked.step_id, "boom_nap");
    assert!(saw_parked.detail.contains("panicked"), "{}", saw_parked.detail);

    // The item left its set and is recorded; a restart (with the fault still armed) does not
    // meet it again.
    let member = format!("wake|{doomed}|boom_nap|1");
    let mut conn = redis().await;
    let score: Option<f64> = redis::AsyncCommands::zscore(
        &mut conn,
        baton_shared::keys::Keys::new(cluster.namespace.clone()).timers(),
        &member,
    )
    .await
    .expect("ZSCORE");
    assert_eq!(score, None);
    let record: Option<String> = redis::AsyncCommands::hget(
        &mut conn,
        baton_shared::keys::Keys::new(cluster.namespace.clone()).parked_items(),
        format!("timers|{member}"),
    )
    .await
    .expect("HGET");
    assert!(record.is_some_and(|r| r.contains("panicked")));

    cluster.stop_coordinator(true);
    cluster.start_coordinator().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(cluster.health("").await, Ok(ServingStatus::Serving));
    let after = cluster.get_run(&doomed).await;
    assert_eq!(
        after.parked_items.len(),
        1,
        "parked again after restart: {:?}",
        after.parked_items
    );

    // Cancelling the run still works.
    cluster
        .runs()
        .await
        .cancel_run(CancelRunRequest {
            run_id: doomed.clone(),
            reason: "operator: parked".into(),
        })
        .await
        .expect("cancel");
    let run = cluster.wait_run(&doomed, Duration::from_secs(30)).await;
    assert_eq!(status(&run), "cancelled");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_is_not_serving_while_redis_is_down_and_serving_again_when_it_returns() {
    let port = free_port();
    let scratch = ScratchRedis::start(port);
    let url = scratch.url();
    let cluster = Cluster::start("health-redis", &[("BATON_REDIS_URL", &url)]).await;
    assert_eq!(cluster.health("").await, Ok(ServingStatus::Serving));

    drop(scratch);
    cluster
        .wait_health(ServingStatus::NotServing, Duration::from_secs(20))
        .await;
    for service in ["baton.v1.RunService", "baton.v1.WorkerService"] {
        assert_eq!(
            cluster.health(service).await,
            Ok(ServingStatus::NotServing),
            "{service}"
        );
    }

    let _back = ScratchRedis::start(port);
    cluster
        .wait_health(ServingStatus::Serving, Duration::from_secs(60))
        .await;
    assert_eq!(cluster.health("baton.v1.RunService").await, Ok(ServingStatus::Serving));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_timer_entry_is_parked_with_its_error_and_leaves_the_timer_set() {
    let cluster = Cluster::start("corrupt-timer", &[]).await;
    // A timer no coordinator wrote: it asks to cancel a "run" whose id is not a run id. Handling
    // it fails with an error that retrying cannot mend.
    let member = "cancel-child|not a run id||0";
    let timers = baton_shared::keys::Keys::new(cluster.namespace.clone()).timers();
    let mut conn = redis().await;
    let _: i64 = redis::AsyncCommands::zadd(&mut conn, &timers, member, 0)
        .await
        .expect("ZADD");
    let field = format!("timers|{member}");
    let parked_key = baton_shared::keys::Keys::new(cluster.namespace.clone()).parked_items();
    let start = Instant::now();
    let record = loop {
        let r: Option<String> = redis::AsyncCommands::hget(&mut conn, &parked_key, &field)
            .await
            .expect("HGET");
        if let Some(r) = r {
            break r;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "never parked");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let record: serde_json::Value = serde_json::from_str(&record).expect("a JSON record");
    assert_eq!(record["loop"], "timers");
    assert!(
        record["reason"]
            .as_str()
            .is_some_and(|r| r.contains("error:") && r.contains("run id")),
        "{record}"
    );
    let score: Option<f64> = redis::AsyncCommands::zscore(&mut conn, &timers, member)
        .await
        .expect("ZSCORE");
    assert_eq!(score, None, "a parked entry does not come due again");
    assert_eq!(cluster.health("").await, Ok(ServingStatus::Serving));
}

/// A TCP proxy on `port` to RabbitMQ (127.0.0.1:5672); dropping it closes the listener and every
/// connection through it, as a broker that went away would.
struct AmqpProxy(tokio::task::JoinHandle<()>);

impl AmqpProxy {
    async fn start(port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind proxy");
        Self(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                conns.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect("127.0.0.1:5672").await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }))
    }
}

impl Drop for AmqpProxy {
    fn drop(&mut self) {
        // Aborting the task drops the listener and the JoinSet, which aborts every connection.
        self.0.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn health_is_not_serving_while_rabbitmq_is_unreachable_and_serving_again_after() {
    let port = free_port();
    let proxy = AmqpProxy::start(port).await;
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    let cluster = Cluster::start("health-amqp", &[("BATON_AMQP_URL", &url)]).await;
    assert_eq!(cluster.health("").await, Ok(ServingStatus::Serving));

    drop(proxy);
    cluster
        .wait_health(ServingStatus::NotServing, Duration::from_secs(20))
        .await;
    assert_eq!(
        cluster.health("baton.v1.EventService").await,
        Ok(ServingStatus::NotServing)
    );

    let _back = AmqpProxy::start(port).await;
    cluster
        .wait_health(ServingStatus::Serving, Duration::from_secs(60))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dispatch_that_fails_while_rabbitmq_is_away_is_not_parked_and_runs_once_it_is_back() {
    let port = free_port();
    let proxy = AmqpProxy::start(port).await;
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    let mut cluster = Cluster::start(
        "transient",
        &[
            ("BATON_AMQP_URL", &url),
            ("BATON_DISPATCH_GRACE", "1s"),
            // A failed entry comes due again after its lease: keep the test short.
            ("BATON_TIMER_LEASE", "3s"),
        ],
    )
    .await;
    cluster
        .register("name: once\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    // The worker talks to RabbitMQ directly: only the coordinator loses it.
    cluster.spawn_worker("w", 2);
    drop(proxy);
    cluster
        .wait_health(ServingStatus::NotServing, Duration::from_secs(20))
        .await;
    let id = cluster.submit("once", json!({"n": 1})).await;
    // Several sweeps fail to publish meanwhile (a transient error each time).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let run = cluster.get_run(&id).await;
    assert!(run.parked_items.is_empty(), "{:?}", run.parked_items);
    assert_ne!(status(&run), "succeeded");

    let _back = AmqpProxy::start(port).await;
    let run = cluster.wait_run(&id, Duration::from_secs(90)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    assert!(run.parked_items.is_empty(), "{:?}", run.parked_items);
    assert_eq!(cluster.executions(&id, "a").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_during_start_up_answer_unavailable_and_health_turns_serving_when_it_is_done() {
    let mut cluster = Cluster::start("startup", &[]).await;
    // A coordinator whose Redis is not there yet: it listens, but cannot finish start-up.
    let port = free_port();
    let redis_url = format!("redis://127.0.0.1:{port}");
    let addr = cluster.spawn_coordinator_unwaited(&[("BATON_REDIS_URL", &redis_url)]);

    let start = Instant::now();
    loop {
        match health_status(&addr, "").await {
            Ok(ServingStatus::NotServing) => break,
            Ok(s) => panic!("health answered {s:?} before start-up was done"),
            Err(e) => assert!(start.elapsed() < Duration::from_secs(60), "never answered health: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let channel = tonic::transport::Channel::from_shared(addr.clone())
        .expect("addr")
        .connect()
        .await
        .expect("connect");
    let mut runs = baton_shared::proto::run_service_client::RunServiceClient::new(channel);
    let unknown = uuid::Uuid::new_v4().to_string();
    let e = runs
        .get_run(GetRunRequest {
            run_id: unknown.clone(),
            ..Default::default()
        })
        .await
        .expect_err("no answer before start-up");
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(e.message().contains("starting up"), "{}", e.message());

    let _redis = ScratchRedis::start(port);
    let start = Instant::now();
    while health_status(&addr, "").await != Ok(ServingStatus::Serving) {
        assert!(start.elapsed() < Duration::from_secs(90), "never turned SERVING");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let e = runs
        .get_run(GetRunRequest {
            run_id: unknown,
            ..Default::default()
        })
        .await
        .expect_err("no such run");
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
}

/// A codec that sends raw bytes and reads the answer as raw bytes.
#[derive(Clone, Default)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        prost::bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = prost::bytes::Buf::remaining(src);
        let mut v = vec![0; n];
        prost::bytes::Buf::copy_to_slice(src, &mut v);
        Ok(Some(v))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

async fn raw_call(addr: &str, path: &'static str, body: Vec<u8>) -> Result<Vec<u8>, tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(addr.to_string())
        .expect("addr")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    grpc.unary(
        tonic::Request::new(body),
        tonic::codegen::http::uri::PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_request_is_invalid_argument_on_every_service() {
    let cluster = Cluster::start("malformed", &[]).await;
    // A field 1 of wire type 7 (no such type), then a truncated varint.
    let garbage = vec![0x0f, 0xff, 0xff, 0xff];
    for path in [
        "/baton.v1.WorkflowService/RegisterWorkflow",
        "/baton.v1.RunService/GetRun",
        "/baton.v1.RunService/WatchRun",
        "/baton.v1.WorkerService/ReportResult",
        "/baton.v1.EventService/PublishEvent",
        "/baton.v1.ScheduleService/GetSchedule",
        "/baton.v1.HumanTaskService/ListHumanTasks",
    ] {
        let e = raw_call(&cluster.addr, path, garbage.clone()).await.expect_err(path);
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{path}: {e:?}");
        assert!(e.message().contains("request"), "{path}: {}", e.message());
    }
    // Well-formed bytes still work (an empty GetRun request names its field).
    let e = raw_call(&cluster.addr, "/baton.v1.RunService/GetRun", Vec::new())
        .await
        .expect_err("empty run id");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("run_id"), "{}", e.message());
    assert_eq!(cluster.health("").await, Ok(ServingStatus::Serving));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_message_limit_follows_max_payload_bytes_and_a_report_over_it_reaches_the_handler() {
    let six_mib = 6 * 1024 * 1024;
    let limit = six_mib.to_string();
    let cluster = Cluster::start("msg-limit", &[("BATON_MAX_PAYLOAD_BYTES", &limit)]).await;
    cluster
        .register("name: big\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    // 5 MiB is over gRPC's default 4 MiB but within the setting: accepted.
    let input = json!({"blob": "x".repeat(5 * 1024 * 1024)}).to_string();
    let big = cluster
        .runs()
        .await
        .submit_run(SubmitRunRequest {
            workflow: "big".into(),
            input_json: input.clone(),
            ..Default::default()
        })
        .await
        .expect("a 5 MiB input under a 6 MiB max_payload_bytes")
        .into_inner()
        .run_id;
    // And the run can be read back: answers are not held to the request limit.
    assert_eq!(cluster.get_run(&big).await.input_json.len(), input.len());

    // 8 MiB is over the setting plus the margin: refused, naming the setting.
    let input = json!({"blob": "x".repeat(8 * 1024 * 1024)}).to_string();
    let e = cluster
        .runs()
        .await
        .submit_run(SubmitRunRequest {
            workflow: "big".into(),
            input_json: input,
            ..Default::default()
        })
        .await
        .expect_err("over the limit");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("max_payload_bytes (6291456)"), "{}", e.message());

    // A report whose output is a little over max_payload_bytes reaches the handler (which can
    // fail the step with OutputTooLarge) instead of being cut off by the transport.
    let output = "y".repeat(six_mib + 64 * 1024);
    let e = cluster
        .worker_api()
        .await
        .report_result(ReportResultRequest {
            run_id: "no-such-run".into(),
            step_id: "a".into(),
            attempt: 1,
            worker_id: "w".into(),
            outcome: Some(Outcome::OutputJson(output)),
            ..Default::default()
        })
        .await;
    if let Err(e) = e {
        assert!(
            e.code() != tonic::Code::OutOfRange && !e.message().contains("message too large"),
            "{e:?}"
        );
    }
    assert_eq!(cluster.health("").await, Ok(ServingStatus::Serving));
}

#[tokio::test(flavor = "multi_thread")]
async fn get_run_of_a_run_with_an_output_answers_without_waiting_for_a_delayed_ack() {
    let mut cluster = Cluster::start("nodelay", &[]).await;
    cluster
        .register("name: out\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    cluster.spawn_worker("w", 4);
    let items: Vec<serde_json::Value> = (0..200).map(|i| json!({"i": i, "name": format!("item {i}")})).collect();
    let id = cluster.submit("out", json!({"items": items})).await;
    let run = cluster.wait_run(&id, Duration::from_secs(60)).await;
    assert_eq!(status(&run), "succeeded");

    let mut client = cluster.runs().await;
    // Warm the connection up.
    client
        .get_run(GetRunRequest {
            run_id: id.clone(),
            ..Default::default()
        })
        .await
        .expect("get");
    let mut took = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        client
            .get_run(GetRunRequest {
                run_id: id.clone(),
                ..Default::default()
            })
            .await
            .expect("get");
        took.push(t.elapsed());
    }
    took.sort();
    let median = took[took.len() / 2];
    // A delayed ACK costs about 40 ms per call; without it a call takes about 1 ms.
    assert!(median < Duration::from_millis(20), "median GetRun {median:?}: {took:?}");
}

#[test]
fn a_configuration_error_lists_the_valid_values() {
    let out = Command::new(baton_tests::bin("test-coordinator"))
        .env("BATON_QUEUE_TYPE", "quorom")
        .env("BATON_LISTEN", format!("127.0.0.1:{}", free_port()))
        .output()
        .expect("run test-coordinator");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("queue_type: unknown value \"quorom\", expected one of: quorum, classic"),
        "{err}"
    );
}
