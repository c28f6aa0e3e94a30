//! Boundary tests of `neorpc::codec` against real wasmtime component types.
//!
//! wasmtime `Type`s only come from components, so these tests describe a type as a small
//! `Shape`, render it as a component in WAT that imports a function taking that type, compile it
//! with wasmtime and read the parameter type back. Random shapes and random values of them then
//! round-trip through the codec.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

use std::sync::OnceLock;

use neorpc::codec;
use neorpc::codec::Limits;
use neorpc::error::Error;
use proptest::prelude::*;
use wasmtime::component::Component;
use wasmtime::component::Type;
use wasmtime::component::Val;
use wasmtime::component::types::ComponentItem;

/// A test-side description of a component value type.
#[derive(Debug, Clone)]
enum Shape {
    Bool,
    S8,
    U8,
    S16,
    U16,
    S32,
    U32,
    S64,
    U64,
    F32,
    F64,
    Char,
    String,
    List(Box<Shape>),
    FixedList(Box<Shape>, u32),
    Option(Box<Shape>),
    Result(Option<Box<Shape>>, Option<Box<Shape>>),
    Tuple(Vec<Shape>),
    Record(Vec<Shape>),
    Variant(Vec<Option<Shape>>),
    Enum(usize),
    Flags(usize),
}

fn engine() -> &'static wasmtime::Engine {
    static ENGINE: OnceLock<wasmtime::Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model_fixed_length_lists(true);
        wasmtime::Engine::new(&config).unwrap()
    })
}

/// Renders `shape` as a WAT type use; nominal types are defined and imported into `defs`.
/// The WAT name of a primitive shape; empty for compound shapes.
fn primitive_name(shape: &Shape) -> &'static str {
    match shape {
        Shape::Bool => "bool",
        Shape::S8 => "s8",
        Shape::U8 => "u8",
        Shape::S16 => "s16",
        Shape::U16 => "u16",
        Shape::S32 => "s32",
        Shape::U32 => "u32",
        Shape::S64 => "s64",
        Shape::U64 => "u64",
        Shape::F32 => "f32",
        Shape::F64 => "f64",
        Shape::Char => "char",
        Shape::String => "string",
        Shape::List(_)
        | Shape::FixedList(..)
        | Shape::Option(_)
        | Shape::Result(..)
        | Shape::Tuple(_)
        | Shape::Record(_)
        | Shape::Variant(_)
        | Shape::Enum(_)
        | Shape::Flags(_) => "",
    }
}

fn render(shape: &Shape, defs: &mut String, next: &mut usize) -> String {
    let primitive = primitive_name(shape);
    if !primitive.is_empty() {
        return primitive.to_owned();
    }
    let body = match shape {
        Shape::List(item) => return format!("(list {})", render(item, defs, next)),
        Shape::FixedList(item, len) => return format!("(list {} {len})", render(item, defs, next)),
        Shape::Option(item) => return format!("(option {})", render(item, defs, next)),
        Shape::Result(ok, err) => {
            let ok = ok
                .as_ref()
                .map(|ok| render(ok, defs, next))
                .unwrap_or_default();
            let err = err
                .as_ref()
                .map(|err| format!("(error {})", render(err, defs, next)));
            return format!("(result {ok} {})", err.unwrap_or_default());
        }
        Shape::Tuple(items) => {
            let items: Vec<String> = items.iter().map(|item| render(item, defs, next)).collect();
            return format!("(tuple {})", items.join(" "));
        }
        Shape::Record(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .enumerate()
                .map(|(i, field)| format!("(field \"f{i}\" {})", render(field, defs, next)))
                .collect();
            format!("(record {})", fields.join(" "))
        }
        Shape::Variant(cases) => {
            let cases: Vec<String> = cases
                .iter()
                .enumerate()
                .map(|(i, case)| {
                    let payload = case.as_ref().map(|case| render(case, defs, next));
                    format!("(case \"c{i}\" {})", payload.unwrap_or_default())
                })
                .collect();
            format!("(variant {})", cases.join(" "))
        }
        Shape::Enum(count) => {
            let names: Vec<String> = (0..*count).map(|i| format!("\"e{i}\"")).collect();
            format!("(enum {})", names.join(" "))
        }
        Shape::Flags(count) => {
            let names: Vec<String> = (0..*count).map(|i| format!("\"g{i}\"")).collect();
            format!("(flags {})", names.join(" "))
        }
        Shape::Bool
        | Shape::S8
        | Shape::U8
        | Shape::S16
        | Shape::U16
        | Shape::S32
        | Shape::U32
        | Shape::S64
        | Shape::U64
        | Shape::F32
        | Shape::F64
        | Shape::Char
        | Shape::String => unreachable!("primitives returned above"),
    };
    let id = *next;
    *next += 1;
    defs.push_str(&format!(
        "(type $d{id} {body})\n(import \"t{id}\" (type $t{id} (eq $d{id})))\n"
    ));
    format!("$t{id}")
}

/// Compiles a component whose import `f` takes one parameter per shape, and returns their types.
fn types_of(shapes: &[Shape]) -> Vec<Type> {
    let mut defs = String::new();
    let mut next = 0;
    let params: Vec<String> = shapes
        .iter()
        .enumerate()
        .map(|(i, shape)| format!("(param \"p{i}\" {})", render(shape, &mut defs, &mut next)))
        .collect();
    let wat = format!(
        "(component\n{defs}(import \"f\" (func {})))",
        params.join(" ")
    );
    let component = Component::new(engine(), &wat).unwrap_or_else(|e| panic!("{e:?}\n{wat}"));
    let ty = component.component_type();
    let (_, item) = ty.imports(engine()).find(|(name, _)| *name == "f").unwrap();
    let ComponentItem::ComponentFunc(func) = item.ty else {
        panic!("f is not a function")
    };
    func.params().map(|(_, ty)| ty).collect()
}

fn type_of(shape: Shape) -> Type {
    types_of(&[shape]).remove(0)
}

fn shape_strategy() -> impl Strategy<Value = Shape> {
    let leaf = prop_oneof![
        Just(Shape::Bool),
        Just(Shape::S8),
        Just(Shape::U8),
        Just(Shape::S16),
        Just(Shape::U16),
        Just(Shape::S32),
        Just(Shape::U32),
        Just(Shape::S64),
        Just(Shape::U64),
        Just(Shape::F32),
        Just(Shape::F64),
        Just(Shape::Char),
        Just(Shape::String),
        (1usize..5).prop_map(Shape::Enum),
        (1usize..5).prop_map(Shape::Flags),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        let boxed = inner.clone().prop_map(Box::new);
        prop_oneof![
            boxed.clone().prop_map(Shape::List),
            (boxed.clone(), 1u32..4).prop_map(|(item, len)| Shape::FixedList(item, len)),
            boxed.clone().prop_map(Shape::Option),
            (
                proptest::option::of(boxed.clone()),
                proptest::option::of(boxed)
            )
                .prop_map(|(ok, err)| Shape::Result(ok, err)),
            proptest::collection::vec(inner.clone(), 1..4).prop_map(Shape::Tuple),
            proptest::collection::vec(inner.clone(), 1..4).prop_map(Shape::Record),
            proptest::collection::vec(proptest::option::of(inner), 1..4).prop_map(Shape::Variant),
        ]
    })
}

fn boxed(val: BoxedStrategy<Val>) -> BoxedStrategy<Option<Box<Val>>> {
    val.prop_map(|val| Some(Box::new(val))).boxed()
}

fn payload(shape: &Option<Box<Shape>>) -> BoxedStrategy<Option<Box<Val>>> {
    match shape {
        Some(shape) => boxed(val_strategy(shape)),
        None => Just(None).boxed(),
    }
}

fn val_strategy(shape: &Shape) -> BoxedStrategy<Val> {
    use proptest::collection::vec;
    match shape {
        Shape::Bool => any::<bool>().prop_map(Val::Bool).boxed(),
        Shape::S8 => any::<i8>().prop_map(Val::S8).boxed(),
        Shape::U8 => any::<u8>().prop_map(Val::U8).boxed(),
        Shape::S16 => any::<i16>().prop_map(Val::S16).boxed(),
        Shape::U16 => any::<u16>().prop_map(Val::U16).boxed(),
        Shape::S32 => any::<i32>().prop_map(Val::S32).boxed(),
        Shape::U32 => any::<u32>().prop_map(Val::U32).boxed(),
        Shape::S64 => any::<i64>().prop_map(Val::S64).boxed(),
        Shape::U64 => any::<u64>().prop_map(Val::U64).boxed(),
        // Any bit pattern, so NaN payloads and infinities are drawn.
        Shape::F32 => any::<u32>()
            .prop_map(|bits| Val::Float32(f32::from_bits(bits)))
            .boxed(),
        Shape::F64 => any::<u64>()
            .prop_map(|bits| Val::Float64(f64::from_bits(bits)))
            .boxed(),
        Shape::Char => any::<char>().prop_map(Val::Char).boxed(),
        Shape::String => any::<String>().prop_map(Val::String).boxed(),
        Shape::List(item) => vec(val_strategy(item), 0..4).prop_map(Val::List).boxed(),
        Shape::FixedList(item, len) => {
            let len = usize::try_from(*len).unwrap();
            vec(val_strategy(item), len..=len)
                .prop_map(Val::FixedLengthList)
                .boxed()
        }
        Shape::Option(item) => proptest::option::of(val_strategy(item).prop_map(Box::new))
            .prop_map(Val::Option)
            .boxed(),
        Shape::Result(ok, err) => prop_oneof![
            payload(ok).prop_map(|ok| Val::Result(Ok(ok))),
            payload(err).prop_map(|err| Val::Result(Err(err))),
        ]
        .boxed(),
        Shape::Tuple(items) => {
            let items: Vec<_> = items.iter().map(val_strategy).collect();
            items.prop_map(Val::Tuple).boxed()
        }
        Shape::Record(fields) => {
            let fields: Vec<_> = fields
                .iter()
                .enumerate()
                .map(|(i, field)| val_strategy(field).prop_map(move |val| (format!("f{i}"), val)))
                .collect();
            fields.prop_map(Val::Record).boxed()
        }
        Shape::Variant(cases) => {
            let count = cases.len();
            let cases = cases.clone();
            (0..count)
                .prop_flat_map(move |i| {
                    let case = cases[i].clone().map(Box::new);
                    payload(&case).prop_map(move |val| Val::Variant(format!("c{i}"), val))
                })
                .boxed()
        }
        Shape::Enum(count) => (0..*count).prop_map(|i| Val::Enum(format!("e{i}"))).boxed(),
        Shape::Flags(count) => {
            let count = *count;
            proptest::sample::subsequence((0..count).collect::<Vec<_>>(), 0..=count)
                .prop_map(|set| Val::Flags(set.iter().map(|i| format!("g{i}")).collect()))
                .boxed()
        }
    }
}

/// Exact equality that also compares float bit patterns (Val's `==` treats all NaNs as equal).
fn same_bits(left: &Val, right: &Val) -> bool {
    if left != right {
        return false;
    }
    match (left, right) {
        (Val::Float32(a), Val::Float32(b)) => a.to_bits() == b.to_bits(),
        (Val::Float64(a), Val::Float64(b)) => a.to_bits() == b.to_bits(),
        (Val::List(a), Val::List(b))
        | (Val::Tuple(a), Val::Tuple(b))
        | (Val::FixedLengthList(a), Val::FixedLengthList(b)) => all_same(a, b),
        (Val::Record(a), Val::Record(b)) => a.iter().zip(b).all(|(x, y)| same_bits(&x.1, &y.1)),
        (Val::Option(Some(a)), Val::Option(Some(b))) => same_bits(a, b),
        (Val::Variant(_, Some(a)), Val::Variant(_, Some(b)))
        | (Val::Result(Ok(Some(a))), Val::Result(Ok(Some(b))))
        | (Val::Result(Err(Some(a))), Val::Result(Err(Some(b)))) => same_bits(a, b),
        _ => true,
    }
}

fn all_same(left: &[Val], right: &[Val]) -> bool {
    left.len() == right.len() && left.iter().zip(right).all(|(a, b)| same_bits(a, b))
}

fn shape_and_values() -> impl Strategy<Value = (Vec<Shape>, Vec<Val>)> {
    proptest::collection::vec(shape_strategy(), 1..4).prop_flat_map(|shapes| {
        let vals: Vec<_> = shapes.iter().map(val_strategy).collect();
        (Just(shapes), vals)
    })
}

fn primitive() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Bool),
        Just(Shape::S8),
        Just(Shape::U8),
        Just(Shape::S16),
        Just(Shape::U16),
        Just(Shape::S32),
        Just(Shape::U32),
        Just(Shape::S64),
        Just(Shape::U64),
        Just(Shape::F32),
        Just(Shape::F64),
        Just(Shape::Char),
        Just(Shape::String),
    ]
}

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
fn resources_cannot_cross_the_wire() {
    let wat = r#"(component
        (import "r" (type $r (sub resource)))
        (import "f" (func (param "h" (own $r))))
    )"#;
    let component = Component::new(engine(), wat).unwrap();
    let ty = component.component_type();
    let (_, item) = ty.imports(engine()).find(|(name, _)| *name == "f").unwrap();
    let ComponentItem::ComponentFunc(func) = item.ty else {
        panic!("f is not a function")
    };
    let types: Vec<Type> = func.params().map(|(_, ty)| ty).collect();
    let slab = codec::encode(&[Val::U32(0)]).unwrap();
    assert_eq!(
        codec::decode(&slab, &types, &Limits::default()),
        Err(Error::UnsupportedType { kind: "own" })
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
