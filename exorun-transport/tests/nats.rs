//! Lattices on a real nats-server (random loopback port): calls by export name as NATS
//! requests, queue groups sharing calls, "no responders" answered at once, the server's
//! payload limit, lattices kept apart, a drain that answers what it received, and
//! credentials that never show. (Needs the `nats` feature; the workspace build has it.)

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

#[path = "common/nats_server.rs"]
mod nats_server;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;
use exorun_common::BoxFuture;
use exorun_transport::client;
use exorun_transport::dispatch;
use exorun_transport::nats;
use exorun_transport::nats::Lattice;
use exorun_transport::transport;
use nats_server::NatsServer;
use neorpc::failure::Failure;
use neorpc::frame;
use proptest::prelude::*;
use tokio::sync::Notify;

/// Echoes the argument slab (`big` answers a reply of the size its slab names), counting
/// calls, holding calls to `hold` until released.
#[derive(Default)]
struct Echo {
    served: AtomicUsize,
    arrived: Notify,
    release: Notify,
}

/// `Echo` as a dispatcher.
struct Echoing(Arc<Echo>);

impl dispatch::Dispatcher for Echoing {
    fn dispatch(
        &self,
        call: frame::Call<'_>,
        _: &Bytes,
        _: &dispatch::Origin,
    ) -> BoxFuture<'static, dispatch::Outcome> {
        let (seq, args, method) = (call.seq, call.args.to_vec(), call.method.to_owned());
        let echo = Arc::clone(&self.0);
        Box::pin(async move {
            if method == "hold" {
                let released = echo.release.notified();
                echo.arrived.notify_one();
                released.await;
            }
            echo.served.fetch_add(1, Ordering::SeqCst);
            let results = if method == "big" {
                vec![0_u8; usize::from(args[0]) * 1024]
            } else {
                args
            };
            Ok(frame::encode_reply(seq, Ok(&results)).unwrap())
        })
    }
}

fn settings(url: &str) -> nats::Settings {
    nats::Settings {
        urls: vec![url.to_owned()],
        name: "exorun-test".to_owned(),
        ..nats::Settings::default()
    }
}

/// Serves `echo` as `exports` of `lattice` until `stop` is notified; subscribed on return.
async fn serving(
    url: &str,
    lattice: &str,
    exports: &[&str],
    echo: &Arc<Echo>,
    stop: &Arc<Notify>,
) -> tokio::task::JoinHandle<nats::Served> {
    serving_through(&settings(url), lattice, exports, echo, stop, 256).await
}

/// `serving` through the NATS system `settings` names, with at most `calls_in_flight_max`
/// calls running at once.
async fn serving_through(
    settings: &nats::Settings,
    lattice: &str,
    exports: &[&str],
    echo: &Arc<Echo>,
    stop: &Arc<Notify>,
    calls_in_flight_max: usize,
) -> tokio::task::JoinHandle<nats::Served> {
    let exports: Vec<String> = exports.iter().map(|name| (*name).to_owned()).collect();
    let subscribed = nats::join(settings, lattice, &exports).await.unwrap();
    let dispatcher: Arc<dyn dispatch::Dispatcher> = Arc::new(Echoing(Arc::clone(echo)));
    let stop = Arc::clone(stop);
    tokio::spawn(async move {
        subscribed
            .serve(dispatcher, calls_in_flight_max, stop.notified())
            .await
    })
}

async fn call(
    lattice: &Lattice,
    target: &str,
    method: &str,
    args: &[u8],
) -> Result<client::Reply, client::Error> {
    let frame = frame::encode_call(target, method, args, &[]).unwrap();
    lattice.call_within(frame, Duration::from_secs(5)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_reaches_its_export_by_name() {
    let server = NatsServer::start(&[]);
    let (echo, stop) = (Arc::new(Echo::default()), Arc::new(Notify::new()));
    let served = serving(&server.url, "t", &["echo"], &echo, &stop).await;
    let lattice = Lattice::new(settings(&server.url), "t", Duration::from_secs(5));
    assert_eq!(
        &call(&lattice, "echo", "any", b"slab")
            .await
            .unwrap()
            .unwrap()[..],
        b"slab"
    );
    stop.notify_one();
    let served = served.await.unwrap();
    assert_eq!(served.calls, 1, "{served:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_responders_is_instance_not_found_at_once() {
    let server = NatsServer::start(&[]);
    let lattice = Lattice::new(settings(&server.url), "t", Duration::from_secs(30));
    let started = Instant::now();
    let missing = call(&lattice, "nobody", "any", b"").await;
    assert_eq!(
        missing,
        Ok(Err(Failure::InstanceNotFound {
            instance: "nobody".into()
        }))
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not the 30 s timeout: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lattices_are_kept_apart() {
    let server = NatsServer::start(&[]);
    let (echo, stop) = (Arc::new(Echo::default()), Arc::new(Notify::new()));
    let _served = serving(&server.url, "blue", &["echo"], &echo, &stop).await;
    let blue = Lattice::new(settings(&server.url), "blue", Duration::from_secs(5));
    assert_eq!(
        &call(&blue, "echo", "any", b"b").await.unwrap().unwrap()[..],
        b"b"
    );
    let green = Lattice::new(settings(&server.url), "green", Duration::from_secs(5));
    assert!(matches!(
        call(&green, "echo", "any", b"").await,
        Ok(Err(Failure::InstanceNotFound { .. }))
    ));
    stop.notify_one();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_over_the_payload_limit_are_refused_naming_both_sizes() {
    let config = std::env::temp_dir().join(format!("exorun-nats-{}.conf", std::process::id()));
    std::fs::write(&config, "max_payload: 4096\n").unwrap();
    let server = NatsServer::start(&["-c", config.to_str().unwrap()]);
    let (echo, stop) = (Arc::new(Echo::default()), Arc::new(Notify::new()));
    let _served = serving(&server.url, "t", &["echo"], &echo, &stop).await;
    let lattice = Lattice::new(settings(&server.url), "t", Duration::from_secs(5));
    let refused = call(&lattice, "echo", "any", &[0; 5000]).await;
    let Err(client::Error::Transport(transport::Error::MessageTooLarge { message_bytes, max })) =
        refused
    else {
        panic!("not refused for its size: {refused:?}");
    };
    assert!(message_bytes > 5000, "{message_bytes}");
    assert_eq!(max, 4096);
    // A reply over the limit: the call ran, and its caller is told why it gets no results.
    let too_large = call(&lattice, "echo", "big", &[8]).await;
    let Ok(Err(Failure::ReplyTooLarge { reply_bytes, max })) = too_large else {
        panic!("not ReplyTooLarge: {too_large:?}");
    };
    assert!(reply_bytes > 8 * 1024, "{reply_bytes}");
    assert_eq!(max, 4096);
    stop.notify_one();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_group_shares_calls_and_a_drained_member_answers_what_it_received() {
    let server = NatsServer::start(&[]);
    let (first, second) = (Arc::new(Echo::default()), Arc::new(Echo::default()));
    let (stop_first, stop_second) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let first_served = serving(&server.url, "t", &["echo"], &first, &stop_first).await;
    let _second_served = serving(&server.url, "t", &["echo"], &second, &stop_second).await;
    let lattice = Arc::new(Lattice::new(
        settings(&server.url),
        "t",
        Duration::from_secs(5),
    ));
    for _ in 0..400 {
        call(&lattice, "echo", "any", b"x").await.unwrap().unwrap();
    }
    let (a, b) = (
        first.served.load(Ordering::SeqCst),
        second.served.load(Ordering::SeqCst),
    );
    assert!(a >= 80 && b >= 80, "both members take calls: {a} / {b}");

    // Hold calls until one lands on the first member, then stop it: it still answers it.
    let mut holding = Vec::new();
    let landed = first.arrived.notified();
    tokio::pin!(landed);
    loop {
        let lattice = Arc::clone(&lattice);
        holding.push(tokio::spawn(async move {
            call(&lattice, "echo", "hold", b"h").await
        }));
        tokio::select! {
            () = &mut landed => break,
            () = second.arrived.notified() => {}
        }
    }
    stop_first.notify_one();
    // Its subscription is drained: new calls all go to the second member.
    let before = second.served.load(Ordering::SeqCst);
    first.release.notify_waiters();
    second.release.notify_waiters();
    let drained = first_served.await.unwrap();
    for held in holding {
        assert_eq!(
            &held.await.unwrap().unwrap().unwrap()[..],
            b"h",
            "a held call was answered"
        );
    }
    for _ in 0..50 {
        call(&lattice, "echo", "any", b"x").await.unwrap().unwrap();
    }
    assert!(second.served.load(Ordering::SeqCst) >= before + 50);
    assert!(drained.calls >= 1, "{drained:?}");
    stop_second.notify_one();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_required_and_never_shown() {
    let server = NatsServer::start(&["--user", "exorun", "--pass", "s3cr3t-pass"]);
    let port = server.url.rsplit_once(':').unwrap().1;
    let without = Lattice::new(settings(&server.url), "t", Duration::from_secs(5));
    let refused = call(&without, "echo", "any", b"").await;
    let Err(client::Error::Transport(error)) = &refused else {
        panic!("connected without credentials: {refused:?}");
    };
    assert!(error.to_string().contains("NATS connect"), "{error}");
    let url = format!("nats://exorun:s3cr3t-pass@127.0.0.1:{port}");
    let (echo, stop) = (Arc::new(Echo::default()), Arc::new(Notify::new()));
    let _served = serving(&url, "t", &["echo"], &echo, &stop).await;
    let with = Lattice::new(settings(&url), "t", Duration::from_secs(5));
    assert!(!format!("{with:?}").contains("s3cr3t"), "{with:?}");
    let wrong = format!("nats://exorun:wrong-pass@127.0.0.1:{port}");
    let denied = call(
        &Lattice::new(settings(&wrong), "t", Duration::from_secs(5)),
        "echo",
        "any",
        b"",
    )
    .await;
    let shown = format!("{denied:?}");
    assert!(denied.is_err() && !shown.contains("wrong-pass"), "{shown}");
    stop.notify_one();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_nkey_seed_authenticates_and_stays_secret() {
    let user = nkeys::KeyPair::new_user();
    let config = std::env::temp_dir().join(format!("exorun-nkey-{}.conf", std::process::id()));
    let authorization = format!(
        "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}\n",
        user.public_key()
    );
    std::fs::write(&config, authorization).unwrap();
    let server = NatsServer::start(&["-c", config.to_str().unwrap()]);
    let seed = user.seed().unwrap();
    let keyed = nats::Settings {
        nkey_seed: Some(seed.clone()),
        ..settings(&server.url)
    };
    assert!(!format!("{keyed:?}").contains(&seed));
    let (echo, stop) = (Arc::new(Echo::default()), Arc::new(Notify::new()));
    let _served = serving_through(&keyed, "t", &["echo"], &echo, &stop, 256).await;
    let lattice = Lattice::new(keyed, "t", Duration::from_secs(5));
    assert_eq!(
        &call(&lattice, "echo", "any", b"k").await.unwrap().unwrap()[..],
        b"k"
    );
    let anonymous = Lattice::new(settings(&server.url), "t", Duration::from_secs(5));
    assert!(!matches!(
        call(&anonymous, "echo", "any", b"").await,
        Ok(Ok(_))
    ));
    stop.notify_one();
}

proptest! {
    #[test]
    fn subjects_are_single_tokens_and_never_collide(
        a in ("\\PC{0,12}", "\\PC{0,12}"),
        b in ("\\PC{0,12}", "\\PC{0,12}"),
    ) {
        let (subject_a, subject_b) = (nats::subject(&a.0, &a.1), nats::subject(&b.0, &b.1));
        prop_assert_eq!(subject_a.split('.').count(), 3);
        prop_assert!(!subject_a.contains(['*', '>', ' ', '\t']));
        prop_assert_eq!(subject_a == subject_b, a == b);
    }
}

/// Makes `calls` echo calls one after another, counting them done and failed, and
/// notifying the third when 3,000 are done in all.
async fn calling(
    lattice: Arc<Lattice>,
    calls: usize,
    (done, failed, halfway): (Arc<AtomicUsize>, Arc<AtomicUsize>, Arc<Notify>),
) {
    for _ in 0..calls {
        if !matches!(call(&lattice, "echo", "any", b"x").await, Ok(Ok(_))) {
            failed.fetch_add(1, Ordering::SeqCst);
        }
        if done.fetch_add(1, Ordering::SeqCst) + 1 == 3_000 {
            halfway.notify_one();
        }
    }
}

/// A member that stops while 32 callers keep calling: every call is answered (by it before
/// it leaves, by the other member after), and NATS delivered nothing it did not see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_stopped_under_load_loses_no_call() {
    let server = NatsServer::start(&[]);
    let (first, second) = (Arc::new(Echo::default()), Arc::new(Echo::default()));
    let (stop_first, stop_second) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let first_served = serving(&server.url, "t", &["echo"], &first, &stop_first).await;
    let second_served = serving(&server.url, "t", &["echo"], &second, &stop_second).await;
    let lattice = Arc::new(Lattice::new(
        settings(&server.url),
        "t",
        Duration::from_secs(10),
    ));
    let (done, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let halfway = Arc::new(Notify::new());
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let counts = (Arc::clone(&done), Arc::clone(&failed), Arc::clone(&halfway));
        callers.spawn(calling(Arc::clone(&lattice), 300, counts));
    }
    halfway.notified().await;
    stop_first.notify_one();
    let left = first_served.await.unwrap();
    while callers.join_next().await.is_some() {}
    stop_second.notify_one();
    let stayed = second_served.await.unwrap();
    assert_eq!(failed.load(Ordering::SeqCst), 0, "{left:?} {stayed:?}");
    assert_eq!(
        (left.lost, left.refused, left.dropped),
        (0, 0, 0),
        "{left:?}"
    );
    assert_eq!(left.calls + stayed.calls, 9_600, "{left:?} {stayed:?}");
    assert!(
        left.calls >= 1_000 && stayed.calls >= 1_000,
        "{left:?} {stayed:?}"
    );
}

/// Past `calls_in_flight_max` a call is answered `Overloaded` at once, not left in the
/// client's buffer where NATS could drop it unseen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_past_the_limit_are_refused_as_overloaded() {
    let server = NatsServer::start(&[]);
    let (echo, stop) = (Arc::new(Echo::default()), Arc::new(Notify::new()));
    let served = serving_through(&settings(&server.url), "t", &["echo"], &echo, &stop, 1).await;
    let lattice = Arc::new(Lattice::new(
        settings(&server.url),
        "t",
        Duration::from_secs(10),
    ));
    let arrived = echo.arrived.notified();
    let holder = Arc::clone(&lattice);
    let held = tokio::spawn(async move { call(&holder, "echo", "hold", b"h").await });
    arrived.await;
    let refused = call(&lattice, "echo", "any", b"x").await;
    let Ok(Err(Failure::Overloaded)) = refused else {
        panic!("not refused as overloaded: {refused:?}");
    };
    echo.release.notify_one();
    assert_eq!(&held.await.unwrap().unwrap().unwrap()[..], b"h");
    assert_eq!(
        &call(&lattice, "echo", "any", b"y").await.unwrap().unwrap()[..],
        b"y"
    );
    stop.notify_one();
    let served = served.await.unwrap();
    assert_eq!(
        (served.calls, served.refused, served.lost),
        (2, 1, 0),
        "{served:?}"
    );
}

/// TLS to the NATS server: with the CA that issued its certificate a lattice works; without
/// it the connection is refused (the server is not trusted), and so is plaintext to a server
/// that requires TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_nats_needs_a_trusted_server() {
    let (ca, cert, key) = nats_server::tls_files("lattice");
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let server = NatsServer::start(&["--tls", "--tlscert", cert, "--tlskey", key]);
    let trusted = nats::Settings {
        require_tls: true,
        root_certificates: Some(ca),
        ..settings(&server.url)
    };
    let (echo, stop) = (Arc::new(Echo::default()), Arc::new(Notify::new()));
    let served = serving_through(&trusted, "t", &["echo"], &echo, &stop, 256).await;
    let lattice = Lattice::new(trusted, "t", Duration::from_secs(5));
    assert_eq!(
        &call(&lattice, "echo", "any", b"tls")
            .await
            .unwrap()
            .unwrap()[..],
        b"tls"
    );
    let untrusted = nats::Settings {
        require_tls: true,
        ..settings(&server.url)
    };
    for refused in [untrusted, settings(&server.url)] {
        let lattice = Lattice::new(refused, "t", Duration::from_secs(5));
        let outcome = call(&lattice, "echo", "any", b"").await;
        let Err(client::Error::Transport(error)) = &outcome else {
            panic!("connected to a server it cannot trust: {outcome:?}");
        };
        let shown = error.to_string();
        assert!(
            shown.contains("NATS connect") && shown.contains("UnknownIssuer"),
            "{shown}"
        );
    }
    stop.notify_one();
    assert_eq!(served.await.unwrap().calls, 1);
}

/// A token in the URL (`nats://TOKEN@HOST:PORT`) authenticates and never shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_the_url_authenticates_and_stays_secret() {
    let server = NatsServer::start(&["--auth", "t0ken-s3cret"]);
    let port = server.url.rsplit_once(':').unwrap().1;
    let url = format!("nats://t0ken-s3cret@127.0.0.1:{port}");
    let (echo, stop) = (Arc::new(Echo::default()), Arc::new(Notify::new()));
    let _served = serving(&url, "t", &["echo"], &echo, &stop).await;
    let with = Lattice::new(settings(&url), "t", Duration::from_secs(5));
    assert_eq!(
        &call(&with, "echo", "any", b"t").await.unwrap().unwrap()[..],
        b"t"
    );
    assert!(!format!("{with:?}").contains("s3cret"), "{with:?}");
    assert_eq!(nats::shown(&url), format!("nats://127.0.0.1:{port}"));
    let without = Lattice::new(settings(&server.url), "t", Duration::from_secs(5));
    assert!(!matches!(
        call(&without, "echo", "any", b"").await,
        Ok(Ok(_))
    ));
    stop.notify_one();
}

/// The NATS server is killed and started again on the same port: the serving runtime and the
/// caller reconnect on their own (the client's reconnection, which resubscribes), a call made
/// while it is down fails within its timeout with a reason, and calls go through again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_ends_reconnect_when_the_nats_server_restarts() {
    let server = NatsServer::start(&[]);
    let (url, port) = (
        server.url.clone(),
        server.url.rsplit_once(':').unwrap().1.to_owned(),
    );
    let (echo, stop) = (Arc::new(Echo::default()), Arc::new(Notify::new()));
    let served = serving(&url, "t", &["echo"], &echo, &stop).await;
    let lattice = Lattice::new(settings(&url), "t", Duration::from_secs(2));
    assert_eq!(
        &call(&lattice, "echo", "any", b"1").await.unwrap().unwrap()[..],
        b"1"
    );
    drop(server);
    let started = Instant::now();
    let down = call(&lattice, "echo", "any", b"").await;
    // Down: the call ends at its own 5 s timeout (or sooner, if the client already knows).
    let ended = matches!(
        down,
        Err(client::Error::Timeout { timeout_ms: 5000 } | client::Error::Transport(_))
    );
    assert!(ended, "answered with no NATS server: {down:?}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    // Traced, the new server logs each subscription it receives: both ends are back once the
    // runtime has resubscribed its export and the caller its reply inbox.
    let mut again = NatsServer::start(&["-p", &port, "-V"]);
    let resubscribed = tokio::task::block_in_place(|| {
        let subscriptions = ["<<- [SUB exorun.t.echo", "<<- [SUB _INBOX."];
        again.wait_for_all(&subscriptions, Duration::from_secs(30))
    });
    assert!(
        resubscribed,
        "the runtime and the caller did not both reconnect"
    );
    assert_eq!(
        &call(&lattice, "echo", "any", b"2").await.unwrap().unwrap()[..],
        b"2"
    );
    stop.notify_one();
    let served = served.await.unwrap();
    // The call made while the server was down may still have run: the client buffers it and
    // sends it once reconnected, after its caller timed out. A timeout never says a call did
    // not run.
    assert!(served.calls >= 2 && served.lost == 0, "{served:?}");
    assert_eq!(
        u64::try_from(echo.served.load(Ordering::SeqCst)).unwrap(),
        served.calls
    );
}

/// A nats-server whose users are a runtime (subscribes to the lattice, publishes only to
/// inboxes), a caller allowed to publish only to `public`'s subject, and a watcher that
/// subscribes anywhere: NATS permissions as the lattice's authorization.
fn permissioned_server(name: &str) -> (NatsServer, String) {
    let file = format!("exorun-perms-{}-{name}.conf", std::process::id());
    let config = std::env::temp_dir().join(file);
    std::fs::write(
        &config,
        r#"authorization {
  users = [
    { user: runtime, password: rpw, permissions: {
        subscribe: "exorun.>", publish: "_INBOX.>", allow_responses: true } }
    { user: caller, password: cpw, permissions: {
        publish: "exorun.default.public", subscribe: ["_INBOX.>", "evil.>"] } }
  ]
}
"#,
    )
    .unwrap();
    let server = NatsServer::start(&["-c", config.to_str().unwrap()]);
    let port = server.url.rsplit_once(':').unwrap().1.to_owned();
    (server, port)
}

/// A call frame for `target`, as any NATS client could publish it.
fn frame_for(target: &str) -> Bytes {
    let call = frame::encode_call(target, "any#thing", &[0x0E], &[]).unwrap();
    Bytes::from(call.into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_cannot_reach_another_export_than_its_subject() {
    let (server, port) = permissioned_server("target");
    let runtime = format!("nats://runtime:rpw@127.0.0.1:{port}");
    let (echo, stop) = (Arc::new(Echo::default()), Arc::new(Notify::new()));
    let served = serving(&runtime, "default", &["public", "secret"], &echo, &stop).await;
    let caller = async_nats::ConnectOptions::with_user_and_password("caller".into(), "cpw".into())
        .connect(format!("nats://127.0.0.1:{port}"))
        .await
        .unwrap();
    // Allowed to publish to `public`'s subject, the caller names `secret` inside the frame.
    let subject = nats::subject("default", "public");
    let reply = caller.request(subject.clone(), frame_for("secret")).await;
    let reply = reply.unwrap();
    let frame::Message::Reply(reply) = frame::decode(&reply.payload).unwrap() else {
        panic!("not a reply")
    };
    assert_eq!(
        reply.outcome,
        Err(Failure::ProtocolViolation {
            message: "a call on the subject of `public` must target it".into()
        })
    );
    assert_eq!(echo.served.load(Ordering::SeqCst), 0, "`secret` never ran");
    // Its own target is answered; `secret`'s subject is NATS's to refuse.
    let ok = caller.request(subject, frame_for("public")).await.unwrap();
    assert!(matches!(
        frame::decode(&ok.payload),
        Ok(frame::Message::Reply(_))
    ));
    assert_eq!(echo.served.load(Ordering::SeqCst), 1);
    // nats-server drops the publish (a permissions violation): the request gets no answer
    // within its bounded wait.
    let request = async_nats::Request::new()
        .payload(frame_for("secret"))
        .timeout(Some(Duration::from_millis(500)));
    let direct = caller
        .send_request(nats::subject("default", "secret"), request)
        .await;
    assert!(
        direct.is_err(),
        "nats-server refused the publish: {direct:?}"
    );
    assert_eq!(echo.served.load(Ordering::SeqCst), 1);
    stop.notify_one();
    let served = served.await.unwrap();
    assert_eq!(served.calls, 2, "{served:?}");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_answers_only_on_inbox_subjects() {
    let (server, port) = permissioned_server("reply");
    let runtime = format!("nats://runtime:rpw@127.0.0.1:{port}");
    let (echo, stop) = (Arc::new(Echo::default()), Arc::new(Notify::new()));
    let served = serving(&runtime, "default", &["public"], &echo, &stop).await;
    let caller = async_nats::ConnectOptions::with_user_and_password("caller".into(), "cpw".into())
        .connect(format!("nats://127.0.0.1:{port}"))
        .await
        .unwrap();
    // A request whose reply subject is not an inbox: the runtime does not publish there (its
    // NATS permissions would refuse it anyway), and the call does not run.
    let subject = nats::subject("default", "public");
    caller
        .publish_with_reply(subject.clone(), "evil.reply", frame_for("public"))
        .await
        .unwrap();
    // A proper request after it, answered, fences the first: the loop has seen both.
    let ok = caller.request(subject, frame_for("public")).await.unwrap();
    assert!(matches!(
        frame::decode(&ok.payload),
        Ok(frame::Message::Reply(_))
    ));
    stop.notify_one();
    let served = served.await.unwrap();
    assert_eq!((served.calls, served.dropped), (1, 1), "{served:?}");
    assert_eq!(echo.served.load(Ordering::SeqCst), 1);
    drop(server);
}
