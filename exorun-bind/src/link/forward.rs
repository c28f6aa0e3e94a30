//! What a linked function does with a call: `Forward` (local, named and remote links each
//! forward differently), and `define`, which makes each function of an imported interface a
//! host function that forwards its calls.

use std::sync::Arc;

use exorun_common::BoxFuture;
use exorun_core::context::ExorunCtx;
use wasmtime::StoreContextMut;
use wasmtime::component::Linker;
use wasmtime::component::ResourceType;
use wasmtime::component::Val;

use super::standins;

/// wasmtime refused a definition (`binder::Error::Define` carries it to the embedder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Error {
    /// The interface, fully qualified (e.g. `exorun:test/math`).
    pub(crate) interface: String,
    /// The function, by its name within the interface (empty for the interface itself).
    pub(crate) function: String,
    /// What happened, in words.
    pub(crate) message: String,
}

/// Where a linked function's calls go: the one thing that differs between local, named and
/// remote links.
pub(crate) trait Forward: Send + Sync + 'static {
    /// Makes one call with the caller's arguments, filling its result slots; `store` is the
    /// caller's (where the stand-ins of the handles it holds across links live).
    fn forward<'a>(
        &'a self,
        store: StoreContextMut<'a, ExorunCtx>,
        params: &'a [Val],
        results: &'a mut [Val],
    ) -> BoxFuture<'a, wasmtime::Result<()>>;
}

/// Defines the resources `interface` declares, each as a host resource of its own dynamic type
/// (`kinds`), whose destructor drops what its stand-in stands for.
pub(crate) fn define_resources<'k>(
    linker: &mut Linker<ExorunCtx>,
    interface: &str,
    kinds: impl IntoIterator<Item = (&'k str, u32)>,
) -> Result<(), Error> {
    let mut scope = linker
        .instance(interface)
        .map_err(|error| define_error(interface, "", &error))?;
    for (resource, kind) in kinds {
        let defined =
            scope.resource_async(resource, ResourceType::host_dynamic(kind), |store, rep| {
                Box::new(standins::dropped(store, rep))
            });
        defined.map_err(|error| define_error(interface, resource, &error))?;
    }
    Ok(())
}

/// Defines each function of `interface` as a host function that forwards its calls; an error
/// traps the calling guest and keeps what was raised for the embedder.
pub(crate) fn define<'f>(
    linker: &mut Linker<ExorunCtx>,
    interface: &str,
    forwards: impl IntoIterator<Item = (&'f str, Arc<dyn Forward>)>,
) -> Result<(), Error> {
    let mut scope = linker
        .instance(interface)
        .map_err(|error| define_error(interface, "", &error))?;
    for (function, forward) in forwards {
        let defined = scope.func_new_async(function, move |store, _ty, params, results| {
            let forward = Arc::clone(&forward);
            Box::new(async move { forward.forward(store, params, results).await })
        });
        defined.map_err(|error| define_error(interface, function, &error))?;
    }
    Ok(())
}

fn define_error(interface: &str, function: &str, error: &wasmtime::Error) -> Error {
    Error {
        interface: interface.to_owned(),
        function: function.to_owned(),
        message: format!("{error:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nowhere;

    impl Forward for Nowhere {
        fn forward<'a>(
            &'a self,
            _store: StoreContextMut<'a, ExorunCtx>,
            _params: &'a [Val],
            _results: &'a mut [Val],
        ) -> BoxFuture<'a, wasmtime::Result<()>> {
            Box::pin(async { Ok(()) })
        }
    }

    #[test]
    fn a_definition_wasmtime_refuses_is_named() {
        let engine = exorun_core::engine::new().expect("engine");
        let mut linker: Linker<ExorunCtx> = Linker::new(&engine);
        let forwards = || {
            let nowhere: Arc<dyn Forward> = Arc::new(Nowhere);
            [("add", nowhere)]
        };
        define(&mut linker, "exorun:test/math", forwards()).expect("first definition");
        let again = define(&mut linker, "exorun:test/math", forwards());
        let Err(Error {
            interface,
            function,
            ..
        }) = again
        else {
            panic!("{again:?}")
        };
        assert_eq!(
            (interface.as_str(), function.as_str()),
            ("exorun:test/math", "add")
        );
    }
}
