//! Component values <-> neopack slabs (SPEC.md, "Value slabs"). The only file in neorpc that
//! knows component value kinds, and the only one that names wasmtime.
//!
//! A slab is one neopack `List` holding a function's arguments (or results) in order. Encoding
//! is driven by the values; decoding is driven by the expected `wasmtime::component::Type`s, so
//! names of record fields, variant cases, enum cases and flags come from the type and a peer can
//! only pick among them. A resource handle crosses as its u64 id on the connection (a link
//! that carries resources swaps handles and ids before and after, `Limits::handles`);
//! futures, streams and error contexts cannot cross the wire and fail with
//! `Error::UnsupportedType`. Nesting depth and the number of decoded values are
//! bounded (`Limits`); a `list<u8>` blob's length is checked before anything is allocated for it.
//!
//! This file holds the public API and the names of kinds; its private parts `codec/encode.rs`
//! (one function per value kind) and `codec/decode.rs` (one per type kind) do the work. The
//! three together are still the only place that knows value kinds. Every failure is one
//! `Error` variant carrying the facts.

mod decode;
mod encode;

use neopack::Encoder;
use wasmtime::component::Type;
use wasmtime::component::Val;

use crate::cursor;

/// Deepest nesting of values accepted by default. WIT types written by people rarely nest past
/// a handful of levels; 32 leaves room while keeping the recursion (and its stack use) small.
pub const DEPTH_MAX: u32 = 32;

/// Most values decoded from one slab by default (each list element, field and case payload
/// counts one). A `Val` is about 40 bytes, so 1 Mi values bound a slab's decoded size near
/// 40 MiB, while a 64 KiB `list<u8>` uses 1/16 of it.
pub const ELEMENTS_MAX: u64 = 1 << 20;

/// An encode or decode failure of a value slab.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input ended in the middle of an item.
    #[error("input ended in the middle of an item")]
    Truncated,
    /// A byte where a neopack tag belongs is not a known tag.
    #[error("byte {byte:#04x} is not a neopack tag")]
    BadTag {
        /// The byte read.
        byte: u8,
    },
    /// A string or char is not valid UTF-8 / not a Unicode scalar value.
    #[error("string or char is not valid UTF-8")]
    BadUtf8,
    /// The item found is not of the kind the expected type requires.
    #[error("type mismatch: expected {expected}, found {found}")]
    TypeMismatch {
        /// What was expected.
        expected: &'static str,

        /// What was found instead.
        found: &'static str,
    },
    /// A variant, enum or flag name that the expected type does not declare.
    #[error("`{case}` is not a case of the expected type")]
    UnknownCase {
        /// The name found.
        case: String,
    },
    /// A value kind that cannot cross the wire (resources, futures, streams, error contexts).
    #[error("{kind} values cannot cross the wire")]
    UnsupportedType {
        /// The kind of value.
        kind: &'static str,
    },
    /// Values nested deeper than the configured limit.
    #[error("values nested deeper than {depth_max}")]
    DepthExceeded {
        /// The limit.
        depth_max: u32,
    },
    /// More values in one slab than the configured limit, refused before allocating them.
    #[error("more than {elements_max} values in one slab")]
    TooManyElements {
        /// The limit.
        elements_max: u64,
    },
    /// A record, tuple, fixed-length list or argument list with the wrong number of items.
    #[error("expected {expected} items, found {found}")]
    CountMismatch {
        /// What was expected.
        expected: u64,
        /// What was found instead.
        found: u64,
    },
    /// Bytes left over after a complete slab or item.
    #[error("{count} bytes left over after a complete item")]
    TrailingBytes {
        /// How many bytes are left over.
        count: u64,
    },
    /// Argument `index` of an argument list did not decode against its parameter type.
    #[error("argument {index}: {source}")]
    Argument {
        /// The argument's position, from 0.
        index: u32,
        /// The underlying error.
        source: Box<Error>,
    },
    /// The neopack encoder refused a write (a structural bug or a blob over 4 GiB).
    #[error("neopack refused the encoding: {reason}")]
    Encode {
        /// Why, in words.
        reason: &'static str,
    },
}

cursor::take_over!(Error);

/// Bounds applied while encoding and decoding one slab, and whether it may carry handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of values (top-level arguments are depth 1).
    pub depth_max: u32,
    /// Most values decoded from one slab.
    pub elements_max: u64,
    /// Whether `own` and `borrow` values are read as their handle ids (`Val::U64`), for a link
    /// that carries resources and resolves each id itself (`false`: refused as
    /// `UnsupportedType`). Such a link writes a handle as its id (`Val::U64`) too.
    pub handles: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            depth_max: DEPTH_MAX,
            elements_max: ELEMENTS_MAX,
            handles: false,
        }
    }
}

impl Limits {
    /// These limits, reading `own` and `borrow` values as handle ids.
    pub fn with_handles(self) -> Self {
        Self {
            handles: true,
            ..self
        }
    }
}

/// Encodes `vals` as a slab with the default limits.
pub fn encode(vals: &[Val]) -> Result<Vec<u8>, Error> {
    let mut encoder = Encoder::new();
    encode_into(&mut encoder, vals, &Limits::default())?;
    Ok(encoder.into_bytes()?)
}

/// Writes `vals` as one slab item into `encoder` (which may be in the middle of a frame).
pub fn encode_into(encoder: &mut Encoder, vals: &[Val], limits: &Limits) -> Result<(), Error> {
    encoder.list_begin()?;
    for val in vals {
        encode::value(encoder, val, 1, limits)?;
    }
    Ok(encoder.list_end()?)
}

/// Decodes a slab into one value per expected type.
pub fn decode(slab: &[u8], types: &[Type], limits: &Limits) -> Result<Vec<Val>, Error> {
    let mut vals = Vec::with_capacity(types.len());
    let push = |_: usize, val: Val| vals.push(val);
    decode::top_level(slab, types, limits, "value list", push, |_, error| error)?;
    Ok(vals)
}

/// Decodes an argument slab against parameter types, naming what is wrong: a top-level count
/// other than the number of types is `CountMismatch` (read before any value is decoded), and
/// a value that does not fit its type is `Argument { index, source }`.
pub fn decode_args<'t>(
    slab: &[u8],
    types: impl IntoIterator<Item = &'t Type, IntoIter: ExactSizeIterator>,
    limits: &Limits,
) -> Result<Vec<Val>, Error> {
    let types = types.into_iter();
    let mut vals = Vec::with_capacity(types.len());
    let push = |_: usize, val: Val| vals.push(val);
    let name_argument = |index: usize, error: Error| Error::Argument {
        index: u32::try_from(index).unwrap_or(u32::MAX),
        source: Box::new(error),
    };
    decode::top_level(slab, types, limits, "argument list", push, name_argument)?;
    Ok(vals)
}

/// Decodes a slab straight into `out`, one slot per expected type (as wasmtime's results
/// buffer wants), with no intermediate vector.
pub fn decode_into(
    slab: &[u8],
    types: &[Type],
    out: &mut [Val],
    limits: &Limits,
) -> Result<(), Error> {
    let slots_fit = out.len() == types.len();
    assert!(slots_fit, "decode_into needs one output slot per type");
    let put = |index: usize, val: Val| out[index] = val;
    decode::top_level(slab, types, limits, "value list", put, |_, error| error)
}

/// The name of a value's kind, as error messages show it.
pub fn val_kind(val: &Val) -> &'static str {
    match val {
        Val::Bool(_) => "bool",
        Val::S8(_) => "s8",
        Val::U8(_) => "u8",
        Val::S16(_) => "s16",
        Val::U16(_) => "u16",
        Val::S32(_) => "s32",
        Val::U32(_) => "u32",
        Val::S64(_) => "s64",
        Val::U64(_) => "u64",
        Val::Float32(_) => "f32",
        Val::Float64(_) => "f64",
        Val::Char(_) => "char",
        Val::String(_) => "string",
        Val::List(_) => "list",
        Val::Map(_) => "map",
        Val::Record(_) => "record",
        Val::Tuple(_) => "tuple",
        Val::Variant(..) => "variant",
        Val::Enum(_) => "enum",
        Val::Option(_) => "option",
        Val::Result(_) => "result",
        Val::Flags(_) => "flags",
        Val::Resource(_) => "resource",
        Val::Future(_) => "future",
        Val::Stream(_) => "stream",
        Val::ErrorContext(_) => "error-context",
        Val::FixedLengthList(_) => "fixed-length list",
    }
}

/// The name of a type's kind, as error messages show it.
pub fn type_kind(ty: &Type) -> &'static str {
    match ty {
        Type::Bool => "bool",
        Type::S8 => "s8",
        Type::U8 => "u8",
        Type::S16 => "s16",
        Type::U16 => "u16",
        Type::S32 => "s32",
        Type::U32 => "u32",
        Type::S64 => "s64",
        Type::U64 => "u64",
        Type::Float32 => "f32",
        Type::Float64 => "f64",
        Type::Char => "char",
        Type::String => "string",
        Type::List(_) => "list",
        Type::Map(_) => "map",
        Type::Record(_) => "record",
        Type::Tuple(_) => "tuple",
        Type::Variant(_) => "variant",
        Type::Enum(_) => "enum",
        Type::Option(_) => "option",
        Type::Result(_) => "result",
        Type::Flags(_) => "flags",
        Type::Own(_) => "own",
        Type::Borrow(_) => "borrow",
        Type::Future(_) => "future",
        Type::Stream(_) => "stream",
        Type::ErrorContext => "error-context",
        Type::FixedLengthList(_) => "fixed-length list",
    }
}
