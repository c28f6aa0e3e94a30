//! A real `nats-server` process for tests, on a random loopback port (shared by the
//! exorun-transport and exorun-cli suites through `#[path]`). A test that needs one fails, with
//! the reason, when the binary is missing: the test script installs it (Debian `nats-server`).

#![allow(dead_code, reason = "each suite uses a different subset")]
#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

use std::io::BufRead;
use std::io::BufReader;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;

/// A running nats-server, killed when dropped.
pub struct NatsServer {
    child: Child,
    /// `nats://127.0.0.1:PORT`.
    pub url: String,
    /// Its cluster (route) URL, when it was started with one.
    pub cluster: Option<String>,
    /// Its log lines after startup, for tests that look for route events.
    log: Option<std::sync::mpsc::Receiver<String>>,
}

impl NatsServer {
    /// A server with `args` added (auth, routes, a config file).
    pub fn start(args: &[&str]) -> Self {
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

    /// Waits (at most 10 s) for a log line containing `text`.
    pub fn wait_for_log(&mut self, text: &str) -> bool {
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
