//! The client side of one connection as a plain state machine (quinn-proto's shape): no
//! sockets, no tasks, no clock of its own. Calls, received frames and the time go in; frames to
//! send, finished calls and "close the connection" come out. `Client` drives one over a
//! transport with a tokio task; a property test drives one through any interleaving.
//!
//! What it keeps: the next sequence number, the calls in flight (each with its waiter `W`, the
//! frame sent and its deadline), the heartbeat clock, whether the server said it goes away and
//! whether the connection ended. A call ends in exactly one way, reported once as an event
//! (`poll_event`) unless the caller cancelled it: its reply, its deadline (`Timeout`), the
//! connection ending (`PeerClosed`, or `Unresponsive` when the heartbeat declared the peer
//! dead), or a go-away that came before the server read it (`Unread`, with its frame). Nothing
//! of a call is held after it ended. A reply for an unknown or ended call is counted and
//! dropped.

use std::collections::BTreeSet;
use std::collections::HashMap;
use std::collections::VecDeque;
use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;
use neorpc::frame;

use super::Config;
use super::Error;
use super::HEARTBEAT_MISSES;
use super::Reply;

/// Why `Session::call` did not take a call.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `calls_in_flight_max` calls are in flight; here is the frame back, to retry or refuse.
    Full(frame::OutboundCall),
    /// The connection ended or goes away: the call was not sent, and may go elsewhere.
    Unread(Bytes),
}

/// A call in flight.
struct Pending<W> {
    waiter: W,
    /// The frame as sent, for a go-away that hands it back unread.
    frame: Bytes,
    deadline: Instant,
    timeout: Duration,
}

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// The server goes away: no new call is sent here.
    Draining,
    /// The connection ended: every call fails at once.
    Closed,
}

/// The state of one connection's calls; `W` is whatever tells a caller its outcome.
pub(crate) struct Session<W> {
    config: Config,
    next_seq: u64,
    pending: HashMap<u64, Pending<W>>,
    /// Each pending call's deadline, earliest first.
    deadlines: BTreeSet<(Instant, u64)>,
    /// Control frames to send (pongs, pings), in order.
    outgoing: VecDeque<Bytes>,
    events: VecDeque<(W, Result<Reply, Error>)>,
    phase: Phase,
    /// When a frame last arrived (or the session began).
    heard: Instant,
    /// When the heartbeat looks at the silence next.
    heartbeat_at: Option<Instant>,
    ping_seq: u64,
    /// The driver must close the transport (the peer was declared dead).
    close_transport: bool,
    /// The earliest timer the driver was last told of, to know when a new call moves it.
    armed: Option<Instant>,
    unroutable: u64,
}

impl<W> std::fmt::Debug for Session<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("phase", &self.phase)
            .field("pending", &self.pending.len())
            .field("unroutable", &self.unroutable)
            .finish_non_exhaustive()
    }
}

impl<W> Session<W> {
    /// A session starting at `now`, with `config`'s in-flight bound and heartbeat.
    pub(crate) fn new(config: Config, now: Instant) -> Self {
        Self {
            heartbeat_at: config.heartbeat.map(|interval| now + interval),
            config,
            next_seq: 1,
            pending: HashMap::new(),
            deadlines: BTreeSet::new(),
            outgoing: VecDeque::new(),
            events: VecDeque::new(),
            phase: Phase::Open,
            heard: now,
            ping_seq: 0,
            close_transport: false,
            armed: None,
            unroutable: 0,
        }
    }

    /// Takes a call: stamps `frame` with the next seq and returns the bytes to send now (the
    /// driver sends calls in the order this hands them out, so a go-away's `last_seq` divides
    /// them exactly). Its outcome reaches `waiter` by `deadline` at the latest (`timeout` is
    /// what a `Timeout` reports).
    pub(crate) fn call(
        &mut self,
        mut frame: frame::OutboundCall,
        waiter: W,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(frame::Seq, Bytes), Refused> {
        if self.phase != Phase::Open {
            return Err(Refused::Unread(Bytes::from(frame.into_bytes())));
        }
        if self.pending.len() >= self.config.calls_in_flight_max {
            return Err(Refused::Full(frame));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        frame.set_seq(frame::Seq(seq));
        let bytes = Bytes::from(frame.into_bytes());
        let pending = Pending {
            waiter,
            frame: bytes.clone(),
            deadline,
            timeout,
        };
        self.pending.insert(seq, pending);
        self.deadlines.insert((deadline, seq));
        Ok((frame::Seq(seq), bytes))
    }

    /// The caller gave up on `seq` (its future was dropped): forget it, reporting nothing.
    pub(crate) fn cancel(&mut self, seq: frame::Seq) {
        self.remove(seq.0);
    }

    /// The frame of `seq` could not be handed to the transport: forget it and return it (the
    /// call never left, so it may go elsewhere).
    pub(crate) fn unsent(&mut self, seq: frame::Seq) -> Option<Bytes> {
        self.remove(seq.0).map(|pending| pending.frame)
    }

    /// A frame arrived at `now` (ignored once the connection ended).
    pub(crate) fn receive(&mut self, message: &Bytes, now: Instant) {
        if self.phase == Phase::Closed {
            return;
        }
        self.heard = now;
        match frame::decode(message) {
            Ok(frame::Message::Reply(reply)) => {
                let answered = reply.outcome.map(|results| message.slice_ref(results));
                self.complete(reply.seq.0, Ok(answered));
            }
            Ok(frame::Message::GoAway { last_seq }) => self.go_away(last_seq),
            Ok(frame::Message::Ping(seq)) => {
                if let Ok(pong) = frame::encode_pong(seq) {
                    self.outgoing.push_back(Bytes::from(pong));
                }
            }
            Ok(frame::Message::Pong(_)) => {}
            Ok(
                frame::Message::Call(frame::Call { seq, .. }) | frame::Message::Release { seq, .. },
            ) => {
                self.unroutable += 1;
                tracing::debug!(seq = seq.0, "dropped a call sent to a client");
            }
            Err(error) => {
                // Only on this error path is the frame read a second time, for its seq alone.
                let Ok(seq) = frame::decode_seq(message) else {
                    self.unroutable += 1;
                    tracing::debug!(%error, "dropped a reply without a readable sequence number");
                    return;
                };
                self.complete(seq.0, Err(Error::Frame(error)));
            }
        }
    }

    /// The time is `now`: calls past their deadline time out, and the heartbeat pings a quiet
    /// peer or declares a silent one dead.
    pub(crate) fn tick(&mut self, now: Instant) {
        while let Some(&(deadline, seq)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            let Some(pending) = self.remove(seq) else {
                continue;
            };
            let timeout_ms = exorun_common::millis(pending.timeout);
            self.events
                .push_back((pending.waiter, Err(Error::Timeout { timeout_ms })));
        }
        self.heartbeat(now);
    }

    /// The connection ended: every call in flight fails with `error`, and later calls are
    /// refused unread.
    pub(crate) fn close(&mut self, error: &Error) {
        self.phase = Phase::Closed;
        self.heartbeat_at = None;
        self.outgoing.clear();
        self.deadlines.clear();
        for (_, pending) in self.pending.drain() {
            self.events.push_back((pending.waiter, Err(error.clone())));
        }
    }

    /// The next control frame to send.
    pub(crate) fn poll_transmit(&mut self) -> Option<Bytes> {
        self.outgoing.pop_front()
    }

    /// The next ended call and how it ended.
    pub(crate) fn poll_event(&mut self) -> Option<(W, Result<Reply, Error>)> {
        self.events.pop_front()
    }

    /// When `tick` must be called next (the earliest deadline or heartbeat), if ever; the
    /// driver arms its timer for it.
    pub(crate) fn poll_timeout(&mut self) -> Option<Instant> {
        let earliest = self.deadlines.first().map(|(deadline, _)| *deadline);
        let next = match (earliest, self.heartbeat_at) {
            (Some(deadline), Some(beat)) => Some(deadline.min(beat)),
            (deadline, beat) => deadline.or(beat),
        };
        self.armed = next;
        next
    }

    /// Whether a call taken since the last `poll_timeout` needs the timer earlier than it was
    /// armed (the driver then wakes its timer).
    pub(crate) fn timer_moved(&self) -> bool {
        let earliest = self.deadlines.first().map(|(deadline, _)| *deadline);
        match (earliest, self.armed) {
            (Some(deadline), Some(armed)) => deadline < armed,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// Whether the driver must close the transport now (the peer was declared dead); true
    /// once.
    pub(crate) fn take_close_transport(&mut self) -> bool {
        std::mem::take(&mut self.close_transport)
    }

    /// Calls in flight.
    pub(crate) fn pending_len(&self) -> usize {
        debug_assert_eq!(self.pending.len(), self.deadlines.len());
        self.pending.len()
    }

    /// Replies that matched no call in flight (unknown, ended or malformed), dropped.
    pub(crate) fn unroutable_replies(&self) -> u64 {
        self.unroutable
    }

    /// Whether the connection ended.
    pub(crate) fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether the server said it goes away (or the connection ended).
    pub(crate) fn is_draining(&self) -> bool {
        self.phase != Phase::Open
    }

    fn remove(&mut self, seq: u64) -> Option<Pending<W>> {
        let pending = self.pending.remove(&seq)?;
        self.deadlines.remove(&(pending.deadline, seq));
        Some(pending)
    }

    fn complete(&mut self, seq: u64, outcome: Result<Reply, Error>) {
        let Some(pending) = self.remove(seq) else {
            self.unroutable += 1;
            tracing::debug!(seq, "dropped a reply for an unknown or ended call");
            return;
        };
        self.events.push_back((pending.waiter, outcome));
    }

    /// The server reads nothing after `last_seq`: no new call goes out here, and each call
    /// above it goes back to its caller unread, with its frame.
    fn go_away(&mut self, last_seq: frame::Seq) {
        if self.phase == Phase::Open {
            self.phase = Phase::Draining;
        }
        let mut unread: Vec<u64> = self
            .pending
            .keys()
            .copied()
            .filter(|seq| *seq > last_seq.0)
            .collect();
        unread.sort_unstable();
        tracing::debug!(
            last_seq = last_seq.0,
            unread = unread.len(),
            "the server goes away"
        );
        for seq in unread {
            let Some(pending) = self.remove(seq) else {
                continue;
            };
            self.events
                .push_back((pending.waiter, Err(Error::Unread(pending.frame))));
        }
    }

    /// At each heartbeat interval: a peer silent for `HEARTBEAT_MISSES` intervals is declared
    /// dead (every call fails `Unresponsive`), one silent for an interval is pinged.
    fn heartbeat(&mut self, now: Instant) {
        let (Some(interval), Some(at)) = (self.config.heartbeat, self.heartbeat_at) else {
            return;
        };
        if now < at {
            return;
        }
        self.heartbeat_at = Some(now + interval);
        let silent = now.saturating_duration_since(self.heard);
        if silent >= interval.saturating_mul(HEARTBEAT_MISSES) {
            let silent_ms = exorun_common::millis(silent);
            tracing::info!(silent_ms, "declared the peer dead: no frame despite pings");
            self.close(&Error::Unresponsive { silent_ms });
            self.close_transport = true;
            return;
        }
        if silent < interval {
            return;
        }
        self.ping_seq += 1;
        if let Ok(ping) = frame::encode_ping(frame::Seq(self.ping_seq)) {
            self.outgoing.push_back(Bytes::from(ping));
        }
    }
}

#[cfg(test)]
mod tests;
