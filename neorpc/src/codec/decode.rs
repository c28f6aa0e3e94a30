//! Decoding: one function per type kind, driven by the expected types, with the depth and
//! element limits checked as it goes (SPEC.md, "Value slabs").

use neopack::Decoder;
use neopack::Tag;
use wasmtime::component::Type;
use wasmtime::component::Val;
use wasmtime::component::types;

use super::Error;
use super::Limits;
use super::type_kind;
use crate::cursor::Cursor;
use crate::cursor::tag_name;

/// Decodes a whole slab: its top-level count is checked against the types first, then each
/// value is decoded and handed to `put` with its index; `wrap` adds the index to an error.
pub(super) fn top_level<'t>(
    slab: &[u8],
    types: impl IntoIterator<Item = &'t Type, IntoIter: ExactSizeIterator>,
    limits: &Limits,
    kind: &'static str,
    mut put: impl FnMut(usize, Val),
    wrap: impl Fn(usize, Error) -> Error,
) -> Result<(), Error> {
    let types = types.into_iter();
    let mut cursor = Cursor::new(slab);
    let mut body = cursor.container(Tag::List, kind)?;
    cursor.finish()?;
    let found = count_items(&mut body.clone())?;
    if found != types.len() {
        return Err(count_mismatch(types.len(), found));
    }
    let mut reader = Reader {
        limits,
        elements: 0,
    };
    for (index, ty) in types.enumerate() {
        let val = reader
            .value(&mut body, ty, 1)
            .map_err(|error| wrap(index, error))?;
        put(index, val);
    }
    Ok(())
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
            Type::Own(_) | Type::Borrow(_) if self.limits.handles => {
                Val::U64(scalar(cursor, Tag::U64, "handle", Decoder::u64)?)
            }
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
    Ok(cursor.read(Decoder::bool)?)
}

fn scalar<'a, T>(
    cursor: &mut Cursor<'a>,
    tag: Tag,
    expected: &'static str,
    read: impl FnOnce(&mut Decoder<'a>) -> neopack::Result<T>,
) -> Result<T, Error> {
    cursor.expect(tag, expected)?;
    Ok(cursor.read(read)?)
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
