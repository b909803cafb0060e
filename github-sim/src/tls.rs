//! TLS for the simulator: a certificate authority made at test time ([`TestCa`]), the server
//! identities it issues ([`ServerIdentity`]), and [`serve_https`], which serves any router over
//! HTTPS (the simulator's API, and test servers the dispatcher must refuse to trust).
//!
//! Nothing here is fit for production: keys live in memory and the CA signs whatever it is asked.

use std::net::SocketAddr;

use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use axum_server::Handle;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::error::SimError;

/// A certificate and its private key, PEM: what an HTTPS server presents.
#[derive(Clone)]
pub struct ServerIdentity {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A throw-away certificate authority, made fresh for each test, demo or benchmark run.
pub struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    cert_pem: String,
}

/// The names every simulator certificate covers: it listens on loopback.
pub const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

fn tls_err(what: &str, e: rcgen::Error) -> SimError {
    SimError::Tls(format!("{what}: {e}"))
}

impl TestCa {
    pub fn new() -> Result<TestCa, SimError> {
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(|e| tls_err("CA parameters", e))?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "github-sim test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().map_err(|e| tls_err("CA key", e))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| tls_err("CA certificate", e))?;
        Ok(TestCa {
            params,
            key,
            cert_pem: cert.pem(),
        })
    }

    /// The CA certificate, PEM: what a client must trust (`github.ca_file`).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server certificate for `names` (DNS names or IP addresses) signed by this CA.
    pub fn issue(&self, names: &[&str]) -> Result<ServerIdentity, SimError> {
        let (params, key) = server_params(names)?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| tls_err("server certificate", e))?;
        Ok(ServerIdentity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A self-signed server certificate for `names`: no client trusts it unless told to.
pub fn self_signed(names: &[&str]) -> Result<ServerIdentity, SimError> {
    let (params, key) = server_params(names)?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| tls_err("self-signed certificate", e))?;
    Ok(ServerIdentity {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn server_params(names: &[&str]) -> Result<(CertificateParams, KeyPair), SimError> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params =
        CertificateParams::new(names).map_err(|e| tls_err("server certificate names", e))?;
    params
        .distinguished_name
        .push(DnType::CommonName, "github-sim");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().map_err(|e| tls_err("server key", e))?;
    Ok((params, key))
}

/// Serves `app` over HTTPS with `identity` on `listener` until `handle` shuts it down.
pub async fn serve_https(
    listener: tokio::net::TcpListener,
    app: Router,
    identity: &ServerIdentity,
    handle: Handle<SocketAddr>,
) -> Result<(), SimError> {
    let config = RustlsConfig::from_pem(
        identity.cert_pem.clone().into_bytes(),
        identity.key_pem.clone().into_bytes(),
    )
    .await
    .map_err(|e| SimError::Tls(format!("server TLS configuration: {e}")))?;
    let listener = listener
        .into_std()
        .map_err(|e| SimError::Tls(format!("listener: {e}")))?;
    let server = axum_server::from_tcp_rustls(listener, config)
        .map_err(|e| SimError::Tls(format!("listener: {e}")))?
        .handle(handle);
    server
        .serve(app.into_make_service())
        .await
        .map_err(|e| SimError::Tls(format!("HTTPS server: {e}")))
}
