//! The ledger: a component's imports and exports as interfaces -> functions -> signatures, and
//! the contract check between an import and its provider.
//!
//! Checks run before anything is instantiated or sent: a provider must have the interface
//! (`InterfaceNotFound`) and every function (`MethodNotFound`) with a structurally equal
//! signature (`SignatureMismatch`, naming both). Values cross a link as `Val`s (locally) or
//! as bytes (remotely), so no resource, future, stream or error context may appear in a linked
//! signature: a handle means nothing in another store (`UnsupportedAcrossStores`) or on another
//! runtime (`UnsupportedAcrossRemote`). No interface is special-cased: `wasi:*` is checked like
//! any other.

use std::collections::BTreeMap;

use wasmtime::component::Component;
use wasmtime::component::Type;
use wasmtime::component::types::ComponentFunc;
use wasmtime::component::types::ComponentItem;

/// A broken contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The provider does not have the interface.
    #[error("the provider has no interface {interface}")]
    InterfaceNotFound {
        /// The interface, fully qualified (e.g. `exorun:test/math`).
        interface: String,
    },
    /// The provider's interface lacks a function the import needs.
    #[error("the provider's {interface} has no function {function}")]
    MethodNotFound {
        /// The interface, fully qualified (e.g. `exorun:test/math`).
        interface: String,
        /// The function, by its name within the interface.
        function: String,
    },
    /// The two sides disagree on a function's signature.
    #[error("{interface}#{function}: the import expects {expected}, the provider has {found}")]
    SignatureMismatch {
        /// The interface, fully qualified (e.g. `exorun:test/math`).
        interface: String,

        /// The function, by its name within the interface.
        function: String,

        /// What was expected.
        expected: String,

        /// What was found instead.
        found: String,
    },
    /// A signature carries a value kind that cannot cross a remote link.
    #[error("{interface}#{function} passes a {kind}, which cannot cross a remote link")]
    UnsupportedAcrossRemote {
        /// The interface, fully qualified (e.g. `exorun:test/math`).
        interface: String,

        /// The function, by its name within the interface.
        function: String,

        /// The kind of value.
        kind: &'static str,
    },
    /// A signature carries a handle that cannot pass between two stores of one runtime.
    #[error(
        "{interface}#{function} passes a {kind}, which cannot cross a local link between stores"
    )]
    UnsupportedAcrossStores {
        /// The interface, fully qualified (e.g. `exorun:test/math`).
        interface: String,

        /// The function, by its name within the interface.
        function: String,

        /// The kind of value.
        kind: &'static str,
    },
}

/// One function's parameter and result types.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    /// Parameter names and types, in order.
    pub params: Vec<(String, Type)>,
    /// Result types, in order.
    pub results: Vec<Type>,
}

/// An interface: its functions by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Interface {
    /// The fully qualified name, e.g. `exorun:test/math`.
    pub name: String,
    /// Functions by name (`add`, `[method]counter.next`).
    pub functions: BTreeMap<String, Signature>,
}

/// A component's imported and exported interfaces.
#[derive(Debug, Clone, PartialEq)]
pub struct Ledger {
    /// Imported interfaces by name.
    pub imports: BTreeMap<String, Interface>,
    /// Exported interfaces by name.
    pub exports: BTreeMap<String, Interface>,
}

impl Ledger {
    /// Reads the interfaces of `component`.
    pub fn of(engine: &wasmtime::Engine, component: &Component) -> Self {
        let ty = component.component_type();
        let imports = ty
            .imports(engine)
            .filter_map(|(name, item)| interface(engine, name, &item.ty));
        let exports = ty
            .exports(engine)
            .filter_map(|(name, item)| interface(engine, name, &item.ty));
        Self {
            imports: imports.collect(),
            exports: exports.collect(),
        }
    }
}

/// How an import reaches its provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Another instance in the same runtime (`Val`s pass between stores).
    Local,
    /// An instance on another runtime (values pass as bytes).
    Remote,
}

/// Checks that `provider` satisfies `import` over `link`. Returns every problem, not just the
/// first.
pub fn check(import: &Interface, provider: Option<&Interface>, link: Link) -> Vec<Error> {
    let mut problems = Vec::new();
    let Some(provider) = provider else {
        problems.push(Error::InterfaceNotFound {
            interface: import.name.clone(),
        });
        return problems;
    };
    for (function, wanted) in &import.functions {
        if let Some(problem) = check_function(
            &import.name,
            function,
            wanted,
            provider.functions.get(function),
            link,
        ) {
            problems.push(problem);
        }
    }
    problems
}

/// The handle-passing functions of `import`, which cannot cross `link`. This is all a remote
/// link can check before a call: the peer's exports are not known here.
pub fn crossing(import: &Interface, link: Link) -> Vec<Error> {
    let barriers = import.functions.iter();
    barriers
        .filter_map(|(function, wanted)| barrier(&import.name, function, wanted, link))
        .collect()
}

/// The first handle kind in `wanted`, as the error `link` gives it.
fn barrier(interface: &str, function: &str, wanted: &Signature, link: Link) -> Option<Error> {
    let kind = wanted
        .params
        .iter()
        .map(|(_, ty)| ty)
        .chain(&wanted.results)
        .find_map(handle_kind)?;
    let (interface, function) = (interface.to_owned(), function.to_owned());
    Some(match link {
        Link::Local => Error::UnsupportedAcrossStores {
            interface,
            function,
            kind,
        },
        Link::Remote => Error::UnsupportedAcrossRemote {
            interface,
            function,
            kind,
        },
    })
}

fn check_function(
    interface: &str,
    function: &str,
    wanted: &Signature,
    found: Option<&Signature>,
    link: Link,
) -> Option<Error> {
    if let Some(problem) = barrier(interface, function, wanted, link) {
        return Some(problem);
    }
    let Some(found) = found else {
        return Some(Error::MethodNotFound {
            interface: interface.to_owned(),
            function: function.to_owned(),
        });
    };
    let same_params = wanted.params.len() == found.params.len()
        && wanted
            .params
            .iter()
            .zip(&found.params)
            .all(|(a, b)| a.1 == b.1);
    if same_params && wanted.results == found.results {
        return None;
    }
    Some(Error::SignatureMismatch {
        interface: interface.to_owned(),
        function: function.to_owned(),
        expected: describe_signature(wanted),
        found: describe_signature(found),
    })
}

/// The first handle kind in `ty` (resource, future, stream, error context), if any: none of them
/// can cross a link, local (another store) or remote (another runtime).
fn handle_kind(ty: &Type) -> Option<&'static str> {
    match ty {
        Type::Own(_) | Type::Borrow(_) => Some("resource"),
        Type::Future(_) => Some("future"),
        Type::Stream(_) => Some("stream"),
        Type::ErrorContext => Some("error-context"),
        Type::List(list) => handle_kind(&list.ty()),
        Type::FixedLengthList(list) => handle_kind(&list.ty()),
        Type::Map(map) => handle_kind(&map.key()).or_else(|| handle_kind(&map.value())),
        Type::Option(option) => handle_kind(&option.ty()),
        Type::Result(result) => result
            .ok()
            .iter()
            .chain(result.err().iter())
            .find_map(handle_kind),
        Type::Record(record) => record.fields().find_map(|field| handle_kind(&field.ty)),
        Type::Tuple(tuple) => tuple.types().find_map(|ty| handle_kind(&ty)),
        Type::Variant(variant) => variant
            .cases()
            .find_map(|case| case.ty.as_ref().and_then(handle_kind)),
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
        | Type::Flags(_) => None,
    }
}

/// A signature in WIT-like text, e.g. `func(a: u32, b: u32) -> u32`.
pub fn describe_signature(signature: &Signature) -> String {
    let params: Vec<String> = signature
        .params
        .iter()
        .map(|(name, ty)| format!("{name}: {}", describe(ty)))
        .collect();
    let results: Vec<String> = signature.results.iter().map(describe).collect();
    let arrow = match results.len() {
        0 => String::new(),
        _ => format!(" -> {}", results.join(", ")),
    };
    format!("func({}){arrow}", params.join(", "))
}

/// A type in WIT-like text (records, variants, enums and flags spelled out structurally).
pub fn describe(ty: &Type) -> String {
    let joined = |items: Vec<String>| items.join(", ");
    match ty {
        Type::List(list) => format!("list<{}>", describe(&list.ty())),
        Type::FixedLengthList(list) => format!("list<{}, {}>", describe(&list.ty()), list.len()),
        Type::Map(map) => format!("map<{}, {}>", describe(&map.key()), describe(&map.value())),
        Type::Option(option) => format!("option<{}>", describe(&option.ty())),
        Type::Result(result) => {
            let side = |ty: Option<Type>| ty.map_or("_".to_owned(), |ty| describe(&ty));
            format!("result<{}, {}>", side(result.ok()), side(result.err()))
        }
        Type::Tuple(tuple) => format!(
            "tuple<{}>",
            joined(tuple.types().map(|ty| describe(&ty)).collect())
        ),
        Type::Record(record) => format!(
            "record {{ {} }}",
            joined(
                record
                    .fields()
                    .map(|f| format!("{}: {}", f.name, describe(&f.ty)))
                    .collect()
            )
        ),
        Type::Variant(variant) => format!(
            "variant {{ {} }}",
            joined(
                variant
                    .cases()
                    .map(|c| c.ty.map_or(c.name.to_owned(), |ty| format!(
                        "{}({})",
                        c.name,
                        describe(&ty)
                    )))
                    .collect()
            )
        ),
        Type::Enum(cases) => format!(
            "enum {{ {} }}",
            joined(cases.names().map(str::to_owned).collect())
        ),
        Type::Flags(flags) => format!(
            "flags {{ {} }}",
            joined(flags.names().map(str::to_owned).collect())
        ),
        Type::Bool => "bool".to_owned(),
        Type::S8 => "s8".to_owned(),
        Type::U8 => "u8".to_owned(),
        Type::S16 => "s16".to_owned(),
        Type::U16 => "u16".to_owned(),
        Type::S32 => "s32".to_owned(),
        Type::U32 => "u32".to_owned(),
        Type::S64 => "s64".to_owned(),
        Type::U64 => "u64".to_owned(),
        Type::Float32 => "f32".to_owned(),
        Type::Float64 => "f64".to_owned(),
        Type::Char => "char".to_owned(),
        Type::String => "string".to_owned(),
        Type::Own(_) => "own".to_owned(),
        Type::Borrow(_) => "borrow".to_owned(),
        Type::Future(_) => "future".to_owned(),
        Type::Stream(_) => "stream".to_owned(),
        Type::ErrorContext => "error-context".to_owned(),
    }
}

fn interface(
    engine: &wasmtime::Engine,
    name: &str,
    item: &ComponentItem,
) -> Option<(String, Interface)> {
    let ComponentItem::ComponentInstance(instance) = item else {
        return None;
    };
    let functions = instance.exports(engine).filter_map(|(function, export)| {
        let ComponentItem::ComponentFunc(func) = &export.ty else {
            return None;
        };
        Some((function.to_owned(), signature(func)))
    });
    Some((
        name.to_owned(),
        Interface {
            name: name.to_owned(),
            functions: functions.collect(),
        },
    ))
}

/// The signature of a component function type.
pub fn signature(func: &ComponentFunc) -> Signature {
    Signature {
        params: func
            .params()
            .map(|(name, ty)| (name.to_owned(), ty))
            .collect(),
        results: func.results().collect(),
    }
}
