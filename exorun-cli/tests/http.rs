//! `exorun serve --http`: a `wasi:http` handler whose `math` import is served by another
//! `exorun serve` process, fetched by curl over plaintext and TLS; a trapping handler's 500
//! and the request after it; a missing route's 404; outgoing requests refused or allowed by
//! the manifest; and hostile clients (a head that never ends, a body past its bound, a flood of
//! connections, a request past the in-flight bound), each bounded while a legitimate request
//! still gets its answer.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::io::Read;
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;
use std::time::Instant;

use common::Server;
use common::exorun;
use common::manifest;
use common::text;

/// `exorun serve MANIFEST ARGS...`: the server and its first `--http` address
/// (`IP:PORT`), read from what it prints.
fn serve_http(manifest: &Path, args: &[&str]) -> (Server, String) {
    let (child, lines) = common::spawn_serve(manifest, args, "warn");
    let mut http = None;
    loop {
        let line = lines.next_line("the server's addresses").unwrap();
        if line.starts_with("exorun: serving ") {
            break;
        }
        let address = line
            .strip_prefix("exorun: http on http://")
            .or_else(|| line.strip_prefix("exorun: http on https://"));
        if let (Some(address), None) = (address, &http) {
            http = Some(address.to_owned());
        }
    }
    let http = http.unwrap();
    (Server::from_child(child, &http), http)
}

/// A provider of `math` in a process of its own.
fn provider() -> Server {
    let provider = manifest("http-math", common::PROVIDER);
    Server::start(&provider, "tcp://127.0.0.1:0")
}

/// A manifest routing `/` to an http-handler whose `math` is remote at `math_at`, and
/// `/closed` to one with no outgoing request allowed; `/` may reach `allow`.
fn site(name: &str, math_at: &str, allow: &str) -> std::path::PathBuf {
    manifest(
        name,
        &r#"
[apps]
handler = "{fixtures}/http-handler.wasm"
[instances.site]
app = "handler"
limits = { fuel_per_call = 1000000000000 }
links = { "exorun:test/math" = { remote = "MATH", target = "math" }, "wasi:http/outgoing-handler@0.2.12" = { system = "http", allow = [ALLOW] } }
[instances.closed]
app = "handler"
links = { "exorun:test/math" = { remote = "MATH", target = "math" } }
[http]
routes = { "/" = "site", "/closed" = "closed" }
"#
        .replace("MATH", math_at)
        .replace("ALLOW", allow),
    )
}

/// `curl ARGS... URL`: the status code and the body.
fn curl(args: &[&str], url: &str) -> (u16, String) {
    let output = std::process::Command::new("curl")
        .args(["-s", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "curl {url}: {}",
        text(&output.stderr)
    );
    let shown = text(&output.stdout);
    let (body, status) = shown.rsplit_once('\n').unwrap();
    (status.parse().unwrap(), body.to_owned())
}

#[test]
fn a_handler_with_a_remote_import_answers_curl() {
    let math = provider();
    let manifest = site("http-site", &math.address, r#""127.0.0.1:*""#);
    let (server, http) = serve_http(&manifest, &["--http", "127.0.0.1:0"]);
    let url = |path: &str| format!("http://{http}{path}");
    assert_eq!(
        curl(&[], &url("/add?a=2&b=40")),
        (200, "2 + 40 = 42".to_owned())
    );
    assert_eq!(
        curl(&[], &url("/closed/add?a=1&b=2")),
        (200, "1 + 2 = 3".to_owned())
    );
    let (status, body) = curl(&[], &url("/trap"));
    assert_eq!(status, 500);
    assert!(
        body.starts_with("the handler of site failed: the guest trapped"),
        "{body}"
    );
    assert_eq!(
        curl(&[], &url("/add?a=5&b=5")),
        (200, "5 + 5 = 10".to_owned()),
        "after the trap"
    );
    let posted = curl(&["--data-binary", "0123456789"], &url("/echo"));
    assert_eq!(posted, (200, "10 bytes".to_owned()));
    // Outgoing: `/` may reach 127.0.0.1 (here, this very server); `/closed` may reach nothing.
    let fetched = curl(&[], &url(&format!("/fetch?url=http://{http}/closed/hello")));
    assert_eq!(fetched, (200, "fetched 200".to_owned()));
    let refused = curl(&[], &url(&format!("/closed/fetch?url=http://{http}/hello")));
    assert_eq!(
        refused,
        (200, "refused: ErrorCode::HttpRequestDenied".to_owned())
    );
    // Userinfo in the authority: the host after the `@` is allowed, but the client would
    // connect to the whole authority; refused, as the same value is checked and connected.
    let smuggled = format!("/fetch?url=http://127.0.0.1:9%23@{http}/closed/hello");
    assert_eq!(
        curl(&[], &url(&smuggled)),
        (200, "refused: ErrorCode::HttpRequestDenied".to_owned())
    );
    let (status, stderr) = server.interrupt();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("an outgoing request not allowed was refused"),
        "{stderr}"
    );
    drop(math);
}

#[test]
fn a_missing_route_is_404_and_tls_serves_the_same_pages() {
    let math = provider();
    let only = manifest(
        "http-only-app",
        &r#"
[apps]
handler = "{fixtures}/http-handler.wasm"
[instances.app]
app = "handler"
links = { "exorun:test/math" = { remote = "MATH", target = "math" } }
[http]
routes = { "/app" = "app" }
"#
        .replace("MATH", &math.address),
    );
    let dir = std::env::temp_dir().join(format!("exorun-http-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let certified = rcgen::generate_simple_self_signed(names).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let args = [
        "--http",
        "127.0.0.1:0",
        "--http-tls-cert",
        cert.to_str().unwrap(),
        "--http-tls-key",
        key.to_str().unwrap(),
    ];
    let (server, http) = serve_http(&only, &args);
    let trusted = ["--cacert", cert.to_str().unwrap()];
    let url = |path: &str| format!("https://{http}{path}");
    assert_eq!(
        curl(&trusted, &url("/app/add?a=3&b=4")),
        (200, "3 + 4 = 7".to_owned())
    );
    assert_eq!(
        curl(&trusted, &url("/nowhere")),
        (404, "no route for /nowhere\n".to_owned())
    );
    assert_eq!(
        curl(&trusted, &url("/apple")),
        (404, "no route for /apple\n".to_owned())
    );
    // Plain HTTP to the TLS port is no request at all.
    let plain = std::process::Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            &format!("http://{http}/app/add?a=1&b=1"),
        ])
        .output()
        .unwrap();
    assert!(!plain.status.success());
    let (status, stderr) = server.interrupt();
    assert!(status.success(), "{stderr}");
    drop(math);
}

/// Reads what the server sends until it closes the connection or `within` passes: the bytes
/// and whether it closed.
fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut seen = Vec::new();
    let mut buffer = [0; 4096];
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match stream.read(&mut buffer) {
            Ok(0) => return (text(&seen), true),
            Ok(count) => seen.extend_from_slice(&buffer[..count]),
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                return (text(&seen), true);
            }
            Err(_) => break,
        }
    }
    (text(&seen), false)
}

/// A whole request on a new connection from 127.0.0.1: the response.
fn request(http: &str, raw: &str) -> String {
    let mut stream = TcpStream::connect(http).unwrap();
    stream.write_all(raw.as_bytes()).unwrap();
    let (answer, closed) = read_until_closed(&mut stream, common::WAIT);
    assert!(closed, "{answer}");
    answer
}

fn get(http: &str, path: &str) -> String {
    request(
        http,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
}

#[test]
fn hostile_clients_are_bounded_and_a_legitimate_request_still_answers() {
    let math = provider();
    let manifest = site("http-hostile", &math.address, "");
    let args = [
        "--http",
        "127.0.0.1:0",
        "--http-head-timeout",
        "1s",
        "--http-body-max-kib",
        "64",
        "--http-max-connections-per-source",
        "4",
        "--http-max-requests",
        "1",
        "--http-request-timeout",
        "2s",
        "--http-body-timeout",
        "2s",
    ];
    let (server, http) = serve_http(&manifest, &args);
    slow_head_is_closed(&http);
    a_head_past_its_bound_is_431(&http);
    a_body_past_its_bound_is_cut(&http);
    a_flood_is_bounded(&http);
    one_request_at_once(&http);
    a_body_that_never_comes_is_408_and_a_handler_past_its_deadline_is_cut(&http);
    a_request_without_a_host_is_400(&http);
    a_cut_answer_looks_cut(&http);
    one_client_s_faults_hold_back_that_client_only(&http);
    let (status, stderr) = server.interrupt();
    assert!(status.success(), "{stderr}");
    drop(math);
}

/// A client that asks for a large answer and never reads it: the connection is closed once
/// its bytes have waited `--http-write-timeout` (1 s), long before the 60 s request deadline,
/// so the handler (blocked writing) ends and the one request slot is free again.
#[test]
fn a_client_that_never_reads_is_closed_at_the_write_deadline() {
    let math = provider();
    let manifest = site("http-stalled", &math.address, "");
    let args = [
        "--http",
        "127.0.0.1:0",
        "--http-max-requests",
        "1",
        "--http-write-timeout",
        "1s",
    ];
    let (server, http) = serve_http(&manifest, &args);
    let mut stalled = TcpStream::connect(&http).unwrap();
    let head = "GET /big?kib=16384 HTTP/1.1\r\nHost: x\r\n\r\n";
    stalled.write_all(head.as_bytes()).unwrap();
    // The answer has begun once its head arrives; from then on the client reads nothing more,
    // while the handler (holding the one request slot) still has most of 16 MiB to write.
    let mut begun = Vec::new();
    let mut buffer = [0; 1024];
    stalled.set_read_timeout(Some(common::WAIT)).unwrap();
    while !text(&begun).contains("\r\n\r\n") {
        let count = stalled.read(&mut buffer).unwrap();
        assert!(count > 0, "closed before the head: {}", text(&begun));
        begun.extend_from_slice(&buffer[..count]);
    }
    assert!(text(&begun).starts_with("HTTP/1.1 200"), "{}", text(&begun));
    // The slot comes back when the stalled connection is closed and the handler's write fails.
    let stalled_at = Instant::now();
    loop {
        let answer = get(&http, "/add?a=2&b=3");
        if answer.contains("\r\n2 + 3 = 5") {
            break;
        }
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(
            stalled_at.elapsed() < common::WAIT,
            "the stalled client held its slot"
        );
        // Each turn is a whole request and answer: the loop waits on the server, not a clock.
        std::thread::yield_now();
    }
    let held = stalled_at.elapsed();
    assert!(held < Duration::from_secs(20), "held for {held:?}");
    // The stalled client finds its answer cut: the connection ends before 16 MiB.
    let mut answer = Vec::new();
    stalled.set_read_timeout(Some(common::WAIT)).unwrap();
    let read = stalled.read_to_end(&mut answer);
    let cut = read.is_ok()
        || read.is_err_and(|error| error.kind() == std::io::ErrorKind::ConnectionReset);
    assert!(cut, "the stalled connection was not closed");
    assert!(answer.len() < 16 * 1024 * 1024, "{} bytes", answer.len());
    let (status, stderr) = server.interrupt();
    assert!(status.success(), "{stderr}");
    drop(math);
}

fn a_request_without_a_host_is_400(http: &str) {
    // HTTP/1.0 allows no Host; a handler cannot be given a request without one. It is
    // answered 400 before it reaches the instance, which stays up for the next.
    let answer = request(http, "GET /add?a=1&b=1 HTTP/1.0\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.0 400"), "{answer}");
    assert!(
        answer.ends_with("a request names its host (a Host header)\n"),
        "{answer}"
    );
    assert!(get(http, "/add?a=4&b=4").contains("\r\n4 + 4 = 8"));
}

fn a_cut_answer_looks_cut(http: &str) {
    // The handler answers 200, sends 1000 bytes, then traps. Its answer is taken as it is
    // written, so the trap is known before anything is sent: the client gets the runtime's
    // 500 saying why, never a 200 that looks whole.
    let answer = get(http, "/partial");
    assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
    assert!(
        answer.contains("the handler of site failed: the guest trapped"),
        "{answer}"
    );
    assert!(get(http, "/add?a=5&b=6").contains("\r\n5 + 6 = 11"));
}

fn one_client_s_faults_hold_back_that_client_only(http: &str) {
    // A client at 127.0.0.3 traps the one replica twice in a row, which holds its next restart
    // back 100 ms for that client. A request from 127.0.0.1 right after is not that client's:
    // it restarts the replica at once and is answered (before each source had a party of its
    // own, every client waited out the faulty one's back-off with a 503).
    for _ in 0..2 {
        let mut faulty = common::connect_from("127.0.0.3", http, None);
        faulty
            .write_all(b"GET /trap HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let (answer, _) = read_until_closed(&mut faulty, common::WAIT);
        assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
    }
    let answer = get(http, "/add?a=7&b=7");
    assert!(
        answer.contains("\r\n7 + 7 = 14"),
        "another client: {answer}"
    );
}

#[test]
fn mistakes_in_http_settings_are_refused_before_anything_runs() {
    let no_routes = manifest(
        "http-no-routes",
        r#"
[apps]
math = "{fixtures}/math-provider.wasm"
[instances.math]
app = "math"
export = true
"#,
    );
    let refused = exorun()
        .args([
            "serve",
            no_routes.to_str().unwrap(),
            "--http",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = text(&refused.stderr).replace(&no_routes.display().to_string(), "M");
    assert_eq!(stderr, "exorun: --http: M has no [http] routes to serve\n");
    let math = provider();
    let site = site("http-off-loopback", &math.address, "");
    let refused = exorun()
        .args(["serve", site.to_str().unwrap(), "--http", "0.0.0.0:0"])
        .output()
        .unwrap();
    let stderr = text(&refused.stderr);
    assert!(
        stderr.starts_with("exorun: --http 0.0.0.0:0: plaintext HTTP off loopback"),
        "{stderr}"
    );
    let wrong = manifest(
        "http-wrong",
        r#"
[apps]
math = "{fixtures}/math-provider.wasm"
[instances.math]
app = "math"
links = { "x:y/z" = { system = "wasi", allow = ["a"] } }
[http]
routes = { "api" = "math", "/ghost" = "nobody" }
"#,
    );
    let stderr = common::refused("http-wrong-run", &std::fs::read_to_string(&wrong).unwrap());
    assert!(
        stderr.contains(r#"http.routes."api": a route's prefix starts with `/`"#),
        "{stderr}"
    );
    assert!(stderr.contains(r#"http.routes."/ghost": "#), "{stderr}");
    assert!(
        stderr
            .contains(r#"instances.math.links."x:y/z": `allow` applies only to `system = "http"`"#),
        "{stderr}"
    );
    drop(math);
}

fn slow_head_is_closed(http: &str) {
    // A head that never ends is closed after the head deadline.
    let mut slow = TcpStream::connect(http).unwrap();
    slow.write_all(b"GET /add?a=1&b=1 HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(20));
    assert!(closed, "a slowloris head was left open");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

fn a_head_past_its_bound_is_431(http: &str) {
    let long = "y".repeat(20 * 1024);
    let answer = request(
        http,
        &format!("GET /add?a=1&b=1 HTTP/1.1\r\nHost: x\r\nX-Long: {long}\r\n\r\n"),
    );
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

fn a_body_past_its_bound_is_cut(http: &str) {
    // A body past its bound: read (up to the bound) before the request takes a replica, and
    // answered 413 without the handler ever running.
    let big = "x".repeat(200 * 1024);
    let answer = request(
        http,
        &format!(
            "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{big}",
            big.len()
        ),
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("site takes request bodies of at most 65536 bytes"),
        "{answer}"
    );
}

fn a_flood_is_bounded(http: &str) {
    // A flood from 127.0.0.2: four connections held, the rest closed at once.
    let mut flood: Vec<TcpStream> = (0..12)
        .map(|_| common::connect_from("127.0.0.2", http, None))
        .collect();
    let mut closed_at_once = 0;
    for stream in &mut flood[4..] {
        let (_, closed) = read_until_closed(stream, Duration::from_secs(5));
        closed_at_once += usize::from(closed);
    }
    assert_eq!(closed_at_once, 8, "connections past the per-source bound");
    let answer = get(http, "/add?a=20&b=22");
    assert!(
        answer.contains("\r\n20 + 22 = 42"),
        "during the flood: {answer}"
    );
    drop(flood);
}

fn one_request_at_once(http: &str) {
    // A request holding the one slot: its handler reads a body that has not come (seen by the
    // 100 Continue the server sends when the handler reads). The next request is answered
    // 503 at once; the first then gets its answer.
    let mut holding = TcpStream::connect(http).unwrap();
    let head = "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 4\r\n\
                Expect: 100-continue\r\n\r\n";
    holding.write_all(head.as_bytes()).unwrap();
    let mut continued = [0; 25];
    holding.read_exact(&mut continued).unwrap();
    let continued = text(&continued);
    assert!(
        continued.starts_with("HTTP/1.1 100 Continue"),
        "{continued}"
    );
    let refused = get(http, "/add?a=1&b=1");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(
        refused.ends_with("too many requests at once\n"),
        "{refused}"
    );
    holding.write_all(b"abcd").unwrap();
    let (answer, _) = read_until_closed(&mut holding, common::WAIT);
    assert!(answer.contains("\r\n4 bytes"), "{answer}");
    assert!(get(http, "/add?a=2&b=2").contains("\r\n2 + 2 = 4"));
}

fn a_body_that_never_comes_is_408_and_a_handler_past_its_deadline_is_cut(http: &str) {
    // A body announced and never sent: read before the request takes a replica, so it is
    // answered 408 at the body deadline (2 s here) and no handler runs.
    let mut waiting = TcpStream::connect(http).unwrap();
    let head = "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 4\r\n\
                Expect: 100-continue\r\n\r\n";
    waiting.write_all(head.as_bytes()).unwrap();
    let (answer, _) = read_until_closed(&mut waiting, common::WAIT);
    assert!(answer.contains("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.ends_with("the request body did not arrive in time\n"),
        "{answer}"
    );
    // A handler that runs past the request deadline (2 s) is cut: 500 with the reason, and
    // the replica restarted for the next request.
    let mut waiting = TcpStream::connect(http).unwrap();
    let head = "GET /spin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    waiting.write_all(head.as_bytes()).unwrap();
    let started = Instant::now();
    let wanted = "the handler of site ran past the request deadline of 2s\n";
    let mut answer = Vec::new();
    let mut buffer = [0; 1024];
    waiting.set_read_timeout(Some(common::WAIT)).unwrap();
    while !text(&answer).ends_with(wanted) {
        let count = waiting.read(&mut buffer).unwrap();
        assert!(count > 0, "closed before the answer: {}", text(&answer));
        answer.extend_from_slice(&buffer[..count]);
    }
    let answer = text(&answer);
    assert!(answer.contains("HTTP/1.1 500"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(get(http, "/add?a=3&b=3").contains("\r\n3 + 3 = 6"));
}

/// A manifest of http-handler (`replicas` of it) whose `math` is local: no other process.
fn local_site(name: &str, replicas: usize) -> std::path::PathBuf {
    manifest(
        name,
        &format!(
            r#"
[apps]
handler = "{{fixtures}}/http-handler.wasm"
math = "{{fixtures}}/math-provider.wasm"
[instances.math]
app = "math"
[instances.site]
app = "handler"
replicas = {replicas}
links = {{ "exorun:test/math" = {{ local = "math" }} }}
[http]
routes = {{ "/" = "site" }}
"#
        ),
    )
}

/// Whether `/add` from 127.0.0.1 is answered within 2 s, on a connection of its own.
fn answered_within_2s(http: &str) -> bool {
    let output = std::process::Command::new("curl")
        .args(["-s", "--max-time", "2", "-w", "\n%{http_code}"])
        .arg(format!("http://{http}/add?a=20&b=22"))
        .output()
        .unwrap();
    text(&output.stdout).ends_with("20 + 22 = 42\n200")
}

#[test]
fn slow_clients_hold_no_replica_and_a_legitimate_client_is_answered() {
    let manifest = local_site("http-slow-clients", 2);
    let (server, http) = serve_http(&manifest, &["--http", "127.0.0.1:0"]);
    // One host, two connections: a chunked body that stops after its first byte, and a
    // 16 MiB answer it never reads (a receive buffer as small as the kernel allows).
    let mut dribbling = common::connect_from("127.0.0.2", &http, None);
    let head = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n";
    dribbling.write_all(head.as_bytes()).unwrap();
    let mut never_reads = common::connect_from("127.0.0.2", &http, Some(4096));
    never_reads
        .write_all(b"GET /big?kib=16384 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // The answer's head arrived: the big answer was produced (and taken from its handler).
    let mut begun = [0; 12];
    never_reads.read_exact(&mut begun).unwrap();
    assert_eq!(&begun, b"HTTP/1.1 200");
    let answered = (0..6).filter(|_| answered_within_2s(&http)).count();
    assert_eq!(answered, 6, "a legitimate client was kept waiting");
    drop((dribbling, never_reads));
    let (status, stderr) = server.interrupt();
    assert!(status.success(), "{stderr}");
}

#[test]
fn slowloris_and_idle_crowds_from_many_hosts_are_shed_for_legitimate_clients() {
    let manifest = local_site("http-crowds", 2);
    let (server, http) = serve_http(&manifest, &["--http", "127.0.0.1:0"]);
    // 1,100 connections from 19 hosts (past the 1,024 cap), each a head begun and never
    // finished.
    let mut crowd = Vec::new();
    for host in 10..29 {
        for _ in 0..58 {
            let mut slow = common::connect_from(&format!("127.0.0.{host}"), &http, None);
            let _ = slow.write_all(b"GET / HTTP/1.1\r\nHos");
            crowd.push(slow);
        }
    }
    let answered = (0..34).filter(|_| answered_within_2s(&http)).count();
    assert!(
        answered * 100 >= 34 * 95,
        "{answered} of 34 answered within 2 s"
    );
    drop(crowd);
    // 1,500 idle connections, each from a host of its own.
    let mut idle = Vec::new();
    for index in 0..1_500_u32 {
        let [_, _, high, low] = (index + 256).to_be_bytes();
        idle.push(common::connect_from(
            &format!("127.1.{high}.{low}"),
            &http,
            None,
        ));
    }
    let answered = (0..34).filter(|_| answered_within_2s(&http)).count();
    assert!(
        answered * 100 >= 34 * 95,
        "{answered} of 34 answered within 2 s"
    );
    drop(idle);
    let (status, stderr) = server.interrupt();
    assert!(status.success(), "{stderr}");
}
