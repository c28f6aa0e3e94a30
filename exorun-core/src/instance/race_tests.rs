//! The race behind "a held permit leaves a replica unlocked" (seen once at the start of a trap
//! storm), forced: a caller's look for a free replica is paused just after it passed a held
//! replica; that replica is freed and another caller looks in the pause. Before looks were one
//! at a time, the second caller took the free replica ahead of the paused look, which then
//! found every replica held while it held a permit, and the assertion fired.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use exorun_testkit::fixtures;
use wasmtime::component::Linker;

use super::Error;
use super::pool;
use crate::runtime::Runtime;
use crate::supervision::Replicas;
use crate::supervision::Spec;

/// How long the paused look waits for the second caller to finish its own look: the second
/// caller finishes at once when looks can interleave, and cannot finish at all while the
/// paused look holds the lock, so this bounds only the passing case.
const PAUSE: Duration = Duration::from_secs(2);

#[test]
fn a_replica_freed_behind_a_paused_look_is_still_found() {
    // Three workers: one paused in the look, one for the second caller (blocked on the lock
    // once looks are one at a time), one to drive the timers.
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .enable_all()
        .build()
        .expect("a runtime");
    tokio.block_on(async {
        let runtime = Runtime::new().expect("a runtime");
        let path = fixtures::path("misbehave").unwrap_or_else(|error| panic!("{error}"));
        let app = runtime.add_app_file("misbehave", &path).expect("the app");
        let prepared = runtime
            .prepare(app, &Linker::new(runtime.engine()))
            .expect("prepared");
        let two = Replicas::Fixed(std::num::NonZeroUsize::new(2).expect("two"));
        let spec = Spec {
            replicas: two,
            ..Spec::default()
        };
        let handle = runtime.start(&prepared, spec).await.expect("started");
        // The first replica fails its call and stays held.
        let trap = handle
            .export("exorun:test/misbehave", "trap")
            .expect("trap");
        let mut first = handle.lease(0).await.expect("a lease");
        first.call(&trap, &[], &mut []).await.expect_err("it traps");
        // The next look is paused just after it passes the held replica.
        let (passed, paused) = mpsc::channel();
        let (resume, resumed) = mpsc::channel::<()>();
        let resumed = std::sync::Mutex::new(resumed);
        let hook: pool::Probe = Arc::new(move |_index| {
            if passed.send(()).is_ok() {
                let _ = resumed
                    .lock()
                    .map(|resumed| resumed.recv_timeout(PAUSE * 2));
            }
        });
        pool::set_probe(Some(hook));
        let looking = tokio::spawn({
            let handle = handle.clone();
            async move { handle.lease(0).await.map(drop) }
        });
        let paused = tokio::task::spawn_blocking(move || paused.recv());
        paused
            .await
            .expect("joined")
            .expect("the look passed the held replica");
        pool::set_probe(None);
        // The held replica is freed (still failed); another caller looks now.
        drop(first);
        let mut second = tokio::spawn({
            let handle = handle.clone();
            async move { handle.lease(0).await }
        });
        let second_looked = tokio::time::timeout(PAUSE, &mut second).await;
        let _ = resume.send(());
        let looked = looking.await;
        assert!(
            looked.as_ref().is_ok_and(Result::is_ok),
            "the paused look found no replica: {looked:?}"
        );
        let second = match second_looked {
            Ok(second) => second,
            Err(_) => second.await,
        };
        // The second caller gets the other replica, restarted, or is held back by the
        // failure's back-off (the trap was its party's); never a panic.
        let second = second.expect("the second caller did not panic");
        assert!(
            matches!(second, Ok(_) | Err(Error::BackingOff { .. })),
            "{second:?}"
        );
    });
}
