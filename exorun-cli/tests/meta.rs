//! Managing a running runtime across real processes: `exorun serve --manage` (auth and meta
//! over tls://), `exorun deploy`, `ps` and `stop` from other processes, and a consumer process
//! that calls what was deployed. Without a capability, or with one for another name prefix,
//! every operation is refused and nothing changes; a malformed component, a link that does not
//! fit and a name taken are refused with their reasons; two deploys of one name at once leave
//! one; a runtime with `--state` comes back with what was deployed after SIGTERM and SIGKILL.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::path::Path;
use std::path::PathBuf;
use std::process::Output;

use common::Server;
use common::manifest;
use common::run;
use common::text;
use exorun_testkit::fixtures;

fn dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("exorun-cli-meta-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(format!("{name}.key"));
    let _ = std::fs::remove_file(&path);
    let output = run(&["keygen", "--out", path.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    (path, text(&output.stdout).trim().to_owned())
}

/// A managed runtime, its keys, and how to reach it.
struct Managed {
    server: Server,
    dir: PathBuf,
    server_key: PathBuf,
    server_public: String,
    operator: PathBuf,
    operator_public: String,
}

impl Managed {
    fn start(tag: &str, state: Option<&Path>) -> Self {
        let dir = dir(tag);
        let (server_key, server_public) = keygen(&dir, "server");
        let (operator, operator_public) = keygen(&dir, "operator");
        let server = serve(
            &dir,
            &server_key,
            &operator_public,
            state,
            "tls://127.0.0.1:0",
        );
        Self {
            server,
            dir,
            server_key,
            server_public,
            operator,
            operator_public,
        }
    }

    /// Stops the server with `signal` and starts it again on the same address with `state`;
    /// the stopped process's output.
    fn restart(self, signal: &str, state: &Path) -> (Self, Output) {
        let address = self.server.address.clone();
        self.server.signal(signal);
        let (output, _) = self.server.exit_within(common::WAIT);
        let server = serve(
            &self.dir,
            &self.server_key,
            &self.operator_public,
            Some(state),
            &address,
        );
        (Self { server, ..self }, output)
    }

    /// `exorun COMMAND ARGS… --at … --peer-key … --key KEY [--capability CAP]`.
    fn as_key(&self, key: &Path, capability: Option<&Path>, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&[
            "--at",
            &self.server.address,
            "--peer-key",
            &self.server_public,
        ]);
        all.extend_from_slice(&["--key", key.to_str().unwrap()]);
        if let Some(capability) = capability {
            all.extend_from_slice(&["--capability", capability.to_str().unwrap()]);
        }
        run(&all)
    }

    fn operator(&self, args: &[&str]) -> Output {
        self.as_key(&self.operator, None, args)
    }

    /// The names `exorun ps` lists for the operator.
    fn names(&self) -> Vec<String> {
        let listed = self.operator(&["ps"]);
        assert!(listed.status.success(), "{}", text(&listed.stderr));
        let lines = text(&listed.stdout);
        let names = lines
            .lines()
            .skip(1)
            .filter_map(|line| line.split('\t').next());
        names.map(str::to_owned).collect()
    }

    /// `exorun run` of a consumer whose `calc` calls `math` on this runtime.
    fn consume(&self) -> Output {
        let body = r#"
key = "KEY"
[apps]
math-consumer = "{fixtures}/math-consumer.wasm"
[peers]
managed = { address = "ADDRESS", key = "PIN" }
[instances.calc]
app = "math-consumer"
links = { "exorun:test/math" = { remote = "managed", target = "math" } }
"#
        .replace("KEY", self.operator.to_str().unwrap())
        .replace("ADDRESS", &self.server.address)
        .replace("PIN", &self.server_public);
        // One manifest per managed runtime: tests run at once, and one test's manifest must
        // not name another's server.
        let tag = self.dir.file_name().unwrap().to_str().unwrap();
        let consumer = manifest(&format!("consumer-{tag}"), &body);
        run(&["run", consumer.to_str().unwrap()])
    }
}

fn serve(dir: &Path, key: &Path, operator: &str, state: Option<&Path>, listen: &str) -> Server {
    let empty = dir.join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let mut args = vec![
        "--manage",
        "--operator",
        operator,
        "--key",
        key.to_str().unwrap(),
        "--listen",
        listen,
    ];
    if let Some(state) = state {
        args.extend_from_slice(&["--state", state.to_str().unwrap()]);
    }
    Server::start_with(&empty, &args)
}

fn math_provider() -> String {
    fixtures::path("math-provider")
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn a_deployed_provider_is_called_from_another_process_until_it_is_stopped() {
    let managed = Managed::start("cycle", None);
    let provider = math_provider();
    let deployed = managed.operator(&["deploy", &provider, "--name", "math", "--export"]);
    assert!(deployed.status.success(), "{}", text(&deployed.stderr));
    assert_eq!(
        text(&deployed.stdout),
        "deployed math\n  exports exorun:test/math\n"
    );
    let called = managed.consume();
    assert!(called.status.success(), "{}", text(&called.stderr));
    assert_eq!(text(&called.stdout), "calc: \"10 + 5 = 15\"\n");
    let listed = managed.operator(&["ps"]);
    let listed = text(&listed.stdout);
    assert!(
        listed.contains("math\tmath\trunning\ttrue\t1\t0\t1\n"),
        "{listed}"
    );
    // The same name again is refused; the first keeps running.
    let again = managed.operator(&["deploy", &provider, "--name", "math", "--export"]);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(
        text(&again.stderr),
        "exorun: refused: an instance named `math` already exists\n"
    );
    let stopped = managed.operator(&["stop", "math"]);
    assert!(stopped.status.success(), "{}", text(&stopped.stderr));
    assert_eq!(text(&stopped.stdout), "stopped math\n");
    let gone = managed.consume();
    assert_eq!(gone.status.code(), Some(1));
    let stderr = text(&gone.stderr);
    assert!(
        stderr.contains("no instance `math` is exported"),
        "{stderr}"
    );
    assert_eq!(managed.names(), ["exorun-auth", "meta"]);
    let (status, stderr) = managed.server.interrupt();
    assert!(status.success(), "{stderr}");
}

/// `deploy`, `ps` and `stop` by `stranger`, who presents nothing: each refused by the guard.
fn refused_without_a_capability(managed: &Managed, stranger: &Path, provider: &str) {
    let no_capability = "this caller may not call `exorun:meta/manage` on `meta`: no capability \
                         was presented";
    for args in [
        vec!["deploy", provider, "--name", "math", "--export"],
        vec!["ps"],
        vec!["stop", "meta"],
    ] {
        let refused = managed.as_key(stranger, None, &args);
        assert_eq!(refused.status.code(), Some(1), "{args:?}");
        let stderr = text(&refused.stderr);
        assert!(stderr.contains(no_capability), "{args:?}: {stderr}");
    }
}

/// `exorun cap ARGS… MORE… --out FILE` (an old FILE removed first).
fn cap_file(file: &Path, args: &[&str], more: &[&str]) {
    let _ = std::fs::remove_file(file);
    let mut all = vec!["cap"];
    all.extend_from_slice(args);
    all.extend_from_slice(more);
    all.extend_from_slice(&["--out", file.to_str().unwrap()]);
    let made = run(&all);
    assert!(made.status.success(), "{}", text(&made.stderr));
}

#[test]
fn without_a_capability_or_outside_its_prefix_nothing_changes() {
    let managed = Managed::start("denied", None);
    let (stranger, stranger_public) = keygen(&managed.dir, "stranger");
    let provider = math_provider();
    refused_without_a_capability(&managed, &stranger, &provider);
    // A capability for every meta function, but only under `team-`.
    let capability = managed.dir.join("team.cap");
    let operator = managed.operator.to_str().unwrap();
    let allow = [
        "--allow",
        "meta/exorun:meta/manage",
        "--caveat",
        "prefix=team-",
    ];
    cap_file(
        &capability,
        &["issue", "--key", operator, "--to", &stranger_public],
        &allow,
    );
    let team = |args: &[&str]| managed.as_key(&stranger, Some(&capability), args);
    let outside = team(&["deploy", &provider, "--name", "math", "--export"]);
    assert_eq!(
        text(&outside.stderr),
        "exorun: permission denied: `math` is outside the names granted (`team-`…)\n"
    );
    let stop_meta = team(&["stop", "meta"]);
    assert_eq!(
        text(&stop_meta.stderr),
        "exorun: permission denied: `meta` is outside the names granted (`team-`…)\n"
    );
    assert_eq!(managed.names(), ["exorun-auth", "meta"]);
    // A size caveat: this capability takes components of at most 1,000 bytes.
    let small = managed.dir.join("small.cap");
    let (team_file, stranger_file) = (capability.to_str().unwrap(), stranger.to_str().unwrap());
    let args = [
        "delegate",
        team_file,
        "--key",
        stranger_file,
        "--to",
        &stranger_public,
    ];
    cap_file(&small, &args, &["--caveat", "bytes-max=1000"]);
    let size = std::fs::metadata(&provider).unwrap().len();
    let args = [
        "deploy",
        provider.as_str(),
        "--name",
        "team-big",
        "--export",
    ];
    let too_big = managed.as_key(&stranger, Some(&small), &args);
    assert_eq!(
        text(&too_big.stderr),
        format!(
            "exorun: permission denied: a component of {size} bytes is over the 1000 granted\n"
        )
    );
    let inside = team(&["deploy", &provider, "--name", "team-math", "--export"]);
    assert!(inside.status.success(), "{}", text(&inside.stderr));
    let listed = team(&["ps"]);
    let lines: Vec<String> = text(&listed.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[1].starts_with("team-math\t"), "{lines:?}");
    let (status, stderr) = managed.server.interrupt();
    assert!(status.success(), "{stderr}");
}

#[test]
fn bad_components_links_and_names_are_refused_with_their_reasons() {
    let managed = Managed::start("refused", None);
    let bad = managed.dir.join("bad.wasm");
    std::fs::write(&bad, b"\0asm not really").unwrap();
    let malformed = managed.operator(&["deploy", bad.to_str().unwrap(), "--name", "bad"]);
    assert_eq!(malformed.status.code(), Some(1));
    let stderr = text(&malformed.stderr);
    assert!(
        stderr.starts_with("exorun: refused: app `bad` is not a valid component: "),
        "{stderr}"
    );
    let consumer = fixtures::path("math-consumer").unwrap();
    let consumer = consumer.to_str().unwrap();
    let link = r#"exorun:test/math={ system = "logging" }"#;
    let unfit = managed.operator(&["deploy", consumer, "--name", "calc", "--link", link]);
    assert_eq!(unfit.status.code(), Some(1));
    let stderr = text(&unfit.stderr);
    assert!(
        stderr.starts_with("exorun: refused: instances.calc.links.\"exorun:test/math\": "),
        "{stderr}"
    );
    // A remote link to an address of its own choosing (a plaintext runtime on a socket, any
    // port of the host) is refused at deploy: a deployed instance names a declared peer.
    let private = managed.dir.join("private.sock");
    for address in [
        format!("unix://{}", private.display()),
        "tcp://127.0.0.1:22".to_owned(),
    ] {
        let link = format!(r#"exorun:test/math={{ remote = "{address}", target = "math" }}"#);
        let reaching = managed.operator(&["deploy", consumer, "--name", "calc", "--link", &link]);
        assert_eq!(reaching.status.code(), Some(1));
        assert_eq!(
            text(&reaching.stderr),
            format!(
                "exorun: refused: instances.calc.links.\"exorun:test/math\": a deployed instance \
                 may not use a remote link to `{address}`, which is not a peer the operator \
                 declared (a deployed instance names a declared peer, never an address)\n"
            )
        );
    }
    // Past the 16 MiB a deploy may carry: refused before anything is sent.
    let huge = managed.dir.join("huge.wasm");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len((16 << 20) + 1)
        .unwrap();
    let oversized = managed.operator(&["deploy", huge.to_str().unwrap(), "--name", "huge"]);
    assert_eq!(
        text(&oversized.stderr),
        format!(
            "exorun: {} is 16777217 bytes, over the limit of 16777216\n",
            huge.display()
        )
    );
    let named = managed.operator(&["deploy", &math_provider(), "--name", "a.b"]);
    assert_eq!(
        text(&named.stderr),
        "exorun: refused: `a.b` is not a name: 1 to 64 letters, digits, `-` and `_`\n"
    );
    assert_eq!(managed.names(), ["exorun-auth", "meta"]);
    let (status, stderr) = managed.server.interrupt();
    assert!(status.success(), "{stderr}");
}

#[test]
fn two_deploys_of_one_name_at_once_leave_one() {
    let managed = Managed::start("race", None);
    let provider = math_provider();
    let args = ["deploy", provider.as_str(), "--name", "math", "--export"];
    let outputs: Vec<Output> = std::thread::scope(|scope| {
        let first = scope.spawn(|| managed.operator(&args));
        let second = scope.spawn(|| managed.operator(&args));
        vec![first.join().unwrap(), second.join().unwrap()]
    });
    let succeeded = outputs
        .iter()
        .filter(|output| output.status.success())
        .count();
    assert_eq!(
        succeeded,
        1,
        "{:?}",
        outputs.iter().map(|o| text(&o.stderr)).collect::<Vec<_>>()
    );
    assert_eq!(managed.names(), ["exorun-auth", "meta", "math"]);
    let (status, stderr) = managed.server.interrupt();
    assert!(status.success(), "{stderr}");
}

#[test]
fn a_runtime_with_state_comes_back_with_what_was_deployed() {
    let state = dir("state").join("kept");
    let _ = std::fs::remove_dir_all(&state);
    let managed = Managed::start("state", Some(&state));
    let provider = math_provider();
    let deployed = managed.operator(&["deploy", &provider, "--name", "math", "--export"]);
    assert!(deployed.status.success(), "{}", text(&deployed.stderr));
    // SIGKILL: nothing is written on the way out; what was kept was kept when deployed.
    let (managed, _) = managed.restart("-KILL", &state);
    let called = managed.consume();
    assert!(called.status.success(), "{}", text(&called.stderr));
    assert_eq!(text(&called.stdout), "calc: \"10 + 5 = 15\"\n");
    // SIGTERM: a clean stop, and the same again.
    let (managed, output) = managed.restart("-TERM", &state);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(managed.names(), ["exorun-auth", "meta", "math"]);
    let stopped = managed.operator(&["stop", "math"]);
    assert!(stopped.status.success(), "{}", text(&stopped.stderr));
    assert!(!state.join("instances/math.toml").exists());
    let (status, stderr) = managed.server.interrupt();
    assert!(status.success(), "{stderr}");
}

/// `exorun serve --manage --state STATE` that must refuse to start: its stderr, once it exited
/// (within `common::WAIT`, a FIFO or a device in the state directory included).
fn refused_state(tag: &str, state: &Path) -> String {
    let dir = dir(tag);
    let (key, _) = keygen(&dir, "server");
    let (_, operator) = keygen(&dir, "operator");
    let empty = dir.join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let child = common::exorun()
        .args([
            "serve",
            empty.to_str().unwrap(),
            "--manage",
            "--operator",
            &operator,
        ])
        .args([
            "--key",
            key.to_str().unwrap(),
            "--listen",
            "tls://127.0.0.1:0",
        ])
        .args(["--state", state.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (output, _) = common::exit_within(child, common::WAIT);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    text(&output.stderr)
}

#[test]
fn a_state_directory_is_read_as_untrusted_files_are() {
    // A device where an app was kept (it would never end) and a FIFO where an instance's
    // settings were (its open would wait for ever): refused at start, each named.
    let state = dir("hostile-state").join("kept");
    let _ = std::fs::remove_dir_all(&state);
    for sub in ["apps", "instances"] {
        std::fs::create_dir_all(state.join(sub)).unwrap();
    }
    std::os::unix::fs::symlink("/dev/zero", state.join("apps/zero.wasm")).unwrap();
    std::fs::write(state.join("instances/zero.toml"), "app = \"zero\"\n").unwrap();
    let stderr = refused_state("hostile-state", &state);
    let zero = state.join("apps/zero.wasm");
    assert!(
        stderr.contains(&format!(
            "cannot restore `zero`: {} is not a regular file",
            zero.display()
        )),
        "{stderr}"
    );
    std::fs::remove_file(&zero).unwrap();
    std::fs::remove_file(state.join("instances/zero.toml")).unwrap();
    std::fs::copy(math_provider(), state.join("apps/piped.wasm")).unwrap();
    let fifo = state.join("instances/piped.toml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let stderr = refused_state("hostile-state-fifo", &state);
    assert!(
        stderr.contains(&format!(
            "cannot restore `piped`: {} is not a regular file",
            fifo.display()
        )),
        "{stderr}"
    );
}

#[test]
fn a_deploy_never_writes_through_a_planted_link() {
    let state = dir("planted").join("kept");
    let _ = std::fs::remove_dir_all(&state);
    let managed = Managed::start("planted", Some(&state));
    // A link planted where the deploy writes its component before renaming it into place.
    let outside = managed.dir.join("outside.txt");
    std::fs::write(&outside, "keep me").unwrap();
    let _ = std::fs::remove_file(state.join("apps/math.wasm.partial"));
    std::os::unix::fs::symlink(&outside, state.join("apps/math.wasm.partial")).unwrap();
    let provider = math_provider();
    let deployed = managed.operator(&["deploy", &provider, "--name", "math", "--export"]);
    assert!(deployed.status.success(), "{}", text(&deployed.stderr));
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep me");
    let kept = std::fs::symlink_metadata(state.join("apps/math.wasm")).unwrap();
    assert!(
        kept.is_file(),
        "the component was written as a file of the state directory"
    );
    // A legitimate caller is answered meanwhile.
    let called = managed.consume();
    assert!(called.status.success(), "{}", text(&called.stderr));
    let (status, stderr) = managed.server.interrupt();
    assert!(status.success(), "{stderr}");
}
