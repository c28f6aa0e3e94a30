//! The client's connection state machine (`client::session::Session`), driven without I/O
//! through random interleavings of calls, replies (also duplicate, late, unknown and
//! malformed), the passing of time, heartbeats, go-aways, cancellations and cuts, against a
//! model: every call ends in exactly one way, the right one, and nothing is held after it
//! ends.

use std::collections::BTreeMap;
use std::time::Duration;
use std::time::Instant;

use super::Refused;
use super::Session;
use crate::client;
use bytes::Bytes;
use neorpc::frame;
use proptest::prelude::*;

/// How a call stands in the model.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Model {
    /// In flight: its seq and deadline.
    Live { seq: u64, deadline: Instant },
    /// Ended, reported once by an event.
    Ended,
    /// Cancelled by its caller: no event may come.
    Cancelled,
}

#[derive(Debug, Clone)]
enum Op {
    Call {
        timeout_ms: u64,
    },
    /// A reply for the seq `pick` lands on (live, ended or never used).
    Reply {
        pick: u64,
        fail: bool,
    },
    /// A reply whose seq reads but whose body does not decode.
    Malformed {
        pick: u64,
    },
    /// Bytes with no readable seq.
    Garbage,
    Advance {
        ms: u64,
    },
    GoAway {
        pick: u64,
    },
    Cancel {
        pick: u64,
    },
    Ping,
    Cut,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u64..200).prop_map(|timeout_ms| Op::Call { timeout_ms }),
        4 => (any::<u64>(), any::<bool>()).prop_map(|(pick, fail)| Op::Reply { pick, fail }),
        1 => any::<u64>().prop_map(|pick| Op::Malformed { pick }),
        1 => Just(Op::Garbage),
        3 => (0u64..120).prop_map(|ms| Op::Advance { ms }),
        1 => any::<u64>().prop_map(|pick| Op::GoAway { pick }),
        1 => any::<u64>().prop_map(|pick| Op::Cancel { pick }),
        1 => Just(Op::Ping),
        1 => Just(Op::Cut),
    ]
}

/// The results slab a reply to `seq` carries: a u32 item naming it, so misrouting shows.
fn slab(seq: u64) -> Vec<u8> {
    let mut slab = vec![0x05];
    slab.extend_from_slice(&u32::try_from(seq % 1_000_000).unwrap().to_le_bytes());
    slab
}

struct Harness {
    session: Session<usize>,
    calls: Vec<Model>,
    now: Instant,
    config: client::Config,
    /// The peer declared itself gone (go-away) or the connection ended.
    draining: bool,
    closed: bool,
    go_away_at: Option<u64>,
    next_seq: u64,
    unroutable: u64,
    pongs: usize,
}

impl Harness {
    fn new(config: client::Config) -> Self {
        let now = Instant::now();
        Self {
            session: Session::new(config, now),
            calls: Vec::new(),
            now,
            config,
            draining: false,
            closed: false,
            go_away_at: None,
            next_seq: 1,
            unroutable: 0,
            pongs: 0,
        }
    }

    fn live(&self) -> Vec<(usize, u64)> {
        let live = self.calls.iter().enumerate();
        let live = live.filter_map(|(id, model)| match model {
            Model::Live { seq, .. } => Some((id, *seq)),
            Model::Ended | Model::Cancelled => None,
        });
        live.collect()
    }

    fn id_of(&self, seq: u64) -> Option<usize> {
        self.live()
            .into_iter()
            .find(|(_, live)| *live == seq)
            .map(|(id, _)| id)
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Call { timeout_ms } => self.call(timeout_ms),
            Op::Reply { pick, fail } => {
                let seq = pick % (self.next_seq + 2);
                let outcome = if fail {
                    Err(&neorpc::failure::Failure::Overloaded)
                } else {
                    Ok(&slab(seq)[..])
                };
                let reply = frame::encode_reply(frame::Seq(seq), outcome).unwrap();
                self.receive(seq, Bytes::from(reply));
            }
            Op::Malformed { pick } => {
                let seq = pick % (self.next_seq + 2);
                let mut reply = frame::encode_reply(frame::Seq(seq), Ok(&slab(seq))).unwrap();
                reply.pop();
                self.receive(seq, Bytes::from(reply));
            }
            Op::Garbage => {
                self.session
                    .receive(&Bytes::from_static(&[0xff, 0x00]), self.now);
                if !self.closed {
                    self.unroutable += 1;
                }
            }
            Op::Advance { ms } => self.advance(ms),
            Op::GoAway { pick } => self.go_away(pick % self.next_seq),
            Op::Cancel { pick } => {
                let live = self.live();
                if live.is_empty() {
                    return;
                }
                let index = usize::try_from(pick % u64::try_from(live.len()).unwrap()).unwrap();
                let (id, seq) = live[index];
                self.session.cancel(frame::Seq(seq));
                self.calls[id] = Model::Cancelled;
            }
            Op::Ping => {
                let ping = frame::encode_ping(frame::Seq(7)).unwrap();
                self.session.receive(&Bytes::from(ping), self.now);
                if !self.closed {
                    self.pongs += 1;
                }
            }
            Op::Cut => {
                self.session.close(&client::Error::PeerClosed);
                self.expect_all_live_end(|outcome| *outcome == Err(client::Error::PeerClosed));
                self.closed = true;
                self.draining = true;
            }
        }
        self.check_transmits();
        assert_eq!(self.session.pending_len(), self.live().len(), "held = live");
        assert_eq!(self.session.unroutable_replies(), self.unroutable);
        assert!(
            self.session.poll_event().is_none(),
            "no event left unexplained"
        );
    }

    fn call(&mut self, timeout_ms: u64) {
        let id = self.calls.len();
        let call = frame::encode_call("t", "i#f", &[0x0E], &[]).unwrap();
        let timeout = Duration::from_millis(timeout_ms);
        let deadline = self.now + timeout;
        let started = self.session.call(call, id, deadline, timeout);
        let full = self.live().len() >= self.config.calls_in_flight_max;
        match started {
            Ok((seq, bytes)) => {
                assert!(!self.draining && !full, "taken only when it may be");
                assert_eq!(seq.0, self.next_seq, "seqs in order, from 1");
                assert_eq!(frame::decode_seq(&bytes), Ok(seq), "stamped");
                self.next_seq += 1;
                self.calls.push(Model::Live {
                    seq: seq.0,
                    deadline,
                });
            }
            Err(Refused::Unread(bytes)) => {
                assert!(self.draining, "refused unread only once going away");
                assert_eq!(
                    frame::decode_seq(&bytes),
                    Ok(frame::Seq(0)),
                    "never stamped"
                );
                self.calls.push(Model::Ended);
            }
            Err(Refused::Full(_)) => {
                assert!(full && !self.draining, "full only at the bound");
                self.calls.push(Model::Ended);
            }
        }
    }

    fn receive(&mut self, seq: u64, reply: Bytes) {
        let target = self.id_of(seq);
        self.session.receive(&reply, self.now);
        if self.closed {
            return; // an ended connection reads nothing
        }
        let Some(id) = target else {
            self.unroutable += 1;
            return;
        };
        let (ended, outcome) = self.session.poll_event().expect("the reply ends its call");
        assert_eq!(ended, id, "routed to its own caller");
        let decoded = frame::decode(&reply);
        match (decoded, outcome) {
            (Ok(_), Ok(Ok(results))) => assert_eq!(&results[..], &slab(seq)[..]),
            (Ok(_), Ok(Err(_))) => {}
            (Err(_), Err(client::Error::Frame(_))) => {}
            (decoded, outcome) => panic!("{decoded:?} ended as {outcome:?}"),
        }
        self.calls[id] = Model::Ended;
    }

    fn advance(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
        let now = self.now;
        let due: Vec<usize> = self
            .calls
            .iter()
            .enumerate()
            .filter_map(|(id, model)| match model {
                Model::Live { deadline, .. } if *deadline <= now => Some(id),
                Model::Live { .. } | Model::Ended | Model::Cancelled => None,
            })
            .collect();
        self.session.tick(now);
        let mut events = Vec::new();
        while let Some(event) = self.session.poll_event() {
            events.push(event);
        }
        // Declared dead (silent for three intervals at a heartbeat): the driver must close
        // the socket, and every call in flight ends `Unresponsive`.
        let declared_dead = self.session.take_close_transport();
        let unresponsive = events
            .iter()
            .any(|(_, outcome)| matches!(outcome, Err(client::Error::Unresponsive { .. })));
        assert!(
            !unresponsive || declared_dead,
            "unresponsive only when declared dead"
        );
        if declared_dead {
            assert!(self.config.heartbeat.is_some() && !self.closed);
            assert!(self.session.is_closed());
        }
        for (id, outcome) in events {
            let timed_out = matches!(outcome, Err(client::Error::Timeout { .. }));
            let dead = matches!(outcome, Err(client::Error::Unresponsive { .. }));
            assert!(timed_out || dead, "{outcome:?}");
            if timed_out {
                assert!(due.contains(&id), "only a call past its deadline times out");
            }
            assert!(matches!(self.calls[id], Model::Live { .. }), "ends once");
            self.calls[id] = Model::Ended;
        }
        if declared_dead {
            self.closed = true;
            self.draining = true;
        }
        for id in due {
            assert_eq!(self.calls[id], Model::Ended, "past its deadline, it ended");
        }
    }

    fn go_away(&mut self, last_seq: u64) {
        let unread: Vec<usize> = self
            .live()
            .into_iter()
            .filter(|(_, seq)| *seq > last_seq)
            .map(|(id, _)| id)
            .collect();
        let notice = frame::encode_go_away(frame::Seq(last_seq)).unwrap();
        self.session.receive(&Bytes::from(notice), self.now);
        let mut ended = Vec::new();
        while let Some((id, outcome)) = self.session.poll_event() {
            let Err(client::Error::Unread(frame)) = outcome else {
                panic!("{outcome:?}")
            };
            let Model::Live { seq, .. } = self.calls[id] else {
                panic!("ended twice")
            };
            assert_eq!(
                frame::decode_seq(&frame),
                Ok(frame::Seq(seq)),
                "its own frame"
            );
            self.calls[id] = Model::Ended;
            ended.push(id);
        }
        ended.sort_unstable();
        assert_eq!(ended, unread, "exactly the calls above last_seq");
        self.draining = true;
        self.go_away_at.get_or_insert(last_seq);
    }

    fn expect_all_live_end(
        &mut self,
        expected: impl Fn(&Result<client::Reply, client::Error>) -> bool,
    ) {
        let mut live: Vec<usize> = self.live().into_iter().map(|(id, _)| id).collect();
        let mut ended = Vec::new();
        while let Some((id, outcome)) = self.session.poll_event() {
            assert!(expected(&outcome), "{outcome:?}");
            self.calls[id] = Model::Ended;
            ended.push(id);
        }
        live.sort_unstable();
        ended.sort_unstable();
        assert_eq!(ended, live, "every live call ended, once");
    }

    fn check_transmits(&mut self) {
        while let Some(transmit) = self.session.poll_transmit() {
            match frame::decode(&transmit) {
                Ok(frame::Message::Pong(_)) => {
                    assert!(self.pongs > 0, "a pong answers a ping");
                    self.pongs -= 1;
                }
                Ok(frame::Message::Ping(_)) => {
                    assert!(
                        self.config.heartbeat.is_some(),
                        "pings only with a heartbeat"
                    );
                }
                other => panic!("unexpected transmit {other:?}"),
            }
        }
        self.pongs = 0;
    }

    /// The connection ends: nothing is left, nothing is held.
    fn finish(mut self) {
        self.session.close(&client::Error::PeerClosed);
        self.expect_all_live_end(|outcome| *outcome == Err(client::Error::PeerClosed));
        assert_eq!(self.session.pending_len(), 0);
        assert_eq!(self.session.poll_timeout(), None, "no timer is left armed");
        let counts: BTreeMap<&str, usize> =
            self.calls
                .iter()
                .fold(BTreeMap::new(), |mut counts, model| {
                    let key = match model {
                        Model::Live { .. } => "live",
                        Model::Ended => "ended",
                        Model::Cancelled => "cancelled",
                    };
                    *counts.entry(key).or_default() += 1;
                    counts
                });
        assert_eq!(counts.get("live"), None, "{counts:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every call ends in exactly one way, the one its interleaving calls for, and nothing is
    /// held after it ends.
    #[test]
    fn every_call_ends_once_and_nothing_is_held(
        ops in proptest::collection::vec(op(), 0..120),
        calls_in_flight_max in 1usize..8,
        heartbeat_ms in prop_oneof![Just(None), (20u64..100).prop_map(Some)],
    ) {
        let config = client::Config {
            calls_in_flight_max,
            heartbeat: heartbeat_ms.map(Duration::from_millis),
            ..client::Config::default()
        };
        let mut harness = Harness::new(config);
        for op in &ops {
            harness.apply(op);
        }
        harness.finish();
    }
}

#[test]
fn a_reply_after_its_timeout_is_dropped_and_counted() {
    let now = Instant::now();
    let mut session: Session<&str> = Session::new(client::Config::default(), now);
    let call = frame::encode_call("t", "i#f", &[0x0E], &[]).unwrap();
    let timeout = Duration::from_millis(50);
    let (seq, _) = session.call(call, "a", now + timeout, timeout).unwrap();
    assert_eq!(session.poll_timeout(), Some(now + timeout));
    session.tick(now + timeout);
    assert_eq!(
        session.poll_event(),
        Some(("a", Err(client::Error::Timeout { timeout_ms: 50 })))
    );
    let late = frame::encode_reply(seq, Ok(&[0x0E])).unwrap();
    session.receive(&Bytes::from(late), now + timeout * 2);
    assert_eq!(session.poll_event(), None);
    assert_eq!(session.unroutable_replies(), 1);
    assert_eq!(session.pending_len(), 0);
}

#[test]
fn a_silent_peer_is_pinged_then_declared_dead_after_three_intervals() {
    let start = Instant::now();
    let interval = Duration::from_millis(100);
    let config = client::Config {
        heartbeat: Some(interval),
        ..client::Config::default()
    };
    let mut session: Session<u8> = Session::new(config, start);
    let call = frame::encode_call("t", "i#f", &[0x0E], &[]).unwrap();
    let long = Duration::from_secs(60);
    session.call(call, 1, start + long, long).unwrap();
    session.tick(start + interval);
    let ping = session
        .poll_transmit()
        .expect("a ping after one silent interval");
    assert!(matches!(frame::decode(&ping), Ok(frame::Message::Ping(_))));
    session.tick(start + interval * 2);
    assert!(session.poll_transmit().is_some(), "pinged again");
    assert_eq!(session.poll_event(), None);
    session.tick(start + interval * 3);
    assert_eq!(
        session.poll_event(),
        Some((1, Err(client::Error::Unresponsive { silent_ms: 300 })))
    );
    assert!(session.take_close_transport());
    assert!(session.is_closed());
}
