//! Run and step statuses: the lower-case words stored in Redis and shown to users, and their
//! protobuf enums. Converting here, once, keeps the edges from doing their own mapping.

use crate::proto::{RunStatus, StepStatus};

impl RunStatus {
    /// Every status a run can have, in lifecycle order.
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Pending,
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
        RunStatus::TimedOut,
    ];

    /// The word stored in Redis and printed by the CLI.
    pub fn word(self) -> &'static str {
        match self {
            RunStatus::Unspecified => "unspecified",
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::TimedOut => "timed_out",
        }
    }

    /// Parses a word; `None` for anything else.
    pub fn from_word(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => RunStatus::Pending,
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            "timed_out" => RunStatus::TimedOut,
            _ => return None,
        })
    }

    /// Whether the run is over.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled | RunStatus::TimedOut
        )
    }
}

impl StepStatus {
    /// Every status a step can have, in lifecycle order.
    pub const ALL: [StepStatus; 9] = [
        StepStatus::Pending,
        StepStatus::Dispatched,
        StepStatus::Running,
        StepStatus::Retrying,
        StepStatus::Waiting,
        StepStatus::Succeeded,
        StepStatus::Failed,
        StepStatus::Skipped,
        StepStatus::Cancelled,
    ];

    /// The word stored in Redis and printed by the CLI.
    pub fn word(self) -> &'static str {
        match self {
            StepStatus::Unspecified => "unspecified",
            StepStatus::Pending => "pending",
            StepStatus::Dispatched => "dispatched",
            StepStatus::Running => "running",
            StepStatus::Retrying => "retrying",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Cancelled => "cancelled",
            StepStatus::Waiting => "waiting",
        }
    }

    /// Parses a word; `None` for anything else.
    pub fn from_word(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => StepStatus::Pending,
            "dispatched" => StepStatus::Dispatched,
            "running" => StepStatus::Running,
            "retrying" => StepStatus::Retrying,
            "succeeded" => StepStatus::Succeeded,
            "failed" => StepStatus::Failed,
            "skipped" => StepStatus::Skipped,
            "cancelled" => StepStatus::Cancelled,
            "waiting" => StepStatus::Waiting,
            _ => return None,
        })
    }
}

/// The canonical name of a gRPC status code, e.g. `NOT_FOUND` (as the gRPC spec and
/// grpc-gateway write it): the CLI's error lines and the HTTP API's error bodies use it.
pub fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for s in RunStatus::ALL {
            assert_eq!(RunStatus::from_word(s.word()), Some(s));
        }
        for s in StepStatus::ALL {
            assert_eq!(StepStatus::from_word(s.word()), Some(s));
        }
    }
}
