//! The trust store and rustls client configuration shared by the TLS
//! clients (the SMTP channel, HTTPS health checks and webhooks).
//!
//! Trust is the system's CA bundle (`SSL_CERT_FILE` when it was set, else
//! the first bundle found of the usual distribution paths) plus the
//! certificates of an optional extra PEM file (`SMTP_CA_FILE`,
//! `HEALTH_CA_FILE`). One crypto provider: ring.
//!
//! NOTE: no roots are compiled in. Mozilla's (webpki-roots) cost about 60 KB
//! of a binary whose whole budget is 3.2 MiB, and a host without a CA bundle
//! is rare (the `ca-certificates` package; an app image that does https has
//! one). Without a bundle every https peer is untrusted: the monitor says so
//! once at start ([`missing_bundle_warning`]) and the failures name it.
//!
//! Not here: connecting, classifying errors (each client words its own).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// Where distributions keep the system's CA bundle, most common first (the
/// list openssl-probe and Go's crypto/x509 use).
pub const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/ssl/cert.pem",
];

/// The system's CA bundle: `SSL_CERT_FILE` when given (it replaces the
/// default, as in OpenSSL), else the first of [`SYSTEM_BUNDLES`] that
/// `exists`; `None`: there is none (only a `*_CA_FILE` can be trusted).
pub fn system_bundle(
    ssl_cert_file: Option<PathBuf>,
    exists: impl Fn(&Path) -> bool,
) -> Option<PathBuf> {
    ssl_cert_file
        .filter(|p| !p.as_os_str().is_empty())
        .or_else(|| SYSTEM_BUNDLES.iter().map(PathBuf::from).find(|p| exists(p)))
}

/// [`system_bundle`] of this process's `SSL_CERT_FILE` and file system.
pub fn default_system_bundle() -> Option<PathBuf> {
    system_bundle(
        std::env::var_os("SSL_CERT_FILE").map(PathBuf::from),
        |p: &Path| p.is_file(),
    )
}

/// Every certificate in a PEM text; other sections (keys, CRLs) and
/// malformed ones are skipped.
pub fn pem_certificates(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem).flatten().collect()
}

/// Why the extra CA file cannot be used: the path and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaFileError(pub PathBuf, pub String);

/// The roots: the system bundle (nothing when it is missing or empty) plus
/// every certificate of `ca_file`.
pub fn roots(system: Option<&Path>, ca_file: Option<&Path>) -> Result<RootCertStore, CaFileError> {
    let mut roots = RootCertStore::empty();
    let system = system
        .and_then(|p| fs::read(p).ok())
        .map(|pem| pem_certificates(&pem))
        .filter(|certs| !certs.is_empty());
    if let Some(certs) = system {
        roots.add_parsable_certificates(certs);
    }
    if let Some(path) = ca_file {
        let ca_err = |e: String| CaFileError(path.to_path_buf(), e);
        let pem = fs::read(path).map_err(|e| ca_err(e.to_string()))?;
        let certs = pem_certificates(&pem);
        if certs.is_empty() {
            return Err(ca_err("no PEM certificate in it".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
        }
    }
    Ok(roots)
}

/// A client configuration on ring trusting `roots`; `Err` is rustls' word.
pub fn client_config(roots: RootCertStore) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The start-up warning when TLS is configured (`uses_tls`) but no system CA
/// bundle exists: every https peer would then be untrusted, unless its CA
/// is in the `*_CA_FILE` given.
pub fn missing_bundle_warning(uses_tls: bool, bundle: Option<&Path>) -> Option<String> {
    if !uses_tls || bundle.is_some_and(Path::is_file) {
        return None;
    }
    Some(format!(
        "no CA bundle found (SSL_CERT_FILE unset or unreadable; looked for {}): TLS peers \
         will be untrusted unless their CA is in HEALTH_CA_FILE or SMTP_CA_FILE; install \
         ca-certificates or set SSL_CERT_FILE",
        SYSTEM_BUNDLES[0]
    ))
}

/// Why [`default_client_config`] could not build a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetupError {
    /// The extra CA file cannot be used.
    CaFile(CaFileError),
    /// rustls refused the configuration: its word.
    Rustls(String),
}

/// The configuration of an HTTPS client (health checks, webhooks): the
/// system's roots ([`default_system_bundle`]) plus `ca_file`'s.
pub fn default_client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, SetupError> {
    let system = default_system_bundle();
    let roots = roots(system.as_deref(), ca_file).map_err(SetupError::CaFile)?;
    client_config(roots).map_err(SetupError::Rustls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_cert_file_replaces_the_system_bundle_and_none_means_no_roots() {
        let only = |wanted: &'static str| move |p: &Path| p == Path::new(wanted);
        assert_eq!(
            system_bundle(Some("/x/ca.pem".into()), only("/etc/ssl/cert.pem")),
            Some(PathBuf::from("/x/ca.pem"))
        );
        assert_eq!(
            system_bundle(None, only("/etc/ssl/cert.pem")),
            Some(PathBuf::from("/etc/ssl/cert.pem"))
        );
        assert_eq!(
            system_bundle(Some("".into()), only("/etc/pki/tls/certs/ca-bundle.crt")),
            Some(PathBuf::from("/etc/pki/tls/certs/ca-bundle.crt"))
        );
        assert_eq!(system_bundle(None, |_| false), None);
    }

    #[test]
    fn no_bundle_means_no_roots_and_a_warning_when_tls_is_used() {
        let missing = Path::new("/nonexistent/ca.pem");
        assert!(roots(Some(missing), None).unwrap().is_empty());
        assert!(roots(None, None).unwrap().is_empty());
        let warning = missing_bundle_warning(true, None).unwrap();
        assert!(warning.contains("SSL_CERT_FILE") && warning.contains("HEALTH_CA_FILE"));
        assert_eq!(missing_bundle_warning(false, None), None);
        assert!(missing_bundle_warning(true, Some(missing)).is_some());
    }

    #[test]
    fn pem_certificates_skips_keys_and_garbage() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let pem = format!(
            "junk\n{}{}{}",
            cert.cert.pem(),
            cert.signing_key.serialize_pem(),
            cert.cert.pem()
        );
        let certs = pem_certificates(pem.as_bytes());
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[0].as_ref(), cert.cert.der().as_ref());
        assert!(pem_certificates(b"not pem").is_empty());
    }

    #[test]
    fn a_ca_file_without_certificates_is_an_error_naming_it() {
        let dir = std::env::temp_dir().join(format!("sm-tls-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("empty.pem");
        fs::write(&path, "nothing").unwrap();
        let err = roots(None, Some(&path)).unwrap_err();
        assert_eq!(
            err,
            CaFileError(path.clone(), "no PEM certificate in it".into())
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
