//! Where resource handles sit in values: which types carry them, and a walk over the handles
//! in a value with the resource type of each, for links that carry handles between stores and
//! runtimes (each replaces a handle with its stand-in on the other side: another store's
//! handle, or the `Val::U64` id a remote link writes on the wire).
//!
//! The walk is depth first in value order (record fields, tuple items, list elements in order;
//! a map's key before its value), the order a codec writes values in.

use wasmtime::component::ResourceType;
use wasmtime::component::Type;
use wasmtime::component::Val;

/// Whether values of `ty` can carry a resource handle (`own` or `borrow`, at any depth).
pub fn carries_handles(ty: &Type) -> bool {
    match ty {
        Type::Own(_) | Type::Borrow(_) => true,
        Type::List(list) => carries_handles(&list.ty()),
        Type::FixedLengthList(list) => carries_handles(&list.ty()),
        Type::Map(map) => carries_handles(&map.key()) || carries_handles(&map.value()),
        Type::Option(option) => carries_handles(&option.ty()),
        Type::Result(result) => result.ok().iter().chain(&result.err()).any(carries_handles),
        Type::Record(record) => record.fields().any(|field| carries_handles(&field.ty)),
        Type::Tuple(tuple) => tuple.types().any(|ty| carries_handles(&ty)),
        Type::Variant(variant) => variant
            .cases()
            .any(|case| case.ty.as_ref().is_some_and(carries_handles)),
        Type::Bool
        | Type::S8
        | Type::U8
        | Type::S16
        | Type::U16
        | Type::S32
        | Type::U32
        | Type::S64
        | Type::U64
        | Type::Float32
        | Type::Float64
        | Type::Char
        | Type::String
        | Type::Enum(_)
        | Type::Flags(_)
        | Type::Future(_)
        | Type::Stream(_)
        | Type::ErrorContext => false,
    }
}

/// Calls `visit` on each value of `value` (of type `ty`) that sits where a resource handle goes
/// (a `Val::Resource`, or the `Val::U64` id a wire carries), with its resource type and whether
/// the type is `own`, depth first in value order; `visit` may replace it. A value that does
/// not fit its type (wasmtime checked it already) is left alone.
pub fn each_resource<E>(
    value: &mut Val,
    ty: &Type,
    visit: &mut impl FnMut(&mut Val, &ResourceType, bool) -> Result<(), E>,
) -> Result<(), E> {
    match (value, ty) {
        (value, Type::Own(resource)) => visit(value, resource, true),
        (value, Type::Borrow(resource)) => visit(value, resource, false),
        (Val::List(items), Type::List(list)) => each_in(items, &list.ty(), visit),
        (Val::FixedLengthList(items), Type::FixedLengthList(list)) => {
            each_in(items, &list.ty(), visit)
        }
        (Val::Map(pairs), Type::Map(map)) => {
            let (key, item) = (map.key(), map.value());
            for (k, v) in pairs {
                each_resource(k, &key, visit)?;
                each_resource(v, &item, visit)?;
            }
            Ok(())
        }
        (Val::Option(Some(inner)), Type::Option(option)) => {
            each_resource(inner, &option.ty(), visit)
        }
        (Val::Result(outcome), Type::Result(result)) => match outcome {
            Ok(Some(inner)) => each_optional(inner, result.ok(), visit),
            Err(Some(inner)) => each_optional(inner, result.err(), visit),
            Ok(None) | Err(None) => Ok(()),
        },
        (Val::Record(fields), Type::Record(record)) => {
            let types = record.fields().map(|field| field.ty);
            for ((_, field), ty) in fields.iter_mut().zip(types) {
                each_resource(field, &ty, visit)?;
            }
            Ok(())
        }
        (Val::Tuple(items), Type::Tuple(tuple)) => {
            for (item, ty) in items.iter_mut().zip(tuple.types()) {
                each_resource(item, &ty, visit)?;
            }
            Ok(())
        }
        (Val::Variant(name, Some(payload)), Type::Variant(variant)) => {
            let case = variant.cases().find(|case| case.name == name.as_str());
            each_optional(payload, case.and_then(|case| case.ty), visit)
        }
        _ => Ok(()),
    }
}

/// `each_resource` over a call's values (parameters or results) and their types, in order.
pub fn each_resource_in<'t, E>(
    values: &mut [Val],
    types: impl IntoIterator<Item = &'t Type>,
    visit: &mut impl FnMut(&mut Val, &ResourceType, bool) -> Result<(), E>,
) -> Result<(), E> {
    for (value, ty) in values.iter_mut().zip(types) {
        each_resource(value, ty, visit)?;
    }
    Ok(())
}

fn each_in<E>(
    items: &mut [Val],
    ty: &Type,
    visit: &mut impl FnMut(&mut Val, &ResourceType, bool) -> Result<(), E>,
) -> Result<(), E> {
    if !carries_handles(ty) {
        return Ok(());
    }
    for item in items {
        each_resource(item, ty, visit)?;
    }
    Ok(())
}

fn each_optional<E>(
    value: &mut Val,
    ty: Option<Type>,
    visit: &mut impl FnMut(&mut Val, &ResourceType, bool) -> Result<(), E>,
) -> Result<(), E> {
    match ty {
        Some(ty) => each_resource(value, &ty, visit),
        None => Ok(()),
    }
}
