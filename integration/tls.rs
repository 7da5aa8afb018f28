//! The API's transport against the real `deflect run` on loopback: TLS, with certificates made
//! here (a CA, the server's for 127.0.0.1, a node's, and a stranger's from another CA), and the
//! descriptors a connection flood needs.
//!
//! - with `api.tls.client_ca`, a client with the CA's certificate is served; one without a
//!   certificate, one with a stranger's, and plain HTTP are not (and counted in `/metrics`);
//! - the probe's own client (`probe::send::Client::with_tls`) delivers a report over it with its
//!   node's certificate, and a node token on another node's certificate is refused (403);
//! - the CLI talks to it with `--ca` and a client certificate;
//! - a renewed certificate written over the same files is served after a SIGHUP, on new
//!   connections, without a restart; a broken one is refused by the reload and the old one stays.

#[path = "daemon.rs"]
mod daemon;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use daemon::{Daemon, free_port, temp_dir};
use deflect::api::tls::ClientTls;
use deflect::probe::send::{Client, Outcome};
use deflect::telemetry::{Encoding, Report};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

const NODE: &str = "node-token-0123456789abcdef";
const READ: &str = "read-token-0123456789abcdef";

/// A CA: its certificate (PEM and DER) and what signs with it.
struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let pem = params.clone().self_signed(&key).unwrap().pem();
    Ca { params, key, pem }
}

/// A leaf signed by `ca`: (certificate PEM, key PEM).
fn leaf(ca: &Ca, name: &str, server: bool) -> (String, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names = if server {
        vec![SanType::IpAddress("127.0.0.1".parse().unwrap())]
    } else {
        // A node's certificate names the node (its token's name).
        vec![SanType::DnsName(name.try_into().unwrap())]
    };
    let key = KeyPair::generate().unwrap();
    let issuer = ca.params.clone().self_signed(&ca.key).unwrap();
    let cert = params.signed_by(&key, &issuer, &ca.key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A client TLS configuration trusting `ca_pem`, showing `identity` (certificate, key) if any.
fn client_config(ca_pem: &str, identity: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(deflect::api::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match identity {
        None => b.with_no_client_auth(),
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(Result::unwrap)
                    .collect();
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
    })
}

/// `GET path` over TLS with `config`: the answer's status line and the server's certificate, or
/// why it failed.
fn get(
    port: u16,
    config: Arc<rustls::ClientConfig>,
    path: &str,
) -> Result<(String, CertificateDer<'static>), String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {READ}\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut answer = String::new();
    // A server that closes without close_notify after answering is fine here: the answer counts.
    let _ = tls.read_to_string(&mut answer);
    let cert = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first().cloned())
        .ok_or("no server certificate")?;
    if answer.is_empty() {
        return Err("no answer".into());
    }
    Ok((answer, cert))
}

fn der(pem: &str) -> CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

fn wait_up(port: u16, config: &Arc<rustls::ClientConfig>, d: &Daemon) {
    let start = Instant::now();
    while get(port, config.clone(), "/api/v1/health").is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the API never answered over TLS:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_api_over_tls_asks_for_client_certificates_and_takes_a_renewed_one_at_a_reload() {
    let dir = temp_dir("tls", "api");
    let nodes = ca("deflect test CA");
    let (server_cert, server_key) = leaf(&nodes, "controller", true);
    let (node_cert, node_key) = leaf(&nodes, "web1", false);
    let stranger_ca = ca("someone else's CA");
    let (stranger_cert, stranger_key) = leaf(&stranger_ca, "intruder", false);
    let ca_file = write(&dir, "ca.pem", &nodes.pem);
    let cert_file = write(&dir, "api.pem", &server_cert);
    let key_file = write(&dir, "api.key", &server_key);
    let node_cert_file = write(&dir, "web1.pem", &node_cert);
    let node_key_file = write(&dir, "web1.key", &node_key);
    let port = free_port();
    let config = format!(
        "local_as: 65000\nrouter_id: 192.0.2.10\nstate_dir: {}\ngraceful_restart: 0\n\
         api:\n  listen: 127.0.0.1:{port}\n  tls:\n    cert: {}\n    key: {}\n    client_ca: {}\n\
         \x20 tokens:\n    - {{ name: web1, token: {NODE}, scope: node, serves: [0.0.0.0/0, ::/0] }}\n\
         \x20   - {{ name: viewer, token: {READ}, scope: read }}\n\
         protected:\n  customers: [203.0.113.0/24]\n",
        dir.join("state").display(),
        cert_file.display(),
        key_file.display(),
        ca_file.display(),
    );
    let config_file = write(&dir, "deflect.yaml", &config);
    let d = Daemon::start(&config_file, dir.join("deflect.log"));
    let node = client_config(&nodes.pem, Some((&node_cert, &node_key)));
    wait_up(port, &node, &d);

    // A node with the CA's certificate is served, and sees the configured certificate.
    let (answer, cert) = get(port, node.clone(), "/api/v1/health").unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(cert, der(&server_cert));

    // No certificate, a stranger's, plain HTTP: not served.
    let anonymous = client_config(&nodes.pem, None);
    assert!(get(port, anonymous, "/api/v1/health").is_err());
    let stranger = client_config(&nodes.pem, Some((&stranger_cert, &stranger_key)));
    assert!(get(port, stranger, "/api/v1/health").is_err());
    let plain = ureq::get(&format!("http://127.0.0.1:{port}/api/v1/health"))
        .config()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .call();
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
    let (metrics, _) = get(port, node.clone(), "/metrics").unwrap();
    let failures: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("deflect_api_tls_failures_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(failures >= 3, "TLS failures counted: {failures}\n{metrics}");

    // The probe's client delivers a report, checking the controller with the CA.
    let tls = ClientTls {
        ca: Some(ca_file.clone()),
        cert: Some(node_cert_file.clone()),
        key: Some(node_key_file.clone()),
    };
    let client = Client::with_tls(&format!("https://127.0.0.1:{port}"), NODE, &tls).unwrap();
    // In MessagePack, as the probe's backlog holds it.
    let report = Encoding::MessagePack.encode(&Report {
        node: "web1".into(),
        seq: 1,
        interval_ms: 1000,
        one_in: 1,
        ..Report::default()
    });
    assert_eq!(client.post(&report), Outcome::Delivered);
    // Another node's certificate (of the same CA) does not carry web1's token: 403, counted.
    let (web2_cert, web2_key) = leaf(&nodes, "web2", false);
    let web2 = ClientTls {
        ca: Some(ca_file.clone()),
        cert: Some(write(&dir, "web2.pem", &web2_cert)),
        key: Some(write(&dir, "web2.key", &web2_key)),
    };
    let borrowed = Client::with_tls(&format!("https://127.0.0.1:{port}"), NODE, &web2).unwrap();
    match borrowed.post(&report) {
        Outcome::Refused(403, why) => assert!(why.contains("web2"), "{why}"),
        other => panic!("web1's token on web2's certificate: {other:?}"),
    }
    let (metrics, _) = get(port, node.clone(), "/metrics").unwrap();
    assert!(
        metrics.contains("deflect_api_node_certificate_refused_total 1"),
        "{metrics}"
    );
    // Without its certificate it is not let in; with no CA it does not trust the controller.
    let bare = Client::with_tls(
        &format!("https://127.0.0.1:{port}"),
        NODE,
        &ClientTls {
            ca: Some(ca_file.clone()),
            ..ClientTls::default()
        },
    )
    .unwrap();
    assert!(matches!(bare.post(&report), Outcome::Retry(..)));
    let public_roots = Client::new(&format!("https://127.0.0.1:{port}"), NODE);
    assert!(matches!(public_roots.post(&report), Outcome::Retry(..)));

    // The CLI, with the CA and a client certificate; and without the certificate, refused.
    let cli = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_deflect"))
            .args(["peers", "--api", &format!("https://127.0.0.1:{port}")])
            .args(["--token", READ, "--ca"])
            .arg(&ca_file)
            .args(extra)
            .output()
            .unwrap()
    };
    let (cert_arg, key_arg) = (
        node_cert_file.display().to_string(),
        node_key_file.display().to_string(),
    );
    let ok = cli(&["--client-cert", &cert_arg, "--client-key", &key_arg]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let refused = cli(&[]);
    assert!(!refused.status.success());

    // Renewed at the same paths: served after a SIGHUP, on the next connection.
    let (renewed_cert, renewed_key) = leaf(&nodes, "controller", true);
    write(&dir, "api.pem", &renewed_cert);
    write(&dir, "api.key", &renewed_key);
    let pid = d.pid();
    let hup = || {
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    hup();
    let start = Instant::now();
    loop {
        let (_, cert) = get(port, node.clone(), "/api/v1/health").unwrap();
        if cert == der(&renewed_cert) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the renewed certificate was not served after SIGHUP:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A key that does not go with the certificate: the reload is refused, the renewed one stays.
    let (_, other_key) = leaf(&nodes, "controller", true);
    write(&dir, "api.key", &other_key);
    hup();
    let start = Instant::now();
    let refused = |log: String| {
        log.lines()
            .any(|l| l.contains("configuration not reloaded") && l.contains("api.tls"))
    };
    while !refused(d.log()) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the broken certificate's reload was not refused:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (answer, cert) = get(port, node, "/api/v1/health").unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(cert, der(&renewed_cert));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Started under a service manager's usual soft limit of open files (1024, here 512), the daemon
/// raises it to the hard limit: `api.max_connections` (1024) plus its own descriptors fit.
#[test]
fn the_daemon_raises_its_limit_of_open_files() {
    let dir = temp_dir("tls", "nofile");
    let port = free_port();
    let config = write(
        &dir,
        "deflect.yaml",
        &format!(
            "local_as: 65000\nrouter_id: 192.0.2.10\nstate_dir: {}\napi:\n  listen: 127.0.0.1:{port}\nprotected:\n  customers: [203.0.113.0/24]\n",
            dir.join("state").display()
        ),
    );
    let hard: u64 = std::fs::read_to_string("/proc/self/limits")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4)?.parse().ok())
        .unwrap_or(0);
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -Sn 512 && exec {} run --config {}",
            env!("CARGO_BIN_EXE_deflect"),
            config.display()
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let limits = format!("/proc/{}/limits", child.id());
    let soft = |text: &str| -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
    };
    let start = Instant::now();
    let mut seen = None;
    while start.elapsed() < Duration::from_secs(20) {
        // Once the API answers, the daemon is past its start.
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            seen = std::fs::read_to_string(&limits)
                .ok()
                .as_deref()
                .and_then(soft);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        hard > 512,
        "the hard limit here ({hard}) leaves nothing to raise"
    );
    assert_eq!(seen, Some(hard), "the soft limit of open files after start");
}
