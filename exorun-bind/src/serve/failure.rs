//! How an instance's failure reaches a remote caller: each reason once, in the fewest types
//! (see `serve`'s module doc).

use exorun_core::instance;
use exorun_core::instance::InstanceHandle;
use exorun_transport::client;
use neorpc::codec;
use neorpc::failure::Failure;
use neorpc::frame;

use crate::link;
use crate::link::remote;
use crate::link::standins;

/// The failure reason for an error of a call on `handle`; the target itself re-entered is
/// named as the caller addressed it.
pub(crate) fn failure_of(handle: &InstanceHandle, error: &instance::Error) -> Failure {
    let itself =
        matches!(error, instance::Error::Reentrant { instance } if *instance == handle.id());
    if let (true, Some(name)) = (itself, handle.name()) {
        let instance = name.to_owned();
        return Failure::Reentrant { instance };
    }
    failure(error)
}

/// A reply frame that could not be finished: over the frame limit (named with its size and
/// the limit), or refused by the encoder.
pub(crate) fn internal(error: frame::Error) -> Failure {
    if let frame::Error::FrameTooLarge { frame_bytes, max } = error {
        return Failure::ReplyTooLarge {
            reply_bytes: frame_bytes,
            max,
        };
    }
    Failure::Internal {
        message: format!("cannot build the reply: {error}"),
    }
}

pub(crate) fn bad_arguments(error: codec::Error) -> Failure {
    if let codec::Error::CountMismatch { expected, found } = error {
        return Failure::BadArgumentCount {
            expected: u32::try_from(expected).unwrap_or(u32::MAX),
            found: u32::try_from(found).unwrap_or(u32::MAX),
        };
    }
    if let codec::Error::Argument { index, source } = &error {
        return Failure::BadArgumentType {
            index: *index,
            message: source.to_string(),
        };
    }
    Failure::ProtocolViolation {
        message: format!("the argument slab is malformed: {error}"),
    }
}

/// The failure reason a remote caller sees for an instance error (see the module doc). A
/// remote failure that a linked import raised is passed on as it came (the same value, not
/// re-classified).
pub(crate) fn failure(error: &instance::Error) -> Failure {
    match error {
        instance::Error::NotFound { instance } => Failure::InstanceNotFound {
            instance: instance.to_string(),
        },
        instance::Error::ExportNotFound {
            interface,
            function,
        } => Failure::MethodNotFound {
            method: format!("{interface}#{function}"),
        },
        instance::Error::Busy { .. }
        | instance::Error::TooManyWaiting { .. }
        | instance::Error::TooManyBytesWaiting { .. } => Failure::Overloaded,
        // During a back-off the caller gets the failure that caused it.
        instance::Error::BackingOff { cause, .. } => failure(cause),
        instance::Error::Callee { cause, .. } => failure(cause),
        instance::Error::Reentrant { instance } => Failure::Reentrant {
            instance: instance.to_string(),
        },
        instance::Error::OutOfFuel => Failure::OutOfFuel,
        instance::Error::ResourceGone { resource } => Failure::ResourceGone {
            resource: resource.clone(),
        },
        instance::Error::OutOfMemory { message } => Failure::OutOfMemory {
            message: message.clone(),
        },
        instance::Error::Rejected(rejection) => Failure::DomainSpecific {
            code: rejection.code,
            message: rejection.message.clone(),
        },
        instance::Error::Raised(raised) => raised_failure(raised),
        instance::Error::Trapped { message } => Failure::AppTrapped {
            message: message.clone(),
        },
        instance::Error::Failed { .. }
        | instance::Error::Interrupted
        | instance::Error::Host { .. } => Failure::Internal {
            message: error.to_string(),
        },
    }
}

/// What a host function raised, as a remote caller sees it: a remote failure as it came, a link
/// that could not reach its provider as an internal failure, a missing named instance as
/// not found, anything else as a trap (the guest was unwound by it).
fn raised_failure(raised: &instance::Raised) -> Failure {
    let message = || raised.to_string();
    if let Some(failure) = raised.downcast_ref::<Failure>() {
        return failure.clone();
    }
    match raised.downcast_ref::<remote::Error>() {
        Some(remote::Error::Failed(failure)) => return failure.clone(),
        Some(remote::Error::Channel(client::Error::SessionEnded)) => {
            return Failure::ResourceGone {
                resource: "resource".to_owned(),
            };
        }
        Some(
            remote::Error::Channel(_)
            | remote::Error::Arguments(_)
            | remote::Error::Frame(_)
            | remote::Error::Results(_),
        ) => return Failure::Internal { message: message() },
        None => {}
    }
    if let Some(refused) = raised.downcast_ref::<standins::Error>() {
        return match refused {
            standins::Error::TooMany { .. } => Failure::Overloaded,
            standins::Error::Foreign { .. }
            | standins::Error::Split { .. }
            | standins::Error::PerCall { .. }
            | standins::Error::NotAStandIn { .. } => Failure::AppTrapped { message: message() },
        };
    }
    match raised.downcast_ref::<link::Unresolved>() {
        Some(link::Unresolved::Missing { name }) => Failure::InstanceNotFound {
            instance: name.clone(),
        },
        Some(link::Unresolved::OtherApp { .. }) => Failure::Internal { message: message() },
        None => Failure::AppTrapped { message: message() },
    }
}
