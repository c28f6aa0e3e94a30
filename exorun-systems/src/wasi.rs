//! WASI preview 2 as a system component like any other: preopened directories (host path ->
//! guest path, read-only or read-write), env vars, args, and stdout/stderr inherited, captured
//! in memory (bounded) or discarded.
//!
//! Nothing in exorun-core knows WASI. `configure` builds each store's `WasiCtx` from these
//! settings and keeps it in the store's user data (`wasi::State`); `install` links wasmtime-wasi's
//! host functions with getters that find it there, next to the store's resource table (the
//! same getter-based `add_to_linker` calls wasmtime-wasi's own `add_to_linker_async` makes for
//! a store type that implements its `WasiView`). A store this system was linked into but never
//! configured for gets a closed WASI (no preopens, no env, no stdio): least privilege, never a
//! panic.
//!
//! A guest reading outside its preopens gets a WASI error code; it only ever sees guest paths.
//! A preopen that cannot be opened fails staging with `system::Error::Configure`, naming both
//! paths.

use std::path::PathBuf;

use exorun_core::context::ContextBuilder;
use exorun_core::context::ExorunCtx;
use exorun_core::system;
use exorun_core::system::SystemComponent;
use wasmtime::component::HasData;
use wasmtime::component::Linker;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::FsPerms;
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::WasiCtxView;
use wasmtime_wasi::cli::WasiCli;
use wasmtime_wasi::cli::WasiCliCtxView;
use wasmtime_wasi::clocks::WasiClocks;
use wasmtime_wasi::clocks::WasiClocksCtxView;
use wasmtime_wasi::filesystem::WasiFilesystem;
use wasmtime_wasi::filesystem::WasiFilesystemCtxView;
use wasmtime_wasi::p2::bindings;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::random::WasiRandomCtx;

/// The WASI 0.2 interfaces this system provides (the version guests import; wasmtime matches
/// any 0.2 patch version).
pub const INTERFACES: &[&str] = &[
    "wasi:cli/environment@0.2.12",
    "wasi:cli/exit@0.2.12",
    "wasi:cli/stdin@0.2.12",
    "wasi:cli/stdout@0.2.12",
    "wasi:cli/stderr@0.2.12",
    "wasi:cli/terminal-input@0.2.12",
    "wasi:cli/terminal-output@0.2.12",
    "wasi:cli/terminal-stdin@0.2.12",
    "wasi:cli/terminal-stdout@0.2.12",
    "wasi:cli/terminal-stderr@0.2.12",
    "wasi:clocks/monotonic-clock@0.2.12",
    "wasi:clocks/wall-clock@0.2.12",
    "wasi:filesystem/types@0.2.12",
    "wasi:filesystem/preopens@0.2.12",
    "wasi:io/error@0.2.12",
    "wasi:io/poll@0.2.12",
    "wasi:io/streams@0.2.12",
    "wasi:random/random@0.2.12",
    "wasi:random/insecure@0.2.12",
    "wasi:random/insecure-seed@0.2.12",
];

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

/// The WASI system component's settings.
#[derive(Debug, Clone, Default)]
pub struct Wasi {
    preopens: Vec<(PathBuf, String, Access)>,
    env: Vec<(String, String)>,
    args: Vec<String>,
    stdio: Stdio,
}

/// Where the guest's stdout and stderr go.
#[derive(Debug, Clone, Default)]
enum Stdio {
    /// Discarded.
    #[default]
    Closed,
    /// The host's own stdout and stderr.
    Inherit,
    /// Bounded in-memory buffers the embedder reads.
    Capture(Capture),
}

/// One store's WASI state, kept in its user data.
pub(crate) struct State(WasiCtx);

impl State {
    /// A WASI with nothing granted: no preopens, no env, no args, no stdio.
    fn closed() -> Self {
        Self(WasiCtxBuilder::new().build())
    }
}

impl Wasi {
    /// No preopens, env, args or stdio.
    pub fn new() -> Self {
        Self::default()
    }

    /// Shows the host directory `host_path` to the guest as `guest_path`.
    pub fn preopen(
        mut self,
        host_path: impl Into<PathBuf>,
        guest_path: &str,
        access: Access,
    ) -> Self {
        self.preopens
            .push((host_path.into(), guest_path.to_owned(), access));
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Appends an argument.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    /// Lets the guest write to the host's stdout and stderr.
    pub fn inherit_stdio(mut self) -> Self {
        self.stdio = Stdio::Inherit;
        self
    }

    /// Captures the guest's stdout and stderr into `capture` (shared by every instance this
    /// system is linked into).
    pub fn capture_stdio(mut self, capture: &Capture) -> Self {
        self.stdio = Stdio::Capture(capture.clone());
        self
    }

    /// A store's WASI context with these settings.
    fn context(&self) -> Result<WasiCtx, system::Error> {
        let mut builder = WasiCtxBuilder::new();
        for (host_path, guest_path, access) in &self.preopens {
            let perms = match access {
                Access::ReadOnly => FsPerms::ReadOnly,
                Access::ReadWrite => FsPerms::ReadWrite,
            };
            let opened = builder.preopened_dir(host_path, guest_path, perms);
            opened.map_err(|error| {
                let context = format!("cannot preopen {} as {guest_path}", host_path.display());
                system::Error::Configure {
                    system: "wasi".to_owned(),
                    source: exorun_common::Cause::with_context(context, error),
                }
            })?;
        }
        for (key, value) in &self.env {
            builder.env(key, value);
        }
        for arg in &self.args {
            builder.arg(arg);
        }
        match &self.stdio {
            Stdio::Closed => {}
            Stdio::Inherit => {
                builder.inherit_stdout().inherit_stderr();
            }
            Stdio::Capture(capture) => {
                builder
                    .stdout(capture.stdout.clone())
                    .stderr(capture.stderr.clone());
            }
        }
        Ok(builder.build())
    }
}

/// `wasi:io`'s host functions see only the resource table.
struct Io;

impl HasData for Io {
    type Data<'a> = &'a mut ResourceTable;
}

fn io(ctx: &mut ExorunCtx) -> &mut ResourceTable {
    ctx.table()
}

fn view(ctx: &mut ExorunCtx) -> WasiCtxView<'_> {
    let (state, table) = ctx.user_and_table(State::closed);
    WasiCtxView {
        ctx: &mut state.0,
        table,
    }
}

fn cli(ctx: &mut ExorunCtx) -> WasiCliCtxView<'_> {
    let WasiCtxView { ctx, table } = view(ctx);
    WasiCliCtxView {
        ctx: ctx.cli(),
        table,
    }
}

fn clocks(ctx: &mut ExorunCtx) -> WasiClocksCtxView<'_> {
    let WasiCtxView { ctx, table } = view(ctx);
    WasiClocksCtxView {
        ctx: ctx.clocks(),
        table,
    }
}

fn filesystem(ctx: &mut ExorunCtx) -> WasiFilesystemCtxView<'_> {
    let WasiCtxView { ctx, table } = view(ctx);
    WasiFilesystemCtxView {
        ctx: ctx.filesystem(),
        table,
    }
}

fn random(ctx: &mut ExorunCtx) -> &mut WasiRandomCtx {
    view(ctx).ctx.random()
}

/// Links `wasi:io` (error, poll, streams) to the store's resource table: also what the HTTP
/// system's streams are.
pub(crate) fn link_io(linker: &mut Linker<ExorunCtx>) -> wasmtime::Result<()> {
    bindings::io::error::add_to_linker::<_, Io>(linker, io)?;
    bindings::io::poll::add_to_linker::<_, Io>(linker, io)?;
    bindings::io::streams::add_to_linker::<_, Io>(linker, io)?;
    Ok(())
}

/// Links every interface in `INTERFACES`, each to its getter.
fn link(linker: &mut Linker<ExorunCtx>) -> wasmtime::Result<()> {
    use bindings::cli as c;
    link_io(linker)?;
    c::environment::add_to_linker::<_, WasiCli>(linker, cli)?;
    c::exit::add_to_linker::<_, WasiCli>(linker, cli)?;
    c::stdin::add_to_linker::<_, WasiCli>(linker, cli)?;
    c::stdout::add_to_linker::<_, WasiCli>(linker, cli)?;
    c::stderr::add_to_linker::<_, WasiCli>(linker, cli)?;
    c::terminal_input::add_to_linker::<_, WasiCli>(linker, cli)?;
    c::terminal_output::add_to_linker::<_, WasiCli>(linker, cli)?;
    c::terminal_stdin::add_to_linker::<_, WasiCli>(linker, cli)?;
    c::terminal_stdout::add_to_linker::<_, WasiCli>(linker, cli)?;
    c::terminal_stderr::add_to_linker::<_, WasiCli>(linker, cli)?;
    bindings::clocks::wall_clock::add_to_linker::<_, WasiClocks>(linker, clocks)?;
    bindings::clocks::monotonic_clock::add_to_linker::<_, WasiClocks>(linker, clocks)?;
    bindings::filesystem::types::add_to_linker::<_, WasiFilesystem>(linker, filesystem)?;
    bindings::filesystem::preopens::add_to_linker::<_, WasiFilesystem>(linker, filesystem)?;
    bindings::random::random::add_to_linker::<_, WasiRandom>(linker, random)?;
    bindings::random::insecure::add_to_linker::<_, WasiRandom>(linker, random)?;
    bindings::random::insecure_seed::add_to_linker::<_, WasiRandom>(linker, random)?;
    Ok(())
}

impl SystemComponent for Wasi {
    fn interfaces(&self) -> Vec<String> {
        INTERFACES.iter().map(|name| (*name).to_owned()).collect()
    }

    fn install(&self, linker: &mut Linker<ExorunCtx>) -> Result<(), system::Error> {
        link(linker).map_err(|e| system::define_error("wasi:*", e))
    }

    fn configure(&self, builder: &mut ContextBuilder) -> Result<(), system::Error> {
        builder.insert(State(self.context()?));
        Ok(())
    }
}
