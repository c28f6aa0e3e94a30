//! The per-store context: the resource table, typed user data and the limiter. No interface is
//! special here: WASI, like every system, keeps its state in user data.
//!
//! `ContextBuilder` stages user data (system components add to it in `configure`), and `build`
//! produces the `ExorunCtx` a store owns. User data is a type map: a system component puts its
//! state in with `insert` and its host functions find it again with `user::<T>()`, or, when they
//! also need the resource table (a system whose values are resources), with `user_and_table`.

use wasmtime::component::ResourceTable;

use crate::limits;

type UserData = anymap3::Map<dyn core::any::Any + Send>;

/// Stages a store's context.
#[allow(
    clippy::module_name_repetitions,
    reason = "the owner's API names this type; embedders import it by this name"
)]
#[derive(Default)]
pub struct ContextBuilder {
    user: UserData,
}

impl std::fmt::Debug for ContextBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextBuilder")
            .field("user_data", &self.user.len())
            .finish()
    }
}

/// What one store owns: its resource table, user data and its limiter.
pub struct ExorunCtx {
    table: ResourceTable,
    user: UserData,
    limiter: limits::Limiter,
}

impl std::fmt::Debug for ExorunCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExorunCtx")
            .field("user_data", &self.user.len())
            .finish_non_exhaustive()
    }
}

impl ContextBuilder {
    /// An empty context: no user data.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores user data of type `T` (replacing an earlier `T`).
    pub fn insert<T: Send + 'static>(&mut self, value: T) -> &mut Self {
        self.user.insert(value);
        self
    }

    /// Produces the context for one store.
    pub fn build(self, limits: &limits::Limits) -> ExorunCtx {
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits::HOST_RESOURCES_MAX);
        ExorunCtx {
            table,
            user: self.user,
            limiter: limits::Limiter::new(limits),
        }
    }
}

impl ExorunCtx {
    /// User data of type `T`, if a system component put one in.
    pub fn user<T: Send + 'static>(&self) -> Option<&T> {
        self.user.get::<T>()
    }

    /// Mutable user data of type `T`.
    pub fn user_mut<T: Send + 'static>(&mut self) -> Option<&mut T> {
        self.user.get_mut::<T>()
    }

    /// The user data of type `T` (made with `default` first if none was staged) and the
    /// resource table, both at once: what a system whose host functions hand out resources
    /// needs.
    pub fn user_and_table<T: Send + 'static>(
        &mut self,
        default: impl FnOnce() -> T,
    ) -> (&mut T, &mut ResourceTable) {
        let user = self.user.entry::<T>().or_insert_with(default);
        (user, &mut self.table)
    }

    /// The store's resource table.
    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// The linear memory this store's instance holds, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.limiter.memory_bytes()
    }

    /// The limiter, for `Store::limiter`.
    pub(crate) fn limiter(&mut self) -> &mut limits::Limiter {
        &mut self.limiter
    }
}
