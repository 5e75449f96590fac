//! A handler's log (`ctx.log`, `ctx.info`, ...): lines buffered in the worker and sent to the
//! coordinator (`AppendLogs`) by a background task every [`FLUSH_EVERY`] or [`FLUSH_LINES`]
//! lines, and before the attempt's result is reported. The buffer holds at most
//! [`MAX_BUFFERED_LINES`]; past it the oldest lines are dropped, and a `warn` line says how many.

use std::{
    collections::VecDeque,
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use baton_shared::{
    limits::{MAX_LOG_LINES_PER_CALL, MAX_LOG_MESSAGE_BYTES},
    proto::{AppendLogsRequest, AttemptDisposition, LogLine, worker_service_client::WorkerServiceClient},
    time::{now_ms, timestamp},
};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::runtime::WorkerChannel;

/// How often buffered lines are sent.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Buffered lines that make the worker send at once, without waiting for [`FLUSH_EVERY`].
pub const FLUSH_LINES: usize = 100;

/// Most lines an attempt's buffer holds while they wait to be sent (the coordinator unreachable, a
/// handler logging in a tight loop); past it the oldest are dropped and counted.
pub const MAX_BUFFERED_LINES: usize = 10_000;

/// How long the final send before a report may take: the report does not wait longer for logs.
pub const FINAL_FLUSH_PATIENCE: Duration = Duration::from_secs(5);

/// The level of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Detail for debugging.
    Debug,
    /// What the handler is doing.
    Info,
    /// Something unexpected that the handler got past.
    Warn,
    /// Something that failed.
    Error,
}

impl LogLevel {
    /// The level's word on the wire and in `baton run logs`: `debug`, `info`, `warn`, `error`.
    pub fn word(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

#[derive(Default)]
struct Buffer {
    lines: VecDeque<LogLine>,
    /// Lines dropped from the front since the last send (said in a `warn` line).
    dropped: u64,
}

/// One attempt's log buffer; cheap to clone (shared).
#[derive(Clone, Default)]
pub(crate) struct StepLog {
    buffer: Arc<Mutex<Buffer>>,
    wake: Arc<Notify>,
}

/// `text` cut to at most `max` bytes (its end mark included) at a character boundary, ending
/// `… (cut)` when cut, as the coordinator cuts (so it does not cut again).
fn cut(text: &str, max: usize) -> String {
    const MARK: &str = "… (cut)";
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(MARK.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", &text[..end])
}

impl StepLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Buffers one line, timed now; wakes the sender at [`FLUSH_LINES`].
    pub(crate) fn push(&self, level: LogLevel, message: &str) {
        let line = LogLine {
            time: timestamp(now_ms()),
            level: level.word().into(),
            message: cut(message, MAX_LOG_MESSAGE_BYTES),
            step_id: String::new(),
            attempt: 0,
        };
        let mut b = self.lock();
        if b.lines.len() >= MAX_BUFFERED_LINES {
            b.lines.pop_front();
            b.dropped = b.dropped.saturating_add(1);
        }
        b.lines.push_back(line);
        let full = b.lines.len() >= FLUSH_LINES;
        drop(b);
        if full {
            self.wake.notify_one();
        }
    }

    /// The next batch to send (at most [`MAX_LOG_LINES_PER_CALL`]), led by a `warn` line when
    /// lines were dropped.
    fn take(&self) -> Vec<LogLine> {
        let mut b = self.lock();
        let mut out = Vec::new();
        if b.dropped > 0 {
            out.push(LogLine {
                time: timestamp(now_ms()),
                level: "warn".into(),
                message: format!(
                    "{} log lines dropped: the worker's buffer of {MAX_BUFFERED_LINES} lines was full",
                    b.dropped
                ),
                step_id: String::new(),
                attempt: 0,
            });
            b.dropped = 0;
        }
        let n = b.lines.len().min(MAX_LOG_LINES_PER_CALL - out.len());
        out.extend(b.lines.drain(..n));
        out
    }

    /// Puts a batch that could not be sent back in front (within the buffer's bound).
    fn put_back(&self, lines: Vec<LogLine>) {
        let mut b = self.lock();
        for line in lines.into_iter().rev() {
            if b.lines.len() >= MAX_BUFFERED_LINES {
                b.dropped = b.dropped.saturating_add(1);
                continue;
            }
            b.lines.push_front(line);
        }
    }

    /// Whether no line is buffered (and none was dropped).
    pub(crate) fn is_empty(&self) -> bool {
        let b = self.lock();
        b.lines.is_empty() && b.dropped == 0
    }
}

/// The attempt whose lines a [`Sender`] sends.
pub(crate) struct AttemptIds {
    pub(crate) run_id: String,
    pub(crate) step_id: String,
    pub(crate) attempt: u32,
    pub(crate) worker_id: String,
}

/// The background task sending one attempt's lines; [`Sender::finish`] sends what is left.
pub(crate) struct Sender {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Sender {
    /// Starts sending `log`'s lines once the attempt has started (`started` is `Some(true)`); gives
    /// up when the start is refused or the coordinator answers that the attempt is not current.
    pub(crate) fn spawn(
        log: StepLog,
        client: WorkerServiceClient<WorkerChannel>,
        ids: AttemptIds,
        mut started: watch::Receiver<Option<bool>>,
    ) -> Self {
        let stop = CancellationToken::new();
        let until = stop.clone();
        let task = tokio::spawn(async move {
            let go = matches!(started.wait_for(Option::is_some).await.as_deref(), Ok(Some(true)));
            if !go {
                return;
            }
            loop {
                let finishing = tokio::select! {
                    () = tokio::time::sleep(FLUSH_EVERY) => false,
                    () = log.wake.notified() => false,
                    () = until.cancelled() => true,
                };
                // Everything buffered, a batch at a time.
                while !log.is_empty() {
                    match send(&log, &client, &ids).await {
                        Sent::Ok => {}
                        Sent::NotCurrent => return,
                        Sent::Later => break,
                    }
                }
                if finishing {
                    return;
                }
            }
        });
        Self { stop, task }
    }

    /// Sends the lines still buffered (waiting at most [`FINAL_FLUSH_PATIENCE`]) and stops.
    pub(crate) async fn finish(mut self) {
        self.stop.cancel();
        if tokio::time::timeout(FINAL_FLUSH_PATIENCE, &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
            tracing::warn!("the handler's last log lines were not sent within {FINAL_FLUSH_PATIENCE:?}");
        }
    }
}

impl Drop for Sender {
    /// An attempt given up without a report: the task sends what is buffered and stops.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

enum Sent {
    Ok,
    /// The attempt is over for the coordinator: nothing more is kept.
    NotCurrent,
    /// Not reachable now: the batch is back in the buffer.
    Later,
}

async fn send(log: &StepLog, client: &WorkerServiceClient<WorkerChannel>, ids: &AttemptIds) -> Sent {
    let lines = log.take();
    if lines.is_empty() {
        return Sent::Ok;
    }
    let req = AppendLogsRequest {
        run_id: ids.run_id.clone(),
        step_id: ids.step_id.clone(),
        attempt: ids.attempt,
        worker_id: ids.worker_id.clone(),
        lines,
    };
    match client.clone().append_logs(req.clone()).await {
        Ok(r) => match AttemptDisposition::try_from(r.into_inner().disposition) {
            Ok(AttemptDisposition::Proceed) => Sent::Ok,
            _ => Sent::NotCurrent,
        },
        Err(e)
            if matches!(
                e.code(),
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown
            ) =>
        {
            log.put_back(req.lines);
            Sent::Later
        }
        Err(e) => {
            // Refused (a coordinator without AppendLogs, a bad line): these lines are lost, the
            // next may not be.
            tracing::warn!(run = %ids.run_id, step = %ids.step_id, code = ?e.code(), error = %e.message(),
                "the coordinator refused {} log lines", req.lines.len());
            if e.code() == tonic::Code::Unimplemented {
                return Sent::NotCurrent;
            }
            Sent::Ok
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_buffer_drops_its_oldest_lines_and_says_so_first() {
        let log = StepLog::default();
        for i in 0..MAX_BUFFERED_LINES + 3 {
            log.push(LogLevel::Info, &format!("line {i}"));
        }
        let batch = log.take();
        assert_eq!(batch.len(), MAX_LOG_LINES_PER_CALL);
        assert_eq!(batch[0].level, "warn");
        assert!(
            batch[0].message.starts_with("3 log lines dropped"),
            "{}",
            batch[0].message
        );
        assert_eq!(batch[1].message, "line 3");
    }

    #[test]
    fn a_long_message_is_cut_with_a_mark() {
        let log = StepLog::default();
        log.push(LogLevel::Error, &"é".repeat(MAX_LOG_MESSAGE_BYTES));
        let line = log.take().remove(0);
        assert!(line.message.ends_with("… (cut)"));
        assert!(line.message.len() <= MAX_LOG_MESSAGE_BYTES);
        assert_eq!(line.level, "error");
    }
}
