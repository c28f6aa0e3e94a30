//! Encoding: one function per value kind, driven by the values (SPEC.md, "Value slabs").

use neopack::Encoder;
use wasmtime::component::Val;

use super::Error;
use super::Limits;
use super::val_kind;

/// Writes one value at nesting `depth`.
pub(super) fn value(
    encoder: &mut Encoder,
    val: &Val,
    depth: u32,
    limits: &Limits,
) -> Result<(), Error> {
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
        value(encoder, item, depth + 1, limits)?;
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
    value(encoder, payload, depth + 1, limits)
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
    value(encoder, inner, depth + 1, limits)?;
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
