//! fs-reader: reads files and env through explicit WASI 0.2 calls; proves preopens, env and the sandbox.
wit_bindgen::generate!({ path: "../wit", world: "exorun:test/fs-reader", generate_all });

use wasip2::filesystem::preopens;
use wasip2::filesystem::types::DescriptorFlags;
use wasip2::filesystem::types::ErrorCode;
use wasip2::filesystem::types::OpenFlags;
use wasip2::filesystem::types::PathFlags;

/// Bytes asked for per read call.
const CHUNK_BYTES: u64 = 64 * 1024;

struct App;

impl exports::exorun::test::sandbox::Guest for App {
    fn read_file(path: String) -> Result<String, String> {
        let directories = preopens::get_directories();
        let Some((directory, _guest_path)) = directories.first() else {
            return Err("no-preopens".to_string());
        };
        let file = directory
            .open_at(PathFlags::empty(), &path, OpenFlags::empty(), DescriptorFlags::READ)
            .map_err(code)?;
        let mut contents = Vec::new();
        loop {
            let offset = u64::try_from(contents.len()).unwrap_or(u64::MAX);
            let (chunk, at_end) = file.read(CHUNK_BYTES, offset).map_err(code)?;
            let empty = chunk.is_empty();
            contents.extend_from_slice(&chunk);
            if at_end || empty {
                break;
            }
        }
        String::from_utf8(contents).map_err(|_| "not-utf8".to_string())
    }

    fn get_env(key: String) -> Option<String> {
        let vars = wasip2::cli::environment::get_environment();
        vars.into_iter().find(|(name, _)| *name == key).map(|(_, value)| value)
    }

    fn preopens() -> Vec<String> {
        let directories = preopens::get_directories();
        directories.into_iter().map(|(_, guest_path)| guest_path).collect()
    }

    fn say(out: String, err: String) -> Result<(), String> {
        let stdout = wasip2::cli::stdout::get_stdout();
        stdout.blocking_write_and_flush(out.as_bytes()).map_err(stream)?;
        let stderr = wasip2::cli::stderr::get_stderr();
        stderr.blocking_write_and_flush(err.as_bytes()).map_err(stream)
    }
}

fn stream(error: wasip2::io::streams::StreamError) -> String {
    match error {
        wasip2::io::streams::StreamError::Closed => "closed".to_string(),
        wasip2::io::streams::StreamError::LastOperationFailed(_) => "failed".to_string(),
    }
}

fn code(error: ErrorCode) -> String {
    error.name().to_string()
}

export!(App);
