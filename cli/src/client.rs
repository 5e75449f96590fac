//! The connection to the coordinator: address handling, the gRPC clients, error messages and
//! following a run until it ends.

use std::time::Duration;

use anyhow::Context as _;
use baton_shared::credentials::{self, AuthChannel, Bearer, ClientTls, Secret};
use baton_shared::proto::event_service_client::EventServiceClient;
use baton_shared::proto::human_task_service_client::HumanTaskServiceClient;
use baton_shared::proto::run_service_client::RunServiceClient;
use baton_shared::proto::schedule_service_client::ScheduleServiceClient;
use baton_shared::proto::workflow_service_client::WorkflowServiceClient;
use baton_shared::proto::{GetRunRequest, Run, RunEvent, RunStatus, WatchRunRequest};
use tonic::service::interceptor::InterceptedService;
use tonic::{Code, Status};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// The coordinator address used when neither `--addr` nor `BATON_ADDR` is given.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:7450";

/// How long to wait for the TCP/HTTP2 connection before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest answer accepted (runs carry step outputs, which can be large).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// How often `GetRun` is polled when the event stream ends before the run does.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// How long the first gRPC exchange may take before the CLI concludes that whatever listens at
/// the address is not a Baton coordinator.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The metadata key the coordinator puts on every error it answers itself (see the
/// coordinator's `error.rs`).
const SOURCE_METADATA_KEY: &str = "baton-source";

/// The coordinator could not be reached, or what answers at the address does not speak gRPC:
/// shown as `UNAVAILABLE` under `-o json`.
/// `with_causes`: whether the error's causes (e.g. `tcp connect error: Connection refused`) are
/// worth showing after the message; they are not for a port that does not speak gRPC (they say
/// `h2 protocol error`, which is what the message explains).
#[derive(Debug)]
pub struct Unreachable {
    /// What the user reads.
    pub message: String,
    /// Whether the causes follow the message.
    pub with_causes: bool,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Unreachable {}

/// Checks a coordinator address and answers it as a URI: `host:port` gets `http://`; `http://` and
/// `https://` (TLS) are kept; any other scheme is refused.
///
/// # Errors
/// A message naming the address and what is accepted.
pub fn check_addr(addr: &str) -> anyhow::Result<String> {
    let uri = normalize_addr(addr);
    match uri.split_once("://") {
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") => Ok(uri),
        Some((scheme, _)) => anyhow::bail!(
            "unsupported scheme {}:// in --addr {}: use http://host:port, https://host:port or host:port",
            baton_shared::limits::echo(scheme).trim_matches('"'),
            baton_shared::limits::echo(&uri)
        ),
        None => Ok(uri),
    }
}

/// The address as a URI: `host:port` gets an `http://` prefix, anything with a scheme is kept.
pub fn normalize_addr(addr: &str) -> String {
    let addr = addr.trim();
    if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

/// Where the coordinator is and how to reach it: the address, the bearer token (`--token`,
/// `BATON_TOKEN`) and the TLS files (`--ca-file`, `--client-cert`, `--client-key`).
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// The address as given (`host:port`, `http://...` or `https://...`).
    pub addr: String,
    /// The bearer token, if any.
    pub token: Option<Secret>,
    /// The TLS files (used for `https://` only; given with `http://` they are an error).
    pub tls: ClientTls,
}

/// A connected coordinator.
pub struct Coordinator {
    channel: AuthChannel,
}

impl Coordinator {
    /// Connects to the coordinator at `addr` (normalised with [`normalize_addr`]). The error names
    /// the address tried and how to change it.
    ///
    /// It then says hello (a gRPC health check, whose answer does not matter): when what listens
    /// at the address does not speak gRPC over HTTP/2 (an HTTP/1 server, a database, a silent
    /// port), the error says "no Baton coordinator answers at ADDR" instead of an `h2 protocol
    /// error` at the first real call.
    pub async fn connect(target: &Target) -> anyhow::Result<Self> {
        let addr = check_addr(&target.addr)?;
        let bearer = Bearer::new(target.token.as_ref().map(Secret::expose))?;
        let endpoint = credentials::endpoint(&addr, &target.tls)
            .with_context(|| format!("invalid coordinator address `{addr}` (from --addr or BATON_ADDR)"))?
            .connect_timeout(CONNECT_TIMEOUT)
            // Small request/answer pairs: do not wait for delayed ACKs (Nagle).
            .tcp_nodelay(true);
        let channel = endpoint.connect().await.map_err(|e| {
            anyhow::Error::new(e).context(Unreachable {
                message: format!(
                    "cannot connect to the coordinator at {addr} (set it with --addr or the BATON_ADDR environment variable)"
                ),
                with_causes: true,
            })
        })?;
        let mut health = HealthClient::new(channel.clone());
        let hello = health.check(HealthCheckRequest { service: String::new() });
        match tokio::time::timeout(HELLO_TIMEOUT, hello).await {
            Ok(Ok(_)) => {}
            // An HTTP server that speaks HTTP/2 but not gRPC (e.g. 405 from a web page).
            Ok(Err(status)) if is_plain_http_answer(&status) => {
                let message = match http_port_hint(&addr).await {
                    Some(hint) => format!("no Baton gRPC API at {addr}: {hint}"),
                    None => format!(
                        "no Baton coordinator answers at {addr} (an HTTP server answered without gRPC: {}; check --addr or BATON_ADDR)",
                        status.message()
                    ),
                };
                return Err(anyhow::Error::new(status).context(Unreachable {
                    message,
                    with_causes: false,
                }));
            }
            // Any answer of a gRPC server will do (a server without the health service answers
            // UNIMPLEMENTED); an error without an answer means the other side does not speak gRPC.
            Ok(Err(status)) if std::error::Error::source(&status).is_none() => {}
            Ok(Err(status)) => {
                let message = match http_port_hint(&addr).await {
                    Some(hint) => format!("no Baton gRPC API at {addr}: {hint}"),
                    None => format!(
                        "no Baton coordinator answers at {addr} (something there does not speak gRPC; check --addr or BATON_ADDR)"
                    ),
                };
                return Err(anyhow::Error::new(status).context(Unreachable {
                    message,
                    with_causes: false,
                }));
            }
            Err(_) => {
                return Err(anyhow::Error::new(Unreachable {
                    message: format!(
                        "no Baton coordinator answers at {addr}: nothing answered gRPC within {} s (check --addr or BATON_ADDR)",
                        HELLO_TIMEOUT.as_secs()
                    ),
                    with_causes: false,
                }));
            }
        }
        Ok(Self {
            channel: InterceptedService::new(channel, bearer),
        })
    }

    /// A health client (`grpc.health.v1`): the cheapest unary call a coordinator answers.
    pub fn health(&self) -> HealthClient<AuthChannel> {
        HealthClient::new(self.channel.clone())
    }

    /// A workflow registry client.
    pub fn workflows(&self) -> WorkflowServiceClient<AuthChannel> {
        WorkflowServiceClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// A run client.
    pub fn runs(&self) -> RunServiceClient<AuthChannel> {
        RunServiceClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// An event client.
    pub fn events(&self) -> EventServiceClient<AuthChannel> {
        EventServiceClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// A human task client.
    pub fn human_tasks(&self) -> HumanTaskServiceClient<AuthChannel> {
        HumanTaskServiceClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// A schedule client.
    pub fn schedules(&self) -> ScheduleServiceClient<AuthChannel> {
        ScheduleServiceClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// A client of workers and queues (`baton worker list`, `baton queue list`).
    pub fn operations(&self) -> baton_shared::proto::operations_service_client::OperationsServiceClient<AuthChannel> {
        baton_shared::proto::operations_service_client::OperationsServiceClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// One run, by id.
    pub async fn get_run(&self, run_id: &str) -> Result<Run, Status> {
        Ok(self
            .runs()
            .get_run(GetRunRequest {
                run_id: run_id.to_owned(),
                ..Default::default()
            })
            .await?
            .into_inner())
    }

    /// One step of a run, with its whole output (GetRun `step_id`): the run's own input and
    /// output are left out.
    pub async fn get_step(&self, run_id: &str, step_id: &str) -> Result<Run, Status> {
        Ok(self
            .runs()
            .get_run(GetRunRequest {
                run_id: run_id.to_owned(),
                step_id: step_id.to_owned(),
            })
            .await?
            .into_inner())
    }

    /// Follows a run to its end: hands every `WatchRun` event to `on_event` once, in order, as it
    /// arrives, then answers the finished run. When the stream ends before the run is over, it is
    /// opened again (its history is skipped up to the last event handed on).
    ///
    /// An outage (see [`is_transient`]: the coordinator restarting or unreachable, its Redis down,
    /// a broken stream) is ridden out with backoff (200 ms doubling to 5 s) for up to
    /// `reconnect_for`, with one line on stderr when it starts and one when it ends.
    ///
    /// # Errors
    /// A status that is not transient at once (`NOT_FOUND`, `PERMISSION_DENIED`, ...); the last
    /// transient one, with how long it lasted, once an outage outlasts `reconnect_for`; what
    /// `on_event` returns.
    pub async fn follow_run(
        &self,
        run_id: &str,
        reconnect_for: Duration,
        mut on_event: impl FnMut(&RunEvent) -> anyhow::Result<()>,
    ) -> anyhow::Result<Run> {
        let mut outage = Outage::new(reconnect_for);
        let mut last: Option<(u64, u64)> = None;
        let mut noted = false;
        let mut reopened = false;
        let mut last_sequence = String::new();
        loop {
            let opened = self
                .runs()
                .watch_run(WatchRunRequest {
                    run_id: run_id.to_owned(),
                    // A reopened stream starts after the last event handed on (coordinators
                    // without `after_sequence` send the history again, which is skipped below).
                    after_sequence: last_sequence.clone(),
                    // The finished run comes as the stream's last message: no GetRun after it
                    // (coordinators before `include_run` send none, and it is read below).
                    include_run: true,
                })
                .await;
            match opened {
                Ok(stream) => {
                    outage.ended();
                    let mut stream = stream.into_inner();
                    loop {
                        match stream.message().await {
                            Ok(Some(event)) if event.kind == "final" => {
                                if let Some(run) = event.run.filter(|r| is_terminal(r.status)) {
                                    outage.ended();
                                    return Ok(run);
                                }
                            }
                            Ok(Some(event)) => {
                                // A reopened stream starts with the history again: skip what was
                                // handed on already.
                                let at = sequence(&event.sequence);
                                if !reopened || at.is_none() || at > last {
                                    on_event(&event)?;
                                    if at.is_some() && at > last {
                                        last = at;
                                        last_sequence.clone_from(&event.sequence);
                                    }
                                }
                            }
                            Ok(None) => break,
                            Err(status) if is_transient(&status) => {
                                outage.began(&status)?;
                                break;
                            }
                            Err(status) => return Err(status.into()),
                        }
                    }
                }
                Err(status) if is_transient(&status) => outage.began(&status)?,
                Err(status) => return Err(status.into()),
            }
            reopened = true;
            match self.get_run(run_id).await {
                Ok(run) if is_terminal(run.status) => {
                    outage.ended();
                    return Ok(run);
                }
                // The stream ended before the run: open it again after a pause.
                Ok(_) => {
                    outage.ended();
                    if !noted {
                        eprintln!(
                            "note: the event stream ended before run {run_id} finished; polling every {} ms and reopening it",
                            POLL_INTERVAL.as_millis()
                        );
                        noted = true;
                    }
                    tokio::time::sleep(POLL_INTERVAL).await;
                    continue;
                }
                Err(status) if is_transient(&status) => outage.began(&status)?,
                Err(status) => return Err(status.into()),
            }
            outage.wait().await;
        }
    }
}

/// A Redis stream id (`<ms>-<seq>`, a `RunEvent`'s `sequence`) as a number pair that orders like
/// the stream; `None` when it is not one.
fn sequence(text: &str) -> Option<(u64, u64)> {
    let (ms, seq) = text.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// Whether an error of a call to the coordinator may pass by itself: the coordinator could not be
/// reached or answered that it cannot serve now (`UNAVAILABLE`), the call or stream broke on the way
/// (`UNKNOWN`, `CANCELLED`, `INTERNAL` from the transport, `ABORTED`), or it took too long
/// (`DEADLINE_EXCEEDED`).
pub fn is_transient(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Aborted | Code::DeadlineExceeded => true,
        // An h2 or transport failure comes as INTERNAL with a source; the coordinator's own
        // INTERNAL answers have none.
        Code::Internal => std::error::Error::source(status).is_some(),
        _ => false,
    }
}

/// An outage being ridden out by [`Coordinator::follow_run`]: when it began, the backoff, and the
/// lines it prints.
struct Outage {
    limit: Duration,
    since: Option<std::time::Instant>,
    delay: Duration,
}

impl Outage {
    fn new(limit: Duration) -> Self {
        Self {
            limit,
            since: None,
            delay: Duration::from_millis(200),
        }
    }

    /// A call failed with the transient `status`: the first failure prints one line; once the
    /// outage has lasted `limit`, answers the error.
    fn began(&mut self, status: &Status) -> anyhow::Result<()> {
        let described = format!("{}: {}", code_name(status.code()), cut_message(status.message()));
        match self.since {
            None => {
                if self.limit.is_zero() {
                    return Err(anyhow::Error::new(status.clone()));
                }
                eprintln!(
                    "warning: lost the coordinator ({described}); retrying for up to {}",
                    baton_shared::duration::format(self.limit)
                );
                self.since = Some(std::time::Instant::now());
            }
            Some(since) if since.elapsed() >= self.limit => {
                eprintln!(
                    "error: gave up after {} without the coordinator (--reconnect-for); the run may still finish",
                    baton_shared::duration::format(self.limit)
                );
                return Err(anyhow::Error::new(status.clone()));
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// A call succeeded: an outage in progress ends, with one line.
    fn ended(&mut self) {
        if let Some(since) = self.since.take() {
            eprintln!(
                "note: the coordinator is back after {:.1} s; following again",
                since.elapsed().as_secs_f64()
            );
        }
        self.delay = Duration::from_millis(200);
    }

    /// Waits before the next try (doubling, at most 5 s, never past the limit).
    async fn wait(&mut self) {
        let left = self
            .since
            .map_or(self.limit, |s| self.limit.saturating_sub(s.elapsed()));
        tokio::time::sleep(self.delay.min(left).max(Duration::from_millis(50))).await;
        self.delay = (self.delay * 2).min(Duration::from_secs(5));
    }
}

/// Whether `status` is tonic's reading of an HTTP answer without gRPC in it (`grpc-status header
/// missing, mapped from HTTP status code 405`): an HTTP/2 server that is no gRPC server.
fn is_plain_http_answer(status: &Status) -> bool {
    std::error::Error::source(status).is_none() && status.message().starts_with("grpc-status header missing")
}

/// How long [`http_port_hint`] waits for an HTTP/1.1 answer.
const HTTP_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Most bytes of an answer's head [`http_port_hint`] reads.
const HTTP_PROBE_MAX_BYTES: usize = 16 * 1024;

/// The coordinator's HTTP port names its gRPC port in this header on every answer (the
/// coordinator's `http::GRPC_PORT_HEADER`).
const GRPC_PORT_HEADER: &str = "baton-grpc-port";

/// What to tell a user whose `--addr` (an `http://` address where no gRPC answered) is an HTTP
/// server: it asks `GET /healthz` over HTTP/1.1 (at most [`HTTP_PROBE_TIMEOUT`], reading at most
/// [`HTTP_PROBE_MAX_BYTES`]). Baton's HTTP port (the web console and the HTTP API) names the gRPC
/// port in [`GRPC_PORT_HEADER`]; any other web server answering HTML or JSON is named as one, with
/// gRPC's default port. `None` when nothing answers HTTP there (or the address is `https://`).
pub async fn http_port_hint(addr: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let uri: tonic::codegen::http::Uri = addr.parse().ok()?;
    if !uri.scheme_str().is_some_and(|s| s.eq_ignore_ascii_case("http")) {
        return None;
    }
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect((host.as_str(), port)).await.ok()?;
        let request = format!(
            "GET /healthz HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
            uri.authority().map_or(host.as_str(), |a| a.as_str())
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = Vec::new();
        let mut buf = [0u8; 2048];
        while head.len() < HTTP_PROBE_MAX_BYTES && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(buf.get(..n)?);
        }
        Some(head)
    };
    let head = tokio::time::timeout(HTTP_PROBE_TIMEOUT, probe).await.ok()??;
    describe_http_answer(&String::from_utf8_lossy(&head), &host)
}

/// The hint of [`http_port_hint`] for the head of an HTTP/1.x answer (status line and headers).
fn describe_http_answer(head: &str, host: &str) -> Option<String> {
    let mut lines = head.split("\r\n");
    if !lines.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let mut grpc_port = None;
    let mut content_type = String::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case(GRPC_PORT_HEADER) {
            grpc_port = value.trim().parse::<u16>().ok();
        } else if name.trim().eq_ignore_ascii_case("content-type") {
            content_type = value.trim().to_ascii_lowercase();
        }
    }
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    match grpc_port {
        Some(port) => Some(format!(
            "this is Baton's HTTP port (the web console and the HTTP API), not its gRPC API: the gRPC API is on \
             port {port} (use --addr http://{host}:{port} or BATON_ADDR)"
        )),
        None if content_type.starts_with("text/html") || content_type.starts_with("application/json") => Some(format!(
            "an HTTP server answers here, not a Baton coordinator's gRPC API: if it is Baton's HTTP port (the web \
             console), the gRPC API is on another port (default 7450; use --addr http://{host}:7450 or BATON_ADDR)"
        )),
        None => None,
    }
}

/// A status message cut to 200 bytes for a one-line notice.
fn cut_message(text: &str) -> String {
    const MAX: usize = 200;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Whether a run status number means the run is over.
pub fn is_terminal(status: i32) -> bool {
    RunStatus::try_from(status).is_ok_and(RunStatus::is_terminal)
}

pub use baton_shared::status::code_name;

/// The text after `error: ` for a failed command: `<CODE>: <message>` for a gRPC status (with a
/// reminder of the address when the coordinator is unavailable), the error and its causes otherwise.
pub fn describe_error(err: &anyhow::Error, addr: &str) -> String {
    if let Some(unreachable) = err.downcast_ref::<Unreachable>() {
        return if unreachable.with_causes {
            causes(err)
        } else {
            unreachable.to_string()
        };
    }
    let Some(status) = err.downcast_ref::<Status>() else {
        return causes(err);
    };
    let message = if status.message().is_empty() {
        status.code().description()
    } else {
        status.message()
    };
    let mut text = format!("{}: {message}", code_name(status.code()));
    if status.code() == Code::Unauthenticated {
        text.push_str(" (the coordinator requires a token: set BATON_TOKEN or pass --token)");
    } else if status.code() == Code::Unavailable && answered_by_coordinator(status) {
        text.push_str(&format!(
            " (the coordinator at {} answered, but cannot serve now: try again later)",
            normalize_addr(addr)
        ));
    } else if status.code() == Code::Unavailable {
        text.push_str(&format!(
            " (coordinator at {}; set it with --addr or the BATON_ADDR environment variable)",
            normalize_addr(addr)
        ));
    }
    text
}

/// Whether `status` is an answer of the coordinator itself (it marks its errors with
/// `baton-source: coordinator`; older coordinators are recognised by their Redis and RabbitMQ
/// messages), rather than a failure to reach it.
fn answered_by_coordinator(status: &Status) -> bool {
    status.metadata().get(SOURCE_METADATA_KEY).is_some()
        || ["redis: ", "rabbitmq: ", "publish failed: "]
            .iter()
            .any(|p| status.message().starts_with(p))
}

/// The error as the JSON document `-o json` prints (on stderr, like the text form):
/// `{"error": {"code": "NOT_FOUND", "message": "..."}}`. `code` is the gRPC status code's name
/// for an answer of the coordinator, `UNAVAILABLE` when no coordinator could be reached, and
/// `INVALID_ARGUMENT` for errors found before any call (bad arguments or input files).
pub fn error_json(err: &anyhow::Error, addr: &str) -> serde_json::Value {
    let code = if let Some(status) = err.downcast_ref::<Status>()
        && err.downcast_ref::<Unreachable>().is_none()
    {
        code_name(status.code())
    } else if err.downcast_ref::<Unreachable>().is_some() {
        "UNAVAILABLE"
    } else {
        "INVALID_ARGUMENT"
    };
    serde_json::json!({"error": {"code": code, "message": describe_error(err, addr)}})
}

/// An error and its causes joined by `: `, skipping a cause that repeats the one before it
/// (transport errors tend to say `tcp connect error` twice).
fn causes(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_without_a_scheme_get_http() {
        assert_eq!(normalize_addr("localhost:7450"), "http://localhost:7450");
        assert_eq!(normalize_addr(" 10.0.0.5:80 "), "http://10.0.0.5:80");
        assert_eq!(normalize_addr("http://a:1"), "http://a:1");
        assert_eq!(normalize_addr("https://a:1"), "https://a:1");
    }

    #[test]
    fn unauthenticated_says_how_to_give_a_token() {
        let err = anyhow::Error::new(Status::unauthenticated(
            "missing bearer token in `authorization` metadata",
        ));
        assert_eq!(
            describe_error(&err, "h:9"),
            "UNAUTHENTICATED: missing bearer token in `authorization` metadata (the coordinator requires a token: \
             set BATON_TOKEN or pass --token)"
        );
    }

    #[test]
    fn status_errors_show_code_and_message() {
        let err = anyhow::Error::new(Status::not_found("run r-1 not found"));
        assert_eq!(describe_error(&err, "x:1"), "NOT_FOUND: run r-1 not found");
        let err = anyhow::Error::new(Status::invalid_argument(
            "steps[2].retry.max_interval: must be positive",
        ));
        assert_eq!(
            describe_error(&err, "x:1"),
            "INVALID_ARGUMENT: steps[2].retry.max_interval: must be positive"
        );
    }

    #[test]
    fn unavailable_mentions_the_address_and_baton_addr() {
        let err = anyhow::Error::new(Status::unavailable("connection reset"));
        let text = describe_error(&err, "h:9");
        assert!(text.starts_with("UNAVAILABLE: connection reset"), "{text}");
        assert!(text.contains("http://h:9") && text.contains("BATON_ADDR"), "{text}");
    }

    #[test]
    fn other_schemes_are_refused_before_connecting() {
        assert_eq!(check_addr("h:1").unwrap(), "http://h:1");
        assert_eq!(check_addr("HTTP://h:1").unwrap(), "HTTP://h:1");
        assert_eq!(check_addr("https://h:1").unwrap(), "https://h:1");
        let err = check_addr("grpc://h:1").unwrap_err().to_string();
        assert!(err.contains("unsupported scheme grpc://"), "{err}");
    }

    #[test]
    fn unavailable_from_the_coordinator_itself_has_no_address_hint() {
        let mut status = Status::unavailable("redis: connection refused");
        status.metadata_mut().insert(
            SOURCE_METADATA_KEY,
            tonic::metadata::MetadataValue::from_static("coordinator"),
        );
        let text = describe_error(&anyhow::Error::new(status), "h:9");
        assert!(
            !text.contains("BATON_ADDR") && text.contains("try again later"),
            "{text}"
        );
    }

    #[test]
    fn json_errors_carry_the_code_and_the_message() {
        let err = anyhow::Error::new(Status::not_found("run_id: no run x"));
        assert_eq!(
            error_json(&err, "h:9"),
            serde_json::json!({"error": {"code": "NOT_FOUND", "message": "NOT_FOUND: run_id: no run x"}})
        );
        let err = anyhow::anyhow!("--input is not valid JSON: x");
        assert_eq!(error_json(&err, "h:9")["error"]["code"], "INVALID_ARGUMENT");
        let err = anyhow::Error::new(Unreachable {
            message: "cannot connect".into(),
            with_causes: true,
        });
        assert_eq!(error_json(&err, "h:9")["error"]["code"], "UNAVAILABLE");
    }

    #[test]
    fn other_errors_show_their_causes() {
        let err = anyhow::anyhow!("root cause").context("cannot read x.json");
        assert_eq!(describe_error(&err, "h:9"), "cannot read x.json: root cause");
    }

    #[test]
    fn terminal_statuses() {
        assert!(is_terminal(RunStatus::Succeeded as i32));
        assert!(is_terminal(RunStatus::TimedOut as i32));
        assert!(!is_terminal(RunStatus::Running as i32));
        assert!(!is_terminal(99));
    }

    #[test]
    fn an_http_answer_names_the_grpc_port_it_advertises() {
        let baton = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nbaton-grpc-port: 7450\r\n\r\n";
        let text = describe_http_answer(baton, "127.0.0.1").unwrap_or_default();
        assert!(
            text.starts_with("this is Baton's HTTP port") && text.contains("--addr http://127.0.0.1:7450"),
            "{text}"
        );
        let web = "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/html; charset=utf-8\r\n\r\n";
        let text = describe_http_answer(web, "::1").unwrap_or_default();
        assert!(
            text.contains("default 7450") && text.contains("http://[::1]:7450"),
            "{text}"
        );
        assert_eq!(
            describe_http_answer("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", "h"),
            None
        );
        assert_eq!(describe_http_answer("SSH-2.0-OpenSSH_9.2\r\n", "h"), None);
        assert!(is_plain_http_answer(&Status::unknown(
            "grpc-status header missing, mapped from HTTP status code 405"
        )));
        assert!(!is_plain_http_answer(&Status::unknown("handler panicked")));
    }

    #[tokio::test]
    async fn connection_failures_name_the_address() {
        // Port 1 on localhost: nothing listens there, so the connection is refused at once.
        let target = Target {
            addr: "127.0.0.1:1".into(),
            ..Default::default()
        };
        let Err(err) = Coordinator::connect(&target).await else {
            panic!("connected to port 1")
        };
        let text = describe_error(&err, "127.0.0.1:1");
        assert!(
            text.contains("http://127.0.0.1:1")
                && text.contains("BATON_ADDR")
                && text.contains("onnection refused")
                && !text.contains("tcp connect error: tcp connect error"),
            "{text}"
        );
    }
}
