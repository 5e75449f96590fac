//! The `baton` binary against a coordinator with auth and TLS on (run in this process, over the
//! real Redis, RabbitMQ and gRPC): with `BATON_TOKEN` and `--ca-file` a run goes through, without
//! the token the user reads how to give one; and `baton token` makes tokens the coordinator takes.

use std::{process::Command, time::Duration};

use baton_worker::{StepContext, StepError, Worker, WorkerConfig};
use serde_json::Value;

const OPERATOR: &str = "cli-operator-token-5e2a9c";
const WORKER: &str = "cli-worker-token-1d7b3f";

struct Setup {
    addr: String,
    ca: std::path::PathBuf,
    _stop: tokio::sync::watch::Sender<bool>,
    dir: tempfile::TempDir,
}

/// A CA and a certificate for 127.0.0.1 signed by it, as PEM files in `dir`: (ca, cert, key).
fn certificates(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let paths = (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

async fn setup(tokens_file: Option<std::path::PathBuf>, dir: tempfile::TempDir) -> Setup {
    baton_tests::ensure_services();
    baton_shared::credentials::install_crypto_provider();
    let namespace = format!("t-cli-sec-{}", std::process::id());
    let (ca, cert, key) = certificates(dir.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = baton_coordinator::CoordinatorConfig {
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
        namespace: format!("{namespace}-{port}"),
        timer_poll_interval: Duration::from_millis(50),
        auth_tokens: baton_shared::credentials::Secret::new(format!("operator:olga:{OPERATOR},worker::{WORKER}")),
        auth_tokens_file: tokens_file,
        tls_cert: Some(cert),
        tls_key: Some(key),
        ..Default::default()
    };
    let addr = format!("https://127.0.0.1:{port}");
    let (stop, rx) = tokio::sync::watch::channel(false);
    let mut rx1 = rx.clone();
    tokio::spawn(baton_coordinator::serve(config.clone(), async move {
        let _ = rx1.changed().await;
    }));
    let worker = WorkerConfig {
        coordinator: addr.clone(),
        namespace: config.namespace.clone(),
        worker_id: "cli-sec-w".into(),
        token: Some(baton_shared::credentials::Secret::new(WORKER)),
        tls: baton_shared::credentials::ClientTls {
            ca_file: Some(ca.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut rx2 = rx;
    tokio::spawn(
        Worker::new(worker)
            .handler("echo", |_ctx: StepContext, input: Value| async move {
                Ok::<_, StepError>(input)
            })
            .run(async move {
                let _ = rx2.changed().await;
            }),
    );
    let tls = baton_shared::credentials::ClientTls {
        ca_file: Some(ca.clone()),
        ..Default::default()
    };
    let start = std::time::Instant::now();
    while baton_tests::health_status_tls(&addr, "", &tls).await != Ok(baton_tests::ServingStatus::Serving) {
        assert!(start.elapsed() < Duration::from_secs(60), "coordinator did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Setup {
        addr,
        ca,
        _stop: stop,
        dir,
    }
}

/// Runs `baton` with `args` and `env`; returns (exit code, stdout, stderr).
async fn baton(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(&args)
            .env_remove("BATON_TOKEN")
            .env_remove("BATON_CA_FILE")
            .envs(env)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_runs_a_workflow_over_tls_with_a_token_and_says_how_to_give_one_without() {
    let s = setup(None, tempfile::tempdir().unwrap()).await;
    let file = s.dir.path().join("echo.yaml");
    std::fs::write(&file, "name: cli-sec\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n").unwrap();
    let (file, ca) = (file.to_str().unwrap(), s.ca.to_str().unwrap());

    let (code, out, err) = baton(
        &["--addr", &s.addr, "--ca-file", ca, "workflow", "apply", "-f", file],
        &[("BATON_TOKEN", OPERATOR)],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = baton(
        &[
            "--addr",
            &s.addr,
            "run",
            "submit",
            "cli-sec",
            "--input",
            r#"{"x": 1}"#,
            "--wait",
            "-o",
            "json",
        ],
        &[("BATON_TOKEN", OPERATOR), ("BATON_CA_FILE", ca)],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let run: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(run["status"], "succeeded", "{out}");

    // Without the token: exit 2, and the message says what to set.
    let (code, out, err) = baton(&["--addr", &s.addr, "--ca-file", ca, "workflow", "list"], &[]).await;
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(
        err.trim(),
        "error: UNAUTHENTICATED: missing bearer token in `authorization` metadata (the coordinator requires a \
         token: set BATON_TOKEN or pass --token)"
    );
    // Without the CA file the coordinator's certificate is not trusted: no plaintext fallback.
    let (code, _, err) = baton(&["--addr", &s.addr, "workflow", "list"], &[("BATON_TOKEN", OPERATOR)]).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cannot connect") || err.contains("no Baton coordinator"),
        "{err}"
    );
    // The token never shows in the help.
    let (_, out, _) = baton(&["--help"], &[("BATON_TOKEN", OPERATOR)]).await;
    assert!(!out.contains(OPERATOR) && out.contains("BATON_TOKEN"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_from_baton_token_new_works_through_a_tokens_file() {
    let (code, out, err) = baton(&["token", "new", "--name", "ci", "--role", "viewer", "-o", "json"], &[]).await;
    assert_eq!(code, 0, "{err}");
    let made: Value = serde_json::from_str(&out).unwrap();
    let token = made["token"].as_str().unwrap().to_string();
    let (code, table, _) = baton(
        &["token", "new", "--name", "x", "--role", "admin", "--user", "ada"],
        &[],
    )
    .await;
    assert_eq!(code, 0);
    assert!(
        table.contains("[[tokens]]") && table.contains("role = \"admin\"") && table.contains("user = \"ada\""),
        "{table}"
    );

    // `baton token hash` agrees with the hash `new` printed.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["token", "hash"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().unwrap().write_all(token.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        made["sha256"].as_str().unwrap()
    );

    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        format!(
            "[[tokens]]\nname = \"ci\"\nrole = \"viewer\"\nsha256 = \"{}\"\n",
            made["sha256"].as_str().unwrap()
        ),
    )
    .unwrap();
    let s = setup(Some(tokens), dir).await;
    let ca = s.ca.to_str().unwrap();
    let (code, out, err) = baton(
        &["--addr", &s.addr, "--ca-file", ca, "workflow", "list"],
        &[("BATON_TOKEN", &token)],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    // A viewer may not submit.
    let (code, _, err) = baton(
        &["--addr", &s.addr, "--ca-file", ca, "run", "submit", "nothing"],
        &[("BATON_TOKEN", &token)],
    )
    .await;
    assert_eq!(code, 2);
    assert!(
        err.contains("PERMISSION_DENIED: role viewer may not call /baton.v1.RunService/SubmitRun"),
        "{err}"
    );
}
