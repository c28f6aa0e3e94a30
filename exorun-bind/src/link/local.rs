//! Local links: each imported function a host function that calls another instance of this
//! runtime, by its handle (`LocalFunction`) or by its registered name at each call
//! (`NamedFunction`), with the caller's `Val`s as they are.

use std::sync::Arc;

use exorun_common::BoxFuture;
use exorun_core::app::AppId;
use exorun_core::app::Export;
use exorun_core::context::ExorunCtx;
use exorun_core::instance::InstanceHandle;
use exorun_core::runtime::Runtime;
use wasmtime::StoreContextMut;
use wasmtime::component::Val;

use super::Unresolved;
use super::forward::Forward;
use super::standins::Carry;

/// One function linked to a local instance, its export resolved at link time.
pub(super) struct LocalFunction {
    target: InstanceHandle,
    export: Export,
    carry: Option<Arc<Carry>>,
}

impl LocalFunction {
    pub(super) fn new(target: InstanceHandle, export: Export, carry: Option<Arc<Carry>>) -> Self {
        Self {
            target,
            export,
            carry,
        }
    }
}

impl Forward for LocalFunction {
    fn forward<'a>(
        &'a self,
        store: StoreContextMut<'a, ExorunCtx>,
        params: &'a [Val],
        results: &'a mut [Val],
    ) -> BoxFuture<'a, wasmtime::Result<()>> {
        Box::pin(async move {
            if let Some(carry) = &self.carry {
                let (target, export) = (&self.target, &self.export);
                return carry
                    .call_local(store, target, export, params, results)
                    .await;
            }
            let called = self.target.call_export(&self.export, params, results).await;
            called.map_err(|error| wasmtime::Error::new(error.in_callee(&self.target)))
        })
    }
}

/// One function linked to a local instance by name.
pub(super) struct NamedFunction {
    pub(super) runtime: Arc<Runtime>,
    pub(super) app: AppId,
    pub(super) name: String,
    pub(super) interface: String,
    pub(super) function: String,
    pub(super) carry: Option<Arc<Carry>>,
}

impl Forward for NamedFunction {
    fn forward<'a>(
        &'a self,
        store: StoreContextMut<'a, ExorunCtx>,
        params: &'a [Val],
        results: &'a mut [Val],
    ) -> BoxFuture<'a, wasmtime::Result<()>> {
        Box::pin(async move {
            let name = || self.name.clone();
            let Ok(target) = self.runtime.instance_named(&self.name) else {
                return Err(wasmtime::Error::new(Unresolved::Missing { name: name() }));
            };
            if target.app().id != self.app {
                return Err(wasmtime::Error::new(Unresolved::OtherApp { name: name() }));
            }
            if let Some(carry) = &self.carry {
                let export = target.export(&self.interface, &self.function);
                let export =
                    export.map_err(|error| wasmtime::Error::new(error.in_callee(&target)))?;
                return carry
                    .call_local(store, &target, &export, params, results)
                    .await;
            }
            let called = target
                .call(&self.interface, &self.function, params, results)
                .await;
            called.map_err(|error| wasmtime::Error::new(error.in_callee(&target)))
        })
    }
}
