//! The pure logic behind the example workflows: `documents` (`examples/workflows/documents.yaml`):
//! text analysis, hashing, the stored record and its idempotent upsert, and the flaky-step knob;
//! `review` (`examples/workflows/review.yaml`, module [`review`]): listing a directory,
//! classifying documents as copyleft or not, their summary and the review report; and `doc-scan`
//! (`examples/workflows/scan.yaml`, module [`mod@scan`]): finding the new or changed documents of a
//! directory tree, and what the store holds of them afterwards.
//!
//! The `docs-worker` binary wraps these functions into Baton handlers; keeping them here, free of
//! any Baton type, is what lets them be unit-tested without RabbitMQ, Redis or a coordinator.

pub mod analysis;
pub mod document;
pub mod review;
pub mod scan;
pub mod store;

pub use analysis::{Analysis, TermCount, analyze};
pub use document::{
    DocumentDigest, DocumentError, MAX_DOCUMENT_BYTES, ReadDocument, decode_document, read_document, sha256_hex,
};
pub use review::{
    Approval, Classification, Decision, FileList, LargestDocument, ListError, ListInput, ReportInput, ReportOutcome,
    ReportStep, ReviewReport, SummarizeInput, Summary, classify_file, copyleft_reason, list_files, summarize,
    write_report,
};
pub use scan::{
    ScanError, ScanInput, ScanOutput, ScanSummary, ScanSummaryInput, ScannedFile, Skipped, scan, summarize_scan,
};
pub use store::{DocumentRecord, FileStore, StoredJson, UpsertOutcome, Upserted, rfc3339_utc, upsert_json};

use std::{fmt, str::FromStr};

/// The fraction of `analyze` attempts that fail on purpose, in `[0, 1]`.
///
/// ```
/// use baton_examples::FailureRate;
///
/// let rate: FailureRate = "0.3".parse().unwrap();
/// assert!(rate.fails(0.1) && !rate.fails(0.5));
/// assert!("1.5".parse::<FailureRate>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailureRate(f64);

impl FailureRate {
    /// A rate, if `rate` lies in `[0, 1]` (NaN does not).
    pub fn new(rate: f64) -> Option<Self> {
        (0.0..=1.0).contains(&rate).then_some(Self(rate))
    }

    /// The rate as a fraction.
    pub fn get(self) -> f64 {
        self.0
    }

    /// Whether an attempt that drew `roll` (uniform in `[0, 1)`) fails.
    pub fn fails(self, roll: f64) -> bool {
        roll < self.0
    }
}

impl FromStr for FailureRate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rate: f64 = s
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a number; give a fraction from 0 to 1 (e.g. 0.3)"))?;
        Self::new(rate).ok_or_else(|| format!("{s} is out of range; give a fraction from 0 to 1 (e.g. 0.3)"))
    }
}

impl fmt::Display for FailureRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_rate_accepts_fractions_only() {
        assert_eq!("0".parse::<FailureRate>().unwrap().get(), 0.0);
        assert_eq!(" 1 ".parse::<FailureRate>().unwrap().get(), 1.0);
        assert_eq!("0.25".parse::<FailureRate>().unwrap().get(), 0.25);
        for bad in ["-0.1", "1.01", "NaN", "inf", "", "thirty percent"] {
            let err = bad.parse::<FailureRate>().unwrap_err();
            assert!(err.contains("from 0 to 1"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn failure_rate_bounds() {
        let never = FailureRate::new(0.0).unwrap();
        let always = FailureRate::new(1.0).unwrap();
        for roll in [0.0, 0.3, 0.999_999] {
            assert!(!never.fails(roll));
            assert!(always.fails(roll));
        }
    }
}
