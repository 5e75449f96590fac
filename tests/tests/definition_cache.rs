//! The coordinator's definition cache is bounded by bytes, and a workflow by its number of
//! versions: a real coordinator, registering many versions of a large definition over gRPC.

use std::time::Duration;

use baton_shared::{
    limits::MAX_WORKFLOW_VERSIONS,
    proto::{RegisterWorkflowRequest, SubmitRunRequest},
};
use baton_tests::{Cluster, status, step_status};
use tonic::Code;

/// Steps of the large definition besides `a` (each about 190 bytes of YAML), so that with `a` it
/// has the most steps a workflow may have (`MAX_STEPS`): about 190 KB of source, about 5 MB parsed.
const STEPS: usize = baton_shared::limits::MAX_STEPS - 1;

/// Version `version` of a definition of [`STEPS`] steps: `a` echoes, the others depend on it and
/// are skipped (`when: false`), so a run of it finishes at once.
fn large(version: u32) -> String {
    let mut yaml = format!("name: large\nversion: {version}\nsteps:\n  - {{id: a, handler: echo}}\n");
    for i in 0..STEPS {
        yaml.push_str(&format!(
            "  - {{id: p{i:05}, handler: echo, depends_on: [a], when: 'false', timeout: 30s, \
             retry: {{max_attempts: 3, initial_interval: 1s}}, input: {{note: 'a padding string that makes \
             each step weigh'}}}}\n"
        ));
    }
    yaml
}

/// The resident memory of process `pid`, in bytes (`VmRSS` of `/proc/<pid>/status`).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc status");
    kb * 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn registering_forty_versions_of_a_large_definition_keeps_the_coordinators_memory_within_its_cache_budget() {
    const BUDGET: u64 = 16 * 1024 * 1024;
    let mut cluster = Cluster::start("defcache", &[("BATON_DEFINITION_CACHE_BYTES", &BUDGET.to_string())]).await;
    let pid = cluster.coordinator_pid().expect("coordinator pid");
    let mut workflows = cluster.workflows().await;
    // Warm up the paths a registration takes (and the allocator's arenas) with one version first.
    cluster.register(&large(1)).await;
    let before = rss(pid);
    for v in 2..=40 {
        workflows
            .register_workflow(RegisterWorkflowRequest { definition: large(v) })
            .await
            .expect("register a version");
    }
    let after = rss(pid);
    let grown = after.saturating_sub(before);
    println!(
        "coordinator RSS {} MB -> {} MB after 39 more versions of {} KB each",
        before >> 20,
        after >> 20,
        large(40).len() >> 10
    );
    // Without eviction the 40 parsed versions hold about 40 x 5 MB = 200 MB; the cache keeps
    // 16 MB of them, and the rest is what a registration holds while it runs.
    assert!(
        grown < 96 * 1024 * 1024,
        "the coordinator grew by {} MB registering 39 versions with a 16 MB cache",
        grown >> 20
    );

    // Version 1 was evicted long ago: a run of it loads it from Redis again and finishes.
    cluster.spawn_worker("w1", 2);
    let run_id = cluster
        .runs()
        .await
        .submit_run(SubmitRunRequest {
            workflow: "large".into(),
            version: 1,
            input_json: "{}".into(),
            ..Default::default()
        })
        .await
        .expect("submit a run of version 1")
        .into_inner()
        .run_id;
    let run = cluster.wait_run(&run_id, Duration::from_secs(60)).await;
    assert_eq!(status(&run), "succeeded", "{run:?}");
    assert_eq!(run.version, 1);
    assert_eq!(step_status(&run, "a"), "succeeded");
    assert_eq!(step_status(&run, &format!("p{:05}", STEPS - 1)), "skipped");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workflow_keeps_at_most_its_version_limit_and_the_next_version_is_refused_naming_version() {
    let cluster = Cluster::start("versions", &[]).await;
    let tiny = |v: u32| format!("name: many\nversion: {v}\nsteps:\n  - {{id: a, handler: echo}}\n");
    // Register the allowed versions, a few at a time.
    let mut next = 1;
    while next <= MAX_WORKFLOW_VERSIONS {
        let batch: Vec<u32> = (next..=MAX_WORKFLOW_VERSIONS).take(16).collect();
        next += 16;
        let calls = batch.iter().map(|&v| {
            let addr = cluster.addr.clone();
            let text = tiny(v);
            async move {
                let mut client = baton_shared::proto::workflow_service_client::WorkflowServiceClient::connect(addr)
                    .await
                    .expect("connect");
                client
                    .register_workflow(RegisterWorkflowRequest { definition: text })
                    .await
                    .expect("a version under the limit is registered");
            }
        });
        futures::future::join_all(calls).await;
    }
    let mut workflows = cluster.workflows().await;
    let over = MAX_WORKFLOW_VERSIONS + 1;
    let e = workflows
        .register_workflow(RegisterWorkflowRequest { definition: tiny(over) })
        .await
        .expect_err("one version past the limit is refused");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().starts_with("version: "), "{}", e.message());
    assert!(
        e.message().contains(&MAX_WORKFLOW_VERSIONS.to_string()),
        "{}",
        e.message()
    );

    // Nothing changed: the latest is still the last one allowed, and registering an existing
    // version again is still fine.
    let wf = workflows
        .get_workflow(baton_shared::proto::GetWorkflowRequest {
            name: "many".into(),
            version: 0,
        })
        .await
        .expect("get workflow")
        .into_inner();
    assert_eq!(wf.version, MAX_WORKFLOW_VERSIONS);
    assert_eq!(wf.versions.len(), MAX_WORKFLOW_VERSIONS as usize);
    let again = workflows
        .register_workflow(RegisterWorkflowRequest { definition: tiny(7) })
        .await
        .expect("an existing version registers again")
        .into_inner();
    assert!(!again.created);
}
