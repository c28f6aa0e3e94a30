//! Helpers shared by the CLI suites: the real binary, the examples, scratch manifests.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.
#![allow(
    dead_code,
    reason = "each suite uses a different subset of the helpers"
)]

use std::io::BufRead;
use std::io::BufReader;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Output;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;
use std::time::Instant;

use exorun_testkit::fixtures;

/// The longest a test waits for a process to say or do something (print its address, log a
/// line, exit): far past anything a loaded 2-core machine needs, yet a broken server fails the
/// test instead of hanging it.
pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// A process's output lines, read on a thread of their own so a test waits for one with a
/// deadline (`WAIT`) instead of blocking on the pipe.
pub(crate) struct Lines(mpsc::Receiver<String>);

impl Lines {
    /// Starts reading `reader` line by line.
    pub(crate) fn new(reader: impl std::io::Read + Send + 'static) -> Self {
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || forward_lines(reader, &sender));
        Self(receiver)
    }

    /// The next line; `None` once the stream ended. Panics naming `what` past `WAIT`.
    pub(crate) fn next_line(&self, what: &str) -> Option<String> {
        match self.0.recv_timeout(WAIT) {
            Ok(line) => Some(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("waited {WAIT:?} for {what}"),
        }
    }

    /// The first line that `wanted` accepts, within `WAIT` in all; `None` if the stream ended
    /// first. The lines before it are returned too.
    pub(crate) fn find(
        &self,
        what: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> (Option<String>, Vec<String>) {
        let deadline = Instant::now() + WAIT;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.0.recv_timeout(left) {
                Ok(line) if wanted(&line) => return (Some(line), before),
                Ok(line) => before.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => return (None, before),
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("waited {WAIT:?} for {what}"),
            }
        }
    }

    /// Every line until the stream ends, within `WAIT`.
    pub(crate) fn rest(self) -> Vec<String> {
        let (_, lines) = self.find("the end of the output", |_| false);
        lines
    }
}

/// Sends each line of `reader` until it ends or nobody listens.
fn forward_lines(reader: impl std::io::Read, sender: &mpsc::Sender<String>) {
    let lines = BufReader::new(reader).lines().map_while(Result::ok);
    for line in lines {
        if sender.send(line).is_err() {
            return;
        }
    }
}

/// Waits for `child` to exit, at most `within`, and returns its output (what was not taken).
pub(crate) fn exit_within(child: Child, within: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    let output = receiver
        .recv_timeout(within)
        .expect("the process exited in time");
    (output.unwrap(), started.elapsed())
}

/// The real binary, logging at `warn`.
pub(crate) fn exorun() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_exorun"));
    command.env("RUST_LOG", "warn");
    command
}

/// The repository's `examples/` directory.
pub(crate) fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// Output bytes as text.
pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the binary to completion.
pub(crate) fn run(args: &[&str]) -> Output {
    exorun().args(args).output().unwrap()
}

/// A scratch directory with `name.toml` holding `body`, where `{fixtures}` is the fixtures dir.
pub(crate) fn manifest(name: &str, body: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("exorun-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    let fixtures = fixtures::dir().display().to_string();
    std::fs::write(&path, body.replace("{fixtures}", &fixtures)).unwrap();
    path
}

/// A manifest that exports math-provider as `math`.
pub(crate) const PROVIDER: &str = r#"
[apps]
math-provider = "{fixtures}/math-provider.wasm"
[instances.math]
app = "math-provider"
export = true
"#;

/// Runs `exorun run` on a manifest and returns its stderr (the manifest's path shown as `M`),
/// asserting exit code 1 and that nothing ran.
pub(crate) fn refused(name: &str, body: &str) -> String {
    let path = manifest(name, body);
    let output = run(&["run", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stdout));
    assert!(output.stdout.is_empty(), "nothing ran");
    text(&output.stderr).replace(&path.display().to_string(), "M")
}

/// `exorun serve MANIFEST ARGS...` logging at `filter`, started: the process (stderr piped)
/// and its stdout's lines.
pub(crate) fn spawn_serve(manifest: &Path, args: &[&str], filter: &str) -> (Child, Lines) {
    let mut child = exorun()
        .env("RUST_LOG", filter)
        .arg("serve")
        .arg(manifest)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::new(child.stdout.take().unwrap());
    (child, lines)
}

/// A running `exorun serve` and the address it reported.
pub(crate) struct Server {
    /// The server process.
    pub(crate) child: Child,
    /// Kills the server if the test ends (or panics) without stopping it.
    reaper: Reaper,
    /// The address it listens on.
    pub(crate) address: String,
}

impl Server {
    /// Starts `exorun serve MANIFEST --listen LISTEN` and waits for its address.
    pub(crate) fn start(manifest: &Path, listen: &str) -> Self {
        Self::start_logging(manifest, listen, "warn")
    }

    /// `start`, logging at `filter`.
    pub(crate) fn start_logging(manifest: &Path, listen: &str, filter: &str) -> Self {
        Self::start_args(manifest, &["--listen", listen], filter)
    }

    /// Starts `exorun serve MANIFEST ARGS...` (logging at `warn`).
    pub(crate) fn start_with(manifest: &Path, args: &[&str]) -> Self {
        Self::start_args(manifest, args, "warn")
    }

    /// Starts `exorun serve MANIFEST ARGS...`, logging at `filter`.
    pub(crate) fn start_args(manifest: &Path, args: &[&str], filter: &str) -> Self {
        let (child, lines) = spawn_serve(manifest, args, filter);
        let first = lines.next_line("the server's address").unwrap();
        let address = first
            .strip_prefix("exorun: listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .to_owned();
        let serving = lines.next_line("the server's exports").unwrap();
        assert!(serving.starts_with("exorun: serving "), "{serving}");
        let reaper = Reaper {
            pid: child.id(),
            armed: true,
        };
        Self {
            child,
            address,
            reaper,
        }
    }

    /// A server process started some other way, listening on `address`.
    pub(crate) fn from_child(child: Child, address: &str) -> Self {
        let reaper = Reaper {
            pid: child.id(),
            armed: true,
        };
        Self {
            child,
            address: address.to_owned(),
            reaper,
        }
    }

    /// Sends `signal` (`-INT`, `-TERM`) to the server.
    pub(crate) fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(sent.success());
    }

    /// The server's stderr, line by line (this takes the pipe: `exit_within` then shows no
    /// stderr). Its reader thread keeps draining it, so the server never writes to a closed
    /// pipe.
    pub(crate) fn stderr_lines(&mut self) -> Lines {
        Lines::new(self.child.stderr.take().unwrap())
    }

    /// Reads the server's stderr until a line starts with `start` (within `WAIT`); `false` if
    /// it ends first.
    pub(crate) fn wait_for_stderr(&mut self, start: &str) -> bool {
        let lines = self.stderr_lines();
        let (found, _) = lines.find(start, |line| line.starts_with(start));
        // The reader thread drains the rest on its own.
        found.is_some()
    }

    /// Waits at most `within` for the server to exit.
    pub(crate) fn exit_within(mut self, within: Duration) -> (Output, Duration) {
        self.reaper.armed = false;
        exit_within(self.child, within)
    }

    /// Sends SIGINT and returns the exit status and stderr (within `WAIT`).
    pub(crate) fn interrupt(self) -> (std::process::ExitStatus, String) {
        self.signal("-INT");
        let (output, _) = self.exit_within(WAIT);
        (output.status, text(&output.stderr))
    }
}

/// A server process that must not outlive its test: a test that fails before stopping it would
/// leave it running (and holding a port) for every test and benchmark after.
struct Reaper {
    pid: u32,
    armed: bool,
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let pid = self.pid.to_string();
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
    }
}

/// A neorpc client of a plaintext `address` (`tcp://…`, `unix://…`), with the default client
/// settings.
pub(crate) async fn client_of(address: &str) -> exorun_transport::client::Client {
    use exorun_transport::client;
    let parsed = exorun_transport::address::Address::parse(address).unwrap();
    let max = exorun_transport::transport::MESSAGE_BYTES_MAX;
    let connection = exorun_transport::net::connect(&parsed, max).await.unwrap();
    client::Client::new(connection, client::Config::default())
}

/// A blocking TCP connection to `address` (`HOST:PORT`) from the loopback address `source`, so
/// per-source bounds count it apart; its receive buffer `receive_bytes` if given (as small as
/// the kernel allows, for a client that does not read).
pub(crate) fn connect_from(
    source: &str,
    address: &str,
    receive_bytes: Option<u32>,
) -> std::net::TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let connected = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        if let Some(bytes) = receive_bytes {
            socket.set_recv_buffer_size(bytes)?;
        }
        socket.bind(std::net::SocketAddr::new(source.parse().unwrap(), 0))?;
        socket.connect(address.parse().unwrap()).await?.into_std()
    });
    let stream = connected.unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}
