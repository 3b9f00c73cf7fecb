//! TLS for the SQL endpoint: a certificate chain and private key in PEM files, as PostgreSQL's
//! own `ssl_cert_file` and `ssl_key_file`. With TLS configured, every client must use it: the
//! read token travels as a cleartext password inside the connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::tokio_rustls::rustls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::QueryError;

/// The PEM files of the endpoint's certificate (chain, leaf first) and its private key
/// (PKCS#8, PKCS#1 or SEC1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// ALPN name PostgreSQL 17 clients send with a direct TLS connection (`sslnegotiation=direct`).
const POSTGRESQL_ALPN: &[u8] = b"postgresql";

fn problem(path: &Path, message: impl Into<String>) -> QueryError {
    QueryError::Tls {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, QueryError> {
    std::fs::read(path).map_err(|error| problem(path, format!("cannot read it: {error}")))
}

/// Reads both files and checks that the key belongs to the certificate.
pub(super) fn acceptor(tls: &SqlTls) -> Result<TlsAcceptor, QueryError> {
    let pem = read(&tls.cert)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| problem(&tls.cert, format!("not a PEM certificate file: {error}")))?;
    if chain.is_empty() {
        return Err(problem(
            &tls.cert,
            "holds no certificate (no \"-----BEGIN CERTIFICATE-----\" section)",
        ));
    }
    let pem = read(&tls.key)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|error| {
        problem(
            &tls.key,
            format!("holds no private key in PEM (PKCS#8, PKCS#1 or SEC1): {error}"),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| problem(&tls.cert, format!("no TLS version to offer: {error}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| {
            problem(
                &tls.key,
                format!("cannot be used with the certificate in the other file: {error}"),
            )
        })?;
    config.alpn_protocols = vec![POSTGRESQL_ALPN.to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
