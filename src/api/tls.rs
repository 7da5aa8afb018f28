//! TLS for the API (rustls, ring's cryptography): the certificate and key the configuration names,
//! and optionally a CA whose certificates every client must show (nodes and operators alike); and
//! the clients' side ([`ClientTls`]: the probe's and the CLI's), from the same PEM readers.
//!
//! The files are read when the configuration is checked (so a bad file fails `deflect check` and a
//! reload, with the file named) and again when the server starts and at each reload: a renewed
//! certificate at the same path is served from the next connection on, without a restart. Open
//! connections keep the certificate they were made with.
//!
//! With `client_ca`, a client's certificate also says who it is: a node token is taken only on a
//! connection whose certificate names that node (a DNS name in its subject alternative names equal
//! to the token's name), so a node's token copied elsewhere, or used with another node's
//! certificate, speaks for nobody. Operators' and readers' tokens need any certificate of the CA.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// The files of `api.tls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    /// The server's certificate chain, PEM, its own first.
    pub cert: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Clients must show a certificate signed by one of these CAs (PEM); none: any client may
    /// connect, and tokens alone say who it is.
    pub client_ca: Option<PathBuf>,
}

/// The crypto provider every TLS configuration here is built with: ring's. rustls now prefers
/// aws-lc-rs (which adds post-quantum key exchange), but that needs cmake to build and ring a C
/// compiler only; the switch is this function and the `ring` features in Cargo.toml.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate of a PEM file; an error names the file.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no certificate in it (a PEM file with BEGIN CERTIFICATE blocks)",
            path.display()
        ));
    }
    Ok(certs)
}

/// The first private key of a PEM file; an error names the file.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        format!(
            "{}: no private key read ({e}); a PEM file with a PKCS#8, PKCS#1 or SEC1 key",
            path.display()
        )
    })
}

/// The server's TLS configuration from `files`: HTTP/1.1 only, TLS 1.2 and 1.3.
pub fn server_config(files: &Files) -> Result<Arc<ServerConfig>, String> {
    let certs = certificates(&files.cert)?;
    let key = private_key(&files.key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certificates(ca)? {
                roots
                    .add(c)
                    .map_err(|e| format!("{}: not a usable CA certificate: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "{} and {}: the key does not go with the certificate, or is not usable: {e}",
            files.cert.display(),
            files.key.display()
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The configuration connections are accepted with, replaced at a reload.
#[derive(Debug)]
pub struct Acceptor {
    config: RwLock<Arc<ServerConfig>>,
}

impl Acceptor {
    pub fn new(files: &Files) -> Result<Arc<Acceptor>, String> {
        Ok(Arc::new(Acceptor {
            config: RwLock::new(server_config(files)?),
        }))
    }

    /// Reads the files again (a renewed certificate), for [`Acceptor::install`]: a reload reads
    /// them before it changes anything, and installs them once nothing else can fail.
    pub fn load(files: &Files) -> Result<Arc<ServerConfig>, String> {
        server_config(files)
    }

    /// What [`Acceptor::load`] read, for the connections from now on.
    pub fn install(&self, config: Arc<ServerConfig>) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config;
    }

    /// For the next connection.
    pub fn current(&self) -> tokio_rustls::TlsAcceptor {
        let config = self
            .config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        tokio_rustls::TlsAcceptor::from(config)
    }
}

/// The client certificate a TLS connection was made with, for the requests on it.
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub CertificateDer<'static>);

impl PeerCertificate {
    /// Whether the certificate names `node` (a DNS name of its subject alternative names).
    pub fn names(&self, node: &str) -> bool {
        let Ok(cert) = webpki::EndEntityCert::try_from(&self.0) else {
            return false;
        };
        let Ok(name) = rustls::pki_types::DnsName::try_from(node.to_string()) else {
            return false;
        };
        cert.verify_is_valid_for_subject_name(&rustls::pki_types::ServerName::DnsName(name))
            .is_ok()
    }

    /// The DNS names it carries, for an error message.
    pub fn dns_names(&self) -> Vec<String> {
        webpki::EndEntityCert::try_from(&self.0)
            .map(|c| c.valid_dns_names().map(str::to_string).collect())
            .unwrap_or_default()
    }
}

/// How a client (the probe, the CLI) checks the API's certificate and shows its own, over
/// `https://`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// The CA (PEM) the API's certificate must chain to; none: the public web's roots.
    pub ca: Option<PathBuf>,
    /// This client's certificate chain and key (PEM), for an API that asks for one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl ClientTls {
    /// ureq's TLS settings from the files; an error names the file.
    pub fn config(&self) -> Result<ureq::tls::TlsConfig, String> {
        use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
        let certs = |p: &PathBuf| -> Result<Vec<Certificate<'static>>, String> {
            Ok(certificates(p)?
                .iter()
                .map(|c| Certificate::from_der(c).to_owned())
                .collect())
        };
        let mut b = TlsConfig::builder().unversioned_rustls_crypto_provider(provider());
        if let Some(ca) = &self.ca {
            b = b.root_certs(RootCerts::Specific(Arc::new(certs(ca)?)));
        }
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                // ureq takes a key only from PEM (its kinds are not public): read here.
                let pem = std::fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?;
                let key = PrivateKey::from_pem(&pem)
                    .map_err(|e| format!("{}: no PEM private key read: {e}", key.display()))?;
                b = b.client_cert(Some(ClientCert::new_with_certs(&certs(cert)?, key)));
            }
            (None, None) => {}
            _ => return Err("a client certificate needs both its file and its key's".into()),
        }
        Ok(b.build())
    }
}
