//! TLS to Redis: `rediss://` (one Redis) and `rediss+cluster://` (a Redis Cluster, whose nodes the
//! relay of [`super::cluster`] reaches over TLS), with the settings `redis_tls_ca`,
//! `redis_tls_cert` and `redis_tls_key`.
//!
//! - Without `redis_tls_ca`, a server's certificate must chain to one of the system's CA
//!   certificates (as for `amqps://`). With it, to one of the file's instead: the system's are then
//!   not trusted (a private CA is the usual reason to set it).
//! - With `redis_tls_cert` and `redis_tls_key`, the coordinator presents that client certificate.
//!   Redis asks for one by default (`tls-auth-clients yes`); managed services usually do not.
//! - A server's name is checked against its certificate: the host of `redis_url`, and on a cluster
//!   the host each node is announced with in `CLUSTER SLOTS` (an IP address needs an IP address
//!   entry in the certificate's subject alternative names).

use std::{path::Path, sync::Arc};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::error::{CoordinatorError, Result};

/// The TLS settings for Redis, read from their files (PEM). The default trusts the system's CA
/// certificates and presents no client certificate.
#[derive(Clone, Default)]
pub struct RedisTls {
    /// `redis_tls_ca`: the CA certificates to trust instead of the system's (PEM).
    ca: Option<Vec<u8>>,
    /// `redis_tls_cert` and `redis_tls_key`: the client certificate chain and its key (PEM).
    client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTls")
            .field("ca", &self.ca.is_some())
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

/// A Redis TLS setting that cannot be used: which one, and why (`redis_tls_ca: cannot read ...`).
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {reason}")]
pub struct SettingError {
    /// `redis_tls_ca`, `redis_tls_cert` or `redis_tls_key`.
    pub setting: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl SettingError {
    fn new(setting: &'static str, reason: impl Into<String>) -> Self {
        Self {
            setting,
            reason: reason.into(),
        }
    }
}

impl From<SettingError> for CoordinatorError {
    fn from(e: SettingError) -> Self {
        CoordinatorError::InvalidArgument(e.to_string())
    }
}

/// Reads `path` for `setting` and checks that it holds at least one PEM block.
fn read_pem(setting: &'static str, path: &Path) -> std::result::Result<Vec<u8>, SettingError> {
    let bytes =
        std::fs::read(path).map_err(|e| SettingError::new(setting, format!("cannot read {}: {e}", path.display())))?;
    if !String::from_utf8_lossy(&bytes).contains("-----BEGIN ") {
        return Err(SettingError::new(
            setting,
            format!("{} is not a PEM file (no -----BEGIN line)", path.display()),
        ));
    }
    Ok(bytes)
}

/// The certificates of a PEM file (`setting` names it in errors); at least one.
fn certificates(setting: &'static str, pem: &[u8]) -> std::result::Result<Vec<CertificateDer<'static>>, SettingError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| SettingError::new(setting, format!("not a valid PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(SettingError::new(setting, "the file holds no CERTIFICATE block"));
    }
    Ok(certs)
}

impl RedisTls {
    /// Reads and checks the files of `redis_tls_ca`, `redis_tls_cert` and `redis_tls_key`.
    ///
    /// # Errors
    /// [`SettingError`] naming the setting: a file that cannot be read, is not PEM, or holds no
    /// certificate (or, for the key, no private key); only one of `redis_tls_cert` and
    /// `redis_tls_key`.
    pub fn load(ca: Option<&Path>, cert: Option<&Path>, key: Option<&Path>) -> std::result::Result<Self, SettingError> {
        let ca = match ca {
            Some(p) => {
                let pem = read_pem("redis_tls_ca", p)?;
                certificates("redis_tls_ca", &pem)?;
                Some(pem)
            }
            None => None,
        };
        let client = match (cert, key) {
            (Some(c), Some(k)) => {
                let cert = read_pem("redis_tls_cert", c)?;
                certificates("redis_tls_cert", &cert)?;
                let key = read_pem("redis_tls_key", k)?;
                PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
                    SettingError::new("redis_tls_key", format!("no private key in {}: {e}", k.display()))
                })?;
                Some((cert, key))
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(SettingError::new(
                    "redis_tls_cert",
                    "set, but redis_tls_key is not: give both",
                ));
            }
            (None, Some(_)) => {
                return Err(SettingError::new(
                    "redis_tls_key",
                    "set, but redis_tls_cert is not: give both",
                ));
            }
        };
        Ok(Self { ca, client })
    }

    /// Whether any setting is given (else the system's CA certificates, no client certificate).
    pub fn is_set(&self) -> bool {
        self.ca.is_some() || self.client.is_some()
    }

    /// A client of `url` (`redis://` or `rediss://`): a `rediss://` one with these settings.
    ///
    /// # Errors
    /// `Redis` for a URL the redis crate refuses.
    pub fn client(&self, url: &str) -> Result<redis::Client> {
        if !url.starts_with("rediss://") || !self.is_set() {
            return Ok(redis::Client::open(url)?);
        }
        let certs = redis::TlsCertificates {
            client_tls: self.client.as_ref().map(|(cert, key)| redis::ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
            root_cert: self.ca.clone(),
        };
        Ok(redis::Client::build_with_tls(url, certs)?)
    }

    /// The rustls client configuration of these settings, for the cluster relay's connections.
    ///
    /// # Errors
    /// `InvalidArgument` naming the setting for a certificate or key rustls refuses;
    /// `Unavailable` when `redis_tls_ca` is unset and the system has no CA certificate.
    pub fn rustls_config(&self) -> Result<Arc<rustls::ClientConfig>> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca {
            Some(pem) => {
                for cert in certificates("redis_tls_ca", pem)? {
                    roots
                        .add(cert)
                        .map_err(|e| CoordinatorError::InvalidArgument(format!("redis_tls_ca: {e}")))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for cert in found.certs {
                    // A system certificate rustls cannot use is skipped, as the redis crate does.
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err(CoordinatorError::Unavailable(
                        "redis_url: TLS to Redis, but the system has no CA certificate; set redis_tls_ca".into(),
                    ));
                }
            }
        }
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
        let config = match &self.client {
            Some((cert, key)) => {
                let chain = certificates("redis_tls_cert", cert)?;
                let key = PrivateKeyDer::from_pem_slice(key)
                    .map_err(|e| CoordinatorError::InvalidArgument(format!("redis_tls_key: {e}")))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    CoordinatorError::InvalidArgument(format!("redis_tls_cert: refused with redis_tls_key: {e}"))
                })?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).ok();
        p
    }

    #[test]
    fn bad_files_and_half_a_client_certificate_are_refused_naming_the_setting() {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let dir = tmp.path();
        let text = write(dir, "ca.txt", "not a certificate");
        let empty_pem = write(
            dir,
            "empty.pem",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        );
        let missing = dir.join("missing.pem");
        type Case<'a> = (Option<&'a Path>, Option<&'a Path>, Option<&'a Path>, &'a str);
        let cases: [Case<'_>; 5] = [
            (Some(&text), None, None, "redis_tls_ca: "),
            (Some(&missing), None, None, "redis_tls_ca: cannot read"),
            (
                Some(&empty_pem),
                None,
                None,
                "redis_tls_ca: the file holds no CERTIFICATE",
            ),
            (
                None,
                Some(&empty_pem),
                None,
                "redis_tls_cert: set, but redis_tls_key is not",
            ),
            (
                None,
                None,
                Some(&empty_pem),
                "redis_tls_key: set, but redis_tls_cert is not",
            ),
        ];
        for (ca, cert, key, want) in cases {
            let e = RedisTls::load(ca, cert, key)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains(want), "{ca:?} {cert:?} {key:?}: {e}");
        }
        let none = RedisTls::load(None, None, None).ok();
        assert!(none.is_some_and(|t| !t.is_set()));
    }
}
