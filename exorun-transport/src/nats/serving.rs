//! Serving a lattice: each export subscribed in its queue group, calls answered through a
//! `serve::Dispatcher` with a bound on calls running, and a stop that loses no call NATS
//! routed here (see the `nats` module doc).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use neorpc::failure::Failure;
use neorpc::frame;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::SUBSCRIPTION_CAPACITY;
use super::subject;
use crate::serve;
use crate::transport;

/// What a NATS serving loop did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Served {
    /// Calls answered (by the dispatcher, or with a failure it gave).
    pub calls: u64,
    /// Calls answered `Overloaded` at once because `calls_in_flight_max` were running.
    pub refused: u64,
    /// Messages that were no call frame and had no readable seq (dropped).
    pub dropped: u64,
    /// Messages NATS delivered to this connection that never reached the loop (the client
    /// dropped them as a slow consumer, or they came for a subscription already removed):
    /// counted from the client's statistics (every message it read, on every connection it
    /// made) once the final flush has fenced the stop.
    pub lost: u64,
}

/// How long a stopping runtime waits without a call before its final unsubscribe; also the
/// window in which the recent call rate is measured.
pub const QUIET: Duration = Duration::from_millis(100);

/// A serving runtime's subscriptions: each export of a lattice, in its queue group.
pub struct Subscribed {
    connection: async_nats::Client,
    subscriptions: Vec<async_nats::Subscriber>,
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
pub async fn subscribe(
    connection: async_nats::Client,
    lattice: &str,
    exports: &[String],
) -> Result<Subscribed, transport::Error> {
    let mut subscriptions = Vec::new();
    for export in exports {
        let subject = subject(lattice, export);
        let subscribed = connection
            .queue_subscribe(subject.clone(), subject.clone())
            .await
            .map_err(|error| transport::Error::Io {
                kind: std::io::ErrorKind::Other,
                message: format!("NATS subscribe to {subject}: {error}"),
            })?;
        subscriptions.push(subscribed);
    }
    connection
        .flush()
        .await
        .map_err(|error| transport::Error::Io {
            kind: std::io::ErrorKind::BrokenPipe,
            message: format!("NATS flush: {error}"),
        })?;
    Ok(Subscribed {
        connection,
        subscriptions,
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

/// Where the loop starts calls: the slots, the running calls and the counts.
struct Calls {
    connection: async_nats::Client,
    /// The largest reply the NATS server takes, as it announced at connect.
    max_payload: usize,
    dispatcher: Arc<dyn serve::Dispatcher>,
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
        let (dispatcher, max_payload) = (Arc::clone(&self.dispatcher), self.max_payload);
        self.running.spawn(async move {
            let answered = answer(&connection, dispatcher.as_ref(), max_payload, message).await;
            drop(slot);
            answered
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
        dispatcher: Arc<dyn serve::Dispatcher>,
        calls_in_flight_max: usize,
        stop: impl Future<Output = ()> + Send,
    ) -> Served {
        let mut calls = Calls {
            connection: self.connection.clone(),
            max_payload: self.connection.server_info().max_payload,
            dispatcher,
            slots: Arc::new(Semaphore::new(calls_in_flight_max)),
            running: JoinSet::new(),
            served: Served::default(),
            pulled: vec![0; self.subscriptions.len()],
            rate: Rate::new(),
        };
        let mut stop = std::pin::pin!(stop);
        let mut stream = incoming(&mut self.subscriptions);
        loop {
            let next = tokio::select! {
                biased;
                () = &mut stop => break,
                next = stream.next() => next,
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

/// Answers the call in `message` `Overloaded`, without running it.
async fn refuse(connection: &async_nats::Client, message: async_nats::Message) {
    let Some(reply_to) = message.reply else {
        return;
    };
    let Ok(seq) = frame::decode_seq(&message.payload) else {
        return;
    };
    let reply = failure_reply(seq, &Failure::Overloaded);
    if let Err(error) = connection.publish(reply_to, Bytes::from(reply)).await {
        tracing::debug!(%error, "could not publish a refusal; the caller will time out");
    }
}

/// Runs one call and publishes its reply; `false` if the message was no call at all.
async fn answer(
    connection: &async_nats::Client,
    dispatcher: &dyn serve::Dispatcher,
    max: usize,
    message: async_nats::Message,
) -> bool {
    let Some(reply_to) = message.reply else {
        return false; // a publish, not a request: nobody to answer
    };
    let payload = message.payload;
    let outcome = match frame::decode(&payload) {
        Ok(frame::Message::Call(call)) => {
            let seq = call.seq;
            let caller = serve::Caller::new(None);
            (seq, dispatcher.dispatch(call, &payload, &caller).await)
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
    let (seq, outcome) = outcome;
    let reply = match outcome {
        Ok(reply) if reply.len() <= max => reply,
        Ok(reply) => failure_reply(
            seq,
            &Failure::ReplyTooLarge {
                reply_bytes: u64::try_from(reply.len()).unwrap_or(u64::MAX),
                max: u64::try_from(max).unwrap_or(u64::MAX),
            },
        ),
        Err(failure) => failure_reply(seq, &failure),
    };
    if let Err(error) = connection.publish(reply_to, Bytes::from(reply)).await {
        tracing::debug!(%error, "could not publish a reply; the caller will time out");
    }
    true
}

fn failure_reply(seq: frame::Seq, failure: &Failure) -> Vec<u8> {
    frame::encode_reply(seq, Err(failure)).unwrap_or_default()
}
