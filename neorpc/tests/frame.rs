//! Boundary tests of `neorpc::frame`: golden bytes from SPEC.md, slab isolation, round trips,
//! truncation, hostile bytes and every frame-level error variant.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

use neorpc::failure::Failure;
use neorpc::frame;
use neorpc::frame::Error;
use neorpc::frame::Message;
use neorpc::frame::Seq;
use proptest::prelude::*;

/// SPEC.md example 1: `exorun:test/math#add(10, 5)` to target `calc`, seq 1.
const GOLDEN_CALL: &str = "33 83 00 00 00 10 04 00 00 00 43 61 6c 6c 21 75 00 00 00 33 11 00 00 00 \
    10 03 00 00 00 73 65 71 06 01 00 00 00 00 00 00 00 33 14 00 00 00 10 06 00 00 00 74 61 72 67 \
    65 74 10 04 00 00 00 63 61 6c 63 33 24 00 00 00 10 06 00 00 00 6d 65 74 68 6f 64 10 14 00 00 \
    00 65 78 6f 72 75 6e 3a 74 65 73 74 2f 6d 61 74 68 23 61 64 64 33 18 00 00 00 10 04 00 00 00 \
    61 72 67 73 20 0a 00 00 00 05 0a 00 00 00 05 05 00 00 00";
/// SPEC.md example 1's argument slab: `[u32 10, u32 5]`.
const GOLDEN_ARGS: &str = "20 0a 00 00 00 05 0a 00 00 00 05 05 00 00 00";
/// SPEC.md example 2: the reply to seq 1 carrying `[u32 15]`.
const GOLDEN_OK: &str = "33 3b 00 00 00 10 05 00 00 00 52 65 70 6c 79 21 2c 00 00 00 33 11 00 00 \
    00 10 03 00 00 00 73 65 71 06 01 00 00 00 00 00 00 00 33 11 00 00 00 10 02 00 00 00 6f 6b 20 \
    05 00 00 00 05 0f 00 00 00";
/// SPEC.md example 3: seq 2 failed with `DomainSpecific { code: 403, message: "denied" }`.
const GOLDEN_FAIL: &str = "33 4d 00 00 00 10 05 00 00 00 52 65 70 6c 79 21 3e 00 00 00 33 11 00 \
    00 00 10 03 00 00 00 73 65 71 06 02 00 00 00 00 00 00 00 33 23 00 00 00 10 04 00 00 00 66 61 \
    69 6c 20 15 00 00 00 05 08 00 00 00 05 93 01 00 00 10 06 00 00 00 64 65 6e 69 65 64";

fn hex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|byte| u8::from_str_radix(byte, 16).unwrap())
        .collect()
}

/// Builds a frame by hand: a variant named `kind` around a map of (key, raw payload) entries.
fn hand_frame(kind: &str, entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    fn blob(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&u32::try_from(body.len()).unwrap().to_le_bytes());
        out.extend_from_slice(body);
        out
    }
    fn variant(name: &str, payload: &[u8]) -> Vec<u8> {
        let mut body = blob(0x10, name.as_bytes());
        body.extend_from_slice(payload);
        blob(0x33, &body)
    }
    let map: Vec<u8> = entries
        .iter()
        .flat_map(|(key, raw)| variant(key, raw))
        .collect();
    variant(kind, &blob(0x21, &map))
}

fn u64_item(value: u64) -> Vec<u8> {
    let mut out = vec![0x06];
    out.extend_from_slice(&value.to_le_bytes());
    out
}

fn str_item(text: &str) -> Vec<u8> {
    let mut out = vec![0x10];
    out.extend_from_slice(&u32::try_from(text.len()).unwrap().to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out
}

/// A call frame around `args`, stamped with `seq`.
fn call_bytes(seq: u64, target: &str, method: &str, args: &[u8], chain: &[frame::Hop]) -> Vec<u8> {
    let mut call = frame::encode_call(target, method, args, chain).unwrap();
    call.set_seq(Seq(seq));
    call.into_bytes()
}

#[test]
fn call_matches_spec_golden_bytes() {
    let args = hex(GOLDEN_ARGS);
    let bytes = call_bytes(1, "calc", "exorun:test/math#add", &args, &[]);
    assert_eq!(bytes, hex(GOLDEN_CALL));
    let Message::Call(call) = frame::decode(&bytes).unwrap() else {
        panic!("not a call")
    };
    assert_eq!(call.seq, Seq(1));
    assert_eq!(call.target, "calc");
    assert_eq!(call.method, "exorun:test/math#add");
    assert_eq!(call.args, &args[..]);
}

#[test]
fn replies_match_spec_golden_bytes() {
    let results = hex("20 05 00 00 00 05 0f 00 00 00");
    let ok = frame::encode_reply(Seq(1), Ok(&results)).unwrap();
    assert_eq!(ok, hex(GOLDEN_OK));
    let failure = Failure::DomainSpecific {
        code: 403,
        message: "denied".into(),
    };
    let fail = frame::encode_reply(Seq(2), Err(&failure)).unwrap();
    assert_eq!(fail, hex(GOLDEN_FAIL));
    let Message::Reply(reply) = frame::decode(&fail).unwrap() else {
        panic!("not a reply")
    };
    assert_eq!(reply.seq, Seq(2));
    assert_eq!(reply.outcome, Err(failure));
}

#[test]
fn args_slab_sits_verbatim_at_the_spec_offset() {
    let args = [0xCA, 0xFE, 0xBA, 0xBE];
    let (target, method) = ("provider", "exorun:test/math#add");
    let bytes = call_bytes(42, target, method, &args, &[]);
    // SPEC.md: the slab starts at 97 + len(target) + len(method) and runs to the frame's end.
    let offset = 97 + target.len() + method.len();
    assert_eq!(&bytes[offset..], &args);
    let Message::Call(call) = frame::decode(&bytes).unwrap() else {
        panic!("not a call")
    };
    assert_eq!(call.args, &args);
    assert!(
        std::ptr::eq(call.args.as_ptr(), bytes[offset..].as_ptr()),
        "decode must borrow"
    );
}

#[test]
fn writers_put_slabs_straight_into_the_frame() {
    let mut call = frame::CallWriter::new("calc", "exorun:test/math#add").unwrap();
    let args = call.args();
    args.list_begin().unwrap();
    args.u32(10).unwrap();
    args.u32(5).unwrap();
    args.list_end().unwrap();
    let mut call = call.finish(&[]).unwrap();
    call.set_seq(Seq(1));
    assert_eq!(call.as_bytes(), &hex(GOLDEN_CALL)[..]);
    let mut reply = frame::ReplyWriter::new(Seq(1)).unwrap();
    let results = reply.results();
    results.list_begin().unwrap();
    results.u32(15).unwrap();
    results.list_end().unwrap();
    assert_eq!(reply.finish().unwrap(), hex(GOLDEN_OK));
}

#[test]
fn the_seq_is_stamped_in_place_and_can_be_restamped() {
    let mut call =
        frame::encode_call("calc", "exorun:test/math#add", &hex(GOLDEN_ARGS), &[]).unwrap();
    assert_eq!(frame::decode_seq(call.as_bytes()).unwrap(), Seq(0));
    call.set_seq(Seq(u64::MAX));
    assert_eq!(frame::decode_seq(call.as_bytes()).unwrap(), Seq(u64::MAX));
    call.set_seq(Seq(1));
    assert_eq!(call.into_bytes(), hex(GOLDEN_CALL));
    // SPEC.md: the seq's 8 value bytes sit at offset 33 of a call frame.
    assert_eq!(&hex(GOLDEN_CALL)[33..41], &1u64.to_le_bytes());
}

#[test]
fn a_slab_writer_must_write_exactly_one_item() {
    let empty = frame::CallWriter::new("t", "m").unwrap().finish(&[]);
    assert_eq!(
        empty,
        Err(Error::Encode {
            reason: "no item where one belongs"
        })
    );
    let mut two = frame::ReplyWriter::new(Seq(1)).unwrap();
    two.results().unit().unwrap();
    let second = two.results().unit().map_err(Error::from);
    assert_eq!(
        second,
        Err(Error::Encode {
            reason: "more than one item where one belongs"
        })
    );
}

#[test]
fn oversized_slabs_are_refused_on_encode() {
    let huge = vec![0u8; usize::try_from(frame::FRAME_BYTES_MAX).unwrap() + 1];
    let too_large = Error::FrameTooLarge {
        frame_bytes: frame::FRAME_BYTES_MAX + 1,
        max: frame::FRAME_BYTES_MAX,
    };
    assert_eq!(
        frame::encode_call("t", "m", &huge, &[]).err(),
        Some(too_large.clone())
    );
    assert_eq!(
        frame::encode_reply(Seq(1), Ok(&huge)).err(),
        Some(too_large)
    );
    // A slab that fits on its own but not with the frame's header around it.
    let edge = vec![0x0E; usize::try_from(frame::FRAME_BYTES_MAX).unwrap()];
    let refused = frame::encode_reply(Seq(1), Ok(&edge));
    assert!(
        matches!(
            refused,
            Err(Error::FrameTooLarge {
                max: frame::FRAME_BYTES_MAX,
                ..
            })
        ),
        "{refused:?}"
    );
}

#[test]
fn decode_seq_reads_any_kind() {
    assert_eq!(frame::decode_seq(&hex(GOLDEN_CALL)).unwrap(), Seq(1));
    assert_eq!(frame::decode_seq(&hex(GOLDEN_FAIL)).unwrap(), Seq(2));
    let cancel = hand_frame("Cancel", &[("seq", u64_item(9))]);
    assert_eq!(frame::decode_seq(&cancel).unwrap(), Seq(9));
    let no_seq = hand_frame("Cancel", &[("why", str_item("bored"))]);
    assert_eq!(
        frame::decode_seq(&no_seq),
        Err(Error::MissingField { field: "seq" })
    );
}

#[test]
fn a_readable_seq_followed_by_broken_bytes_is_still_read() {
    let mut truncated = hex(GOLDEN_CALL);
    truncated.truncate(60);
    assert_eq!(frame::decode(&truncated), Err(Error::Truncated));
    assert_eq!(frame::decode_seq(&truncated), Ok(Seq(1)));
    let mut garbled = hex(GOLDEN_CALL);
    garbled[50..].fill(0xFF);
    assert!(frame::decode(&garbled).is_err());
    assert_eq!(frame::decode_seq(&garbled), Ok(Seq(1)));
    // Before the seq is complete, nothing can be named.
    assert!(frame::decode_seq(&hex(GOLDEN_CALL)[..40]).is_err());
}

/// SPEC.md examples 4-6: a `Ping` and its `Pong` for seq 1, and a `GoAway` after seq 7.
const GOLDEN_PING: &str = "33 24 00 00 00 10 04 00 00 00 50 69 6e 67 21 16 00 00 00 33 11 00 00 \
    00 10 03 00 00 00 73 65 71 06 01 00 00 00 00 00 00 00";
const GOLDEN_PONG: &str = "33 24 00 00 00 10 04 00 00 00 50 6f 6e 67 21 16 00 00 00 33 11 00 00 \
    00 10 03 00 00 00 73 65 71 06 01 00 00 00 00 00 00 00";
const GOLDEN_GO_AWAY: &str = "33 2b 00 00 00 10 06 00 00 00 47 6f 41 77 61 79 21 1b 00 00 00 33 \
    16 00 00 00 10 08 00 00 00 6c 61 73 74 5f 73 65 71 06 07 00 00 00 00 00 00 00";

#[test]
fn heartbeats_and_go_away_match_spec_golden_bytes() {
    assert_eq!(frame::encode_ping(Seq(1)).unwrap(), hex(GOLDEN_PING));
    assert_eq!(frame::encode_pong(Seq(1)).unwrap(), hex(GOLDEN_PONG));
    assert_eq!(frame::encode_go_away(Seq(7)).unwrap(), hex(GOLDEN_GO_AWAY));
    assert_eq!(frame::decode(&hex(GOLDEN_PING)), Ok(Message::Ping(Seq(1))));
    assert_eq!(frame::decode(&hex(GOLDEN_PONG)), Ok(Message::Pong(Seq(1))));
    assert_eq!(
        frame::decode(&hex(GOLDEN_GO_AWAY)),
        Ok(Message::GoAway { last_seq: Seq(7) })
    );
    assert_eq!(frame::decode_seq(&hex(GOLDEN_PING)), Ok(Seq(1)));
    let no_last = hand_frame("GoAway", &[("seq", u64_item(3))]);
    assert_eq!(
        frame::decode(&no_last),
        Err(Error::MissingField { field: "last_seq" })
    );
}

#[test]
fn unknown_kind_is_a_specific_error() {
    let cancel = hand_frame("Cancel", &[("seq", u64_item(3))]);
    assert_eq!(
        frame::decode(&cancel),
        Err(Error::UnknownKind {
            kind: "Cancel".into()
        })
    );
}

#[test]
fn unknown_entries_are_skipped() {
    let args = hex(GOLDEN_ARGS);
    let bytes = hand_frame(
        "Call",
        &[
            ("seq", u64_item(5)),
            ("auth", str_item("token")),
            ("target", str_item("calc")),
            ("method", str_item("m")),
            ("args", args.clone()),
        ],
    );
    let Message::Call(call) = frame::decode(&bytes).unwrap() else {
        panic!("not a call")
    };
    assert_eq!(
        (call.seq, call.target, call.method, call.args),
        (Seq(5), "calc", "m", &args[..])
    );
}

#[test]
fn missing_and_duplicate_fields_are_named() {
    let no_target = hand_frame("Call", &[("seq", u64_item(1)), ("method", str_item("m"))]);
    assert_eq!(
        frame::decode(&no_target),
        Err(Error::MissingField { field: "target" })
    );
    let twice = hand_frame("Reply", &[("seq", u64_item(1)), ("seq", u64_item(2))]);
    assert_eq!(
        frame::decode(&twice),
        Err(Error::DuplicateField { field: "seq" })
    );
    let no_outcome = hand_frame("Reply", &[("seq", u64_item(1))]);
    assert_eq!(
        frame::decode(&no_outcome),
        Err(Error::MissingField { field: "ok|fail" })
    );
}

#[test]
fn wrong_entry_type_is_a_type_mismatch() {
    let bytes = hand_frame("Reply", &[("seq", str_item("one"))]);
    assert_eq!(
        frame::decode(&bytes),
        Err(Error::TypeMismatch {
            expected: "seq",
            found: "string"
        })
    );
}

#[test]
fn oversized_frame_is_refused_before_reading() {
    let bytes = hex(GOLDEN_CALL);
    assert_eq!(
        frame::decode_with_limit(&bytes, 100),
        Err(Error::FrameTooLarge {
            frame_bytes: 136,
            max: 100
        })
    );
}

#[test]
fn hostile_lengths_fail_without_allocating() {
    // A variant claiming a 4 GiB body in a 9-byte frame: refused as truncated, not allocated.
    let bytes = [0x33, 0xFF, 0xFF, 0xFF, 0xFF, 0x10, 0x00, 0x00, 0x00];
    assert_eq!(frame::decode(&bytes), Err(Error::Truncated));
    assert_eq!(frame::decode(&[0x99]), Err(Error::BadTag { byte: 0x99 }));
    assert_eq!(frame::decode(&[]), Err(Error::Truncated));
}

#[test]
fn bad_utf8_in_a_name_is_refused() {
    let mut bytes = hex(GOLDEN_CALL);
    bytes[10] = 0xFF; // first byte of "Call"
    assert_eq!(frame::decode(&bytes), Err(Error::BadUtf8));
}

#[test]
fn trailing_bytes_after_a_frame_are_refused() {
    let mut bytes = hex(GOLDEN_OK);
    bytes.push(0x0E);
    assert_eq!(
        frame::decode(&bytes),
        Err(Error::TrailingBytes { count: 1 })
    );
}

#[test]
fn permission_denied_is_tag_14_with_instance_then_interface() {
    // SPEC.md "Failure reasons": [u32 14, "calc", "exorun:test/math"].
    let reason = hex("20 23 00 00 00 05 0e 00 00 00 10 04 00 00 00 63 61 6c 63 \
        10 10 00 00 00 65 78 6f 72 75 6e 3a 74 65 73 74 2f 6d 61 74 68");
    let bytes = hand_frame("Reply", &[("seq", u64_item(3)), ("fail", reason)]);
    let failure = Failure::PermissionDenied {
        instance: "calc".into(),
        interface: "exorun:test/math".into(),
        reason: String::new(),
    };
    assert_eq!(failure.tag(), 14);
    assert_eq!(frame::encode_reply(Seq(3), Err(&failure)).unwrap(), bytes);
    let Message::Reply(reply) = frame::decode(&bytes).unwrap() else {
        panic!("not a reply")
    };
    assert_eq!(reply.outcome, Err(failure));
}

#[test]
fn permission_denied_carries_a_guards_reason_after_the_interface() {
    // SPEC.md "Failure reasons": [u32 14, "calc", "m", "expired"].
    let reason = hex("20 20 00 00 00 05 0e 00 00 00 10 04 00 00 00 63 61 6c 63 \
        10 01 00 00 00 6d 10 07 00 00 00 65 78 70 69 72 65 64");
    let bytes = hand_frame("Reply", &[("seq", u64_item(3)), ("fail", reason)]);
    let failure = Failure::PermissionDenied {
        instance: "calc".into(),
        interface: "m".into(),
        reason: "expired".into(),
    };
    assert_eq!(frame::encode_reply(Seq(3), Err(&failure)).unwrap(), bytes);
    let Message::Reply(reply) = frame::decode(&bytes).unwrap() else {
        panic!("not a reply")
    };
    assert_eq!(reply.outcome, Err(failure.clone()));
    assert_eq!(
        failure.to_string(),
        "this caller may not call `m` on `calc`: expired"
    );
}

#[test]
fn out_of_memory_carries_its_detail_and_still_reads_without_it() {
    // SPEC.md "Failure reasons": [u32 3, "memory"] now; [u32 3] from earlier writers.
    let with = hex("20 10 00 00 00 05 03 00 00 00 10 06 00 00 00 6d 65 6d 6f 72 79");
    let bytes = hand_frame("Reply", &[("seq", u64_item(4)), ("fail", with)]);
    let failure = Failure::OutOfMemory {
        message: "memory".into(),
    };
    assert_eq!(frame::encode_reply(Seq(4), Err(&failure)).unwrap(), bytes);
    assert_eq!(failure.to_string(), "the callee ran out of memory: memory");
    let Message::Reply(reply) = frame::decode(&bytes).unwrap() else {
        panic!("not a reply")
    };
    assert_eq!(reply.outcome, Err(failure));
    let without = hex("20 05 00 00 00 05 03 00 00 00");
    let bytes = hand_frame("Reply", &[("seq", u64_item(4)), ("fail", without)]);
    let Message::Reply(reply) = frame::decode(&bytes).unwrap() else {
        panic!("not a reply")
    };
    let failure = Failure::OutOfMemory {
        message: String::new(),
    };
    assert_eq!(failure.to_string(), "the callee ran out of memory");
    assert_eq!(reply.outcome, Err(failure));
}

#[test]
fn unknown_failure_tag_is_refused() {
    let reason = hex("20 05 00 00 00 05 63 00 00 00"); // [u32 99]
    let bytes = hand_frame("Reply", &[("seq", u64_item(1)), ("fail", reason)]);
    assert_eq!(
        frame::decode(&bytes),
        Err(Error::UnknownFailureTag { tag: 99 })
    );
}

#[test]
fn neopack_encoder_errors_map_to_encode() {
    let error = Error::from(neopack::Error::ScopeStillOpen);
    assert_eq!(
        error,
        Error::Encode {
            reason: "scope still open"
        }
    );
}

fn failure_strategy() -> impl Strategy<Value = Failure> {
    let text = ".{0,24}";
    prop_oneof![
        text.prop_map(|message| Failure::AppTrapped { message }),
        Just(Failure::OutOfFuel),
        ".{0,20}".prop_map(|message| Failure::OutOfMemory { message }),
        text.prop_map(|instance| Failure::InstanceNotFound { instance }),
        text.prop_map(|method| Failure::MethodNotFound { method }),
        (any::<u32>(), any::<u32>())
            .prop_map(|(expected, found)| Failure::BadArgumentCount { expected, found }),
        (any::<u32>(), text)
            .prop_map(|(index, message)| Failure::BadArgumentType { index, message }),
        (any::<u32>(), text).prop_map(|(code, message)| Failure::DomainSpecific { code, message }),
        text.prop_map(|message| Failure::ProtocolViolation { message }),
        Just(Failure::Overloaded),
        text.prop_map(|message| Failure::Internal { message }),
        text.prop_map(|instance| Failure::Reentrant { instance }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(reply_bytes, max)| Failure::ReplyTooLarge { reply_bytes, max }),
        (text, text, text).prop_map(|(instance, interface, reason)| {
            Failure::PermissionDenied {
                instance,
                interface,
                reason,
            }
        }),
    ]
}

proptest! {
    #[test]
    fn calls_round_trip(
        seq in any::<u64>(),
        target in ".{0,32}",
        method in ".{0,48}",
        args in proptest::collection::vec(any::<u8>(), 0..256),
        hops in proptest::collection::vec((any::<u64>(), any::<u64>()), 0..8),
    ) {
        let chain: Vec<frame::Hop> = hops
            .into_iter()
            .map(|(runtime, instance)| frame::Hop { runtime, instance })
            .collect();
        let bytes = call_bytes(seq, &target, &method, &args, &chain);
        let decoded = frame::decode(&bytes).unwrap();
        let expected = frame::Call { seq: Seq(seq), target: &target, method: &method, args: &args, chain, capability: None, trace: None };
        prop_assert_eq!(decoded, Message::Call(expected));
        prop_assert_eq!(frame::decode_seq(&bytes).unwrap(), Seq(seq));
    }

    #[test]
    fn replies_round_trip(
        seq in any::<u64>(),
        results in proptest::collection::vec(any::<u8>(), 0..256),
        failure in proptest::option::of(failure_strategy()),
    ) {
        let written = match &failure {
            Some(failure) => frame::encode_reply(Seq(seq), Err(failure)),
            None => frame::encode_reply(Seq(seq), Ok(&results)),
        };
        let bytes = written.unwrap();
        let outcome = match failure {
            Some(failure) => Err(failure),
            None => Ok(&results[..]),
        };
        prop_assert_eq!(frame::decode(&bytes).unwrap(), Message::Reply(frame::Reply { seq: Seq(seq), outcome }));
    }

    #[test]
    fn every_strict_prefix_fails(seq in any::<u64>(), target in ".{0,16}", failure in failure_strategy()) {
        let call = call_bytes(seq, &target, "i#f", &[0x0E], &[]);
        let reply = frame::encode_reply(Seq(seq), Err(&failure)).unwrap();
        // The seq's value ends at byte 41 of a call frame and 42 of a reply ("Reply" is one
        // byte longer than "Call"): a prefix that holds it still names its seq, a shorter one
        // does not.
        for (bytes, seq_end) in [(call, 41), (reply, 42)] {
            for end in 0..bytes.len() {
                prop_assert!(frame::decode(&bytes[..end]).is_err(), "prefix of {} bytes decoded", end);
                let seq_read = frame::decode_seq(&bytes[..end]);
                if end < seq_end {
                    prop_assert!(seq_read.is_err(), "prefix of {} bytes named a seq", end);
                } else {
                    prop_assert_eq!(seq_read, Ok(Seq(seq)));
                }
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = frame::decode(&bytes);
        let _ = frame::decode_seq(&bytes);
    }

    #[test]
    fn mutated_frames_never_panic(index in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = hex(GOLDEN_FAIL);
        let at = index.index(bytes.len());
        bytes[at] = byte;
        let _ = frame::decode(&bytes);
        let _ = frame::decode_seq(&bytes);
    }
}

#[test]
fn a_chain_is_bounded_and_made_of_pairs() {
    let hop = frame::Hop {
        runtime: 1,
        instance: 2,
    };
    let longest = vec![hop; frame::CHAIN_HOPS_MAX];
    let bytes = call_bytes(1, "t", "m", &[0x20, 0, 0, 0, 0], &longest);
    let Message::Call(call) = frame::decode(&bytes).unwrap() else {
        panic!("not a call")
    };
    assert_eq!(call.chain, longest);
    let too_long = vec![hop; frame::CHAIN_HOPS_MAX + 1];
    let refused = frame::encode_call("t", "m", &[0x0E], &too_long);
    assert_eq!(refused, Err(Error::ChainTooLong { hops_max: 64 }));

    // A hand-made chain of three u64s (an odd count) is refused on decode.
    let mut encoder = neopack::Encoder::new();
    encoder.variant_begin("Call").unwrap();
    encoder.map_begin().unwrap();
    encoder.variant_begin("seq").unwrap();
    encoder.u64(1).unwrap();
    encoder.variant_end().unwrap();
    for (key, value) in [("target", "t"), ("method", "m")] {
        encoder.variant_begin(key).unwrap();
        encoder.str(value).unwrap();
        encoder.variant_end().unwrap();
    }
    encoder.variant_begin("args").unwrap();
    encoder.list_begin().unwrap();
    encoder.list_end().unwrap();
    encoder.variant_end().unwrap();
    encoder.variant_begin("chain").unwrap();
    encoder.list_begin().unwrap();
    for value in [1u64, 2, 3] {
        encoder.u64(value).unwrap();
    }
    encoder.list_end().unwrap();
    encoder.variant_end().unwrap();
    encoder.map_end().unwrap();
    encoder.variant_end().unwrap();
    let odd = encoder.into_bytes().unwrap();
    assert_eq!(frame::decode(&odd), Err(Error::Truncated));
}

#[test]
fn a_call_frame_target_is_read_without_the_rest() {
    let call = call_bytes(7, "math", "exorun:test/math#add", &[0x0E], &[]);
    assert_eq!(frame::decode_target(&call), Ok("math"));
    // Entries in another order (target after the slab) are found all the same.
    let reordered = hand_frame(
        frame::KIND_CALL,
        &[
            ("seq", u64_item(1)),
            ("args", vec![0x0E]),
            ("target", str_item("far")),
        ],
    );
    assert_eq!(frame::decode_target(&reordered), Ok("far"));
    let reply = frame::encode_reply(Seq(7), Ok(&[0x0E])).unwrap();
    assert_eq!(
        frame::decode_target(&reply),
        Err(Error::UnknownKind {
            kind: "Reply (a call frame was expected)".to_owned()
        })
    );
    let untargeted = hand_frame(frame::KIND_CALL, &[("seq", u64_item(1))]);
    assert_eq!(
        frame::decode_target(&untargeted),
        Err(Error::MissingField { field: "target" })
    );
}

/// SPEC.md example 6: `Release` of handle 0x0123456789abcdef, seq 5.
const GOLDEN_RELEASE: &str = "33 40 00 00 00 10 07 00 00 00 52 65 6c 65 61 73 65 21 2f 00 00 00 \
    33 11 00 00 00 10 03 00 00 00 73 65 71 06 05 00 00 00 00 00 00 00 \
    33 14 00 00 00 10 06 00 00 00 68 61 6e 64 6c 65 06 ef cd ab 89 67 45 23 01";

#[test]
fn release_matches_spec_golden_bytes_and_is_numbered_like_a_call() {
    let mut release = frame::encode_release(0x0123_4567_89ab_cdef).unwrap();
    release.set_seq(Seq(5));
    let bytes = release.into_bytes();
    assert_eq!(bytes, hex(GOLDEN_RELEASE));
    assert_eq!(
        &bytes[36..44],
        &5_u64.to_le_bytes(),
        "the seq sits at offset 36"
    );
    assert_eq!(frame::decode_seq(&bytes), Ok(Seq(5)));
    assert_eq!(
        frame::decode(&bytes),
        Ok(Message::Release {
            seq: Seq(5),
            handle: 0x0123_4567_89ab_cdef
        })
    );
    let no_handle = hand_frame("Release", &[("seq", u64_item(5))]);
    assert_eq!(
        frame::decode(&no_handle),
        Err(Error::MissingField { field: "handle" })
    );
}

#[test]
fn resource_gone_is_tag_15_with_the_resource() {
    // SPEC.md example 7: [u32 15, "counter"].
    let reason = hex("20 11 00 00 00 05 0f 00 00 00 10 07 00 00 00 63 6f 75 6e 74 65 72");
    let bytes = hand_frame("Reply", &[("seq", u64_item(6)), ("fail", reason)]);
    let failure = Failure::ResourceGone {
        resource: "counter".into(),
    };
    assert_eq!(failure.tag(), 15);
    assert_eq!(frame::encode_reply(Seq(6), Err(&failure)).unwrap(), bytes);
    let Message::Reply(reply) = frame::decode(&bytes).unwrap() else {
        panic!("not a reply")
    };
    assert_eq!(reply.outcome, Err(failure));
}

/// SPEC.md example 8: example 1's call presenting the capability bytes `ab cd`: the entry comes
/// after `args` (and after `chain`, when there is one).
const GOLDEN_PRESENTING_TAIL: &str = "33 16 00 00 00 10 0a 00 00 00 63 61 70 61 62 69 6c 69 74 79 \
    11 02 00 00 00 ab cd";

#[test]
fn a_call_presents_a_capability_in_an_entry_of_its_own() {
    let mut writer = frame::CallWriter::new("calc", "exorun:test/math#add").unwrap();
    writer
        .args()
        .append_raw(&hex("20 0a 00 00 00 05 0a 00 00 00 05 05 00 00 00"))
        .unwrap();
    let mut presenting = writer.finish_presenting(&[], Some(&[0xab, 0xcd])).unwrap();
    presenting.set_seq(Seq(1));
    let bytes = presenting.into_bytes();
    let tail = hex(GOLDEN_PRESENTING_TAIL);
    assert!(
        bytes.ends_with(&tail),
        "the capability entry closes the map"
    );
    assert_eq!(bytes.len(), 136 + tail.len());
    let Message::Call(call) = frame::decode(&bytes).unwrap() else {
        panic!("not a call")
    };
    assert_eq!(call.capability, Some(&[0xab, 0xcd][..]));
    assert_eq!(
        call.args,
        &hex("20 0a 00 00 00 05 0a 00 00 00 05 05 00 00 00")[..]
    );
    // A reader that predates the entry skips it; one call without it has none.
    let golden = hex(GOLDEN_CALL);
    let Message::Call(plain) = frame::decode(&golden).unwrap() else {
        panic!("not a call")
    };
    assert_eq!(plain.capability, None);
    // Past the bound, on both sides.
    let big = vec![0_u8; frame::CAPABILITY_BYTES_MAX + 1];
    let writer = frame::CallWriter::new("calc", "exorun:test/math#add").unwrap();
    let refused = writer.finish_presenting(&[], Some(&big));
    assert!(matches!(
        refused,
        Err(Error::CapabilityTooLarge { bytes, max }) if bytes == big.len() && max == frame::CAPABILITY_BYTES_MAX
    ));
}

/// SPEC.md example 9: the trace entry example 1's call gains.
const GOLDEN_TRACE_TAIL: &str = "33 28 00 00 00 10 05 00 00 00 74 72 61 63 65 \
    11 19 00 00 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10 a1 a2 a3 a4 a5 a6 a7 a8 01";

#[test]
fn a_call_carries_its_trace_context_in_an_entry_of_its_own() {
    let mut writer = frame::CallWriter::new("calc", "exorun:test/math#add").unwrap();
    writer
        .args()
        .append_raw(&hex("20 0a 00 00 00 05 0a 00 00 00 05 05 00 00 00"))
        .unwrap();
    let trace = frame::TraceContext {
        trace_id: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16],
        parent_id: [0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8],
        flags: 1,
    };
    let mut traced = writer.finish_traced(&[], None, Some(&trace)).unwrap();
    traced.set_seq(Seq(1));
    let bytes = traced.into_bytes();
    let tail = hex(GOLDEN_TRACE_TAIL);
    assert!(bytes.ends_with(&tail), "the trace entry closes the map");
    assert_eq!(bytes.len(), 136 + tail.len());
    assert_eq!(bytes.len(), 181);
    let Message::Call(call) = frame::decode(&bytes).unwrap() else {
        panic!("not a call")
    };
    assert_eq!(call.trace, Some(trace));
    // A trace entry of another length is refused by name.
    let short = hand_frame(
        "Call",
        &[
            ("seq", u64_item(1)),
            ("target", str_item("calc")),
            ("method", str_item("m")),
            ("args", hex("20 00 00 00 00")),
            (
                "trace",
                hex(
                    "11 18 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00",
                ),
            ),
        ],
    );
    assert_eq!(frame::decode(&short), Err(Error::BadTrace { bytes: 24 }));
}

proptest! {
    #[test]
    fn a_trace_context_round_trips(
        trace_id in any::<[u8; 16]>(),
        parent_id in any::<[u8; 8]>(),
        flags in any::<u8>(),
    ) {
        let trace = frame::TraceContext { trace_id, parent_id, flags };
        prop_assert_eq!(frame::TraceContext::from_bytes(&trace.to_bytes()), Some(trace));
        let mut writer = frame::CallWriter::new("t", "m").unwrap();
        writer.args().append_raw(&hex("20 00 00 00 00")).unwrap();
        let bytes = writer.finish_traced(&[], None, Some(&trace)).unwrap().into_bytes();
        let Ok(Message::Call(call)) = frame::decode(&bytes) else {
            return Err(TestCaseError::fail("not a call"));
        };
        prop_assert_eq!(call.trace, Some(trace));
    }
}
