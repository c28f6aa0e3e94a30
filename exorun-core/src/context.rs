//! The per-store context: WASI state, the resource table, typed user data and the limiter.
//!
//! `ContextBuilder` stages everything (system components add to it in `configure`), and
//! `build` produces the `ExorunCtx` a store owns. User data is a type map: a system component
//! puts its state in with `insert` and its host functions find it again with `user::<T>()`.

use std::path::Path;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::FsPerms;
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::WasiCtxView;
use wasmtime_wasi::WasiView;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use crate::limits;

type UserData = anymap3::Map<dyn core::any::Any + Send + Sync>;

/// A context could not be staged.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A preopened directory could not be opened on the host.
    #[error("cannot preopen {host_path} as {guest_path}: {message}")]
    Preopen {
        /// The directory on the host.
        host_path: String,

        /// The path the guest sees it at.
        guest_path: String,

        /// What happened, in words.
        message: String,
    },
}

/// Whether a preopened directory may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read files and list directories only.
    ReadOnly,
    /// Also create, write and remove.
    ReadWrite,
}

/// Captured stdout and stderr of the guests given this capture: in memory, each stream bounded.
/// A guest that writes past the bound sees its stream closed (a WASI `closed` error), not the
/// host running out of memory. Clones share the same buffers.
#[derive(Debug, Clone)]
pub struct Capture {
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl Capture {
    /// Default bound of each captured stream.
    pub const BYTES_MAX_DEFAULT: usize = 1024 * 1024;

    /// Empty buffers that each keep at most `bytes_max` bytes.
    pub fn new(bytes_max: usize) -> Self {
        Self {
            stdout: MemoryOutputPipe::new(bytes_max),
            stderr: MemoryOutputPipe::new(bytes_max),
        }
    }

    /// What the guests wrote to stdout so far.
    pub fn stdout(&self) -> Vec<u8> {
        self.stdout.contents().to_vec()
    }

    /// What the guests wrote to stderr so far.
    pub fn stderr(&self) -> Vec<u8> {
        self.stderr.contents().to_vec()
    }
}

impl Default for Capture {
    fn default() -> Self {
        Self::new(Self::BYTES_MAX_DEFAULT)
    }
}

/// Stages a store's context.
#[allow(
    clippy::module_name_repetitions,
    reason = "the owner's API names this type; embedders import it by this name"
)]
pub struct ContextBuilder {
    wasi: WasiCtxBuilder,
    user: UserData,
}

/// What one store owns: WASI state, its resource table, user data and its limiter.
pub struct ExorunCtx {
    wasi: WasiCtx,
    table: ResourceTable,
    user: UserData,
    limiter: limits::Limiter,
}

impl Default for ContextBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ContextBuilder {
    /// An empty context: no preopens, no env, no args, no stdio.
    pub fn new() -> Self {
        Self {
            wasi: WasiCtxBuilder::new(),
            user: UserData::new(),
        }
    }

    /// Makes the host directory `host_path` visible to the guest as `guest_path`.
    pub fn preopen(
        &mut self,
        host_path: &Path,
        guest_path: &str,
        access: Access,
    ) -> Result<&mut Self, Error> {
        let perms = match access {
            Access::ReadOnly => FsPerms::ReadOnly,
            Access::ReadWrite => FsPerms::ReadWrite,
        };
        self.wasi
            .preopened_dir(host_path, guest_path, perms)
            .map_err(|error| Error::Preopen {
                host_path: host_path.display().to_string(),
                guest_path: guest_path.to_owned(),
                message: error.to_string(),
            })?;
        Ok(self)
    }

    /// Sets an environment variable the guest sees.
    pub fn env(&mut self, key: &str, value: &str) -> &mut Self {
        self.wasi.env(key, value);
        self
    }

    /// Appends a command-line argument the guest sees.
    pub fn arg(&mut self, arg: &str) -> &mut Self {
        self.wasi.arg(arg);
        self
    }

    /// Lets the guest write to the host's stdout and stderr.
    pub fn inherit_stdio(&mut self) -> &mut Self {
        self.wasi.inherit_stdout().inherit_stderr();
        self
    }

    /// Sends the guest's stdout and stderr into `capture`.
    pub fn capture_stdio(&mut self, capture: &Capture) -> &mut Self {
        self.wasi
            .stdout(capture.stdout.clone())
            .stderr(capture.stderr.clone());
        self
    }

    /// Direct access to the WASI builder, for settings not covered above.
    pub fn wasi(&mut self) -> &mut WasiCtxBuilder {
        &mut self.wasi
    }

    /// Stores user data of type `T` (replacing an earlier `T`).
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) -> &mut Self {
        self.user.insert(value);
        self
    }

    /// Produces the context for one store.
    pub fn build(mut self, limits: &limits::Limits) -> ExorunCtx {
        ExorunCtx {
            wasi: self.wasi.build(),
            table: ResourceTable::new(),
            user: self.user,
            limiter: limits::Limiter::new(limits),
        }
    }
}

impl ExorunCtx {
    /// User data of type `T`, if a system component put one in.
    pub fn user<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.user.get::<T>()
    }

    /// Mutable user data of type `T`.
    pub fn user_mut<T: Send + Sync + 'static>(&mut self) -> Option<&mut T> {
        self.user.get_mut::<T>()
    }

    /// The store's resource table.
    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// The limiter, for `Store::limiter`.
    pub fn limiter(&mut self) -> &mut limits::Limiter {
        &mut self.limiter
    }
}

impl WasiView for ExorunCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
