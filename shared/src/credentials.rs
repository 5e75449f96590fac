//! How a client proves itself to a coordinator and checks the coordinator back: the bearer token
//! sent with every call ([`Bearer`], a tonic interceptor) and the TLS settings of an `https://`
//! address ([`ClientTls`]). The CLI, the worker runtime and the test harness share them. Also how a
//! server URL with credentials is shown in logs and errors ([`without_password`]).

use std::path::{Path, PathBuf};

use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

/// `url` as it may be logged or echoed: the password of its credentials (`scheme://user:PASSWORD@`)
/// replaced by `***`, everything else kept (`redis://:***@10.0.0.1:6379/0`,
/// `amqp://guest:***@host:5672/%2f`). A URL without a password comes back unchanged.
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // The credentials end at the last '@' before the path.
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    let Some((user, _password)) = userinfo.split_once(':') else {
        return url.to_string();
    };
    format!("{scheme}://{user}:***{}", &rest[at..])
}

/// A channel whose calls carry the bearer token (when there is one).
pub type AuthChannel = InterceptedService<Channel, Bearer>;

/// The metadata key of the bearer token (RFC 6750 §2.1): `authorization: Bearer <token>`.
pub const AUTHORIZATION: &str = "authorization";

/// Longest token accepted, in bytes (tokens made by `baton token new` are 70).
pub const MAX_TOKEN_BYTES: usize = 4_096;

/// Why credentials could not be set up. Messages name the setting, never a token.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The token cannot travel as a header value.
    #[error("token (BATON_TOKEN / --token): {0}")]
    Token(&'static str),
    /// A certificate or key file could not be read.
    #[error("{setting}: cannot read {path}: {source}")]
    File {
        /// The setting that named the file (`--ca-file`, ...).
        setting: &'static str,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The address and the TLS settings do not fit together.
    #[error("{0}")]
    Mismatch(String),
    /// The address is not a URI tonic accepts, or TLS could not be configured.
    #[error("coordinator address {addr}: {message}")]
    Address {
        /// The address.
        addr: String,
        /// What tonic said.
        message: String,
    },
}

/// A secret string (a token): its `Debug` says `Secret(***)`, so that printing a configuration
/// never shows it. `Serialize`/`Deserialize` see the plain string.
#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is empty (no secret given).
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Adds `authorization: Bearer <token>` to every call; with no token, adds nothing. Cheap to clone.
#[derive(Clone, Default)]
pub struct Bearer {
    value: Option<MetadataValue<Ascii>>,
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bearer")
            .field("token", &self.value.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Bearer {
    /// The interceptor for `token` (`None` or blank: no token is sent).
    ///
    /// # Errors
    /// [`CredentialsError::Token`] for a token over [`MAX_TOKEN_BYTES`] or with characters a
    /// header cannot carry (only visible ASCII is allowed).
    pub fn new(token: Option<&str>) -> Result<Self, CredentialsError> {
        let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(Self::default());
        };
        if token.len() > MAX_TOKEN_BYTES {
            return Err(CredentialsError::Token("longer than 4096 bytes"));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(CredentialsError::Token(
                "may hold visible ASCII characters only (no spaces or control characters)",
            ));
        }
        let value = format!("Bearer {token}")
            .parse::<MetadataValue<Ascii>>()
            .map_err(|_| CredentialsError::Token("not a valid header value"))?;
        Ok(Self { value: Some(value) })
    }

    /// Whether a token is sent.
    pub fn is_set(&self) -> bool {
        self.value.is_some()
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.value {
            req.metadata_mut().insert(AUTHORIZATION, v.clone());
        }
        Ok(req)
    }
}

/// The TLS side of a client: the CA that signed the coordinator's certificate (default: the
/// system's CA certificates) and, for mutual TLS, the client's own certificate and key. All PEM
/// files; used only for `https://` addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM file of the CA certificate(s) to trust (`BATON_CA_FILE`, `--ca-file`).
    pub ca_file: Option<PathBuf>,
    /// PEM file of this client's certificate, for mutual TLS (`BATON_CLIENT_CERT`).
    pub cert_file: Option<PathBuf>,
    /// PEM file of this client's private key, for mutual TLS (`BATON_CLIENT_KEY`).
    pub key_file: Option<PathBuf>,
}

impl ClientTls {
    /// The settings from `BATON_CA_FILE`, `BATON_CLIENT_CERT` and `BATON_CLIENT_KEY` (unset or
    /// empty: none).
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        Self {
            ca_file: var("BATON_CA_FILE"),
            cert_file: var("BATON_CLIENT_CERT"),
            key_file: var("BATON_CLIENT_KEY"),
        }
    }

    fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.cert_file.is_none() && self.key_file.is_none()
    }
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, CredentialsError> {
    std::fs::read(path).map_err(|source| CredentialsError::File {
        setting,
        path: path.display().to_string(),
        source,
    })
}

/// The endpoint for `addr` (`http://host:port` or `https://host:port`): TLS for `https://`,
/// checking the coordinator's certificate against `tls.ca_file` (or the system's CA
/// certificates) and presenting `tls.cert_file`/`tls.key_file` when both are given.
///
/// # Errors
/// [`CredentialsError`]: an address tonic does not accept, an unreadable file, TLS files given
/// for an `http://` address (Baton never sends what was meant to be encrypted in plaintext), or
/// only one of the client certificate and key.
pub fn endpoint(addr: &str, tls: &ClientTls) -> Result<Endpoint, CredentialsError> {
    let bad = |message: String| CredentialsError::Address {
        addr: addr.to_string(),
        message,
    };
    let endpoint = Endpoint::from_shared(addr.to_string()).map_err(|e| bad(e.to_string()))?;
    let https = addr
        .split_once("://")
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("https"));
    if !https {
        if !tls.is_empty() {
            return Err(CredentialsError::Mismatch(format!(
                "a CA file or client certificate is set (--ca-file, BATON_CA_FILE, BATON_CLIENT_CERT) but the \
                 coordinator address {addr} is not https://: use https:// (Baton does not fall back to plaintext)"
            )));
        }
        return Ok(endpoint);
    }
    let mut config = ClientTlsConfig::new();
    config = match &tls.ca_file {
        Some(ca) => config.ca_certificate(Certificate::from_pem(read("--ca-file (BATON_CA_FILE)", ca)?)),
        None => config.with_native_roots(),
    };
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            config = config.identity(Identity::from_pem(
                read("BATON_CLIENT_CERT", cert)?,
                read("BATON_CLIENT_KEY", key)?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(CredentialsError::Mismatch(
                "mutual TLS needs both a client certificate (BATON_CLIENT_CERT, --client-cert) and its key \
                 (BATON_CLIENT_KEY, --client-key)"
                    .into(),
            ));
        }
    }
    endpoint.tls_config(config).map_err(|e| bad(e.to_string()))
}

/// Makes ring rustls's process-wide crypto provider, before any TLS connection (the server's, a
/// client's, Redis's `rediss://`, RabbitMQ's `amqps://`): rustls refuses to choose by itself when
/// a dependency compiles in a second provider. A second call changes nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_in_urls_and_nothing_else_changes() {
        for (url, want) in [
            ("redis://:s3cret@10.0.0.1:6379/0", "redis://:***@10.0.0.1:6379/0"),
            ("rediss://baton:p@ss@host:6380", "rediss://baton:***@host:6380"),
            (
                "redis+cluster://:pw@a:7000,b:7001",
                "redis+cluster://:***@a:7000,b:7001",
            ),
            (
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                "amqp://guest:***@127.0.0.1:5672/%2f",
            ),
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("redis://user@host:1/x@y", "redis://user@host:1/x@y"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(without_password(url), want, "{url}");
        }
    }

    #[test]
    fn a_token_becomes_a_bearer_header() {
        let mut b = Bearer::new(Some(" abc.DEF-123 ")).unwrap();
        let req = b.call(tonic::Request::new(())).unwrap();
        assert_eq!(req.metadata().get(AUTHORIZATION).unwrap(), "Bearer abc.DEF-123");
    }

    #[test]
    fn no_token_sends_nothing() {
        for t in [None, Some(""), Some("  ")] {
            let mut b = Bearer::new(t).unwrap();
            assert!(!b.is_set());
            let req = b.call(tonic::Request::new(())).unwrap();
            assert!(req.metadata().get(AUTHORIZATION).is_none());
        }
    }

    #[test]
    fn a_bad_token_is_refused_without_echoing_it() {
        let e = Bearer::new(Some("sec ret\u{7}")).unwrap_err().to_string();
        assert!(e.contains("visible ASCII") && !e.contains("sec"), "{e}");
        assert!(Bearer::new(Some(&"x".repeat(MAX_TOKEN_BYTES + 1))).is_err());
    }

    #[test]
    fn debug_never_shows_the_token() {
        let text = format!(
            "{:?} {:?}",
            Bearer::new(Some("hunter2hunter2")).unwrap(),
            Secret::new("hunter2")
        );
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn tls_files_with_a_plain_address_are_refused() {
        let tls = ClientTls {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let e = endpoint("http://127.0.0.1:1", &tls).unwrap_err().to_string();
        assert!(e.contains("not https://"), "{e}");
        let e = endpoint("https://127.0.0.1:1", &tls).unwrap_err().to_string();
        assert!(e.contains("--ca-file") && e.contains("/nonexistent/ca.pem"), "{e}");
        assert!(endpoint("http://127.0.0.1:1", &ClientTls::default()).is_ok());
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let dir = std::env::temp_dir();
        let tls = ClientTls {
            cert_file: Some(dir.join("c.pem")),
            ..Default::default()
        };
        install_crypto_provider();
        let e = endpoint("https://127.0.0.1:1", &tls).unwrap_err().to_string();
        assert!(e.contains("mutual TLS needs both"), "{e}");
    }
}
