//! `Failure`: why a remote call failed, as the serving side reports it in a failure reply.
//!
//! A failure is not a decoding problem: it is a well-formed reply saying the call itself did not
//! produce results. Each reason has a stable numeric wire tag (`tag`, SPEC.md "Failure
//! reasons"); tags are never reused, and a reader that meets a tag it does not know reports
//! `frame::Error::UnknownFailureTag` instead of guessing. How a failure sits inside a reply
//! frame (a list: the tag, then the reason's fields) is the frame's business (`frame`).

/// Why a remote call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The callee trapped (unreachable, out-of-bounds, a host error raised as a trap, ...).
    #[error("the callee trapped: {message}")]
    AppTrapped {
        /// What happened, in words.
        message: String,
    },
    /// The callee ran out of fuel or past its time deadline.
    #[error("the callee ran out of fuel or time")]
    OutOfFuel,
    /// The callee tried to grow memory or tables past its limit: what grew past which limit
    /// (empty from a writer that predates the detail).
    #[error("the callee ran out of memory{}", detail(message))]
    OutOfMemory {
        /// What grew past which limit, in words.
        message: String,
    },
    /// No instance is exported for remote calls under that name.
    #[error("no instance `{instance}` is exported")]
    InstanceNotFound {
        /// The instance concerned.
        instance: String,
    },
    /// The instance exports no such `interface#function`.
    #[error("no method `{method}`")]
    MethodNotFound {
        /// `interface#function`.
        method: String,
    },
    /// The call carried the wrong number of arguments.
    #[error("expected {expected} arguments, got {found}")]
    BadArgumentCount {
        /// What was expected.
        expected: u32,
        /// What was found instead.
        found: u32,
    },
    /// An argument did not decode against its parameter type.
    #[error("argument {index} is malformed: {message}")]
    BadArgumentType {
        /// The argument's position, from 0.
        index: u32,
        /// What happened, in words.
        message: String,
    },
    /// An application or authorization rejection that the caller handles by code.
    #[error("domain error {code}: {message}")]
    DomainSpecific {
        /// The rejection's code.
        code: u32,
        /// What happened, in words.
        message: String,
    },
    /// The request frame itself was malformed.
    #[error("protocol violation: {message}")]
    ProtocolViolation {
        /// What happened, in words.
        message: String,
    },
    /// The server is at a limit (calls waiting, bytes held); the call did not start.
    #[error("the server is overloaded")]
    Overloaded,
    /// The server failed for a reason that is not the callee's fault.
    #[error("internal server error: {message}")]
    Internal {
        /// What happened, in words.
        message: String,
    },
    /// The call ran, but its results would make a reply frame over the frame limit.
    #[error("the reply of {reply_bytes} bytes exceeds the frame limit of {max}")]
    ReplyTooLarge {
        /// The reply frame's size, in bytes.
        reply_bytes: u64,
        /// The limit, in bytes.
        max: u64,
    },
    /// The call would re-enter an instance already on its call chain (A -> B -> A).
    #[error("re-entrant call into `{instance}`, which is already on the call chain")]
    Reentrant {
        /// The instance concerned.
        instance: String,
    },
    /// A resource handle the call names (an argument, or the handle released) names no
    /// resource of the callee on this connection: the replica that made it was restarted, the
    /// connection that held it ended, or it was never one.
    #[error("the {resource} this handle named is gone")]
    ResourceGone {
        /// The resource's name (e.g. `counter`), or `resource` when the handle is unknown.
        resource: String,
    },
    /// The caller (as its connection authenticated it, or anonymous) may not call this
    /// interface of this instance; the call did not start and its arguments were not read.
    #[error(
        "this caller may not call `{interface}` on `{instance}`{}",
        detail(reason)
    )]
    PermissionDenied {
        /// The instance concerned.
        instance: String,
        /// The interface of the method called.
        interface: String,
        /// Why, in the words of the guard that decided (empty: an allow list decided, or a
        /// writer that predates the reason).
        reason: String,
    },
}

/// `: message`, or nothing for an empty message.
fn detail(message: &str) -> String {
    if message.is_empty() {
        return String::new();
    }
    format!(": {message}")
}

/// Stable wire tags of the failure reasons (SPEC.md, "Failure reasons").
pub mod tag {
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
    /// `Failure::ReplyTooLarge`
    pub const REPLY_TOO_LARGE: u32 = 13;
    /// `Failure::PermissionDenied`
    pub const PERMISSION_DENIED: u32 = 14;
    /// `Failure::ResourceGone`
    pub const RESOURCE_GONE: u32 = 15;
}

impl Failure {
    /// The reason's name in snake case (`app_trapped`, `permission_denied`, ...): a bounded
    /// label for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Failure::AppTrapped { .. } => "app_trapped",
            Failure::OutOfFuel => "out_of_fuel",
            Failure::OutOfMemory { .. } => "out_of_memory",
            Failure::InstanceNotFound { .. } => "instance_not_found",
            Failure::MethodNotFound { .. } => "method_not_found",
            Failure::BadArgumentCount { .. } => "bad_argument_count",
            Failure::BadArgumentType { .. } => "bad_argument_type",
            Failure::DomainSpecific { .. } => "domain_specific",
            Failure::ProtocolViolation { .. } => "protocol_violation",
            Failure::Overloaded => "overloaded",
            Failure::Internal { .. } => "internal",
            Failure::Reentrant { .. } => "reentrant",
            Failure::ReplyTooLarge { .. } => "reply_too_large",
            Failure::PermissionDenied { .. } => "permission_denied",
            Failure::ResourceGone { .. } => "resource_gone",
        }
    }

    /// The stable wire tag of this reason.
    pub fn tag(&self) -> u32 {
        match self {
            Failure::AppTrapped { .. } => tag::APP_TRAPPED,
            Failure::OutOfFuel => tag::OUT_OF_FUEL,
            Failure::OutOfMemory { .. } => tag::OUT_OF_MEMORY,
            Failure::InstanceNotFound { .. } => tag::INSTANCE_NOT_FOUND,
            Failure::MethodNotFound { .. } => tag::METHOD_NOT_FOUND,
            Failure::BadArgumentCount { .. } => tag::BAD_ARGUMENT_COUNT,
            Failure::BadArgumentType { .. } => tag::BAD_ARGUMENT_TYPE,
            Failure::DomainSpecific { .. } => tag::DOMAIN_SPECIFIC,
            Failure::ProtocolViolation { .. } => tag::PROTOCOL_VIOLATION,
            Failure::Overloaded => tag::OVERLOADED,
            Failure::Internal { .. } => tag::INTERNAL,
            Failure::Reentrant { .. } => tag::REENTRANT,
            Failure::ReplyTooLarge { .. } => tag::REPLY_TOO_LARGE,
            Failure::PermissionDenied { .. } => tag::PERMISSION_DENIED,
            Failure::ResourceGone { .. } => tag::RESOURCE_GONE,
        }
    }
}
