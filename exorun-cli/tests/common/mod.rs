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

use exorun_core::fixtures;

/// The real binary, logging at `warn`.
pub fn exorun() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_exorun"));
    command.env("RUST_LOG", "warn");
    command
}

/// The repository's `examples/` directory.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the binary to completion.
pub fn run(args: &[&str]) -> Output {
    exorun().args(args).output().unwrap()
}

/// A scratch directory with `name.toml` holding `body`, where `{fixtures}` is the fixtures dir.
pub fn manifest(name: &str, body: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("exorun-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    let fixtures = fixtures::dir().display().to_string();
    std::fs::write(&path, body.replace("{fixtures}", &fixtures)).unwrap();
    path
}

/// A manifest that exports math-provider as `math`.
pub const PROVIDER: &str = r#"
[apps]
math-provider = "{fixtures}/math-provider.wasm"
[instances.math]
app = "math-provider"
export = true
"#;

/// Runs `exorun run` on a manifest and returns its stderr (the manifest's path shown as `M`),
/// asserting exit code 1 and that nothing ran.
pub fn refused(name: &str, body: &str) -> String {
    let path = manifest(name, body);
    let output = run(&["run", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stdout));
    assert!(output.stdout.is_empty(), "nothing ran");
    text(&output.stderr).replace(&path.display().to_string(), "M")
}

/// A running `exorun serve` and the address it reported.
pub struct Server {
    /// The server process.
    pub child: Child,
    /// The address it listens on.
    pub address: String,
}

impl Server {
    /// Starts `exorun serve MANIFEST --listen LISTEN` and waits for its address.
    pub fn start(manifest: &Path, listen: &str) -> Self {
        Self::start_logging(manifest, listen, "warn")
    }

    /// `start`, logging at `filter`.
    pub fn start_logging(manifest: &Path, listen: &str, filter: &str) -> Self {
        Self::start_args(manifest, &["--listen", listen], filter)
    }

    /// Starts `exorun serve MANIFEST ARGS...` (logging at `warn`).
    pub fn start_with(manifest: &Path, args: &[&str]) -> Self {
        Self::start_args(manifest, args, "warn")
    }

    /// Starts `exorun serve MANIFEST ARGS...`, logging at `filter`.
    pub fn start_args(manifest: &Path, args: &[&str], filter: &str) -> Self {
        let mut child = exorun()
            .env("RUST_LOG", filter)
            .arg("serve")
            .arg(manifest)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().unwrap().unwrap();
        let address = first
            .strip_prefix("exorun: listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .to_owned();
        let serving = lines.next().unwrap().unwrap();
        assert!(serving.starts_with("exorun: serving "), "{serving}");
        Self { child, address }
    }

    /// Sends `signal` (`-INT`, `-TERM`) to the server.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(sent.success());
    }

    /// Reads the server's stderr until a line starts with `start`; `false` if it ends first.
    /// (This takes the stderr pipe: `wait_with_output` then shows no stderr.)
    pub fn wait_for_stderr(&mut self, start: &str) -> bool {
        let Some(stderr) = self.child.stderr.take() else {
            return false;
        };
        let mut lines = BufReader::new(stderr).lines();
        let found = lines
            .by_ref()
            .any(|line| line.is_ok_and(|line| line.starts_with(start)));
        // The rest is drained, so the server never writes to a closed pipe.
        std::thread::spawn(move || lines.for_each(drop));
        found
    }

    /// Sends SIGINT and returns the exit status and stderr.
    pub fn interrupt(self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(killed.success());
        let output = self.child.wait_with_output().unwrap();
        (output.status, text(&output.stderr))
    }
}
