//! Answering a lattice's calls: each export subscribed in its queue group, calls answered
//! through a `dispatch::Dispatcher` with a bound on calls running, and a stop that loses no call
//! NATS routed here (see the `nats` module doc). A request is answered only when its call
//! frame targets the export of the subject it came on (NATS subject permissions are the
//! lattice's authorization, so the frame cannot name another export: `ProtocolViolation`) and
//! its reply subject is a NATS inbox (`REPLY_PREFIX`: a runtime publishes its reply, with its
//! own permissions, where the caller says, so it answers only where requesters listen).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use neorpc::failure::Failure;
use neorpc::frame;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::CALLER_HEADER;
use super::RUNTIME_HEADER;
use super::SUBSCRIPTION_CAPACITY;
use super::parse_tag;
use super::random_tag;
use super::runtime_subject;
use super::subject;
use crate::connection;
use crate::dispatch;
use crate::transport;
use exorun_common::Cause;
use exorun_common::Throttle;

/// The only reply subjects answered: NATS inboxes, where requesters (async-nats and the other
/// official clients, by default) wait for replies.
pub const REPLY_PREFIX: &str = "_INBOX.";

/// Requests refused for their reply subject or their target, logged at most once a second.
static REFUSED: Throttle = Throttle::new();

/// What a NATS serving loop did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Served {
    /// Calls answered (by the dispatcher, or with a failure it gave).
    pub calls: u64,
    /// Calls answered `Overloaded` at once because `calls_in_flight_max` were running.
    pub refused: u64,
    /// Messages not answered: no call frame with a readable seq, no reply subject, or a reply
    /// subject outside `REPLY_PREFIX` (dropped).
    pub dropped: u64,
    /// Messages NATS delivered to this connection that never reached the loop (the client
    /// dropped them as a slow consumer, or they came for a subscription already removed):
    /// counted from the client's statistics (every message it read, on every connection it
    /// made) once the final flush has fenced the stop.
    pub lost: u64,
}

/// Lattice callers (each naming itself in `CALLER_HEADER`) a serving runtime keeps apart at
/// once, each with the resource handles it holds here; a call from one more is answered
/// `Overloaded` until one is let go.
pub const CALLERS_MAX: usize = 4096;
/// How long a lattice caller may go without a call here before it is let go, with the
/// handles it held (NATS has no connection whose end would say the caller is gone): the same
/// as a connection's idle timeout.
pub const CALLER_IDLE: Duration = Duration::from_secs(600);
/// How often idle callers are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// How long a stopping runtime waits without a call before its final unsubscribe; also the
/// window in which the recent call rate is measured.
pub const QUIET: Duration = Duration::from_millis(100);

/// A serving runtime's subscriptions: each export of a lattice, in its queue group.
pub struct Subscribed {
    connection: async_nats::Client,
    subscriptions: Vec<async_nats::Subscriber>,
    /// The export each subscription serves, by the same index.
    exports: Vec<String>,
    /// This runtime's tag in the lattice (`RUNTIME_HEADER`, `runtime_subject`).
    tag: u64,
}

impl std::fmt::Debug for Subscribed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscribed")
            .field("subscriptions", &self.subscriptions.len())
            .finish_non_exhaustive()
    }
}

/// Subscribes `exports` of `lattice` on `connection`, each in its queue group; when this
/// returns the NATS server has them (a flush made the round trip), so calls reach them.
pub(crate) async fn subscribe(
    connection: async_nats::Client,
    lattice: &str,
    exports: &[String],
) -> Result<Subscribed, transport::Error> {
    let tag = random_tag()?;
    let subscribe_error = |subject: &str, error| transport::Error::Io {
        kind: std::io::ErrorKind::Other,
        source: Cause::with_context(format!("NATS subscribe to {subject}"), error),
    };
    let mut subscriptions = Vec::new();
    for export in exports {
        let subject = subject(lattice, export);
        let subscribed = connection
            .queue_subscribe(subject.clone(), subject.clone())
            .await
            .map_err(|error| subscribe_error(&subject, error))?;
        subscriptions.push(subscribed);
    }
    // Each export on this runtime alone too, where calls naming its handles come.
    for export in exports {
        let subject = runtime_subject(lattice, export, tag);
        let subscribed = connection
            .subscribe(subject.clone())
            .await
            .map_err(|error| subscribe_error(&subject, error))?;
        subscriptions.push(subscribed);
    }
    connection
        .flush()
        .await
        .map_err(|error| transport::Error::Io {
            kind: std::io::ErrorKind::BrokenPipe,
            source: Cause::with_context("NATS flush", error),
        })?;
    let mut served = exports.to_vec();
    served.extend_from_slice(exports);
    Ok(Subscribed {
        connection,
        subscriptions,
        exports: served,
        tag,
    })
}

/// Calls that arrived in the current and the previous `QUIET` window.
struct Rate {
    window: tokio::time::Instant,
    current: u64,
    previous: u64,
}

impl Rate {
    fn new() -> Self {
        Self {
            window: tokio::time::Instant::now(),
            current: 0,
            previous: 0,
        }
    }

    fn arrived(&mut self) {
        let now = tokio::time::Instant::now();
        let elapsed = now.duration_since(self.window);
        if elapsed >= QUIET * 2 {
            (self.window, self.previous, self.current) = (now, 0, 0);
        } else if elapsed >= QUIET {
            (self.window, self.previous, self.current) = (now, self.current, 0);
        }
        self.current += 1;
    }

    /// Calls a stopping subscription still accepts: twice what came in the last two
    /// windows (far more than can be on the wire in one round trip), at least one, at most
    /// `SUBSCRIPTION_CAPACITY`.
    fn slack(&self) -> u64 {
        let recent = (self.current + self.previous).saturating_mul(2);
        recent.clamp(1, u64::try_from(SUBSCRIPTION_CAPACITY).unwrap_or(u64::MAX))
    }
}

/// One lattice caller: its origin, when it last called, and its calls running.
struct Caller {
    origin: dispatch::Origin,
    seen: tokio::time::Instant,
    running: Arc<AtomicUsize>,
}

/// Where the loop starts calls: the slots, the running calls and the counts.
struct Calls {
    connection: async_nats::Client,
    /// The largest reply the NATS server takes, as it announced at connect.
    max_payload: usize,
    dispatcher: Arc<dyn dispatch::Dispatcher>,
    exports: Arc<[String]>,
    /// Calls from the lattice that name no caller come from this one origin: callers on NATS
    /// carry no key, so they are one party to supervision (see `exorun_core::principal`).
    origin: dispatch::Origin,
    /// Callers that name themselves, each an origin of its own (its handles) in that party.
    callers: HashMap<u64, Caller>,
    swept: tokio::time::Instant,
    /// This runtime's tag, in every reply.
    tag: u64,
    slots: Arc<Semaphore>,
    running: JoinSet<bool>,
    served: Served,
    pulled: Vec<u64>,
    rate: Rate,
}

impl Calls {
    /// Starts the call in `message` (from subscription `index`), or answers it `Overloaded`
    /// at once when every slot is taken: a message left in the client's buffer could be
    /// dropped there without a word, a refused call is told why.
    async fn start(&mut self, index: usize, message: async_nats::Message) {
        while let Some(answered) = self.running.try_join_next() {
            self.served.count(answered);
        }
        self.pulled[index] += 1;
        self.rate.arrived();
        let connection = self.connection.clone();
        let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
            self.served.refused += 1;
            // Answered here, not in a task of its own: if the NATS client cannot take the
            // reply at once, the loop waits rather than piling up refusals.
            refuse(&connection, message).await;
            return;
        };
        self.sweep(false);
        let Some((origin, running)) = self.origin_of(&message) else {
            self.served.refused += 1;
            refuse(&connection, message).await;
            return;
        };
        let (dispatcher, max_payload) = (Arc::clone(&self.dispatcher), self.max_payload);
        let exports = Arc::clone(&self.exports);
        let tag = self.tag;
        self.running.spawn(async move {
            let export = &exports[index];
            let answering = Answering {
                connection: &connection,
                dispatcher: dispatcher.as_ref(),
                max_payload,
                export,
                origin: &origin,
                tag,
            };
            let answered = answering.answer(message).await;
            if let Some(running) = running {
                running.fetch_sub(1, Ordering::SeqCst);
            }
            drop(slot);
            answered
        });
    }

    /// The origin of `message`'s call: its caller's own (counted running until answered), or
    /// the lattice's for a request that names no caller; `None` when `CALLERS_MAX` callers
    /// are kept already and this is another.
    fn origin_of(
        &mut self,
        message: &async_nats::Message,
    ) -> Option<(dispatch::Origin, Option<Arc<AtomicUsize>>)> {
        let named = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(CALLER_HEADER));
        let Some(caller) = named.and_then(|tag| parse_tag(tag.as_str())) else {
            return Some((self.origin.clone(), None));
        };
        if !self.callers.contains_key(&caller) && self.callers.len() >= CALLERS_MAX {
            return None;
        }
        let party = self.origin.party();
        let entry = self.callers.entry(caller).or_insert_with(|| Caller {
            origin: dispatch::Origin::lattice_caller(party),
            seen: tokio::time::Instant::now(),
            running: Arc::default(),
        });
        entry.seen = tokio::time::Instant::now();
        entry.running.fetch_add(1, Ordering::SeqCst);
        Some((entry.origin.clone(), Some(Arc::clone(&entry.running))))
    }

    /// Lets go of callers idle for `CALLER_IDLE` with no call running (or of every caller,
    /// at the end), and so of the handles they held; looks at most every `SWEEP_EVERY`.
    fn sweep(&mut self, all: bool) {
        let now = tokio::time::Instant::now();
        if !all && now.duration_since(self.swept) < SWEEP_EVERY {
            return;
        }
        self.swept = now;
        let dispatcher = Arc::clone(&self.dispatcher);
        self.callers.retain(|_, caller| {
            let idle = now.duration_since(caller.seen) >= CALLER_IDLE
                && caller.running.load(Ordering::SeqCst) == 0;
            if all || idle {
                dispatcher.closed(&caller.origin);
                return false;
            }
            true
        });
    }
}

/// The next message of any subscription, with the subscription's index.
fn incoming(
    subscriptions: &mut [async_nats::Subscriber],
) -> impl futures_util::Stream<Item = (usize, async_nats::Message)> + Unpin + '_ {
    futures_util::stream::select_all(
        subscriptions
            .iter_mut()
            .enumerate()
            .map(|(index, subscription)| subscription.map(move |message| (index, message))),
    )
}

impl Subscribed {
    /// Answers calls through `dispatcher`, at most `calls_in_flight_max` at once (past that a
    /// call is answered `Overloaded` at once), until `stop` completes (or the connection ends
    /// for good); then stops so that no call NATS routed here is lost (see `stop`), answers
    /// every call received, and flushes.
    pub async fn serve(
        mut self,
        dispatcher: Arc<dyn dispatch::Dispatcher>,
        calls_in_flight_max: usize,
        stop: impl Future<Output = ()> + Send,
    ) -> Served {
        let mut calls = Calls {
            connection: self.connection.clone(),
            max_payload: self.connection.server_info().max_payload,
            dispatcher,
            exports: Arc::from(std::mem::take(&mut self.exports)),
            origin: dispatch::Origin::lattice(),
            callers: HashMap::new(),
            swept: tokio::time::Instant::now(),
            tag: self.tag,
            slots: Arc::new(Semaphore::new(calls_in_flight_max)),
            running: JoinSet::new(),
            served: Served::default(),
            pulled: vec![0; self.subscriptions.len()],
            rate: Rate::new(),
        };
        let mut stop = std::pin::pin!(stop);
        let mut stream = incoming(&mut self.subscriptions);
        let mut sweeps = tokio::time::interval(SWEEP_EVERY);
        loop {
            let next = tokio::select! {
                biased;
                () = &mut stop => break,
                next = stream.next() => next,
                _ = sweeps.tick() => {
                    calls.sweep(false);
                    continue;
                }
            };
            let Some((index, message)) = next else {
                break; // every subscription ended (the connection closed for good)
            };
            calls.start(index, message).await;
        }
        drop(stream);
        self.stop(&mut calls).await;
        while let Some(answered) = calls.running.join_next().await {
            calls.served.count(answered);
        }
        // Every call answered: the handles callers held here go with this runtime.
        calls.sweep(true);
        let flushed = self.connection.flush().await;
        let delivered = self
            .connection
            .statistics()
            .in_messages
            .load(Ordering::Relaxed);
        let pulled: u64 = calls.pulled.iter().sum();
        calls.served.lost = delivered.saturating_sub(pulled);
        let served = calls.served;
        if served.lost > 0 {
            tracing::warn!(
                lost = served.lost,
                "NATS delivered calls this runtime never saw"
            );
        }
        tracing::info!(
            calls = served.calls,
            refused = served.refused,
            dropped = served.dropped,
            flushed = flushed.is_ok(),
            "stopped serving the lattice"
        );
        served
    }

    /// Leaves the queue groups without losing a call NATS routed here. The client's own
    /// drain forgets a subscription as soon as its unsubscribe is written, so calls the
    /// server routed here in that round trip would be dropped unseen. Instead each
    /// subscription first asks the server to stop after a count of calls (`UNSUB` with a
    /// maximum): the server stops routing exactly at that count and the client keeps the
    /// subscription until that many have arrived, so none is lost while the count is above
    /// what the server already routed. The count is what was received so far plus twice the
    /// recent rate's worth. When no call comes for `QUIET` (nothing is on the wire), the
    /// rest are drained at once.
    async fn stop(&mut self, calls: &mut Calls) {
        let statistics = self.connection.statistics();
        let reconnected = statistics.connects.load(Ordering::Relaxed) > 1;
        let delivered = statistics.in_messages.load(Ordering::Relaxed);
        let buffered = delivered.saturating_sub(calls.pulled.iter().sum());
        let slack = calls.rate.slack();
        for (index, subscription) in self.subscriptions.iter_mut().enumerate() {
            // After a reconnect the server counts from the resubscribe, the client from the
            // start: a maximum would mean different things to them.
            let counted = !reconnected
                && subscription
                    .unsubscribe_after(calls.pulled[index] + buffered + slack)
                    .await
                    .is_ok();
            if !counted {
                let _ = subscription.drain().await;
            }
        }
        let mut quiet = std::pin::pin!(tokio::time::sleep(QUIET));
        let mut stream = incoming(&mut self.subscriptions);
        loop {
            let next = tokio::select! {
                next = stream.next() => next,
                () = &mut quiet => break,
            };
            let Some((index, message)) = next else {
                return; // every subscription reached its count
            };
            calls.start(index, message).await;
            quiet.as_mut().reset(tokio::time::Instant::now() + QUIET);
        }
        drop(stream);
        for subscription in &mut self.subscriptions {
            let _ = subscription.drain().await;
        }
        let mut rest = incoming(&mut self.subscriptions);
        while let Some((index, message)) = rest.next().await {
            calls.start(index, message).await;
        }
    }
}

impl Served {
    fn count(&mut self, answered: Result<bool, tokio::task::JoinError>) {
        match answered {
            Ok(true) => self.calls += 1,
            Ok(false) | Err(_) => self.dropped += 1,
        }
    }
}

/// The reply subject to answer `message` on: its own, if it is a NATS inbox.
fn reply_subject(message: &async_nats::Message) -> Option<async_nats::Subject> {
    let reply_to = message.reply.clone()?;
    if reply_to.as_str().starts_with(REPLY_PREFIX) {
        return Some(reply_to);
    }
    REFUSED.note(|skipped| {
        tracing::warn!(
            skipped,
            "dropped a NATS request whose reply subject is not an inbox"
        );
    });
    None
}

/// Answers the call in `message` `Overloaded`, without running it.
async fn refuse(connection: &async_nats::Client, message: async_nats::Message) {
    let Some(reply_to) = reply_subject(&message) else {
        return;
    };
    let Ok(seq) = frame::decode_seq(&message.payload) else {
        return;
    };
    let reply = connection::failure_reply(seq, &Failure::Overloaded);
    if let Err(error) = connection.publish(reply_to, Bytes::from(reply)).await {
        tracing::debug!(%error, "could not publish a refusal; the caller will time out");
    }
}

/// What answering one call needs.
struct Answering<'a> {
    connection: &'a async_nats::Client,
    dispatcher: &'a dyn dispatch::Dispatcher,
    /// The largest reply the NATS server takes.
    max_payload: usize,
    /// The export of the subject the call came on.
    export: &'a str,
    origin: &'a dispatch::Origin,
    /// This runtime's tag, named in the reply.
    tag: u64,
}

impl Answering<'_> {
    /// Runs one call and publishes its reply; `false` if it was not answered.
    async fn answer(&self, message: async_nats::Message) -> bool {
        let Some(reply_to) = reply_subject(&message) else {
            return false; // a publish, or a reply subject we do not answer on
        };
        let payload = message.payload;
        let (seq, outcome) = match frame::decode(&payload) {
            Ok(frame::Message::Call(call)) if call.target != self.export => {
                REFUSED.note(|skipped| {
                    tracing::warn!(
                        skipped,
                        "refused a NATS call whose target is not its subject's export"
                    );
                });
                let violation = Failure::ProtocolViolation {
                    message: format!("a call on the subject of `{}` must target it", self.export),
                };
                (call.seq, Err(violation))
            }
            Ok(frame::Message::Call(call)) => {
                let seq = call.seq;
                (
                    seq,
                    self.dispatcher.dispatch(call, &payload, self.origin).await,
                )
            }
            Ok(frame::Message::Release { seq, handle }) => {
                (seq, self.dispatcher.release(seq, handle, self.origin).await)
            }
            Ok(_) | Err(_) => {
                let Ok(seq) = frame::decode_seq(&payload) else {
                    return false;
                };
                let violation = Failure::ProtocolViolation {
                    message: "a NATS request must carry one neorpc call frame".to_owned(),
                };
                (seq, Err(violation))
            }
        };
        let reply = self.reply(seq, outcome);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(RUNTIME_HEADER, format!("{:016x}", self.tag).as_str());
        let published = self
            .connection
            .publish_with_headers(reply_to, headers, Bytes::from(reply))
            .await;
        if let Err(error) = published {
            tracing::debug!(%error, "could not publish a reply; the caller will time out");
        }
        true
    }

    /// The reply frame for a finished call: its results if they fit the NATS payload limit.
    fn reply(&self, seq: frame::Seq, outcome: dispatch::Outcome) -> Vec<u8> {
        let max = self.max_payload;
        match outcome {
            Ok(reply) if reply.len() <= max => reply,
            Ok(reply) => connection::failure_reply(
                seq,
                &Failure::ReplyTooLarge {
                    reply_bytes: u64::try_from(reply.len()).unwrap_or(u64::MAX),
                    max: u64::try_from(max).unwrap_or(u64::MAX),
                },
            ),
            Err(failure) => connection::failure_reply(seq, &failure),
        }
    }
}
