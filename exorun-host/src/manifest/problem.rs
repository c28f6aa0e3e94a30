//! What can be wrong with a manifest.

use exorun_transport::identity;
use exorun_transport::transport;

/// What is wrong with a manifest.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The manifest's path.
        path: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not have the manifest's shape.
    #[error("{path}: {message}")]
    Syntax {
        /// The manifest's path.
        path: String,
        /// What happened, in words (the TOML parser's, or the manifest's shape).
        message: String,
    },
    /// Keys whose values are wrong; each on its own line.
    #[error("{}", lines(path, problems))]
    Invalid {
        /// The manifest's path.
        path: String,

        /// Each wrong key and what is wrong with it.
        problems: Vec<(String, Problem)>,
    },
}

fn lines(path: &str, problems: &[(String, Problem)]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|(key, problem)| format!("{path}: {key}: {problem}"))
        .collect();
    lines.join("\n")
}

/// One wrong value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// An instance name that `--invoke` and remote callers could not address.
    #[error("instance names may not be empty or contain `.`, `#`, `(` or whitespace")]
    BadInstanceName,
    /// An instance names an app the manifest does not list.
    #[error("unknown app `{app}`")]
    UnknownApp {
        /// The app named.
        app: String,
    },
    /// A local link names an instance the manifest does not list.
    #[error("unknown instance `{instance}`")]
    UnknownInstance {
        /// The instance, by its manifest name.
        instance: String,
    },
    /// A system link names a system exorun does not have.
    #[error(
        "unknown system `{system}` (known: wasi, logging, kv, keyvalue, config, caller, meta, http)"
    )]
    UnknownSystem {
        /// The system named.
        system: String,
    },
    /// A link that is not exactly one of system, local and remote.
    #[error("a link needs exactly one of `system`, `local` or `remote`")]
    LinkKind,
    /// A remote link without the instance to call on the peer.
    #[error("a remote link needs `target`, the instance's name on the peer")]
    MissingTarget,
    /// `allow` on a link other than the HTTP system.
    #[error("`allow` applies only to `system = \"http\"`")]
    StrayAllow,
    /// An HTTP allow list that cannot be read.
    #[error("{message}")]
    HttpAllow {
        /// What is wrong with which entry.
        message: String,
    },
    /// A route prefix that does not start with `/`.
    #[error("a route's prefix starts with `/`")]
    RoutePrefix,
    /// More routes than a server has.
    #[error("at most {} routes", crate::manifest::HTTP_ROUTES_MAX)]
    TooManyRoutes,
    /// A routed instance whose app does not export an HTTP handler.
    #[error("`{instance}` cannot answer HTTP: its app does not export wasi:http/incoming-handler")]
    NotAHandler {
        /// The instance routed to.
        instance: String,
    },
    /// `store` on a link other than the kv system.
    #[error("`store` applies only to `system = \"kv\"` and `system = \"keyvalue\"`")]
    StrayStore,
    /// WASI settings on an instance that links nothing to the WASI system (they would be lost).
    #[error("WASI settings are given but no import is linked to `system = \"wasi\"`")]
    UnusedWasi,
    /// `config` on an instance that links nothing to the config system (it would be lost).
    #[error("`config` is given but no import is linked to `system = \"config\"` (or `wasi:*`)")]
    UnusedConfig,
    /// `capability` on a link that is not remote.
    #[error("`capability` applies only to remote links")]
    StrayCapability,
    /// A capability for a NATS peer, whose calls carry no caller key to hold it.
    #[error(
        "a capability is held by a caller's key, which NATS does not carry; present it over tls:// or quic://"
    )]
    CapabilityOnNats,
    /// `export = {}`: neither an allow list nor a guard.
    #[error("an export table needs `allow`, `guard` or both; to reach anyone, use `export = true`")]
    EmptyExport,
    /// A guard whose app does not export the guard interface.
    #[error("`{instance}` cannot guard: its app does not export exorun:auth/guard#check")]
    NotAGuard {
        /// The instance named as guard.
        instance: String,
    },
    /// A capability file that cannot be read or is not a capability.
    #[error("{message}")]
    Capability {
        /// What happened, naming the file.
        message: String,
    },
    /// A privileged system linked by an instance not trusted with it, or an instance started
    /// through meta asking to be trusted.
    #[error(
        "`system = \"meta\"` is linked only by an instance of the manifest marked `trusted = [\"meta\"]`"
    )]
    Untrusted,
    /// Something an instance started through meta may not use.
    #[error("a deployed instance may not use {what}")]
    Deployed {
        /// What it asked for.
        what: String,
    },
    /// Instance settings (through meta) that are not a TOML instance table.
    #[error("{message}")]
    Settings {
        /// What is wrong, in TOML's words.
        message: String,
    },
    /// `wasi:*` linked to something other than the WASI system.
    #[error("`wasi:*` can only be linked to `system = \"wasi\"`")]
    WildcardNotWasi,
    /// An address that does not parse.
    #[error("{0}")]
    BadAddress(transport::Error),
    /// `replicas` that is neither a count from 1 up nor `"per-call"`.
    #[error("replicas must be a count from 1 up or \"per-call\"")]
    BadReplicas,
    /// More replicas than one instance may have.
    #[error("{replicas} replicas is more than the {max} one instance may have")]
    TooManyReplicas {
        /// The count given.
        replicas: u64,
        /// The bound (`manifest::REPLICAS_MAX`).
        max: u64,
    },
    /// A limit past its bound.
    #[error("{limit} = {value} is past its bound of {max}")]
    LimitTooLarge {
        /// The limit's key in `limits`.
        limit: &'static str,
        /// The value given.
        value: u64,
        /// The bound.
        max: u64,
    },
    /// `restart` other than `always` or `never`.
    #[error("restart must be \"always\" or \"never\", not `{restart}`")]
    BadRestart {
        /// The value given.
        restart: String,
    },
    /// A remote link to a peer whose own settings are wrong (reported at its key).
    #[error("the peer `{peer}` is not usable (see peers.{peer})")]
    BrokenPeer {
        /// The peer's name.
        peer: String,
    },
    /// A peer with neither `address` nor `addresses`, both, or an empty list.
    #[error("a peer needs `address` or a non-empty `addresses`, not both")]
    PeerAddresses,
    /// A public key that does not parse, or a key file that cannot be used.
    #[error("{0}")]
    Key(identity::Error),
    /// A peer with a `tls://` or `quic://` address and no `key` to pin.
    #[error("a tls:// or quic:// peer needs `key`, the public key it must present (`exorun key`)")]
    PeerNeedsKey,
    /// A pinned key with a plaintext address, which could check no key.
    #[error("`{address}` is plaintext and cannot check the pinned key; use tls:// or quic://")]
    KeyOnPlaintext {
        /// The plaintext address.
        address: String,
    },
    /// A peer with both nats:// and other addresses.
    #[error("a peer's addresses are all nats:// (a lattice) or none are")]
    MixedNats,
    /// A NATS setting on a peer that is not a lattice.
    #[error("`{setting}` applies only to nats:// peers")]
    NatsOnly {
        /// The setting.
        setting: &'static str,
    },
    /// A pinned key on a nats:// peer.
    #[error(
        "a nats:// peer is authenticated by NATS (credentials, nkey, TLS); `key` pins tls:// and quic:// peers"
    )]
    PinOnNats,
    /// A secure peer, but no node key for this runtime.
    #[error(
        "a secure peer needs this runtime's node key: `key = PATH` at the top of the manifest, or --key PATH"
    )]
    NoNodeKey,
    /// An allow list that names no key (no one could call the export).
    #[error("an allow list needs at least one key; to reach no one, use `export = false`")]
    EmptyAllow,
    /// An export restricted by keys or a guard served on a plaintext listener, whose callers
    /// have no key.
    #[error(
        "an allow list or a guard needs secure listeners (tls://, quic://), but `{listener}` is plaintext"
    )]
    AllowOnPlaintext {
        /// The plaintext listener.
        listener: String,
    },
    /// `when_down` other than `fail` or `wait`.
    #[error("when_down must be \"fail\" or \"wait\", not `{when_down}`")]
    BadWhenDown {
        /// The value given.
        when_down: String,
    },
    /// `stdio` other than `inherit` or `closed`.
    #[error("stdio must be \"inherit\" or \"closed\", not `{stdio}`")]
    BadStdio {
        /// The value given.
        stdio: String,
    },
    /// The component could not be read or compiled.
    #[error("{message}")]
    Component {
        /// What happened, in words.
        message: String,
    },
    /// A link does not hold (unlinked, stray, missing, mismatched, a handle across it).
    #[error("{0}")]
    Link(exorun_bind::builder::Problem),
    /// A store names neither or both of a file and a NATS system.
    #[error(
        "a store is `{{ path = \"FILE\" }}` or `{{ nats = PEER_OR_ADDRESS, bucket = \"NAME\" }}`"
    )]
    StoreKind,
    /// A JetStream store's `nats` names a peer that is not a NATS one.
    #[error("`{peer}` is not a nats:// peer")]
    NotNats {
        /// The peer named.
        peer: String,
    },
    /// A bucket name NATS would not take.
    #[error("bucket `{bucket}` must be letters, digits, `-` and `_`")]
    BadBucket {
        /// The name given.
        bucket: String,
    },
    /// A store that could not be opened (a corrupt or locked file, an unreachable NATS).
    #[error("{message}")]
    Store {
        /// What happened, naming the file or bucket.
        message: String,
    },
}
