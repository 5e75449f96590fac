//! The gRPC server's TLS: certificate and key from `tls_cert`/`tls_key`, and with `tls_client_ca`
//! mutual TLS (every client presents a certificate signed by that CA). rustls with the ring
//! provider, through tonic.

use std::path::Path;

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::CoordinatorConfig;

fn read(setting: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{setting}: cannot read {}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    if !text.contains("-----BEGIN ") {
        anyhow::bail!("{setting}: {} is not a PEM file (no -----BEGIN line)", path.display());
    }
    Ok(bytes)
}

/// The server's TLS settings, or `None` when `tls_cert` and `tls_key` are unset (plain gRPC).
///
/// # Errors
/// Only one of `tls_cert` and `tls_key` set; `tls_client_ca` without them; a file that cannot be
/// read or is not PEM (the error names the setting and the file). A certificate and key that do not
/// match are refused by tonic when the server starts.
pub fn server_config(config: &CoordinatorConfig) -> anyhow::Result<Option<ServerTlsConfig>> {
    let (cert, key) = match (&config.tls_cert, &config.tls_key) {
        (Some(c), Some(k)) => (c, k),
        (None, None) => {
            if config.tls_client_ca.is_some() {
                anyhow::bail!("tls_client_ca: needs tls_cert and tls_key (mutual TLS is TLS first)");
            }
            return Ok(None);
        }
        (Some(_), None) => anyhow::bail!("tls_cert: set, but tls_key is not: give both"),
        (None, Some(_)) => anyhow::bail!("tls_key: set, but tls_cert is not: give both"),
    };
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read("tls_cert", cert)?, read("tls_key", key)?));
    if let Some(ca) = &config.tls_client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read("tls_client_ca", ca)?));
    }
    Ok(Some(tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_files_means_plain_grpc() {
        assert!(server_config(&CoordinatorConfig::default()).unwrap().is_none());
    }

    #[test]
    fn half_a_setting_is_an_error_naming_it() {
        let c = CoordinatorConfig {
            tls_cert: Some("/x.pem".into()),
            ..Default::default()
        };
        assert!(server_config(&c).unwrap_err().to_string().starts_with("tls_cert: set"));
        let c = CoordinatorConfig {
            tls_client_ca: Some("/x.pem".into()),
            ..Default::default()
        };
        assert!(server_config(&c).unwrap_err().to_string().starts_with("tls_client_ca"));
    }

    #[test]
    fn a_file_that_is_not_pem_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("cert.der");
        std::fs::write(&f, [0u8, 1, 2]).unwrap();
        let c = CoordinatorConfig {
            tls_cert: Some(f.clone()),
            tls_key: Some(f),
            ..Default::default()
        };
        let e = server_config(&c).unwrap_err().to_string();
        assert!(e.contains("tls_cert") && e.contains("not a PEM file"), "{e}");
    }
}
