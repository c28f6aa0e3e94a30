//! `exorun:host/logging`: `log(level, msg)` goes to `tracing` and, if configured, to a `Sink`
//! that a test or embedder can read. Levels and messages have size limits; an oversized one is
//! rejected with a `Rejection` (a trap in the guest).

use std::sync::Arc;
use std::sync::Mutex;

use exorun_core::context::ContextBuilder;
use exorun_core::context::ExorunCtx;
use exorun_core::system;
use exorun_core::system::Rejection;
use exorun_core::system::SystemComponent;
use wasmtime::StoreContextMut;
use wasmtime::component::Linker;

/// The interface this system provides.
pub const INTERFACE: &str = "exorun:host/logging";
/// Longest level name, in bytes: names like `WARN` or `DEBUG` fit many times over.
pub const LEVEL_BYTES_MAX: usize = 32;
/// Longest message, in bytes: a log line, not a data channel.
pub const MESSAGE_BYTES_MAX: usize = 16 * 1024;
/// Records a sink keeps; past it the oldest are dropped, so a chatty guest cannot grow it.
pub const RECORDS_MAX: usize = 10_000;
/// Domain code of a level or message over its limit.
pub const CODE_TOO_LARGE: u32 = 1101;

/// Why a log call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The level or message is over its size limit.
    #[error("log {field} of {bytes} bytes exceeds {max}")]
    TooLarge {
        /// The entry's key.
        field: &'static str,

        /// The size, in bytes.
        bytes: usize,

        /// The limit, in bytes.
        max: usize,
    },
}

/// One logged line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The level the guest gave (`INFO`, ...).
    pub level: String,
    /// The message.
    pub message: String,
}

/// A bounded, shared list of records.
#[derive(Debug, Clone, Default)]
pub struct Sink(Arc<Mutex<Vec<Record>>>);

impl Sink {
    /// The records so far.
    pub fn records(&self) -> Vec<Record> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn push(&self, record: Record) {
        let mut records = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if records.len() >= RECORDS_MAX {
            records.remove(0);
        }
        records.push(record);
    }
}

/// The logging system component.
#[derive(Debug, Clone, Default)]
pub struct Logging {
    sink: Option<Sink>,
}

impl Logging {
    /// Logs to `tracing` only.
    pub fn new() -> Self {
        Self { sink: None }
    }

    /// Logs to `tracing` and to `sink`.
    pub fn with_sink(sink: Sink) -> Self {
        Self { sink: Some(sink) }
    }
}

impl SystemComponent for Logging {
    fn interfaces(&self) -> Vec<String> {
        vec![INTERFACE.to_owned()]
    }

    fn install(&self, linker: &mut Linker<ExorunCtx>) -> Result<(), system::Error> {
        let mut instance = linker
            .instance(INTERFACE)
            .map_err(|e| system::define_error(INTERFACE, e))?;
        instance
            .func_wrap("log", log)
            .map_err(|e| system::define_error(INTERFACE, e))
    }

    fn configure(&self, builder: &mut ContextBuilder) -> Result<(), system::Error> {
        if let Some(sink) = &self.sink {
            builder.insert(sink.clone());
        }
        Ok(())
    }
}

fn log(
    store: StoreContextMut<'_, ExorunCtx>,
    (level, message): (String, String),
) -> wasmtime::Result<()> {
    check("level", &level, LEVEL_BYTES_MAX)?;
    check("message", &message, MESSAGE_BYTES_MAX)?;
    match exorun_core::call::span() {
        Some(span) => {
            let (trace_id, span_id) = (span.trace_hex(), span.span_hex());
            tracing::info!(target: "exorun::guest", level = %level, trace_id = %trace_id, span_id = %span_id, "{message}");
        }
        None => tracing::info!(target: "exorun::guest", level = %level, "{message}"),
    }
    if let Some(sink) = store.data().user::<Sink>() {
        sink.push(Record { level, message });
    }
    Ok(())
}

fn check(field: &'static str, text: &str, max: usize) -> wasmtime::Result<()> {
    if text.len() <= max {
        return Ok(());
    }
    let error = Error::TooLarge {
        field,
        bytes: text.len(),
        max,
    };
    Err(wasmtime::Error::new(Rejection {
        code: CODE_TOO_LARGE,
        message: error.to_string(),
    }))
}
