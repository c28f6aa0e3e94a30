//! Test-side type shapes for the codec tests.
//!
//! wasmtime `Type`s only come from components, so a test describes a type as a small `Shape`,
//! renders it as a component in WAT that imports a function `f` taking that type, compiles it
//! with wasmtime and reads the parameter type back. `val_strategy` draws values of a shape, and
//! `same_bits` compares values including float bit patterns.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

use std::sync::OnceLock;

use proptest::prelude::*;
use wasmtime::component::Component;
use wasmtime::component::Type;
use wasmtime::component::Val;
use wasmtime::component::types::ComponentItem;

/// A test-side description of a component value type.
#[derive(Debug, Clone)]
pub(crate) enum Shape {
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

pub(crate) fn engine() -> &'static wasmtime::Engine {
    static ENGINE: OnceLock<wasmtime::Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model_fixed_length_lists(true);
        wasmtime::Engine::new(&config).unwrap()
    })
}

/// Renders `shape` as a WAT type use; nominal types are defined and imported into `defs`.
/// The WAT name of a primitive shape; empty for compound shapes.
pub(crate) fn primitive_name(shape: &Shape) -> &'static str {
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

pub(crate) fn render(shape: &Shape, defs: &mut String, next: &mut usize) -> String {
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
pub(crate) fn types_of(shapes: &[Shape]) -> Vec<Type> {
    let mut defs = String::new();
    let mut next = 0;
    let params: Vec<String> = shapes
        .iter()
        .enumerate()
        .map(|(i, shape)| format!("(param \"p{i}\" {})", render(shape, &mut defs, &mut next)))
        .collect();
    param_types(&format!(
        "(component\n{defs}(import \"f\" (func {})))",
        params.join(" ")
    ))
}

/// Compiles the component `wat` and returns the parameter types of its imported function `f`.
pub(crate) fn param_types(wat: &str) -> Vec<Type> {
    let component = Component::new(engine(), wat).unwrap_or_else(|e| panic!("{e:?}\n{wat}"));
    let ty = component.component_type();
    let (_, item) = ty.imports(engine()).find(|(name, _)| *name == "f").unwrap();
    let ComponentItem::ComponentFunc(func) = item.ty else {
        panic!("f is not a function")
    };
    func.params().map(|(_, ty)| ty).collect()
}

pub(crate) fn type_of(shape: Shape) -> Type {
    types_of(&[shape]).remove(0)
}

pub(crate) fn shape_strategy() -> impl Strategy<Value = Shape> {
    // Weighted as thirteen primitives, one enum and one flags.
    let leaf = prop_oneof![
        13 => primitive(),
        1 => (1usize..5).prop_map(Shape::Enum),
        1 => (1usize..5).prop_map(Shape::Flags),
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

pub(crate) fn boxed(val: BoxedStrategy<Val>) -> BoxedStrategy<Option<Box<Val>>> {
    val.prop_map(|val| Some(Box::new(val))).boxed()
}

pub(crate) fn payload(shape: &Option<Box<Shape>>) -> BoxedStrategy<Option<Box<Val>>> {
    match shape {
        Some(shape) => boxed(val_strategy(shape)),
        None => Just(None).boxed(),
    }
}

pub(crate) fn val_strategy(shape: &Shape) -> BoxedStrategy<Val> {
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
pub(crate) fn same_bits(left: &Val, right: &Val) -> bool {
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

pub(crate) fn all_same(left: &[Val], right: &[Val]) -> bool {
    left.len() == right.len() && left.iter().zip(right).all(|(a, b)| same_bits(a, b))
}

pub(crate) fn shape_and_values() -> impl Strategy<Value = (Vec<Shape>, Vec<Val>)> {
    proptest::collection::vec(shape_strategy(), 1..4).prop_flat_map(|shapes| {
        let vals: Vec<_> = shapes.iter().map(val_strategy).collect();
        (Just(shapes), vals)
    })
}

pub(crate) fn primitive() -> impl Strategy<Value = Shape> {
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
