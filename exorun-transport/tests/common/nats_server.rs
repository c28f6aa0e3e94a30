//! A real `nats-server` process for tests, on a random loopback port (shared by the
//! exorun-transport and exorun-cli suites through `#[path]`). A test that needs one fails, with
//! the reason, when the binary is missing: the test script installs it (Debian `nats-server`).

#![allow(dead_code, reason = "each suite uses a different subset")]
#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

use std::io::BufRead;
use std::io::BufReader;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;

/// A running nats-server, killed when dropped.
pub(crate) struct NatsServer {
    child: Child,
    /// `nats://127.0.0.1:PORT`.
    pub(crate) url: String,
    /// Its cluster (route) URL, when it was started with one.
    pub(crate) cluster: Option<String>,
    /// Its log lines after startup, for tests that look for route events.
    log: Option<std::sync::mpsc::Receiver<String>>,
}

impl NatsServer {
    /// A server with `args` added (auth, routes, a config file).
    pub(crate) fn start(args: &[&str]) -> Self {
        let spawned = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", "-1"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = spawned.unwrap_or_else(|error| {
            panic!(
                "cannot start nats-server ({error}); `bash scripts/test_exorun.sh` installs it \
                 (Debian package nats-server)"
            )
        });
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let (mut url, mut cluster, mut ready) = (None, None, false);
        // With a cluster port, it is announced just after "Server is ready".
        let clustered = args.contains(&"--cluster");
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some((_, at)) = line.split_once("Listening for client connections on ") {
                url = Some(format!("nats://{}", at.trim()));
            }
            if let Some((_, at)) = line.split_once("Listening for route connections on ") {
                cluster = Some(format!("nats://{}", at.trim()));
            }
            ready |= line.contains("Server is ready");
            if ready && (!clustered || cluster.is_some()) {
                break;
            }
            assert!(!line.contains("[FTL]"), "nats-server failed: {line}");
        }
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Ends when the server's stderr closes or nobody listens any more.
            let _ = lines
                .map_while(Result::ok)
                .try_for_each(|line| sender.send(line));
        });
        Self {
            child,
            url: url.expect("nats-server reported no client port"),
            cluster,
            log: Some(receiver),
        }
    }

    /// Waits, at most `within`, until log lines containing each of `texts` have come (in any
    /// order); whether they all did.
    pub(crate) fn wait_for_all(&mut self, texts: &[&str], within: std::time::Duration) -> bool {
        let Some(log) = &self.log else {
            return false;
        };
        let mut missing: Vec<&str> = texts.to_vec();
        let deadline = std::time::Instant::now() + within;
        while !missing.is_empty() {
            let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) else {
                return false;
            };
            let Ok(line) = log.recv_timeout(left) else {
                return false;
            };
            missing.retain(|text| !line.contains(text));
        }
        true
    }

    /// Waits (at most 10 s) for a log line containing `text`.
    pub(crate) fn wait_for_log(&mut self, text: &str) -> bool {
        let Some(log) = &self.log else {
            return false;
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match log.recv_timeout(left) {
                Ok(line) if line.contains(text) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test CA and a server certificate it issued for `127.0.0.1` and `localhost`, written as
/// PEM files in a fresh directory: (CA certificate, server certificate, server key).
pub(crate) fn tls_files(name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("exorun-nats-tls-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let server_key = rcgen::KeyPair::generate().unwrap();
    let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    let server_cert = rcgen::CertificateParams::new(names)
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let files = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&files.0, ca_cert.pem()).unwrap();
    std::fs::write(&files.1, server_cert.pem()).unwrap();
    std::fs::write(&files.2, server_key.serialize_pem()).unwrap();
    files
}
