//! Watch streams share the coordinator's Redis connections and are capped: a real coordinator,
//! hundreds of real `WatchRun` streams (tonic) and Server-Sent Event streams (raw TCP), Redis's
//! own `CLIENT LIST`, and the coordinator's `/metrics`.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use baton_shared::proto::{RunEvent, SubmitRunRequest, WatchRunRequest, run_service_client::RunServiceClient};
use baton_tests::{Cluster, ClusterOptions, REDIS_URL, free_port};
use futures::StreamExt as _;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::{Code, Streaming};

const PAUSE: &str = "name: pause\nversion: 1\nsteps:\n  - {id: first, handler: slow}\n  - {id: second, handler: echo, depends_on: [first]}\n";

/// The local ports of process `pid`'s TCP connections to port 6379 (Redis), from `/proc`.
fn redis_ports(pid: u32) -> HashSet<u16> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read the coordinator's fds")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(str::to_string)
        })
        .collect();
    let mut ports = HashSet::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote), Some(inode)) = (cols.get(1), cols.get(2), cols.get(9)) else {
                continue;
            };
            let port = |a: &str| a.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            if port(remote) == Some(6379) && inodes.contains(*inode) {
                ports.extend(port(local));
            }
        }
    }
    ports
}

/// How many of Redis's clients (`CLIENT LIST`) are connections of process `pid`.
async fn redis_clients_of(pid: u32) -> usize {
    let ports = redis_ports(pid);
    let mut conn = redis::Client::open(REDIS_URL)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .expect("CLIENT LIST");
    list.lines()
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("addr=")))
        .filter_map(|a| a.rsplit(':').next()?.parse::<u16>().ok())
        .filter(|p| ports.contains(p))
        .count()
}

/// The resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// `GET path` over a fresh TCP connection to `addr` with `headers`; the raw answer up to EOF or
/// `until` appearing in it (then the connection is dropped).
async fn raw_get(addr: &str, path: &str, headers: &[(&str, &str)], until: Option<&str>) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await.expect("send");
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = tcp.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if until.is_some_and(|u| String::from_utf8_lossy(&out).contains(u)) {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An open SSE stream: the connection and what it has sent so far.
struct Sse {
    tcp: tokio::net::TcpStream,
    text: String,
}

impl Sse {
    /// Opens `GET /v1/runs/{run}/events` and reads its answer's head.
    async fn open(addr: &str, run_id: &str, token: Option<&str>) -> Self {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let req =
            format!("GET /v1/runs/{run_id}/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{auth}\r\n");
        tcp.write_all(req.as_bytes()).await.expect("send");
        let mut sse = Self {
            tcp,
            text: String::new(),
        };
        sse.read_until("\r\n\r\n", Duration::from_secs(30)).await;
        sse
    }

    /// The status code of the answer.
    fn status(&self) -> u16 {
        self.text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
    }

    /// Reads until `what` was sent; panics after `within`.
    async fn read_until(&mut self, what: &str, within: Duration) {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 8192];
        while !self.text.contains(what) {
            let left = deadline.saturating_duration_since(Instant::now());
            let n = tokio::time::timeout(left, self.tcp.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("no {what:?} within {within:?}; got {}", self.text))
                .expect("read");
            assert!(n > 0, "the stream closed before {what:?}: {}", self.text);
            self.text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
}

/// The value of metric line `name` (with its labels, as printed) in a Prometheus text answer.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn scrape(metrics_addr: &str) -> String {
    raw_get(metrics_addr, "/metrics", &[], None).await
}

async fn watch(client: &mut RunServiceClient<tonic::transport::Channel>, run_id: &str) -> Streaming<RunEvent> {
    client
        .watch_run(WatchRunRequest {
            run_id: run_id.to_string(),
            ..Default::default()
        })
        .await
        .expect("watch run")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_hundred_watchers_of_three_runs_share_the_coordinators_redis_connections_and_each_sees_every_event_to_the_end()
 {
    const STREAMS: usize = 300;
    const SSE_STREAMS: usize = 30;
    let http = format!("127.0.0.1:{}", free_port());
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let mut cluster = Cluster::start(
        "watchfan",
        &[("BATON_HTTP_ADDR", &http), ("BATON_METRICS_ADDR", &metrics_addr)],
    )
    .await;
    let pid = cluster.coordinator_pid().expect("coordinator pid");
    cluster.register(PAUSE).await;
    let runs: Vec<String> =
        futures::future::join_all((0..3).map(|_| cluster.submit("pause", json!({"ms": 300})))).await;

    // One watcher first, so that the hub's reader connection exists in the baseline.
    let mut first = cluster.runs().await;
    let warm = watch(&mut first, &runs[0]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let clients_before = redis_clients_of(pid).await;
    let rss_before = rss(pid);

    // 300 gRPC streams over 10 connections, 100 per run, and 30 SSE streams: all idle until a
    // worker starts.
    let mut streams = Vec::new();
    for c in 0..10 {
        let mut client = RunServiceClient::new(
            tonic::transport::Endpoint::from_shared(cluster.addr.clone())
                .expect("endpoint")
                .connect()
                .await
                .expect("connect"),
        );
        for i in 0..STREAMS / 10 {
            let run = &runs[(c * 30 + i) % runs.len()];
            streams.push((run.clone(), watch(&mut client, run).await));
        }
    }
    let mut sses = Vec::new();
    for i in 0..SSE_STREAMS {
        let run = &runs[i % runs.len()];
        let sse = Sse::open(&http, run, None).await;
        assert_eq!(sse.status(), 200, "{}", sse.text);
        sses.push(sse);
    }
    // Each stream has sent its history (the run is pending), so each is past its subscription.
    for (_, s) in &mut streams {
        let e = tokio::time::timeout(Duration::from_secs(30), s.next())
            .await
            .expect("the history comes")
            .expect("an event")
            .expect("not an error");
        assert_eq!(e.kind, "run");
    }
    let clients_open = redis_clients_of(pid).await;
    let rss_open = rss(pid);
    let per_stream = rss_open.saturating_sub(rss_before) / (STREAMS + SSE_STREAMS) as u64;
    println!(
        "Redis clients of the coordinator: {clients_before} -> {clients_open} with {} streams open; RSS {} KB -> {} \
         KB, {} bytes per idle stream",
        STREAMS + SSE_STREAMS + 1,
        rss_before >> 10,
        rss_open >> 10,
        per_stream
    );
    assert!(
        clients_open <= clients_before + 2,
        "Redis clients grew from {clients_before} to {clients_open} with {} streams",
        STREAMS + SSE_STREAMS
    );
    let text = scrape(&metrics_addr).await;
    assert_eq!(
        metric(&text, "baton_watch_streams"),
        Some((STREAMS + SSE_STREAMS + 1) as f64),
        "{text}"
    );
    assert_eq!(metric(&text, "baton_watch_runs"), Some(3.0), "{text}");

    // Now the runs go: every watcher sees the live events, through the run's end.
    cluster.spawn_worker("w1", 4);
    let ends = streams.into_iter().map(|(run, mut s)| async move {
        let mut words = Vec::new();
        while let Some(e) = tokio::time::timeout(Duration::from_secs(90), s.next())
            .await
            .expect("events keep coming")
        {
            let e = e.expect("not an error");
            assert_eq!(e.run_id, run);
            words.push(format!("{}:{}:{}", e.kind, e.step_id, e.status));
        }
        words
    });
    for words in futures::future::join_all(ends).await {
        assert_eq!(words.last().map(String::as_str), Some("run::succeeded"), "{words:?}");
        for w in ["step:first:running", "step:first:succeeded", "step:second:succeeded"] {
            assert!(words.iter().any(|x| x == w), "{w} missing from {words:?}");
        }
        let unique: HashSet<&String> = words.iter().collect();
        assert_eq!(unique.len(), words.len(), "no event twice: {words:?}");
    }
    for mut sse in sses {
        sse.read_until("event: end", Duration::from_secs(90)).await;
        assert!(sse.text.contains("\"succeeded\""), "{}", sse.text);
        assert!(
            sse.text.contains("step:second") || sse.text.contains("\"second\""),
            "{}",
            sse.text
        );
    }
    drop(warm);

    // Every stream ended: the gauge comes back to zero, and the subscriptions are gone.
    let start = Instant::now();
    loop {
        let text = scrape(&metrics_addr).await;
        if metric(&text, "baton_watch_streams") == Some(0.0) && metric(&text, "baton_watch_runs") == Some(0.0) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "streams still counted: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const OPERATOR: &str = "tok-operator-olga-8d3e5f";
const VIEWER_A: &str = "tok-viewer-vic-3a8f6d2e1c";
const VIEWER_B: &str = "tok-viewer-val-9c1d7e4b2a";

#[tokio::test(flavor = "multi_thread")]
async fn watch_streams_past_the_per_identity_or_coordinator_cap_are_refused_with_resource_exhausted_naming_the_cap() {
    let http = format!("127.0.0.1:{}", free_port());
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let tokens = format!("operator:olga:{OPERATOR},viewer:vic:{VIEWER_A},viewer:val:{VIEWER_B}");
    let cluster = Cluster::start_with(
        "watchcap",
        ClusterOptions {
            env: vec![
                ("BATON_AUTH_TOKENS".into(), tokens),
                ("BATON_HTTP_ADDR".into(), http.clone()),
                ("BATON_METRICS_ADDR".into(), metrics_addr.clone()),
                ("BATON_MAX_WATCH_STREAMS".into(), "5".into()),
                ("BATON_MAX_WATCH_STREAMS_PER_IDENTITY".into(), "3".into()),
            ],
            ..Default::default()
        },
    )
    .await;
    let mut admin = baton_shared::proto::workflow_service_client::WorkflowServiceClient::new(
        cluster.channel_with_token(Some(OPERATOR)).await,
    );
    admin
        .register_workflow(baton_shared::proto::RegisterWorkflowRequest {
            definition: PAUSE.into(),
        })
        .await
        .expect("register");
    let run_id = RunServiceClient::new(cluster.channel_with_token(Some(OPERATOR)).await)
        .submit_run(SubmitRunRequest {
            workflow: "pause".into(),
            input_json: "{}".into(),
            ..Default::default()
        })
        .await
        .expect("submit")
        .into_inner()
        .run_id;
    let req = || WatchRunRequest {
        run_id: run_id.clone(),
        ..Default::default()
    };

    // Viewer A: three streams, then the fourth is refused naming the per-identity cap.
    let mut a = RunServiceClient::new(cluster.channel_with_token(Some(VIEWER_A)).await);
    let mut a_streams = Vec::new();
    for _ in 0..3 {
        a_streams.push(a.watch_run(req()).await.expect("under the cap").into_inner());
    }
    let e = a.watch_run(req()).await.expect_err("a fourth stream of one identity");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(
        e.message().starts_with("max_watch_streams_per_identity: ") && e.message().contains("(3)"),
        "{}",
        e.message()
    );

    // Viewer B: two streams fill the coordinator's five; the next is refused naming that cap,
    // over gRPC and over HTTP (429).
    let mut b = RunServiceClient::new(cluster.channel_with_token(Some(VIEWER_B)).await);
    let mut b_streams = Vec::new();
    for _ in 0..2 {
        b_streams.push(b.watch_run(req()).await.expect("under the cap").into_inner());
    }
    let e = b.watch_run(req()).await.expect_err("a sixth stream on the coordinator");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(
        e.message().starts_with("max_watch_streams: ") && e.message().contains("(5)"),
        "{}",
        e.message()
    );
    let answer = raw_get(
        &http,
        &format!("/v1/runs/{run_id}/events"),
        &[("Authorization", &format!("Bearer {VIEWER_B}"))],
        None,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(
        answer.contains("RESOURCE_EXHAUSTED") && answer.contains("max_watch_streams"),
        "{answer}"
    );

    let text = scrape(&metrics_addr).await;
    assert_eq!(metric(&text, "baton_watch_streams"), Some(5.0), "{text}");
    assert_eq!(
        metric(
            &text,
            "baton_watch_streams_refused_total{limit=\"max_watch_streams_per_identity\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "baton_watch_streams_refused_total{limit=\"max_watch_streams\"}"),
        Some(2.0),
        "{text}"
    );

    // A closed stream gives its place back: A opens another once one of its own is gone.
    drop(a_streams.pop());
    let start = Instant::now();
    loop {
        match a.watch_run(req()).await {
            Ok(s) => {
                a_streams.push(s.into_inner());
                break;
            }
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "the closed stream's place never came back"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // An SSE stream with a token counts against its identity too (and is under the cap now
    // that B closes one).
    drop(b_streams.pop());
    let start = Instant::now();
    loop {
        let sse = Sse::open(&http, &run_id, Some(VIEWER_B)).await;
        if sse.status() == 200 {
            break;
        }
        assert_eq!(sse.status(), 429, "{}", sse.text);
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the closed stream's place never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
