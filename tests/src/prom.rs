//! Prometheus text-format scraping for tests: `GET /metrics` of a coordinator or worker, its
//! samples parsed, and sums over labels.

use std::{collections::BTreeMap, time::Duration};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One sample of the Prometheus text format: name, labels, value.
pub type Sample = (String, BTreeMap<String, String>, f64);

/// `GET /metrics` over plain HTTP/1.0 (the answer ends when the server closes).
pub async fn scrape(port: u16) -> Result<String, String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect {port}: {e}"))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .map_err(|_| "scrape timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP header end")?;
    if !head.starts_with("HTTP/1.") || !head.contains(" 200 ") {
        return Err(format!("not a 200 answer: {head}"));
    }
    Ok(body.to_string())
}

/// Parses the text format's samples (comments skipped). Label values here have no escapes.
pub fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, value) = line.rsplit_once(' ').expect("a sample line has a value");
        let value: f64 = value.parse().expect("a sample value is a number");
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                let labels = body
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once("=\"").expect("label k=\"v\"");
                        (k.to_string(), v.trim_end_matches('"').to_string())
                    })
                    .collect();
                (name.to_string(), labels)
            }
        };
        out.push((name, labels, value));
    }
    out
}

/// The sum of the samples named `name` whose labels include `with`.
pub fn sum(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| n == name && with.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
        .map(|(_, _, v)| v)
        .sum()
}

/// Whether a sample named `name` with labels `with` exists.
pub fn has(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> bool {
    samples
        .iter()
        .any(|(n, l, _)| n == name && with.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
}

/// Scrapes `port` until `ready` holds for the samples (metrics recorded off the request path
/// arrive a moment later; gauges are sampled every few seconds), at most `within`; returns the
/// last samples either way, for the assertions to explain.
pub async fn scrape_until(port: u16, within: Duration, ready: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let start = std::time::Instant::now();
    loop {
        let samples = match scrape(port).await {
            Ok(t) => parse(&t),
            Err(e) => {
                assert!(start.elapsed() < within, "no metrics on port {port}: {e}");
                Vec::new()
            }
        };
        if ready(&samples) || start.elapsed() >= within {
            return samples;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
