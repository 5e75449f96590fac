//! Log output as an operator reads it: plain text without colour codes in files, or one JSON object
//! per line with `BATON_LOG_FORMAT=json`, carrying the run's fields.

use std::time::Duration;

use baton_tests::Cluster;

/// The log lines of `name` in `cluster` once `want` shows in them (polled: the processes write
/// asynchronously); panics after 30 s.
async fn lines_once(cluster: &Cluster, name: &str, want: &str) -> Vec<String> {
    let start = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(cluster.log_path(name)).unwrap_or_default();
        if text.contains(want) {
            return text.lines().map(str::to_string).collect();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{want:?} never showed in the {name} log:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_written_to_a_file_have_no_colour_codes() {
    let cluster = Cluster::start("logs-text", &[]).await;
    let lines = lines_once(&cluster, "coordinator", "coordinator listening").await;
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(!line.contains('\u{1b}'), "an escape code in {line:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_are_one_object_per_line_with_the_event_fields() {
    let cluster = Cluster::start("logs-json", &[("BATON_LOG_FORMAT", "json")]).await;
    let lines = lines_once(&cluster, "coordinator", "coordinator listening").await;
    let mut listening = None;
    for line in &lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON object per line ({e}): {line:?}"));
        assert!(
            value.get("level").is_some() && value.get("timestamp").is_some(),
            "{value}"
        );
        if value["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("coordinator listening"))
        {
            listening = Some(value);
        }
    }
    let listening = listening.expect("the listening line");
    assert!(
        listening["fields"]["namespace"]
            .as_str()
            .is_some_and(|n| n == cluster.namespace),
        "the event's own fields are fields of the object: {listening}"
    );
}
