//! Prometheus metrics: the coordinator and a worker serve `/metrics` over HTTP, and after real
//! runs (one that succeeds, one that succeeds after a retry, one that fails) their counters moved
//! by exactly what happened, and the histograms and queue gauges are there.

use std::time::Duration;

use baton_tests::{
    Cluster, free_port,
    prom::{Sample, has, parse, scrape, scrape_until, sum},
    status,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn coordinator_and_worker_metrics_count_what_the_runs_did() {
    let (cport, wport) = (free_port(), free_port());
    let caddr = format!("127.0.0.1:{cport}");
    let waddr = format!("127.0.0.1:{wport}");
    let mut cluster = Cluster::start("metrics", &[("BATON_METRICS_ADDR", &caddr)]).await;
    cluster.spawn_worker_with_env("w1", 4, &[("BATON_METRICS_ADDR", &waddr)]);
    cluster
        .register("name: m-ok\nversion: 1\nsteps:\n  - {id: s, handler: echo}\n")
        .await;
    cluster
        .register("name: m-flaky\nversion: 1\nsteps:\n  - id: f\n    handler: fail\n    retry: {max_attempts: 3, initial_interval: 100ms}\n")
        .await;
    cluster
        .register("name: m-doomed\nversion: 1\nsteps:\n  - id: f\n    handler: fail\n    retry: {max_attempts: 3, initial_interval: 100ms}\n")
        .await;

    // Before any run: the endpoints answer and nothing has been counted yet.
    let before = parse(&scrape(cport).await.expect("coordinator /metrics"));
    assert_eq!(sum(&before, "baton_runs_started_total", &[]), 0.0);
    let worker_before = parse(&scrape(wport).await.expect("worker /metrics"));
    assert_eq!(
        sum(&worker_before, "baton_worker_handler_duration_seconds_count", &[]),
        0.0
    );

    let ok = cluster.submit("m-ok", json!({"x": 1})).await;
    let flaky = cluster.submit("m-flaky", json!({"succeed_on_attempt": 2})).await;
    let doomed = cluster.submit("m-doomed", json!({"fatal": true})).await;
    for (run_id, want) in [(&ok, "succeeded"), (&flaky, "succeeded"), (&doomed, "failed")] {
        let run = cluster.wait_run(run_id, Duration::from_secs(60)).await;
        assert_eq!(status(&run), want, "{run:#?}");
    }

    let c = scrape_until(cport, Duration::from_secs(60), |m| {
        sum(m, "baton_runs_finished_total", &[]) >= 3.0
            && sum(m, "baton_run_duration_seconds_count", &[]) >= 3.0
            && sum(m, "baton_step_start_to_close_seconds_count", &[]) >= 4.0
            && sum(m, "baton_step_schedule_to_start_seconds_count", &[]) >= 4.0
            && has(m, "baton_queue_consumers", &[("handler", "echo")])
    })
    .await;
    let runs = |wf: &str| sum(&c, "baton_runs_started_total", &[("workflow", wf)]);
    assert_eq!((runs("m-ok"), runs("m-flaky"), runs("m-doomed")), (1.0, 1.0, 1.0));
    assert_eq!(sum(&c, "baton_runs_started_total", &[]), 3.0);
    let finished = |status: &str| sum(&c, "baton_runs_finished_total", &[("status", status)]);
    assert_eq!((finished("succeeded"), finished("failed")), (2.0, 1.0));
    assert_eq!(
        sum(
            &c,
            "baton_runs_finished_total",
            &[("workflow", "m-doomed"), ("status", "failed")]
        ),
        1.0
    );
    let attempts = |wf: &str, handler: &str, outcome: &str| {
        sum(
            &c,
            "baton_step_attempts_total",
            &[("workflow", wf), ("handler", handler), ("outcome", outcome)],
        )
    };
    assert_eq!(attempts("m-ok", "echo", "succeeded"), 1.0);
    assert_eq!(attempts("m-flaky", "fail", "retried"), 1.0);
    assert_eq!(attempts("m-flaky", "fail", "succeeded"), 1.0);
    assert_eq!(attempts("m-doomed", "fail", "failed"), 1.0);
    assert_eq!(sum(&c, "baton_step_attempts_total", &[]), 4.0);
    assert_eq!(sum(&c, "baton_step_attempts_total", &[("outcome", "stale")]), 0.0);
    // Histograms: one observation per run and per attempt, with Prometheus buckets.
    assert_eq!(
        sum(&c, "baton_run_duration_seconds_count", &[("status", "succeeded")]),
        2.0
    );
    assert_eq!(sum(&c, "baton_step_schedule_to_start_seconds_count", &[]), 4.0);
    assert_eq!(
        sum(&c, "baton_step_start_to_close_seconds_count", &[("handler", "fail")]),
        3.0
    );
    assert!(has(&c, "baton_step_start_to_close_seconds_bucket", &[("le", "+Inf")]));
    assert!(sum(&c, "baton_publish_confirm_seconds_count", &[("result", "ack")]) >= 4.0);
    assert!(
        sum(
            &c,
            "baton_redis_script_duration_seconds_count",
            &[("script", "complete_step")]
        ) >= 4.0
    );
    // gRPC: one StartStep and one ReportResult per attempt, three runs submitted.
    let grpc = |method: &str, code: &str| sum(&c, "baton_grpc_requests_total", &[("method", method), ("code", code)]);
    assert_eq!(grpc("/baton.v1.RunService/SubmitRun", "OK"), 3.0);
    assert_eq!(grpc("/baton.v1.WorkerService/StartStep", "OK"), 4.0);
    assert_eq!(grpc("/baton.v1.WorkerService/ReportResult", "OK"), 4.0);
    assert!(has(
        &c,
        "baton_grpc_request_duration_seconds_count",
        &[("method", "/baton.v1.RunService/SubmitRun")]
    ));
    // Gauges sampled from RabbitMQ and Redis: the worker consumes `echo`, the queue is drained,
    // nothing is overdue.
    assert!(sum(&c, "baton_queue_consumers", &[("handler", "echo")]) >= 1.0, "{c:?}");
    assert_eq!(sum(&c, "baton_queue_messages_ready", &[("handler", "echo")]), 0.0);
    assert!(has(&c, "baton_timers_due", &[]) && has(&c, "baton_outbox_entries", &[]));
    assert_eq!(sum(&c, "baton_timers_overdue", &[]), 0.0);

    // A wrong call is counted by its code.
    let mut runs_client = cluster.runs().await;
    let missing = runs_client
        .get_run(baton_shared::proto::GetRunRequest {
            run_id: "no-such-run".into(),
            ..Default::default()
        })
        .await
        .expect_err("an unknown run is an error");
    let code = if missing.code() == tonic::Code::NotFound {
        "NOT_FOUND"
    } else {
        "INVALID_ARGUMENT"
    };
    let c = scrape_until(cport, Duration::from_secs(10), |m| {
        grpc_count(m, "/baton.v1.RunService/GetRun", code) >= 1.0
    })
    .await;
    assert_eq!(grpc_count(&c, "/baton.v1.RunService/GetRun", code), 1.0, "{missing:?}");

    // The worker ran four attempts: its handler durations count them by outcome.
    let w = scrape_until(wport, Duration::from_secs(10), |m| {
        sum(m, "baton_worker_handler_duration_seconds_count", &[]) >= 4.0
    })
    .await;
    let ran = |handler: &str, outcome: &str| {
        sum(
            &w,
            "baton_worker_handler_duration_seconds_count",
            &[("handler", handler), ("outcome", outcome)],
        )
    };
    assert_eq!(ran("echo", "succeeded"), 1.0);
    assert_eq!(ran("fail", "succeeded"), 1.0);
    assert_eq!(ran("fail", "failed"), 2.0);
    assert_eq!(
        sum(&w, "baton_worker_handler_duration_seconds_count", &[]),
        sum(&c, "baton_step_attempts_total", &[])
    );
    assert_eq!(sum(&w, "baton_worker_steps_in_flight", &[]), 0.0);
    assert_eq!(sum(&w, "baton_worker_results_refused_total", &[]), 0.0);
    assert_eq!(sum(&w, "baton_worker_reconnects_total", &[]), 0.0);
}

fn grpc_count(samples: &[Sample], method: &str, code: &str) -> f64 {
    sum(
        samples,
        "baton_grpc_requests_total",
        &[("method", method), ("code", code)],
    )
}
