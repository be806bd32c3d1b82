//! TLS to NATS with `NatsAuth`: a certificate made by openssl for this test, a real
//! nats-server requiring TLS. Trusting the CA connects; not trusting it, or asking
//! a plaintext server for TLS, does not.

use std::path::Path;
use std::process::Command;

use shardline_jetstream::{ConnectOptions, NatsAuth, connect};
use shardline_testkit::NatsServer;

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl (scripts/install-tools installs it)");
    assert!(status.success(), "openssl {args:?}");
}

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir`.
fn certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "2",
        "-subj",
        "/CN=shardline-test-ca",
    ];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(dir, &ca);
    let mut csr = vec!["req", "-new", "-subj", "/CN=127.0.0.1"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(dir, &csr);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    );
}

fn options(url: &str, auth: NatsAuth) -> ConnectOptions {
    ConnectOptions {
        url: url.to_owned(),
        name: "tls-test".to_owned(),
        auth,
    }
}

#[tokio::test]
async fn tls_with_the_servers_ca_and_only_with_it() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let server = NatsServer::builder()
        .config(&format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}",
            dir.path().join("server.pem").display(),
            dir.path().join("server.key").display()
        ))
        .start();

    let trusted = NatsAuth {
        tls_ca_file: Some(dir.path().join("ca.pem")),
        tls_required: true,
        ..NatsAuth::default()
    };
    let client = connect(&options(&server.url(), trusted.clone()))
        .await
        .expect("TLS with the server's CA");
    client.publish("tls.test", "x".into()).await.unwrap();
    client.flush().await.unwrap();

    let untrusted = NatsAuth {
        tls_required: true,
        ..NatsAuth::default()
    };
    assert!(
        connect(&options(&server.url(), untrusted)).await.is_err(),
        "a certificate from an unknown CA is refused"
    );

    let plaintext = NatsServer::start();
    assert!(
        connect(&options(&plaintext.url(), trusted)).await.is_err(),
        "NATS_TLS_REQUIRED refuses a server without TLS"
    );
}
