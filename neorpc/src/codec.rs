//! Component values <-> neopack slabs (SPEC.md, "Value slabs"). The only file in neorpc that
//! knows component value kinds, and the only one that names wasmtime.
//!
//! A slab is one neopack `List` holding a function's arguments (or results) in order. Encoding
//! is driven by the values; decoding is driven by the expected `wasmtime::component::Type`s, so
//! names of record fields, variant cases, enum cases and flags come from the type and a peer can
//! only pick among them. Resources, futures, streams and error contexts cannot cross the wire
//! and fail with `Error::UnsupportedType`. Nesting depth and the number of decoded values are
//! bounded (`Limits`); a `list<u8>` blob's length is checked before anything is allocated for it.

use neopack::Decoder;
use neopack::Encoder;
use neopack::Tag;
use wasmtime::component::Type;
use wasmtime::component::Val;
use wasmtime::component::types;

use crate::cursor::Cursor;
use crate::cursor::tag_name;
use crate::error::Error;

/// Deepest nesting of values accepted by default. WIT types written by people rarely nest past
/// a handful of levels; 32 leaves room while keeping the recursion (and its stack use) small.
pub const DEPTH_MAX: u32 = 32;

/// Most values decoded from one slab by default (each list element, field and case payload
/// counts one). A `Val` is about 40 bytes, so 1 Mi values bound a slab's decoded size near
/// 40 MiB, while a 64 KiB `list<u8>` uses 1/16 of it.
pub const ELEMENTS_MAX: u64 = 1 << 20;

/// Bounds applied while encoding and decoding one slab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of values (top-level arguments are depth 1).
    pub depth_max: u32,
    /// Most values decoded from one slab.
    pub elements_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            depth_max: DEPTH_MAX,
            elements_max: ELEMENTS_MAX,
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
        encode_val(encoder, val, 1, limits)?;
    }
    Ok(encoder.list_end()?)
}

/// Decodes a slab into one value per expected type.
pub fn decode(slab: &[u8], types: &[Type], limits: &Limits) -> Result<Vec<Val>, Error> {
    let mut cursor = Cursor::new(slab);
    let mut reader = Reader {
        limits,
        elements: 0,
    };
    let vals = reader.positional(&mut cursor, "value list", types.iter().cloned(), 1)?;
    cursor.finish()?;
    Ok(vals)
}

/// Decodes an argument slab against parameter types, naming what is wrong: a top-level count
/// other than `types.len()` is `CountMismatch` (read before any value is decoded), and a
/// value that does not fit its type is `Argument { index, source }`.
pub fn decode_args(slab: &[u8], types: &[Type], limits: &Limits) -> Result<Vec<Val>, Error> {
    let mut cursor = Cursor::new(slab);
    let mut body = cursor.container(Tag::List, "argument list")?;
    cursor.finish()?;
    let found = count_items(&mut body.clone())?;
    if found != types.len() {
        return Err(count_mismatch(types.len(), found));
    }
    let mut reader = Reader {
        limits,
        elements: 0,
    };
    let mut vals = Vec::with_capacity(types.len());
    for (index, ty) in types.iter().enumerate() {
        let val = reader
            .value(&mut body, ty, 1)
            .map_err(|error| Error::Argument {
                index: u32::try_from(index).unwrap_or(u32::MAX),
                source: Box::new(error),
            })?;
        vals.push(val);
    }
    Ok(vals)
}

/// Decodes a slab into `out`, one slot per expected type (as wasmtime's results buffer wants).
pub fn decode_into(
    slab: &[u8],
    types: &[Type],
    out: &mut [Val],
    limits: &Limits,
) -> Result<(), Error> {
    let slots_fit = out.len() == types.len();
    assert!(slots_fit, "decode_into needs one output slot per type");
    let vals = decode(slab, types, limits)?;
    for (slot, val) in out.iter_mut().zip(vals) {
        *slot = val;
    }
    Ok(())
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

fn encode_val(encoder: &mut Encoder, val: &Val, depth: u32, limits: &Limits) -> Result<(), Error> {
    if depth > limits.depth_max {
        return Err(Error::DepthExceeded {
            depth_max: limits.depth_max,
        });
    }
    match val {
        Val::Bool(v) => encoder.bool(*v)?,
        Val::S8(v) => encoder.s8(*v)?,
        Val::U8(v) => encoder.u8(*v)?,
        Val::S16(v) => encoder.s16(*v)?,
        Val::U16(v) => encoder.u16(*v)?,
        Val::S32(v) => encoder.s32(*v)?,
        Val::U32(v) => encoder.u32(*v)?,
        Val::S64(v) => encoder.s64(*v)?,
        Val::U64(v) => encoder.u64(*v)?,
        Val::Float32(v) => encoder.f32(*v)?,
        Val::Float64(v) => encoder.f64(*v)?,
        Val::Char(v) => encoder.char(*v)?,
        Val::String(v) => encoder.str(v)?,
        Val::List(items) | Val::FixedLengthList(items) => {
            encode_list(encoder, items, depth, limits)?;
        }
        Val::Map(pairs) => encode_map(encoder, pairs, depth, limits)?,
        Val::Record(fields) => encode_seq(encoder, fields.iter().map(|f| &f.1), depth, limits)?,
        Val::Tuple(items) => encode_seq(encoder, items.iter(), depth, limits)?,
        Val::Variant(case, payload) => {
            encode_case(encoder, case, payload.as_deref(), depth, limits)?;
        }
        Val::Enum(case) => encode_case(encoder, case, None, depth, limits)?,
        Val::Option(inner) => encode_option(encoder, inner.as_deref(), depth, limits)?,
        Val::Result(outcome) => encode_result(encoder, outcome, depth, limits)?,
        Val::Flags(names) => encode_flags(encoder, names)?,
        Val::Resource(_) | Val::Future(_) | Val::Stream(_) | Val::ErrorContext(_) => {
            return Err(Error::UnsupportedType {
                kind: val_kind(val),
            });
        }
    }
    Ok(())
}

/// A list whose elements are `u8` is one `Bytes` blob; any other list is a `List`.
fn encode_list(
    encoder: &mut Encoder,
    items: &[Val],
    depth: u32,
    limits: &Limits,
) -> Result<(), Error> {
    let is_bytes = matches!(items.first(), Some(Val::U8(_)));
    if !is_bytes {
        return encode_seq(encoder, items.iter(), depth, limits);
    }
    let mut bytes = Vec::with_capacity(items.len());
    for item in items {
        let Val::U8(byte) = item else {
            return Err(Error::TypeMismatch {
                expected: "u8",
                found: val_kind(item),
            });
        };
        bytes.push(*byte);
    }
    Ok(encoder.bytes(&bytes)?)
}

fn encode_seq<'v>(
    encoder: &mut Encoder,
    items: impl Iterator<Item = &'v Val>,
    depth: u32,
    limits: &Limits,
) -> Result<(), Error> {
    encoder.list_begin()?;
    for item in items {
        encode_val(encoder, item, depth + 1, limits)?;
    }
    Ok(encoder.list_end()?)
}

/// A map is a list of two-item lists `[key, value]`, in the value's order.
fn encode_map(
    encoder: &mut Encoder,
    pairs: &[(Val, Val)],
    depth: u32,
    limits: &Limits,
) -> Result<(), Error> {
    encoder.list_begin()?;
    for (key, value) in pairs {
        encode_seq(encoder, [key, value].into_iter(), depth + 1, limits)?;
    }
    Ok(encoder.list_end()?)
}

/// Variant and enum cases are a neopack `Variant` named by the case; no payload is `Unit`.
fn encode_case(
    encoder: &mut Encoder,
    case: &str,
    payload: Option<&Val>,
    depth: u32,
    limits: &Limits,
) -> Result<(), Error> {
    encoder.variant_begin(case)?;
    encode_payload(encoder, payload, depth, limits)?;
    Ok(encoder.variant_end()?)
}

fn encode_payload(
    encoder: &mut Encoder,
    payload: Option<&Val>,
    depth: u32,
    limits: &Limits,
) -> Result<(), Error> {
    let Some(payload) = payload else {
        return Ok(encoder.unit()?);
    };
    encode_val(encoder, payload, depth + 1, limits)
}

fn encode_option(
    encoder: &mut Encoder,
    inner: Option<&Val>,
    depth: u32,
    limits: &Limits,
) -> Result<(), Error> {
    let Some(inner) = inner else {
        return Ok(encoder.option_none()?);
    };
    encoder.option_some_begin()?;
    encode_val(encoder, inner, depth + 1, limits)?;
    Ok(encoder.option_some_end()?)
}

fn encode_result(
    encoder: &mut Encoder,
    outcome: &Result<Option<Box<Val>>, Option<Box<Val>>>,
    depth: u32,
    limits: &Limits,
) -> Result<(), Error> {
    match outcome {
        Ok(payload) => {
            encoder.result_ok_begin()?;
            encode_payload(encoder, payload.as_deref(), depth, limits)?;
            encoder.result_ok_end()?;
        }
        Err(payload) => {
            encoder.result_err_begin()?;
            encode_payload(encoder, payload.as_deref(), depth, limits)?;
            encoder.result_err_end()?;
        }
    }
    Ok(())
}

/// Flags are a list of the names that are set.
fn encode_flags(encoder: &mut Encoder, names: &[String]) -> Result<(), Error> {
    encoder.list_begin()?;
    for name in names {
        encoder.str(name)?;
    }
    Ok(encoder.list_end()?)
}

/// Decoding state for one slab: the limits and the running count of decoded values.
struct Reader<'l> {
    limits: &'l Limits,
    elements: u64,
}

impl Reader<'_> {
    fn count(&mut self, values: u64) -> Result<(), Error> {
        let elements = self.elements.saturating_add(values);
        if elements > self.limits.elements_max {
            return Err(Error::TooManyElements {
                elements_max: self.limits.elements_max,
            });
        }
        self.elements = elements;
        Ok(())
    }

    fn value(&mut self, cursor: &mut Cursor<'_>, ty: &Type, depth: u32) -> Result<Val, Error> {
        if depth > self.limits.depth_max {
            return Err(Error::DepthExceeded {
                depth_max: self.limits.depth_max,
            });
        }
        self.count(1)?;
        let val = match ty {
            Type::Bool => Val::Bool(decode_bool(cursor)?),
            Type::S8 => Val::S8(scalar(cursor, Tag::S8, "s8", Decoder::s8)?),
            Type::U8 => Val::U8(scalar(cursor, Tag::U8, "u8", Decoder::u8)?),
            Type::S16 => Val::S16(scalar(cursor, Tag::S16, "s16", Decoder::s16)?),
            Type::U16 => Val::U16(scalar(cursor, Tag::U16, "u16", Decoder::u16)?),
            Type::S32 => Val::S32(scalar(cursor, Tag::S32, "s32", Decoder::s32)?),
            Type::U32 => Val::U32(scalar(cursor, Tag::U32, "u32", Decoder::u32)?),
            Type::S64 => Val::S64(scalar(cursor, Tag::S64, "s64", Decoder::s64)?),
            Type::U64 => Val::U64(scalar(cursor, Tag::U64, "u64", Decoder::u64)?),
            Type::Float32 => Val::Float32(scalar(cursor, Tag::F32, "f32", Decoder::f32)?),
            Type::Float64 => Val::Float64(scalar(cursor, Tag::F64, "f64", Decoder::f64)?),
            Type::Char => Val::Char(scalar(cursor, Tag::Char, "char", Decoder::char)?),
            Type::String => Val::String(cursor.str("string")?.to_owned()),
            Type::List(list) => Val::List(self.list(cursor, &list.ty(), depth)?),
            Type::FixedLengthList(list) => self.fixed_list(cursor, list, depth)?,
            Type::Map(map) => self.map(cursor, map, depth)?,
            Type::Record(record) => self.record(cursor, record, depth)?,
            Type::Tuple(tuple) => {
                Val::Tuple(self.positional(cursor, "tuple", tuple.types(), depth + 1)?)
            }
            Type::Variant(variant) => self.variant(cursor, variant, depth)?,
            Type::Enum(cases) => decode_enum(cursor, cases)?,
            Type::Option(option) => self.option(cursor, option, depth)?,
            Type::Result(result) => self.result(cursor, result, depth)?,
            Type::Flags(flags) => self.flags(cursor, flags)?,
            Type::Own(_)
            | Type::Borrow(_)
            | Type::Future(_)
            | Type::Stream(_)
            | Type::ErrorContext => {
                return Err(Error::UnsupportedType {
                    kind: type_kind(ty),
                });
            }
        };
        Ok(val)
    }

    /// A list of exactly one item per type, in order (arguments, records, tuples).
    fn positional(
        &mut self,
        cursor: &mut Cursor<'_>,
        kind: &'static str,
        types: impl ExactSizeIterator<Item = Type>,
        depth: u32,
    ) -> Result<Vec<Val>, Error> {
        let mut body = cursor.container(Tag::List, kind)?;
        let expected = types.len();
        let mut vals = Vec::with_capacity(expected);
        for ty in types {
            if body.is_empty() {
                return Err(count_mismatch(expected, vals.len()));
            }
            vals.push(self.value(&mut body, &ty, depth)?);
        }
        let extra = count_items(&mut body)?;
        if extra > 0 {
            return Err(count_mismatch(expected, expected + extra));
        }
        Ok(vals)
    }

    fn list(
        &mut self,
        cursor: &mut Cursor<'_>,
        item: &Type,
        depth: u32,
    ) -> Result<Vec<Val>, Error> {
        let is_blob = matches!(item, Type::U8) && cursor.peek()? == Tag::Bytes;
        if is_blob {
            let bytes = cursor.read(Decoder::bytes)?;
            self.count(u64::try_from(bytes.len()).unwrap_or(u64::MAX))?;
            return Ok(bytes.iter().map(|byte| Val::U8(*byte)).collect());
        }
        let mut body = cursor.container(Tag::List, "list")?;
        let mut items = Vec::new();
        while !body.is_empty() {
            items.push(self.value(&mut body, item, depth + 1)?);
        }
        Ok(items)
    }

    fn fixed_list(
        &mut self,
        cursor: &mut Cursor<'_>,
        list: &types::FixedLengthList,
        depth: u32,
    ) -> Result<Val, Error> {
        let items = self.list(cursor, &list.ty(), depth)?;
        let expected = usize::try_from(list.len()).unwrap_or(usize::MAX);
        if items.len() != expected {
            return Err(count_mismatch(expected, items.len()));
        }
        Ok(Val::FixedLengthList(items))
    }

    fn map(&mut self, cursor: &mut Cursor<'_>, map: &types::Map, depth: u32) -> Result<Val, Error> {
        let mut body = cursor.container(Tag::List, "map")?;
        let key_value = [map.key(), map.value()];
        let mut pairs = Vec::new();
        while !body.is_empty() {
            let pair =
                self.positional(&mut body, "map entry", key_value.iter().cloned(), depth + 1);
            let [key, value]: [Val; 2] = pair?.try_into().map_err(|_| count_mismatch(2, 0))?;
            pairs.push((key, value));
        }
        Ok(Val::Map(pairs))
    }

    fn record(
        &mut self,
        cursor: &mut Cursor<'_>,
        record: &types::Record,
        depth: u32,
    ) -> Result<Val, Error> {
        let field_types = record.fields().map(|field| field.ty);
        let vals = self.positional(cursor, "record", field_types, depth + 1)?;
        let names = record.fields().map(|field| field.name.to_owned());
        Ok(Val::Record(names.zip(vals).collect()))
    }

    fn variant(
        &mut self,
        cursor: &mut Cursor<'_>,
        variant: &types::Variant,
        depth: u32,
    ) -> Result<Val, Error> {
        let (name, mut body) = cursor.variant("variant")?;
        let Some(case) = variant.cases().find(|case| case.name == name) else {
            return Err(Error::UnknownCase {
                case: name.to_owned(),
            });
        };
        let payload = self.payload(&mut body, case.ty, depth)?;
        Ok(Val::Variant(name.to_owned(), payload))
    }

    fn option(
        &mut self,
        cursor: &mut Cursor<'_>,
        option: &types::OptionType,
        depth: u32,
    ) -> Result<Val, Error> {
        if cursor.peek()? == Tag::OptionNone {
            cursor.read(Decoder::option_none)?;
            return Ok(Val::Option(None));
        }
        let mut body = cursor.container(Tag::OptionSome, "option")?;
        let inner = self.value(&mut body, &option.ty(), depth + 1)?;
        body.finish()?;
        Ok(Val::Option(Some(Box::new(inner))))
    }

    fn result(
        &mut self,
        cursor: &mut Cursor<'_>,
        result: &types::ResultType,
        depth: u32,
    ) -> Result<Val, Error> {
        if cursor.peek()? == Tag::ResultErr {
            let mut body = cursor.container(Tag::ResultErr, "result")?;
            return Ok(Val::Result(Err(self.payload(
                &mut body,
                result.err(),
                depth,
            )?)));
        }
        let mut body = cursor.container(Tag::ResultOk, "result")?;
        Ok(Val::Result(Ok(self.payload(
            &mut body,
            result.ok(),
            depth,
        )?)))
    }

    /// The single payload of a case, `ok` or `err`: a value of `ty`, or `Unit` when it has none.
    fn payload(
        &mut self,
        body: &mut Cursor<'_>,
        ty: Option<Type>,
        depth: u32,
    ) -> Result<Option<Box<Val>>, Error> {
        let payload = match ty {
            Some(ty) => Some(Box::new(self.value(body, &ty, depth + 1)?)),
            None => {
                body.expect(Tag::Unit, "unit")?;
                body.read(Decoder::unit)?;
                None
            }
        };
        body.finish()?;
        Ok(payload)
    }

    fn flags(&mut self, cursor: &mut Cursor<'_>, flags: &types::Flags) -> Result<Val, Error> {
        let mut body = cursor.container(Tag::List, "flags")?;
        let mut set = Vec::new();
        while !body.is_empty() {
            let name = body.str("flag name")?;
            if !flags.names().any(|known| known == name) {
                return Err(Error::UnknownCase {
                    case: name.to_owned(),
                });
            }
            self.count(1)?;
            set.push(name.to_owned());
        }
        Ok(Val::Flags(set))
    }
}

fn decode_bool(cursor: &mut Cursor<'_>) -> Result<bool, Error> {
    let tag = cursor.peek()?;
    let is_bool = matches!(tag, Tag::BoolTrue | Tag::BoolFalse);
    if !is_bool {
        return Err(Error::TypeMismatch {
            expected: "bool",
            found: tag_name(tag),
        });
    }
    cursor.read(Decoder::bool)
}

fn scalar<'a, T>(
    cursor: &mut Cursor<'a>,
    tag: Tag,
    expected: &'static str,
    read: impl FnOnce(&mut Decoder<'a>) -> neopack::Result<T>,
) -> Result<T, Error> {
    cursor.expect(tag, expected)?;
    cursor.read(read)
}

fn decode_enum(cursor: &mut Cursor<'_>, cases: &types::Enum) -> Result<Val, Error> {
    let (name, mut body) = cursor.variant("enum")?;
    if !cases.names().any(|known| known == name) {
        return Err(Error::UnknownCase {
            case: name.to_owned(),
        });
    }
    body.expect(Tag::Unit, "unit")?;
    body.read(Decoder::unit)?;
    body.finish()?;
    Ok(Val::Enum(name.to_owned()))
}

/// Skips and counts the items left in a list body.
fn count_items(body: &mut Cursor<'_>) -> Result<usize, Error> {
    let mut count = 0;
    while !body.is_empty() {
        body.raw_item()?;
        count += 1;
    }
    Ok(count)
}

fn count_mismatch(expected: usize, found: usize) -> Error {
    Error::CountMismatch {
        expected: u64::try_from(expected).unwrap_or(u64::MAX),
        found: u64::try_from(found).unwrap_or(u64::MAX),
    }
}
