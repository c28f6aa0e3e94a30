//! An instance's settings in a manifest: limits, restart policy, replicas and WASI, each
//! within its bound.

use std::num::NonZeroUsize;
use std::path::Path;

use exorun_core::limits::Limits;
use exorun_core::supervision::Replicas;
use exorun_core::supervision::Restart;

use super::Problem;
use super::RawLimits;
use super::RawReplicas;
use super::RawWasi;
use super::Wasi;

/// Most replicas one instance may have: each is a whole instance with its own memory (64 MiB
/// of linear memory by default), so 256 is already 16 GiB at most, past any use a host of
/// this kind has for them.
pub const REPLICAS_MAX: u64 = 256;
/// Largest `memory_mib`: a 32-bit linear memory holds 4 GiB at most.
const MEMORY_MIB_MAX: u64 = 4096;
/// Largest `fuel_per_call`: about ten minutes of guest work on these machines (1 s is about
/// 2·10^9), far past any call that should hold a replica.
const FUEL_PER_CALL_MAX: u64 = 1_000_000_000_000;
/// Largest `lock_wait_ms`: ten minutes.
const LOCK_WAIT_MS_MAX: u64 = 600_000;
/// Largest `calls_waiting_max`.
const CALLS_WAITING_MAX_MAX: u64 = 65_536;
/// Largest `bytes_waiting_mib`.
const BYTES_WAITING_MIB_MAX: u64 = 4096;

/// Each limit given past its bound, as a problem.
pub(super) fn check_limits(raw: &RawLimits) -> Vec<Problem> {
    let given = [
        ("fuel_per_call", raw.fuel_per_call, FUEL_PER_CALL_MAX),
        ("memory_mib", raw.memory_mib.map(to_u64), MEMORY_MIB_MAX),
        ("lock_wait_ms", raw.lock_wait_ms, LOCK_WAIT_MS_MAX),
        (
            "calls_waiting_max",
            raw.calls_waiting_max.map(to_u64),
            CALLS_WAITING_MAX_MAX,
        ),
        (
            "bytes_waiting_mib",
            raw.bytes_waiting_mib,
            BYTES_WAITING_MIB_MAX,
        ),
    ];
    let past = given.into_iter().filter_map(|(limit, value, max)| {
        let value = value?;
        (value > max).then_some(Problem::LimitTooLarge { limit, value, max })
    });
    past.collect()
}

fn to_u64(value: usize) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// The limits an instance's `limits` table gives, defaults for the rest.
pub(super) fn limits(raw: &RawLimits) -> Limits {
    let defaults = Limits::default();
    Limits {
        fuel_per_call: raw.fuel_per_call.unwrap_or(defaults.fuel_per_call),
        memory_bytes_max: raw
            .memory_mib
            .map_or(defaults.memory_bytes_max, |mib| mib.saturating_mul(1 << 20)),
        lock_wait: raw
            .lock_wait_ms
            .map_or(defaults.lock_wait, std::time::Duration::from_millis),
        calls_waiting_max: raw.calls_waiting_max.unwrap_or(defaults.calls_waiting_max),
        bytes_waiting_max: raw
            .bytes_waiting_mib
            .map_or(defaults.bytes_waiting_max, |mib| {
                mib.saturating_mul(1 << 20)
            }),
        ..defaults
    }
}

/// `always` (the default) or `never`.
pub(super) fn check_restart(raw: Option<&str>) -> Result<Restart, Problem> {
    match raw {
        None | Some("always") => Ok(Restart::default()),
        Some("never") => Ok(Restart::Never),
        Some(other) => Err(Problem::BadRestart {
            restart: other.to_owned(),
        }),
    }
}

/// A count from 1 up, or `"per-call"` (as many at once as the machine has cores).
pub(super) fn check_replicas(raw: Option<&RawReplicas>) -> Result<Replicas, Problem> {
    let Some(raw) = raw else {
        return Ok(Replicas::ONE);
    };
    match raw {
        RawReplicas::Count(count) if u64::try_from(*count).is_ok_and(|n| n > REPLICAS_MAX) => {
            Err(Problem::TooManyReplicas {
                replicas: u64::try_from(*count).unwrap_or(u64::MAX),
                max: REPLICAS_MAX,
            })
        }
        RawReplicas::Count(count) => usize::try_from(*count)
            .ok()
            .and_then(NonZeroUsize::new)
            .map(Replicas::Fixed)
            .ok_or(Problem::BadReplicas),
        RawReplicas::Mode(mode) if mode == "per-call" => {
            let concurrency = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
            Ok(Replicas::PerCall { concurrency })
        }
        RawReplicas::Mode(_) => Err(Problem::BadReplicas),
    }
}

pub(super) fn check_wasi(
    base: &Path,
    key: &str,
    wasi: &RawWasi,
    problems: &mut Vec<(String, Problem)>,
) -> Wasi {
    let inherit_stdio = match wasi.stdio.as_deref() {
        None | Some("closed") => false,
        Some("inherit") => true,
        Some(other) => {
            let stdio = other.to_owned();
            problems.push((format!("{key}.wasi.stdio"), Problem::BadStdio { stdio }));
            false
        }
    };
    let preopens = wasi
        .preopen
        .iter()
        .map(|preopen| {
            (
                base.join(&preopen.host),
                preopen.guest.clone(),
                preopen.writable,
            )
        })
        .collect();
    Wasi {
        env: wasi.env.clone(),
        args: wasi.args.clone(),
        preopens,
        inherit_stdio,
    }
}
