//! TLS listeners in the config file (`[[tls]]`) and on the command line (`--tls`):
//! paths taken from the file's directory, shown by `--check`, bad files refused with the
//! file named, and a real server serving TLS as its file says.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::Duration;

use assert_cmd::Command;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::Value;

mod support;

/// A CA and a server certificate for 127.0.0.1 in `dir/certs`: ca.pem, server.pem,
/// server.key.
fn write_certificates(dir: &Path) -> PathBuf {
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "test CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    std::fs::write(certs.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(certs.join("server.pem"), server.pem()).unwrap();
    std::fs::write(certs.join("server.key"), key.serialize_pem()).unwrap();
    certs
}

fn serve(args: &[&str]) -> Command {
    let mut command = Command::new(support::BIN);
    command
        .env_remove("SWITCHBOARD_DATA_DIR")
        .env_remove("RUST_LOG")
        .args(["serve", "--no-http"])
        .args(args)
        .timeout(Duration::from_secs(60));
    command
}

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("switchboard.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

const TLS_CONFIG: &str = r#"
[listen]
tcp = ["127.0.0.1:0"]
unix = false

[storage]
memory = true

[[tls]]
listen = "127.0.0.1:0"
cert = "certs/server.pem"
key = "certs/server.key"
client_auth = "optional"
client_ca = "certs/ca.pem"
"#;

#[test]
fn check_shows_the_files_tls_listeners_with_paths_from_the_files_directory() {
    let dir = tempfile::tempdir().unwrap();
    let certs = write_certificates(dir.path());
    let config = write_config(dir.path(), TLS_CONFIG);
    let output = serve(&["--config", &config, "--check", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let settings: Value = serde_json::from_slice(&output).unwrap();
    let listeners = settings["tls"].as_array().expect("a tls list");
    assert_eq!(listeners.len(), 1);
    let listener = &listeners[0];
    assert_eq!(listener["listen"], "127.0.0.1:0");
    assert_eq!(listener["client_auth"], "optional");
    let path = |key: &str| PathBuf::from(listener[key].as_str().unwrap());
    assert_eq!(path("cert"), certs.join("server.pem"));
    assert_eq!(path("key"), certs.join("server.key"));
    assert_eq!(path("client_ca"), certs.join("ca.pem"));

    // As TOML, in the file's own shape.
    let output = serve(&["--config", &config, "--check"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(output).unwrap();
    assert!(text.contains("[[tls]]"), "{text}");

    // The flags replace the file's listeners.
    let cert = certs.join("server.pem");
    let key = certs.join("server.key");
    let output = serve(&[
        "--config",
        &config,
        "--check",
        "json",
        "--tls",
        "127.0.0.1:0",
    ])
    .args(["--tls-cert", cert.to_str().unwrap()])
    .args(["--tls-key", key.to_str().unwrap()])
    .assert()
    .success()
    .get_output()
    .stdout
    .clone();
    let settings: Value = serde_json::from_slice(&output).unwrap();
    assert_eq!(settings["tls"][0]["client_auth"], "none");
    assert_eq!(settings["tls"].as_array().map(Vec::len), Some(1));
}

#[test]
fn bad_tls_listeners_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_certificates(dir.path());

    // A certificate file that is not there: both files are named.
    let config = write_config(
        dir.path(),
        &TLS_CONFIG.replace("certs/server.pem", "certs/missing.pem"),
    );
    let output = serve(&["--config", &config, "--check"])
        .assert()
        .failure()
        .get_output()
        .stderr
        .clone();
    let stderr = String::from_utf8_lossy(&output);
    assert!(stderr.contains("switchboard.toml"), "{stderr}");
    assert!(stderr.contains("missing.pem"), "{stderr}");

    // Client certificates required without a CA to check them against.
    let config = write_config(
        dir.path(),
        &TLS_CONFIG
            .replace("\"optional\"", "\"required\"")
            .replace("client_ca = \"certs/ca.pem\"\n", ""),
    );
    let output = serve(&["--config", &config, "--check"])
        .assert()
        .failure()
        .get_output()
        .stderr
        .clone();
    let stderr = String::from_utf8_lossy(&output);
    assert!(stderr.contains("switchboard.toml"), "{stderr}");
    assert!(stderr.contains("needs client_ca"), "{stderr}");

    // A policy that does not exist, with its line and column.
    let config = write_config(dir.path(), &TLS_CONFIG.replace("\"optional\"", "\"maybe\""));
    let output = serve(&["--config", &config, "--check"])
        .assert()
        .failure()
        .get_output()
        .stderr
        .clone();
    let stderr = String::from_utf8_lossy(&output);
    assert!(stderr.contains("switchboard.toml:13:"), "{stderr}");
    assert!(stderr.contains("none, optional, required"), "{stderr}");

    // And --tls without its certificate is a usage error.
    serve(&["--memory", "--tls", "127.0.0.1:0"])
        .assert()
        .failure();
}

#[test]
fn a_server_serves_tls_as_its_config_file_says() {
    let dir = tempfile::tempdir().unwrap();
    let certs = write_certificates(dir.path());
    let config = write_config(dir.path(), TLS_CONFIG);
    let mut server = StdCommand::new(support::BIN)
        .env_remove("SWITCHBOARD_DATA_DIR")
        .args(["serve", "--no-http", "--config", &config])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("serve prints its addresses").unwrap();
        if let Some(addr) = line.strip_prefix("switchboard listening on tls://") {
            break addr.to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let ca = certs.join("ca.pem");
    support::cli_at(&format!("tls://{addr}"), "reader")
        .args(["--ca-file", ca.to_str().unwrap(), "channels"])
        .assert()
        .success();
    let _ = server.kill();
    let _ = server.wait();
}
