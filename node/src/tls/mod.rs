//! TLS with rustls: the server side of https listeners (certificates from PEM
//! files, chosen by SNI, swapped in place on reload) and the client side towards
//! backends (`[pool.tls]`), and the admin listener's single certificate
//! (`[admin] tls`). Only aws-lc-rs is used as the crypto provider; TLS 1.2
//! and 1.3 only. What happens after the handshake is the L7 proxy's business.

mod client;
mod sni;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use client::{UpstreamConnector, build_connector};
pub use sni::{CertSet, SniResolver};

use crate::config::CertificateFiles;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: no certificate found in the PEM file")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no usable private key (PKCS#8, PKCS#1 or SEC1 PEM expected): {why}")]
    BadKey { path: PathBuf, why: String },
    #[error("{path}: certificate is not a parsable X.509 end-entity certificate: {why}")]
    BadCertificate { path: PathBuf, why: String },
    #[error("{cert} and {key} do not belong together: {why}")]
    Mismatch { cert: PathBuf, key: PathBuf, why: String },
    #[error("{path}: the certificate names no DNS subject alternative name")]
    NoNames { path: PathBuf },
    #[error("{path}: {why}")]
    Ca { path: PathBuf, why: String },
}

/// The one crypto provider of the process (aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Installs aws-lc-rs as the process default so that any `builder()` call finds
/// one provider; a second call is harmless.
pub fn install_default_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A certificate chain with its key and the DNS names (SANs) it serves.
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// Lower-case SAN DNS names, wildcards as `*.example.com`.
    pub names: Vec<String>,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}

/// Reads every certificate of a PEM file.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadCertificate { path: path.to_path_buf(), why: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_path_buf() });
    }
    Ok(certs)
}

/// Loads one certificate/key pair and checks that they match. The key's bytes
/// never appear in an error.
pub fn load_pair(files: &CertificateFiles) -> Result<LoadedCert, TlsError> {
    let chain = read_certificates(&files.cert_file)?;
    let key_pem = read(&files.key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| TlsError::BadKey { path: files.key_file.clone(), why: e.to_string() })?;
    let names = {
        let ee = webpki::EndEntityCert::try_from(&chain[0])
            .map_err(|e| TlsError::BadCertificate { path: files.cert_file.clone(), why: e.to_string() })?;
        ee.valid_dns_names().map(|n| n.to_ascii_lowercase()).collect::<Vec<_>>()
    };
    if names.is_empty() {
        return Err(TlsError::NoNames { path: files.cert_file.clone() });
    }
    let key = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| TlsError::Mismatch {
        cert: files.cert_file.clone(),
        key: files.key_file.clone(),
        why: e.to_string(),
    })?;
    Ok(LoadedCert { key: Arc::new(key), names })
}

/// Loads every pair of a listener into a set; any failure fails the whole set so
/// a reload never serves half of a new configuration.
pub fn load_set(files: &[CertificateFiles]) -> Result<CertSet, TlsError> {
    let loaded = files.iter().map(load_pair).collect::<Result<Vec<_>, _>>()?;
    Ok(CertSet::new(loaded))
}

/// The server config of one https listener: ALPN h2 and http/1.1, TLS 1.2/1.3,
/// certificates from `resolver` (which can be swapped without rebuilding this).
pub fn server_config(resolver: Arc<SniResolver>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The server config of the admin listener: one certificate for every name (an
/// operator often reaches it by IP, so no SNI and no DNS name is required), ALPN
/// h2 and http/1.1, TLS 1.2/1.3. Read once at start.
pub fn admin_server_config(files: &CertificateFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = read_certificates(&files.cert_file)?;
    let key_pem = read(&files.key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| TlsError::BadKey { path: files.key_file.clone(), why: e.to_string() })?;
    let mismatch = |why: String| TlsError::Mismatch { cert: files.cert_file.clone(), key: files.key_file.clone(), why };
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| mismatch(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| mismatch(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
