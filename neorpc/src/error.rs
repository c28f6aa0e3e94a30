//! Errors of the neorpc wire protocol (`Error`), and the reasons a remote side gives when a call
//! fails (`Failure`).
//!
//! `Error` is what goes wrong while encoding or decoding bytes: every malformed, truncated,
//! oversized or mistyped input maps to one variant that carries the facts. `Failure` is not a
//! decoding problem: it is a well-formed reply saying the call itself failed, with a stable
//! numeric wire tag per reason (see SPEC.md, "Failure reasons").

/// An encode or decode failure of a frame or a value slab.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input ended in the middle of an item.
    #[error("input ended in the middle of an item")]
    Truncated,
    /// A byte where a neopack tag belongs is not a known tag.
    #[error("byte {byte:#04x} is not a neopack tag")]
    BadTag { byte: u8 },
    /// A string or char is not valid UTF-8 / not a Unicode scalar value.
    #[error("string or char is not valid UTF-8")]
    BadUtf8,
    /// The item found is not of the kind the type or the frame layout requires.
    #[error("type mismatch: expected {expected}, found {found}")]
    TypeMismatch {
        expected: &'static str,
        found: &'static str,
    },
    /// A frame lacks a required map entry.
    #[error("frame has no `{field}` entry")]
    MissingField { field: &'static str },
    /// A frame carries the same map entry twice.
    #[error("frame has `{field}` twice")]
    DuplicateField { field: &'static str },
    /// A frame of a message kind this version does not know (readers log and skip it).
    #[error("unknown message kind `{kind}`")]
    UnknownKind { kind: String },
    /// A variant, enum or flag name that the expected type does not declare.
    #[error("`{case}` is not a case of the expected type")]
    UnknownCase { case: String },
    /// A value kind that cannot cross the wire (resources, futures, streams, error contexts).
    #[error("{kind} values cannot cross the wire")]
    UnsupportedType { kind: &'static str },
    /// Values nested deeper than the configured limit.
    #[error("values nested deeper than {depth_max}")]
    DepthExceeded { depth_max: u32 },
    /// A frame larger than the configured limit, refused before it is read.
    #[error("frame of {frame_bytes} bytes exceeds the limit of {max}")]
    FrameTooLarge { frame_bytes: u64, max: u64 },
    /// More values in one slab than the configured limit, refused before allocating them.
    #[error("more than {elements_max} values in one slab")]
    TooManyElements { elements_max: u64 },
    /// A record, tuple, fixed-length list or argument list with the wrong number of items.
    #[error("expected {expected} items, found {found}")]
    CountMismatch { expected: u64, found: u64 },
    /// Bytes left over after a complete frame or slab.
    #[error("{count} bytes left over after a complete item")]
    TrailingBytes { count: u64 },
    /// A failure reply with a reason tag this version does not know.
    #[error("unknown failure tag {tag}")]
    UnknownFailureTag { tag: u32 },
    /// Argument `index` of an argument list did not decode against its parameter type.
    #[error("argument {index}: {source}")]
    Argument { index: u32, source: Box<Error> },
    /// The neopack encoder refused a write (a structural bug or a blob over 4 GiB).
    #[error("neopack refused the encoding: {reason}")]
    Encode { reason: &'static str },
}

impl From<neopack::Error> for Error {
    fn from(error: neopack::Error) -> Self {
        match error {
            neopack::Error::UnexpectedEnd => Error::Truncated,
            neopack::Error::InvalidTag(byte) => Error::BadTag { byte },
            neopack::Error::InvalidUtf8 => Error::BadUtf8,
            neopack::Error::BlobTooLarge(_) => Error::Encode {
                reason: "blob over 4 GiB",
            },
            neopack::Error::BufferFull => Error::Encode {
                reason: "buffer full",
            },
            neopack::Error::ScopeMismatch { .. } => Error::Encode {
                reason: "scope mismatch",
            },
            neopack::Error::ScopeUnderflow => Error::Encode {
                reason: "scope underflow",
            },
            neopack::Error::ScopeStillOpen => Error::Encode {
                reason: "scope still open",
            },
            neopack::Error::TooManyItems(_) => Error::Encode {
                reason: "too many items",
            },
            neopack::Error::EmptyAdt(_) => Error::Encode {
                reason: "empty option/result/variant",
            },
            neopack::Error::InvalidMapEntry => Error::Encode {
                reason: "map entry not a variant",
            },
            neopack::Error::Text(_) => Error::Encode {
                reason: "text format",
            },
        }
    }
}

/// Why a remote call failed, as the serving side reports it in a failure reply.
///
/// Each reason has a stable wire tag (`Failure::tag`); tags are never reused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The callee trapped (unreachable, out-of-bounds, a host error raised as a trap, ...).
    #[error("the callee trapped: {message}")]
    AppTrapped { message: String },
    /// The callee ran out of fuel or past its time deadline.
    #[error("the callee ran out of fuel or time")]
    OutOfFuel,
    /// The callee tried to grow memory or tables past its limit.
    #[error("the callee ran out of memory")]
    OutOfMemory,
    /// No instance is exported for remote calls under that name.
    #[error("no instance `{instance}` is exported")]
    InstanceNotFound { instance: String },
    /// The instance exports no such `interface#function`.
    #[error("no method `{method}`")]
    MethodNotFound { method: String },
    /// The call carried the wrong number of arguments.
    #[error("expected {expected} arguments, got {found}")]
    BadArgumentCount { expected: u32, found: u32 },
    /// An argument did not decode against its parameter type.
    #[error("argument {index} is malformed: {message}")]
    BadArgumentType { index: u32, message: String },
    /// An application or authorization rejection that the caller handles by code.
    #[error("domain error {code}: {message}")]
    DomainSpecific { code: u32, message: String },
    /// The request frame itself was malformed.
    #[error("protocol violation: {message}")]
    ProtocolViolation { message: String },
    /// The server is at its limit of calls in flight on this connection.
    #[error("the server is overloaded")]
    Overloaded,
    /// The server failed for a reason that is not the callee's fault.
    #[error("internal server error: {message}")]
    Internal { message: String },
    /// The call would re-enter an instance already on its call chain (A -> B -> A).
    #[error("re-entrant call into `{instance}`, which is already on the call chain")]
    Reentrant { instance: String },
}

/// Stable wire tags of the failure reasons (SPEC.md, "Failure reasons").
pub mod failure_tag {
    /// `Failure::AppTrapped`
    pub const APP_TRAPPED: u32 = 1;
    /// `Failure::OutOfFuel`
    pub const OUT_OF_FUEL: u32 = 2;
    /// `Failure::OutOfMemory`
    pub const OUT_OF_MEMORY: u32 = 3;
    /// `Failure::InstanceNotFound`
    pub const INSTANCE_NOT_FOUND: u32 = 4;
    /// `Failure::MethodNotFound`
    pub const METHOD_NOT_FOUND: u32 = 5;
    /// `Failure::BadArgumentCount`
    pub const BAD_ARGUMENT_COUNT: u32 = 6;
    /// `Failure::BadArgumentType`
    pub const BAD_ARGUMENT_TYPE: u32 = 7;
    /// `Failure::DomainSpecific`
    pub const DOMAIN_SPECIFIC: u32 = 8;
    /// `Failure::ProtocolViolation`
    pub const PROTOCOL_VIOLATION: u32 = 9;
    /// `Failure::Overloaded`
    pub const OVERLOADED: u32 = 10;
    /// `Failure::Internal`
    pub const INTERNAL: u32 = 11;
    /// `Failure::Reentrant`
    pub const REENTRANT: u32 = 12;
}

impl Failure {
    /// The stable wire tag of this reason.
    pub fn tag(&self) -> u32 {
        match self {
            Failure::AppTrapped { .. } => failure_tag::APP_TRAPPED,
            Failure::OutOfFuel => failure_tag::OUT_OF_FUEL,
            Failure::OutOfMemory => failure_tag::OUT_OF_MEMORY,
            Failure::InstanceNotFound { .. } => failure_tag::INSTANCE_NOT_FOUND,
            Failure::MethodNotFound { .. } => failure_tag::METHOD_NOT_FOUND,
            Failure::BadArgumentCount { .. } => failure_tag::BAD_ARGUMENT_COUNT,
            Failure::BadArgumentType { .. } => failure_tag::BAD_ARGUMENT_TYPE,
            Failure::DomainSpecific { .. } => failure_tag::DOMAIN_SPECIFIC,
            Failure::ProtocolViolation { .. } => failure_tag::PROTOCOL_VIOLATION,
            Failure::Overloaded => failure_tag::OVERLOADED,
            Failure::Internal { .. } => failure_tag::INTERNAL,
            Failure::Reentrant { .. } => failure_tag::REENTRANT,
        }
    }
}
