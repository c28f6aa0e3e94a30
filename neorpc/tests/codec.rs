//! Boundary tests of `neorpc::codec` against real wasmtime component types (built by
//! `shapes`): random shapes and random values of them round-trip through the codec, and every
//! error is produced with its exact facts.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod shapes;

use neorpc::codec;
use neorpc::codec::Error;
use neorpc::codec::Limits;
use proptest::prelude::*;
use shapes::Shape;
use shapes::all_same;
use shapes::primitive;
use shapes::shape_and_values;
use shapes::shape_strategy;
use shapes::type_of;
use shapes::types_of;
use shapes::val_strategy;
use wasmtime::component::Val;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn values_round_trip((shapes, vals) in shape_and_values()) {
        let types = types_of(&shapes);
        let slab = codec::encode(&vals).unwrap();
        let decoded = codec::decode(&slab, &types, &Limits::default()).unwrap();
        prop_assert!(all_same(&decoded, &vals), "{:?}\n!=\n{:?}", decoded, vals);
    }

    #[test]
    fn arguments_written_into_the_frame_match_a_separate_slab((shapes, vals) in shape_and_values()) {
        let types = types_of(&shapes);
        let slab = codec::encode(&vals).unwrap();
        let framed = neorpc::frame::encode_call("t", "i#f", &slab, &[]).unwrap();
        let mut writer = neorpc::frame::CallWriter::new("t", "i#f").unwrap();
        codec::encode_into(writer.args(), &vals, &Limits::default()).unwrap();
        let direct = writer.finish(&[]).unwrap();
        prop_assert_eq!(&framed, &direct);
        let neorpc::frame::Message::Call(call) = neorpc::frame::decode(direct.as_bytes()).unwrap() else {
            panic!("not a call")
        };
        let decoded = codec::decode(call.args, &types, &Limits::default()).unwrap();
        prop_assert!(all_same(&decoded, &vals));
        let mut reply = neorpc::frame::ReplyWriter::new(neorpc::frame::Seq(7)).unwrap();
        codec::encode_into(reply.results(), &vals, &Limits::default()).unwrap();
        let reply = reply.finish().unwrap();
        prop_assert_eq!(reply, neorpc::frame::encode_reply(neorpc::frame::Seq(7), Ok(&slab)).unwrap());
    }

    #[test]
    fn every_strict_prefix_fails((shapes, vals) in shape_and_values()) {
        let types = types_of(&shapes);
        let slab = codec::encode(&vals).unwrap();
        for end in 0..slab.len() {
            prop_assert!(codec::decode(&slab[..end], &types, &Limits::default()).is_err());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        shapes in proptest::collection::vec(shape_strategy(), 1..3),
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let types = types_of(&shapes);
        let _ = codec::decode(&bytes, &types, &Limits::default());
    }

    #[test]
    fn wrong_type_names_expected_and_found(
        (written, val) in primitive().prop_flat_map(|shape| (Just(shape.clone()), val_strategy(&shape))),
        read in primitive(),
    ) {
        let written_type = type_of(written);
        let read_type = type_of(read);
        prop_assume!(codec::type_kind(&written_type) != codec::type_kind(&read_type));
        let slab = codec::encode(std::slice::from_ref(&val)).unwrap();
        let error = codec::decode(&slab, std::slice::from_ref(&read_type), &Limits::default()).unwrap_err();
        prop_assert_eq!(error, Error::TypeMismatch {
            expected: codec::type_kind(&read_type),
            found: codec::val_kind(&val),
        });
    }
}

#[test]
fn add_arguments_match_spec_golden_bytes() {
    let slab = codec::encode(&[Val::U32(10), Val::U32(5)]).unwrap();
    assert_eq!(
        slab,
        [0x20, 10, 0, 0, 0, 0x05, 10, 0, 0, 0, 0x05, 5, 0, 0, 0]
    );
}

#[test]
fn list_u8_is_one_bytes_blob() {
    let slab = codec::encode(&[Val::List(vec![Val::U8(1), Val::U8(2)])]).unwrap();
    assert_eq!(slab, [0x20, 7, 0, 0, 0, 0x11, 2, 0, 0, 0, 1, 2]);
    let ty = type_of(Shape::List(Box::new(Shape::U8)));
    let decoded = codec::decode(&slab, &[ty], &Limits::default()).unwrap();
    assert_eq!(decoded, [Val::List(vec![Val::U8(1), Val::U8(2)])]);
}

#[test]
fn nan_payloads_and_extremes_survive() {
    let vals = [
        Val::Float32(f32::from_bits(0x7fc0_1234)),
        Val::Float64(f64::from_bits(0xfff8_0000_dead_beef)),
        Val::Float64(f64::NEG_INFINITY),
        Val::S64(i64::MIN),
        Val::U64(u64::MAX),
        Val::String("grüße, 世界 🦀".into()),
        Val::Char('🦀'),
    ];
    let shapes = [
        Shape::F32,
        Shape::F64,
        Shape::F64,
        Shape::S64,
        Shape::U64,
        Shape::String,
        Shape::Char,
    ];
    let decoded = codec::decode(
        &codec::encode(&vals).unwrap(),
        &types_of(&shapes),
        &Limits::default(),
    )
    .unwrap();
    assert!(all_same(&decoded, &vals));
}

#[test]
fn count_mismatch_names_both_counts() {
    let types = types_of(&[Shape::U32, Shape::U32]);
    let one = codec::encode(&[Val::U32(1)]).unwrap();
    let three = codec::encode(&[Val::U32(1), Val::U32(2), Val::U32(3)]).unwrap();
    let limits = Limits::default();
    assert_eq!(
        codec::decode(&one, &types, &limits),
        Err(Error::CountMismatch {
            expected: 2,
            found: 1
        })
    );
    assert_eq!(
        codec::decode(&three, &types, &limits),
        Err(Error::CountMismatch {
            expected: 2,
            found: 3
        })
    );
    let fixed = type_of(Shape::FixedList(Box::new(Shape::U32), 3));
    let two = codec::encode(&[Val::FixedLengthList(vec![Val::U32(1), Val::U32(2)])]).unwrap();
    assert_eq!(
        codec::decode(&two, &[fixed], &limits),
        Err(Error::CountMismatch {
            expected: 3,
            found: 2
        })
    );
}

#[test]
fn argument_errors_name_the_count_or_the_argument() {
    let limits = Limits::default();
    let types = types_of(&[Shape::U32, Shape::String, Shape::Bool]);
    let three = [Val::U32(1), Val::String("x".into()), Val::Bool(true)];
    let slab = codec::encode(&three).unwrap();
    assert_eq!(codec::decode_args(&slab, &types, &limits).unwrap(), three);
    let two = codec::encode(&three[..2]).unwrap();
    assert_eq!(
        codec::decode_args(&two, &types, &limits),
        Err(Error::CountMismatch {
            expected: 3,
            found: 2
        })
    );
    let wrong = codec::encode(&[Val::U32(1), Val::U32(2), Val::Bool(true)]).unwrap();
    assert_eq!(
        codec::decode_args(&wrong, &types, &limits),
        Err(Error::Argument {
            index: 1,
            source: Box::new(Error::TypeMismatch {
                expected: "string",
                found: "u32"
            })
        })
    );
}

#[test]
fn unknown_case_and_flag_are_refused() {
    let limits = Limits::default();
    let variant = type_of(Shape::Variant(vec![None]));
    let slab = codec::encode(&[Val::Variant("nope".into(), None)]).unwrap();
    assert_eq!(
        codec::decode(&slab, &[variant], &limits),
        Err(Error::UnknownCase {
            case: "nope".into()
        })
    );
    let flags = type_of(Shape::Flags(2));
    let slab = codec::encode(&[Val::Flags(vec!["g0".into(), "zz".into()])]).unwrap();
    assert_eq!(
        codec::decode(&slab, &[flags], &limits),
        Err(Error::UnknownCase { case: "zz".into() })
    );
    let cases = type_of(Shape::Enum(2));
    let slab = codec::encode(&[Val::Enum("e9".into())]).unwrap();
    assert_eq!(
        codec::decode(&slab, &[cases], &limits),
        Err(Error::UnknownCase { case: "e9".into() })
    );
}

#[test]
fn depth_past_the_limit_fails_both_ways() {
    let mut shape = Shape::U32;
    let mut val = Val::U32(7);
    for _ in 0..6 {
        shape = Shape::Option(Box::new(shape));
        val = Val::Option(Some(Box::new(val)));
    }
    let ty = type_of(shape);
    let shallow = Limits {
        depth_max: 4,
        ..Limits::default()
    };
    let mut encoder = neopack::Encoder::new();
    let encoded = codec::encode_into(&mut encoder, std::slice::from_ref(&val), &shallow);
    assert_eq!(encoded, Err(Error::DepthExceeded { depth_max: 4 }));
    let slab = codec::encode(std::slice::from_ref(&val)).unwrap();
    assert_eq!(
        codec::decode(&slab, std::slice::from_ref(&ty), &shallow),
        Err(Error::DepthExceeded { depth_max: 4 })
    );
    assert_eq!(
        codec::decode(&slab, &[ty], &Limits::default()).unwrap(),
        [val]
    );
}

#[test]
fn too_many_elements_is_refused_before_allocating() {
    let few = Limits {
        elements_max: 100,
        ..Limits::default()
    };
    let blob = type_of(Shape::List(Box::new(Shape::U8)));
    let slab = codec::encode(&[Val::List(vec![Val::U8(0); 200])]).unwrap();
    assert_eq!(
        codec::decode(&slab, &[blob], &few),
        Err(Error::TooManyElements { elements_max: 100 })
    );
    let list = type_of(Shape::List(Box::new(Shape::U32)));
    let slab = codec::encode(&[Val::List(vec![Val::U32(0); 200])]).unwrap();
    assert_eq!(
        codec::decode(&slab, &[list], &few),
        Err(Error::TooManyElements { elements_max: 100 })
    );
}

#[test]
fn hostile_list_length_is_truncated_not_allocated() {
    let ty = type_of(Shape::List(Box::new(Shape::U8)));
    // [ bytes claiming 4 GiB ] inside a list claiming 9 bytes.
    let slab = [0x20, 9, 0, 0, 0, 0x11, 0xFF, 0xFF, 0xFF, 0xFF];
    assert_eq!(
        codec::decode(&slab, &[ty], &Limits::default()),
        Err(Error::Truncated)
    );
}

#[test]
fn trailing_bytes_after_the_slab_are_refused() {
    let mut slab = codec::encode(&[Val::U32(1)]).unwrap();
    slab.push(0x0E);
    let types = types_of(&[Shape::U32]);
    assert_eq!(
        codec::decode(&slab, &types, &Limits::default()),
        Err(Error::TrailingBytes { count: 1 })
    );
}

#[test]
fn handles_cross_only_as_ids_on_a_link_that_carries_them() {
    let wat = r#"(component
        (import "r" (type $r (sub resource)))
        (import "f" (func (param "h" (own $r)) (param "b" (borrow $r)) (param "n" u32)))
    )"#;
    let types = shapes::param_types(wat);
    let slab = codec::encode(&[Val::U32(0), Val::U32(0), Val::U32(0)]).unwrap();
    assert_eq!(
        codec::decode(&slab, &types, &Limits::default()),
        Err(Error::UnsupportedType { kind: "own" })
    );
    // SPEC.md example 7: an own handle is its u64 id where the value goes.
    let id = 0x0123_4567_89ab_cdef_u64;
    let ids = [Val::U64(id), Val::U64(7), Val::U32(1)];
    let slab = codec::encode(&ids).unwrap();
    let one = codec::encode(&[Val::U64(id)]).unwrap();
    let golden = "20 09 00 00 00 06 ef cd ab 89 67 45 23 01";
    let golden: Vec<u8> = golden
        .split(' ')
        .map(|byte| u8::from_str_radix(byte, 16).unwrap())
        .collect();
    assert_eq!(one, golden);
    let handles = Limits::default().with_handles();
    assert_eq!(codec::decode(&slab, &types, &handles), Ok(ids.to_vec()));
    // A handle must be a u64: anything else is the argument's type mismatch.
    let wrong = codec::encode(&[Val::U32(1), Val::U64(7), Val::U32(1)]).unwrap();
    assert_eq!(
        codec::decode(&wrong, &types, &handles),
        Err(Error::TypeMismatch {
            expected: "handle",
            found: "u32"
        })
    );
}

#[test]
fn mixed_list_is_a_type_mismatch_on_encode() {
    let vals = [Val::List(vec![Val::U8(1), Val::U32(2)])];
    assert_eq!(
        codec::encode(&vals),
        Err(Error::TypeMismatch {
            expected: "u8",
            found: "u32"
        })
    );
}

#[test]
fn decode_into_fills_result_slots() {
    let types = types_of(&[Shape::String, Shape::Bool]);
    let slab = codec::encode(&[Val::String("hi".into()), Val::Bool(true)]).unwrap();
    let mut out = [Val::Bool(false), Val::Bool(false)];
    codec::decode_into(&slab, &types, &mut out, &Limits::default()).unwrap();
    assert_eq!(out, [Val::String("hi".into()), Val::Bool(true)]);
}
