//! TLS towards backends (`[pool.tls]`): verified against the pool's CA file, or
//! unverified (`verify = false`, for backends with self-signed certificates on a
//! trusted network). Handshake signatures are checked either way.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::TlsConnector;

use super::{TlsError, provider, read_certificates};
use crate::config::UpstreamTls;

/// What a backend connection needs to start TLS.
#[derive(Clone)]
pub struct UpstreamConnector {
    pub connector: TlsConnector,
    /// `None`: the backend's IP address is the server name.
    pub sni: Option<ServerName<'static>>,
}

/// Builds the connector of one pool (reads `ca_file`).
pub fn build_connector(cfg: &UpstreamTls) -> Result<UpstreamConnector, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Ca { path: Default::default(), why: e.to_string() })?;
    let mut config = if cfg.verify {
        let mut roots = RootCertStore::empty();
        if let Some(path) = &cfg.ca_file {
            for cert in read_certificates(path)? {
                roots.add(cert).map_err(|e| TlsError::Ca { path: path.clone(), why: e.to_string() })?;
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider()))).with_no_client_auth()
    };
    // The upstream side speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let sni = cfg.sni.as_ref().and_then(|s| ServerName::try_from(s.clone()).ok());
    Ok(UpstreamConnector { connector: TlsConnector::from(Arc::new(config)), sni })
}

/// Accepts any certificate chain but still checks the handshake signature.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
