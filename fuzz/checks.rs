//! What the fuzz targets check, shared by the targets in `fuzz_targets/` (run with cargo-fuzz
//! on nightly) and by the corpus replay test `exorun-cli/tests/fuzz_corpus.rs` (stable, in
//! `scripts/test_exorun.sh`), which includes this file. A property that does not hold panics.

#![allow(dead_code, reason = "each includer uses the checks it needs")]

use std::path::Path;
use std::sync::OnceLock;

use bytes::Bytes;
use exorun_transport::stream;
use exorun_transport::transport;
use exorun_transport::transport::Transport;
use neorpc::codec;
use neorpc::frame;
use wasmtime::component::Type;

/// A frame never panics the decoders; one that decodes names its seq the same way, and
/// encodes again into a frame that decodes to the same message.
pub(crate) fn frame(data: &[u8]) {
    let seq = frame::decode_seq(data);
    let Ok(message) = frame::decode(data) else {
        return;
    };
    let again = match &message {
        frame::Message::Call(call) => {
            assert_eq!(seq, Ok(call.seq), "decode_seq disagrees with decode");
            let mut writer = frame::CallWriter::new(call.target, call.method)
                .expect("a decoded call's target and method encode again");
            writer
                .args()
                .append_raw(call.args)
                .expect("a decoded call's slab is one item");
            let mut encoded = writer
                .finish_traced(&call.chain, call.capability, call.trace.as_ref())
                .expect("a decoded call encodes again");
            encoded.set_seq(call.seq);
            encoded.into_bytes()
        }
        frame::Message::Reply(reply) => {
            assert_eq!(seq, Ok(reply.seq), "decode_seq disagrees with decode");
            let outcome = reply.outcome.as_ref().map(|slab| &slab[..]);
            frame::encode_reply(reply.seq, outcome).expect("a decoded reply encodes again")
        }
        frame::Message::Release {
            seq: released,
            handle,
        } => {
            assert_eq!(seq, Ok(*released), "decode_seq disagrees with decode");
            let mut encoded = frame::encode_release(*handle).expect("a release encodes");
            encoded.set_seq(*released);
            encoded.into_bytes()
        }
        frame::Message::Ping(ping) => frame::encode_ping(*ping).expect("a ping encodes"),
        frame::Message::Pong(pong) => frame::encode_pong(*pong).expect("a pong encodes"),
        frame::Message::GoAway { last_seq } => {
            frame::encode_go_away(*last_seq).expect("a go-away encodes")
        }
    };
    assert_eq!(
        frame::decode(&again),
        Ok(message),
        "a re-encoded frame decodes to itself"
    );
}

/// The parameter types of every `exorun:test/values` function (every WIT value kind), from
/// the built values app.
fn value_types() -> &'static [Vec<Type>] {
    static TYPES: OnceLock<Vec<Vec<Type>>> = OnceLock::new();
    TYPES.get_or_init(|| {
        let path =
            exorun_testkit::fixtures::path("values").unwrap_or_else(|error| panic!("{error}"));
        let engine = wasmtime::Engine::default();
        let component = wasmtime::component::Component::from_file(&engine, path).expect("values");
        let ty = component.component_type();
        let (_, values) = ty
            .exports(&engine)
            .find(|(name, _)| *name == "exorun:test/values")
            .expect("the values interface");
        let wasmtime::component::types::ComponentItem::ComponentInstance(instance) = values.ty
        else {
            panic!("values is not an instance");
        };
        let functions = instance.exports(&engine).filter_map(|(_, item)| {
            let wasmtime::component::types::ComponentItem::ComponentFunc(func) = item.ty else {
                return None;
            };
            Some(func.params().map(|(_, ty)| ty).collect::<Vec<Type>>())
        });
        functions.collect()
    })
}

/// A slab never panics the decoder; one that decodes against a function's parameter types
/// (the first byte picks which) encodes again, and decoding and encoding that is idempotent:
/// `decode(encode(x)) == x`, compared as canonical bytes (so NaN payloads count too).
pub(crate) fn values(data: &[u8]) {
    let Some((pick, slab)) = data.split_first() else {
        return;
    };
    let types = value_types();
    let types = &types[usize::from(*pick) % types.len()];
    let limits = codec::Limits::default();
    let Ok(vals) = codec::decode(slab, types, &limits) else {
        return;
    };
    let encoded = codec::encode(&vals).expect("decoded values encode");
    let again = codec::decode(&encoded, types, &limits).expect("encoded values decode");
    let encoded_again = codec::encode(&again).expect("values encode again");
    assert_eq!(encoded, encoded_again, "decode(encode(x)) == x");
}

/// Any bytes as a stream: the framing hands out exactly the messages a plain reading of the
/// length prefixes finds, then ends as that reading says (cleanly, truncated, or refusing an
/// oversized prefix). The first two bytes set the message limit.
pub(crate) fn stream(data: &[u8]) {
    let Some((limit, wire)) = data.split_at_checked(2) else {
        return;
    };
    let limit = u64::from(u16::from_le_bytes([limit[0], limit[1]]));
    let (messages, ending) = expected_framing(wire, limit);
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    tokio.block_on(async {
        let reader: Box<dyn tokio::io::AsyncRead + Send + Unpin> =
            Box::new(std::io::Cursor::new(wire.to_vec()));
        let transport = stream::Transport::new(
            reader,
            Box::new(tokio::io::sink()),
            stream::Config::new(limit),
        );
        for message in messages {
            let received = transport.recv().await;
            assert_eq!(received, Ok(Some(Bytes::from(message))));
        }
        assert_eq!(transport.recv().await, ending);
    });
}

/// The messages a plain reading of `wire` finds, and how it ends.
fn expected_framing(
    wire: &[u8],
    limit: u64,
) -> (Vec<Vec<u8>>, Result<Option<Bytes>, transport::Error>) {
    let mut messages = Vec::new();
    let mut rest = wire;
    loop {
        if rest.is_empty() {
            return (messages, Ok(None));
        }
        let Some((prefix, body)) = rest.split_at_checked(4) else {
            let got = u64::try_from(rest.len()).expect("small");
            return (
                messages,
                Err(transport::Error::Truncated { expected: 4, got }),
            );
        };
        let length = u64::from(u32::from_le_bytes(prefix.try_into().expect("four bytes")));
        if length > limit {
            let too_large = transport::Error::MessageTooLarge {
                message_bytes: length,
                max: limit,
            };
            return (messages, Err(too_large));
        }
        let length = usize::try_from(length).expect("small");
        let Some((message, after)) = body.split_at_checked(length) else {
            let got = u64::try_from(body.len()).expect("small");
            let expected = u64::try_from(length).expect("small");
            return (messages, Err(transport::Error::Truncated { expected, got }));
        };
        messages.push(message.to_vec());
        rest = after;
    }
}

/// Any text as a manifest (and as `--invoke` call text) never panics the parsers, and every
/// problem found is named with a key.
pub(crate) fn manifest(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("/nonexistent/fuzz/manifest.toml");
    let peers = std::collections::BTreeMap::new();
    if let Ok(manifest) = exorun_host::manifest::parse(path, &text, &peers) {
        for (key, problem) in &manifest.problems {
            assert!(!key.is_empty(), "a problem without a key: {problem}");
            assert!(!problem.to_string().is_empty());
        }
    }
    let _ = exorun_cli::invoke::Invocation::parse(&text);
}
