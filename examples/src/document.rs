//! Reading a document (the `read` step) and hashing it (the `digest` step).

use std::{fmt, io, path::Path};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Largest document the `read` step accepts. Its text travels as a step output (JSON) to the steps
/// that depend on it, and the coordinator refuses outputs above its `max_payload_bytes` (4 MiB by
/// default), so larger files are refused up front with a clear error.
pub const MAX_DOCUMENT_BYTES: u64 = 1024 * 1024;

/// The output of the `read` step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadDocument {
    /// The path, as given in the run input.
    pub path: String,
    /// Size of the file in bytes.
    pub bytes: u64,
    /// The file's content (UTF-8).
    pub text: String,
}

/// The output of the `digest` step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentDigest {
    /// SHA-256 of the file's bytes, lower-case hex (what `sha256sum` prints).
    pub sha256: String,
    /// Size of the file in bytes.
    pub bytes: u64,
}

/// Why a document could not be read. [`DocumentError::error_type`] is the error type the step
/// reports (the workflow lists the permanent ones in `non_retryable_errors`).
#[derive(Debug)]
pub enum DocumentError {
    /// There is no file at the path.
    NotFound(String),
    /// The path is not a regular file (a directory, a device...).
    NotAFile(String),
    /// The file is larger than [`MAX_DOCUMENT_BYTES`].
    TooLarge {
        /// The path.
        path: String,
        /// Its size.
        bytes: u64,
    },
    /// The file is not UTF-8 text.
    NotText(String),
    /// Any other I/O error (permissions, a flaky network mount...): may be transient.
    Io(String, io::Error),
}

impl DocumentError {
    /// The error type reported to the coordinator.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "NotFound",
            Self::NotAFile(_) => "NotAFile",
            Self::TooLarge { .. } => "TooLarge",
            Self::NotText(_) => "NotText",
            Self::Io(..) => "Io",
        }
    }

    /// Whether another attempt could succeed: only for unclassified I/O errors.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Io(..))
    }
}

impl fmt::Display for DocumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound(p) => write!(f, "no such file: {p}"),
            Self::NotAFile(p) => write!(f, "not a regular file: {p}"),
            Self::TooLarge { path, bytes } => write!(
                f,
                "{path} is {bytes} bytes; documents are limited to {MAX_DOCUMENT_BYTES} bytes"
            ),
            Self::NotText(p) => write!(f, "{p} is not UTF-8 text"),
            Self::Io(p, e) => write!(f, "cannot read {p}: {e}"),
        }
    }
}

impl std::error::Error for DocumentError {}

/// Reads the document at `path` (blocking I/O: call it from a blocking thread).
///
/// # Errors
/// [`DocumentError`]: not found, not a file, too large, not UTF-8, or another I/O error.
pub fn read_document(path: &str) -> Result<ReadDocument, DocumentError> {
    let io_err = |e: io::Error| match e.kind() {
        io::ErrorKind::NotFound => DocumentError::NotFound(path.to_string()),
        _ => DocumentError::Io(path.to_string(), e),
    };
    let meta = std::fs::metadata(Path::new(path)).map_err(io_err)?;
    if !meta.is_file() {
        return Err(DocumentError::NotAFile(path.to_string()));
    }
    if meta.len() > MAX_DOCUMENT_BYTES {
        return Err(DocumentError::TooLarge {
            path: path.to_string(),
            bytes: meta.len(),
        });
    }
    let data = std::fs::read(path).map_err(io_err)?;
    decode_document(path, data)
}

/// Turns the bytes of the file at `path` into a [`ReadDocument`].
///
/// # Errors
/// [`DocumentError::TooLarge`] or [`DocumentError::NotText`].
pub fn decode_document(path: &str, data: Vec<u8>) -> Result<ReadDocument, DocumentError> {
    let bytes = data.len() as u64;
    if bytes > MAX_DOCUMENT_BYTES {
        return Err(DocumentError::TooLarge {
            path: path.to_string(),
            bytes,
        });
    }
    let text = String::from_utf8(data).map_err(|_| DocumentError::NotText(path.to_string()))?;
    Ok(ReadDocument {
        path: path.to_string(),
        bytes,
        text,
    })
}

/// SHA-256 of `data`, lower-case hex.
///
/// ```
/// assert_eq!(
///     baton_examples::sha256_hex(b"abc"),
///     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/// );
/// ```
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

impl ReadDocument {
    /// The digest of this document. The text is the file's exact bytes (it was read as UTF-8
    /// without any conversion), so this is the SHA-256 of the file.
    pub fn digest(&self) -> DocumentDigest {
        DocumentDigest {
            sha256: sha256_hex(self.text.as_bytes()),
            bytes: self.text.len() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::TempDir;

    #[test]
    fn reads_text_files() {
        let dir = TempDir::new("read");
        let path = dir.path().join("a.txt");
        std::fs::write(&path, "héllo\n").unwrap();
        let doc = read_document(path.to_str().unwrap()).unwrap();
        assert_eq!(doc.bytes, 7);
        assert_eq!(doc.text, "héllo\n");
        assert_eq!(doc.digest().sha256, sha256_hex("héllo\n".as_bytes()));
        assert_eq!(doc.digest().bytes, 7);
    }

    #[test]
    fn classifies_failures() {
        let dir = TempDir::new("read-errors");
        let missing = dir.path().join("missing.txt");
        let e = read_document(missing.to_str().unwrap()).unwrap_err();
        assert_eq!(e.error_type(), "NotFound");
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("missing.txt"), "{e}");

        let e = read_document(dir.path().to_str().unwrap()).unwrap_err();
        assert_eq!(e.error_type(), "NotAFile");

        let binary = dir.path().join("b.bin");
        std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
        let e = read_document(binary.to_str().unwrap()).unwrap_err();
        assert_eq!(e.error_type(), "NotText");

        let big = vec![b'x'; MAX_DOCUMENT_BYTES as usize + 1];
        let e = decode_document("big.txt", big).unwrap_err();
        assert_eq!(e.error_type(), "TooLarge");
        assert!(!e.is_retryable());
    }

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
