//! How a failure reason sits inside a reply frame: a list of the reason's wire tag
//! (`failure::tag`), then that reason's fields in order (SPEC.md, "Failure reasons").

use neopack::Encoder;
use neopack::Tag;

use crate::cursor;
use crate::cursor::Cursor;
use crate::failure::Failure;
use crate::failure::tag;

use super::Error;

/// Writes a failure as a list: the u32 reason tag, then that reason's fields in order.
pub(crate) fn encode(encoder: &mut Encoder, failure: &Failure) -> Result<(), cursor::Error> {
    encoder.list_begin()?;
    encoder.u32(failure.tag())?;
    match failure {
        Failure::OutOfFuel | Failure::Overloaded => {}
        Failure::AppTrapped { message }
        | Failure::OutOfMemory { message }
        | Failure::ProtocolViolation { message }
        | Failure::Internal { message } => encoder.str(message)?,
        Failure::InstanceNotFound { instance } | Failure::Reentrant { instance } => {
            encoder.str(instance)?;
        }
        Failure::ResourceGone { resource } => encoder.str(resource)?,
        Failure::MethodNotFound { method } => encoder.str(method)?,
        Failure::PermissionDenied {
            instance,
            interface,
            reason,
        } => {
            encoder.str(instance)?;
            encoder.str(interface)?;
            // Optional (SPEC.md): an allow list's denial stays readable by older peers.
            if !reason.is_empty() {
                encoder.str(reason)?;
            }
        }
        Failure::BadArgumentCount { expected, found } => {
            encoder.u32(*expected)?;
            encoder.u32(*found)?;
        }
        Failure::ReplyTooLarge { reply_bytes, max } => {
            encoder.u64(*reply_bytes)?;
            encoder.u64(*max)?;
        }
        Failure::BadArgumentType {
            index: number,
            message,
        }
        | Failure::DomainSpecific {
            code: number,
            message,
        } => {
            encoder.u32(*number)?;
            encoder.str(message)?;
        }
    }
    Ok(encoder.list_end()?)
}

/// Reads a failure list; a tag this version does not know is `UnknownFailureTag`.
pub(crate) fn decode(value: &mut Cursor<'_>) -> Result<Failure, Error> {
    let mut fields = value.container(Tag::List, "failure")?;
    let tag = fields.u32("failure tag")?;
    let text = |fields: &mut Cursor<'_>| fields.str("failure text").map(str::to_owned);
    let failure = match tag {
        tag::APP_TRAPPED => Failure::AppTrapped {
            message: text(&mut fields)?,
        },
        tag::OUT_OF_FUEL => Failure::OutOfFuel,
        // The message came later (SPEC.md): a failure without it still reads.
        tag::OUT_OF_MEMORY if fields.is_empty() => Failure::OutOfMemory {
            message: String::new(),
        },
        tag::OUT_OF_MEMORY => Failure::OutOfMemory {
            message: text(&mut fields)?,
        },
        tag::INSTANCE_NOT_FOUND => Failure::InstanceNotFound {
            instance: text(&mut fields)?,
        },
        tag::METHOD_NOT_FOUND => Failure::MethodNotFound {
            method: text(&mut fields)?,
        },
        tag::BAD_ARGUMENT_COUNT => Failure::BadArgumentCount {
            expected: fields.u32("expected count")?,
            found: fields.u32("found count")?,
        },
        tag::BAD_ARGUMENT_TYPE => Failure::BadArgumentType {
            index: fields.u32("argument index")?,
            message: text(&mut fields)?,
        },
        tag::DOMAIN_SPECIFIC => Failure::DomainSpecific {
            code: fields.u32("domain code")?,
            message: text(&mut fields)?,
        },
        tag::PROTOCOL_VIOLATION => Failure::ProtocolViolation {
            message: text(&mut fields)?,
        },
        tag::OVERLOADED => Failure::Overloaded,
        tag::INTERNAL => Failure::Internal {
            message: text(&mut fields)?,
        },
        tag::REENTRANT => Failure::Reentrant {
            instance: text(&mut fields)?,
        },
        tag::REPLY_TOO_LARGE => Failure::ReplyTooLarge {
            reply_bytes: fields.u64("reply size")?,
            max: fields.u64("frame limit")?,
        },
        tag::PERMISSION_DENIED => Failure::PermissionDenied {
            instance: text(&mut fields)?,
            interface: text(&mut fields)?,
            // The reason came later (SPEC.md) and is absent when empty.
            reason: match fields.is_empty() {
                true => String::new(),
                false => text(&mut fields)?,
            },
        },
        tag::RESOURCE_GONE => Failure::ResourceGone {
            resource: text(&mut fields)?,
        },
        unknown => return Err(Error::UnknownFailureTag { tag: unknown }),
    };
    fields.finish()?;
    Ok(failure)
}
