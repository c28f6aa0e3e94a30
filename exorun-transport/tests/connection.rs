//! Boundary tests of the serving loop: failure reasons arrive intact, malformed calls are
//! answered or skipped, a graceful stop lets the call in flight finish (peers: peers.rs).

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::call;
use exorun_common::BoxFuture;
use exorun_transport::client;
use exorun_transport::client::Client;
use exorun_transport::connection;
use exorun_transport::dispatch;
use exorun_transport::memory;
use exorun_transport::transport::Transport;
use neorpc::failure::Failure;
use neorpc::frame;

/// A dispatcher that answers by method name.
struct Scripted;

impl dispatch::Dispatcher for Scripted {
    fn dispatch(
        &self,
        call: frame::Call<'_>,
        message: &Bytes,
        _: &dispatch::Origin,
    ) -> BoxFuture<'static, dispatch::Outcome> {
        let outcome = match call.method {
            "echo" => Ok(frame::encode_reply(call.seq, Ok(call.args)).unwrap()),
            "deny" => Err(Failure::DomainSpecific {
                code: 403,
                message: format!("{} says no", call.target),
            }),
            "trap" => Err(Failure::AppTrapped {
                message: "unreachable".into(),
            }),
            method => Err(Failure::MethodNotFound {
                method: method.to_owned(),
            }),
        };
        let _ = message;
        Box::pin(std::future::ready(outcome))
    }
}

fn served_pair() -> (
    Arc<Client>,
    tokio::task::JoinHandle<Result<connection::Stats, connection::Error>>,
) {
    let (near, far) = memory::pair(memory::CAPACITY_DEFAULT);
    let server = tokio::spawn(connection::serve(
        Arc::new(far),
        Arc::new(Scripted),
        connection::Config::default(),
    ));
    (
        Arc::new(Client::new(Arc::new(near), client::Config::default())),
        server,
    )
}

#[tokio::test]
async fn failure_reasons_arrive_intact() {
    let (client, _server) = served_pair();
    assert_eq!(
        &call(&client, "t", "echo", b"hi").await.unwrap().unwrap()[..],
        b"hi"
    );
    let denied = call(&client, "vault", "deny", b"")
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        denied,
        Failure::DomainSpecific {
            code: 403,
            message: "vault says no".into()
        }
    );
    let trapped = call(&client, "t", "trap", b"").await.unwrap().unwrap_err();
    assert_eq!(
        trapped,
        Failure::AppTrapped {
            message: "unreachable".into()
        }
    );
    let missing = call(&client, "t", "nope", b"").await.unwrap().unwrap_err();
    assert_eq!(
        missing,
        Failure::MethodNotFound {
            method: "nope".into()
        }
    );
    assert_eq!(client.pending_len(), 0);
}

/// A dispatcher that holds each call until released, and says when a call has arrived.
struct Gate(Arc<Signals>);

struct Signals {
    arrived: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

impl dispatch::Dispatcher for Gate {
    fn dispatch(
        &self,
        call: frame::Call<'_>,
        message: &Bytes,
        _: &dispatch::Origin,
    ) -> BoxFuture<'static, dispatch::Outcome> {
        // The argument slab is kept without copying: a slice of the frame the loop decoded.
        let (seq, args) = (call.seq, message.slice_ref(call.args));
        let gate = Arc::clone(&self.0);
        Box::pin(async move {
            let released = gate.release.notified();
            gate.arrived.notify_one();
            released.await;
            Ok(frame::encode_reply(seq, Ok(&args)).unwrap())
        })
    }
}

#[tokio::test]
async fn stopping_the_server_lets_the_call_in_flight_finish_then_closes() {
    let (near, far) = memory::pair(memory::CAPACITY_DEFAULT);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let gate = Arc::new(Signals {
        arrived: tokio::sync::Notify::new(),
        release: tokio::sync::Notify::new(),
    });
    let dispatcher: Arc<dyn dispatch::Dispatcher> = Arc::new(Gate(Arc::clone(&gate)));
    let server = tokio::spawn(connection::serve_until(
        Arc::new(far),
        dispatcher,
        connection::Config::default(),
        dispatch::Origin::new(None),
        async move {
            let _ = stopped.await;
        },
    ));
    let client = Arc::new(Client::new(Arc::new(near), client::Config::default()));
    let in_flight = tokio::spawn({
        let client = Arc::clone(&client);
        async move { call(&client, "t", "held", b"late").await }
    });
    gate.arrived.notified().await;
    stop.send(()).unwrap();
    tokio::task::yield_now().await;
    assert!(
        !server.is_finished(),
        "the server waits for the call in flight"
    );
    gate.release.notify_one();
    assert_eq!(&in_flight.await.unwrap().unwrap().unwrap()[..], b"late");
    let stats = server.await.unwrap().unwrap();
    assert_eq!(stats.calls, 1);
    // The stop's go-away told the client: a later call is not sent, and comes back unread.
    let after = call(&client, "t", "echo", b"x").await.unwrap_err();
    assert!(matches!(after, client::Error::Unread(_)), "{after:?}");
}

#[tokio::test]
async fn server_answers_malformed_calls_and_skips_unknown_kinds() {
    let (near, far) = memory::pair(16);
    let server = tokio::spawn(connection::serve(
        Arc::new(far),
        Arc::new(Scripted),
        connection::Config::default(),
    ));
    // A call frame with a readable seq but no method: a protocol-violation reply for seq 5.
    let mut broken = frame::encode_call("t", "echo", &[0x0E], &[]).unwrap();
    broken.set_seq(frame::Seq(5));
    let mut broken = broken.into_bytes();
    let method_entry = broken.windows(6).position(|w| w == b"method").unwrap();
    broken[method_entry] = b'M';
    near.send(Bytes::from(broken)).await.unwrap();
    let reply = near.recv().await.unwrap().unwrap();
    let frame::Message::Reply(reply) = frame::decode(&reply).unwrap() else {
        panic!("not a reply")
    };
    assert_eq!(reply.seq, frame::Seq(5));
    let Err(Failure::ProtocolViolation { message }) = reply.outcome else {
        panic!("{:?}", reply.outcome)
    };
    assert!(message.contains("method"), "{message}");
    // An unknown kind is skipped, then garbage without a sequence number closes the connection.
    let mut ping = frame::encode_call("t", "echo", &[0x0E], &[])
        .unwrap()
        .into_bytes();
    ping[10..14].copy_from_slice(b"Xall");
    near.send(Bytes::from(ping)).await.unwrap();
    near.send(Bytes::from_static(&[0xFF, 0x00])).await.unwrap();
    let ended = server.await.unwrap();
    assert_eq!(
        ended,
        Err(connection::Error::Malformed(neorpc::frame::Error::BadTag {
            byte: 0xFF
        }))
    );
    assert_eq!(near.recv().await, Ok(None), "the server closed its side");
}
