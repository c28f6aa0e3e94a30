//! The ledger: a component's imports and exports as interfaces -> functions -> signatures, and
//! the contract check between an import and its provider.
//!
//! Checks run before anything is instantiated or sent: a provider must have the interface
//! (`InterfaceNotFound`) and every function (`MethodNotFound`) with a structurally equal
//! signature (`SignatureMismatch`, naming both). Resources are compared by name (`own<counter>`
//! in the import is `own<counter>` in the provider: two components' resource types are never
//! the same type, so the ledger names each by the interface that declares it), and they may
//! cross links: a link carries each handle (see exorun-bind). Futures and streams cannot reach
//! a link: this runtime's engine is built without wasmtime's component-model-async support, so
//! a component that uses them is refused when it is loaded (`runtime::Error::InvalidComponent`
//! saying so). No interface is special-cased: `wasi:*` is checked like any other.

use std::collections::BTreeMap;

use wasmtime::component::Component;
use wasmtime::component::ResourceType;
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
}

/// One function's parameter and result types.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    /// Parameter names and types, in order.
    pub params: Vec<(String, Type)>,
    /// Result types, in order.
    pub results: Vec<Type>,
    /// The signature in WIT-like text, resources by name (`func(c: borrow<counter>) -> u32`).
    pub text: String,
    /// The types alone, in the same text: what two signatures must share to match.
    shape: String,
}

/// A resource type, named by the interface that declares it and its name there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Resource {
    /// The declaring interface, fully qualified (e.g. `exorun:test/counters`).
    pub interface: String,
    /// The resource's name in it (e.g. `counter`).
    pub name: String,
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.name)
    }
}

/// An interface: its functions by name, and the resources it declares.
#[derive(Debug, Clone, PartialEq)]
pub struct Interface {
    /// The fully qualified name, e.g. `exorun:test/math`.
    pub name: String,
    /// Functions by name (`add`, `[method]counter.next`).
    pub functions: BTreeMap<String, Signature>,
    /// The resources it declares, by name.
    pub resources: Vec<String>,
}

/// A component's imported and exported interfaces.
#[derive(Debug, Clone, PartialEq)]
pub struct Ledger {
    /// Imported interfaces by name.
    pub imports: BTreeMap<String, Interface>,
    /// Exported interfaces by name.
    pub exports: BTreeMap<String, Interface>,
    /// Every resource type the component's interfaces declare, with its name.
    resources: Vec<(ResourceType, Resource)>,
}

impl Ledger {
    /// Reads the interfaces of `component`.
    pub(crate) fn of(engine: &wasmtime::Engine, component: &Component) -> Self {
        let ty = component.component_type();
        let mut resources = Vec::new();
        for (name, item) in ty.imports(engine).chain(ty.exports(engine)) {
            collect_resources(engine, name, &item.ty, &mut resources);
        }
        let names = Names(&resources);
        let imports = ty
            .imports(engine)
            .filter_map(|(name, item)| interface(engine, name, &item.ty, names));
        let imports = imports.collect();
        let exports = ty
            .exports(engine)
            .filter_map(|(name, item)| interface(engine, name, &item.ty, names));
        let exports = exports.collect();
        Self {
            imports,
            exports,
            resources,
        }
    }

    /// The name of a resource type of this component (as its signatures carry it).
    pub fn resource(&self, ty: &ResourceType) -> Option<&Resource> {
        Names(&self.resources).get(ty)
    }

    /// The signature of a function of this component, its resources named.
    pub(crate) fn signature(&self, func: &ComponentFunc) -> Signature {
        signature(func, Names(&self.resources))
    }
}

/// Resource types and their names, looked up by type (few per component: a list).
#[derive(Clone, Copy)]
struct Names<'a>(&'a [(ResourceType, Resource)]);

impl<'a> Names<'a> {
    fn get(self, ty: &ResourceType) -> Option<&'a Resource> {
        let found = self.0.iter().find(|(known, _)| known == ty);
        found.map(|(_, resource)| resource)
    }

    fn name(self, ty: &ResourceType) -> String {
        self.get(ty)
            .map_or_else(|| "resource".to_owned(), |resource| resource.name.clone())
    }
}

/// The resources an instance item of the component declares, named by its interface.
fn collect_resources(
    engine: &wasmtime::Engine,
    interface: &str,
    item: &ComponentItem,
    into: &mut Vec<(ResourceType, Resource)>,
) {
    let ComponentItem::ComponentInstance(instance) = item else {
        return;
    };
    for (name, export) in instance.exports(engine) {
        let ComponentItem::Resource(ty) = export.ty else {
            continue;
        };
        if into.iter().any(|(known, _)| *known == ty) {
            continue; // a resource `use`d from another interface keeps its first name
        }
        let resource = Resource {
            interface: interface.to_owned(),
            name: name.to_owned(),
        };
        into.push((ty, resource));
    }
}

/// Checks that `provider` satisfies `import`, locally or remotely alike. Returns every
/// problem, not just the first.
pub fn check(import: &Interface, provider: Option<&Interface>) -> Vec<Error> {
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
        ) {
            problems.push(problem);
        }
    }
    problems
}

fn check_function(
    interface: &str,
    function: &str,
    wanted: &Signature,
    found: Option<&Signature>,
) -> Option<Error> {
    let Some(found) = found else {
        return Some(Error::MethodNotFound {
            interface: interface.to_owned(),
            function: function.to_owned(),
        });
    };
    if wanted.shape == found.shape {
        return None;
    }
    Some(Error::SignatureMismatch {
        interface: interface.to_owned(),
        function: function.to_owned(),
        expected: wanted.text.clone(),
        found: found.text.clone(),
    })
}

/// A signature in WIT-like text, e.g. `func(a: u32, b: u32) -> u32` (`with_names`: with the
/// parameters' names; without, the types alone, which is what two signatures must share).
fn describe_signature(
    params: &[(String, Type)],
    results: &[Type],
    names: Names<'_>,
    with_names: bool,
) -> String {
    let params: Vec<String> = params
        .iter()
        .map(|(name, ty)| match with_names {
            true => format!("{name}: {}", describe(ty, names)),
            false => describe(ty, names),
        })
        .collect();
    let results: Vec<String> = results.iter().map(|ty| describe(ty, names)).collect();
    let arrow = match results.len() {
        0 => String::new(),
        _ => format!(" -> {}", results.join(", ")),
    };
    format!("func({}){arrow}", params.join(", "))
}

/// A type in WIT-like text (records, variants, enums and flags spelled out structurally,
/// resources by name: `own<counter>`, `borrow<counter>`).
fn describe(ty: &Type, names: Names<'_>) -> String {
    let joined = |items: Vec<String>| items.join(", ");
    let describe = |ty: &Type| describe(ty, names);
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
        Type::Own(resource) => format!("own<{}>", names.name(resource)),
        Type::Borrow(resource) => format!("borrow<{}>", names.name(resource)),
        Type::Future(_) => "future".to_owned(),
        Type::Stream(_) => "stream".to_owned(),
        Type::ErrorContext => "error-context".to_owned(),
    }
}

fn interface(
    engine: &wasmtime::Engine,
    name: &str,
    item: &ComponentItem,
    names: Names<'_>,
) -> Option<(String, Interface)> {
    let ComponentItem::ComponentInstance(instance) = item else {
        return None;
    };
    let mut functions = BTreeMap::new();
    let mut resources = Vec::new();
    for (item_name, export) in instance.exports(engine) {
        match &export.ty {
            ComponentItem::ComponentFunc(func) => {
                functions.insert(item_name.to_owned(), signature(func, names));
            }
            ComponentItem::Resource(ty) => {
                let declared = names.get(ty).is_some_and(|found| found.interface == name);
                if declared {
                    resources.push(item_name.to_owned());
                }
            }
            ComponentItem::CoreFunc(_)
            | ComponentItem::Module(_)
            | ComponentItem::Component(_)
            | ComponentItem::ComponentInstance(_)
            | ComponentItem::Type(_) => {}
        }
    }
    Some((
        name.to_owned(),
        Interface {
            name: name.to_owned(),
            functions,
            resources,
        },
    ))
}

/// The signature of a component function type, its resources named by `names`.
fn signature(func: &ComponentFunc, names: Names<'_>) -> Signature {
    let params: Vec<(String, Type)> = func
        .params()
        .map(|(name, ty)| (name.to_owned(), ty))
        .collect();
    let results: Vec<Type> = func.results().collect();
    Signature {
        text: describe_signature(&params, &results, names, true),
        shape: describe_signature(&params, &results, names, false),
        params,
        results,
    }
}
