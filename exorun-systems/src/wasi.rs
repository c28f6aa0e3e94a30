//! WASI preview 2 as a system component: preopened directories (host path -> guest path,
//! read-only or read-write), env vars, args, and stdout/stderr inherited, captured in memory
//! (bounded) or discarded.
//! A guest reading outside its preopens gets a WASI error code; it only ever sees guest paths.

use std::path::PathBuf;

use exorun_core::context::Access;
use exorun_core::context::Capture;
use exorun_core::context::ContextBuilder;
use exorun_core::context::ExorunCtx;
use exorun_core::system;
use exorun_core::system::SystemComponent;
use wasmtime::component::Linker;

/// The WASI 0.2 interfaces wasmtime-wasi provides (the version guests import).
pub const INTERFACES: &[&str] = &[
    "wasi:cli/environment@0.2.12",
    "wasi:cli/exit@0.2.12",
    "wasi:cli/stdin@0.2.12",
    "wasi:cli/stdout@0.2.12",
    "wasi:cli/stderr@0.2.12",
    "wasi:clocks/monotonic-clock@0.2.12",
    "wasi:clocks/wall-clock@0.2.12",
    "wasi:filesystem/types@0.2.12",
    "wasi:filesystem/preopens@0.2.12",
    "wasi:io/error@0.2.12",
    "wasi:io/poll@0.2.12",
    "wasi:io/streams@0.2.12",
    "wasi:random/random@0.2.12",
];

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
}

impl SystemComponent for Wasi {
    fn interfaces(&self) -> Vec<String> {
        INTERFACES.iter().map(|name| (*name).to_owned()).collect()
    }

    fn install(&self, linker: &mut Linker<ExorunCtx>) -> Result<(), system::Error> {
        wasmtime_wasi::p2::add_to_linker_async(linker)
            .map_err(|e| system::define_error("wasi:*", &e))
    }

    fn configure(&self, builder: &mut ContextBuilder) -> Result<(), system::Error> {
        for (host_path, guest_path, access) in &self.preopens {
            builder.preopen(host_path, guest_path, *access)?;
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
                builder.inherit_stdio();
            }
            Stdio::Capture(capture) => {
                builder.capture_stdio(capture);
            }
        }
        Ok(())
    }
}
