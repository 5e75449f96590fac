//! The Python client of docs/apis.md (`examples/python/grpc_reflection_example.py`) against a real
//! coordinator and worker: with nothing but gRPC server reflection it lists the services, registers
//! a workflow, submits a run and reads its output.
//!
//! It runs the Python of the project's venv: `BATON_CI_VENV` (set by `.ci/run`, which makes the venv
//! from `.ci/requirements.txt`). Under CI (`CI=true`) a missing venv fails the test; elsewhere the
//! test makes or reuses `.ci/venv` with `.ci/python-venv.sh`.

use std::{
    path::{Path, PathBuf},
    process::Output,
    time::Duration,
};

use baton_tests::{Cluster, free_port, status};
use serde_json::{Value, json};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The venv's python.
fn venv_python() -> PathBuf {
    let under_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let venv = match std::env::var("BATON_CI_VENV") {
        Ok(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            assert!(
                !under_ci,
                "CI=true but BATON_CI_VENV is not set: .ci/run makes the Python venv and exports it"
            );
            let made = std::process::Command::new("bash")
                .arg(repo_root().join(".ci/python-venv.sh"))
                .output()
                .expect("run bash .ci/python-venv.sh");
            assert!(
                made.status.success(),
                ".ci/python-venv.sh failed:\n{}",
                String::from_utf8_lossy(&made.stderr)
            );
            PathBuf::from(String::from_utf8_lossy(&made.stdout).trim())
        }
    };
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} does not exist: make the venv with `bash .ci/python-venv.sh`",
        python.display()
    );
    python
}

/// Runs the example with `args`, with no token or address from the environment, for at most 2 min.
async fn run_example(args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(venv_python());
    cmd.arg(repo_root().join("examples/python/grpc_reflection_example.py"))
        .args(args)
        .env_remove("BATON_TOKEN")
        .env_remove("BATON_ADDR")
        .env_remove("BATON_CA_FILE")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("the example finished within 2 minutes")
        .expect("run the example")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_example_runs_a_workflow_through_reflection_alone() {
    let mut cluster = Cluster::start("reflection", &[]).await;
    cluster.spawn_worker("w1", 4);
    let definition = std::env::temp_dir().join(format!("{}.yaml", cluster.namespace));
    std::fs::write(
        &definition,
        "name: py-echo\nversion: 1\nsteps:\n  - {id: say, handler: echo}\n",
    )
    .expect("write the definition");

    let out = run_example(&[
        "--addr",
        &cluster.addr,
        "--register",
        definition.to_str().expect("a UTF-8 path"),
        "--submit",
        "py-echo",
        "--input",
        r#"{"greeting": "hello from python"}"#,
    ])
    .await;
    let _ = std::fs::remove_file(&definition);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the example failed ({}):\n{stdout}\n{stderr}",
        out.status
    );

    // What reflection told it.
    let services = stdout
        .lines()
        .find(|l| l.starts_with("services: "))
        .expect("a services line");
    for s in [
        "baton.v1.RunService",
        "baton.v1.WorkflowService",
        "baton.v1.WorkerService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(services.contains(s), "{s} is not listed: {services}");
    }
    for line in [
        "  RunService.SubmitRun(SubmitRunRequest) -> SubmitRunResponse",
        "  RunService.WatchRun(WatchRunRequest) -> stream RunEvent",
        "workflows: (none)",
        "registered: py-echo v1 (new: True)",
    ] {
        assert!(stdout.lines().any(|l| l == line), "no line {line:?} in:\n{stdout}");
    }

    // The run it made, as it printed it and as the coordinator has it.
    let run_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("submitted: run "))
        .expect("a submitted line")
        .to_string();
    let last: Value = serde_json::from_str(stdout.lines().last().expect("output")).expect("a JSON last line");
    assert_eq!(
        last,
        json!({"status": "RUN_STATUS_SUCCEEDED", "output": {"say": {"greeting": "hello from python"}}})
    );
    let run = cluster.get_run(&run_id).await;
    assert_eq!(status(&run), "succeeded");
    assert_eq!(run.workflow, "py-echo");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_example_says_why_when_no_coordinator_answers() {
    let addr = format!("http://127.0.0.1:{}", free_port());
    let out = run_example(&["--addr", &addr]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: UNAVAILABLE: "), "{stderr}");
}
