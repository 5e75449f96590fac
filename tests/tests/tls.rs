//! TLS end to end: a coordinator serving gRPC over TLS with a certificate made here (rcgen, a CA
//! and a certificate for 127.0.0.1 signed by it), a worker and the harness's clients reaching it
//! over `https://` with the CA file, a plain-text client refused; mutual TLS; and `rediss://` /
//! `amqps://` URLs that reach a TLS handshake instead of "feature not enabled".

use std::{path::PathBuf, time::Duration};

use baton_shared::credentials::ClientTls;
use baton_tests::{Cluster, ClusterOptions};
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::json;

/// PEM files of a test CA, a server certificate for 127.0.0.1 and localhost, and a client
/// certificate, all signed by the CA.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "baton test CA");
    let ca_key = KeyPair::generate().expect("ca key");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf = |names: Vec<String>, purpose: ExtendedKeyUsagePurpose| {
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.extended_key_usages = vec![purpose];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &issuer).expect("leaf cert");
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(
        vec!["127.0.0.1".into(), "localhost".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = leaf(vec!["baton-client".into()], ExtendedKeyUsagePurpose::ClientAuth);
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write pem");
        p
    };
    Pki {
        ca: write("ca.pem", &ca_cert.pem()),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server.key", &server_key),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client.key", &client_key),
        _dir: dir,
    }
}

fn server_env(pki: &Pki) -> Vec<(String, String)> {
    vec![
        ("BATON_TLS_CERT".into(), pki.server_cert.display().to_string()),
        ("BATON_TLS_KEY".into(), pki.server_key.display().to_string()),
    ]
}

const ECHO: &str = "name: tls-echo\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_and_a_client_complete_a_run_over_tls_and_plain_text_is_refused() {
    let pki = pki();
    let mut cluster = Cluster::start_with(
        "tls",
        ClusterOptions {
            env: server_env(&pki),
            tls: ClientTls {
                ca_file: Some(pki.ca.clone()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await;
    assert!(cluster.addr.starts_with("https://127.0.0.1:"), "{}", cluster.addr);
    cluster.register(ECHO).await;
    cluster.spawn_worker("tls-w", 4);
    let run_id = cluster.submit("tls-echo", json!({"over": "tls"})).await;
    let run = cluster.wait_run(&run_id, Duration::from_secs(60)).await;
    assert_eq!(baton_tests::status(&run), "succeeded", "{run:#?}");
    assert_eq!(run.steps[0].output_json, json!({"over": "tls"}).to_string());

    // A plain-text client gets no gRPC answer from a TLS port.
    let plain = cluster.addr.replacen("https://", "http://", 1);
    let err = baton_tests::health_status(&plain, "").await.unwrap_err();
    assert!(!err.is_empty());
    // A client that does not trust the CA is refused by its own certificate check.
    let other = pki_other_ca();
    let err = baton_tests::health_status_tls(
        &cluster.addr,
        "",
        &ClientTls {
            ca_file: Some(other.ca.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(err.contains("connect"), "{err}");
    let log = std::fs::read_to_string(cluster.log_path("coordinator")).unwrap_or_default();
    assert!(log.contains("tls=true"), "{log}");
}

/// Another, unrelated CA.
fn pki_other_ca() -> Pki {
    pki()
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_client_ca_only_clients_with_a_certificate_get_in() {
    let pki = pki();
    let mut env = server_env(&pki);
    env.push(("BATON_TLS_CLIENT_CA".into(), pki.ca.display().to_string()));
    let tls = ClientTls {
        ca_file: Some(pki.ca.clone()),
        cert_file: Some(pki.client_cert.clone()),
        key_file: Some(pki.client_key.clone()),
    };
    let mut cluster = Cluster::start_with(
        "mtls",
        ClusterOptions {
            env,
            tls: tls.clone(),
            ..Default::default()
        },
    )
    .await;
    cluster.register(ECHO).await;
    cluster.spawn_worker("mtls-w", 4);
    let run_id = cluster.submit("tls-echo", json!(1)).await;
    let run = cluster.wait_run(&run_id, Duration::from_secs(60)).await;
    assert_eq!(baton_tests::status(&run), "succeeded", "{run:#?}");

    let without_cert = ClientTls {
        ca_file: Some(pki.ca.clone()),
        ..Default::default()
    };
    assert!(
        baton_tests::health_status_tls(&cluster.addr, "", &without_cert)
            .await
            .is_err(),
        "a client without a certificate got an answer"
    );
    assert_eq!(
        baton_tests::health_status_tls(&cluster.addr, "", &tls).await,
        Ok(baton_tests::ServingStatus::Serving)
    );
}

/// A TCP server on a free local port that answers every connection with plain text at once (as
/// a server without TLS would answer a TLS hello); answers its port.
async fn plain_text_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt as _;
                let _ = socket.write_all(b"-ERR this port does not speak TLS\r\n").await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn rediss_and_amqps_urls_reach_a_tls_handshake() {
    baton_shared::credentials::install_crypto_provider();
    // A port that answers in plain text: the TLS handshake fails on it, which proves TLS is
    // compiled in (without it, redis says "can't connect with TLS, the feature is not enabled").
    let port = plain_text_server().await;
    let client = redis::Client::open(format!("rediss://127.0.0.1:{port}")).expect("a rediss:// URL parses");
    let Err(err) = tokio::time::timeout(Duration::from_secs(30), client.get_multiplexed_async_connection())
        .await
        .expect("the connection attempt ends")
    else {
        panic!("a rediss:// connection to a plain-text port succeeded")
    };
    let err = err.to_string();
    assert!(!err.contains("not enabled"), "{err}");
    assert!(
        err.contains("corrupt message") || err.contains("InvalidContentType"),
        "{err}"
    );

    let Err(err) = tokio::time::timeout(
        Duration::from_secs(30),
        baton_shared::amqp::connect(
            &format!("amqps://guest:guest@127.0.0.1:{port}/%2f"),
            "baton-tests-amqps",
        ),
    )
    .await
    .expect("the connection attempt ends") else {
        panic!("an amqps:// connection to a plain-text port succeeded")
    };
    let err = err.to_string();
    assert!(!err.contains("not enabled"), "{err}");
    assert!(
        err.contains("corrupt message") || err.contains("InvalidContentType"),
        "{err}"
    );
}
