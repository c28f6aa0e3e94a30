//! Each source's share of something a server has few of (a route's replicas, the request
//! slots): at most `share` held by one source (an IPv4 address or an IPv6 /64) at once. A
//! request past its source's share of a route's replicas waits its turn behind that source's
//! own requests; one past its share of the request slots is answered 503 at once. Entries for
//! sources holding nothing are dropped, so the map holds only sources with something held.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::PoisonError;

use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::Semaphore;

/// The shares of one thing, by source.
#[derive(Debug)]
pub(crate) struct Shares {
    share: usize,
    by_source: Mutex<HashMap<IpAddr, Arc<Semaphore>>>,
}

/// One place of a source's share, given back when dropped.
#[derive(Debug)]
pub(crate) struct Turn {
    shares: Arc<Shares>,
    source: IpAddr,
    semaphore: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Shares {
    /// Shares of `share` places each (at least one).
    pub(crate) fn new(share: usize) -> Arc<Self> {
        let share = share.clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(Self {
            share,
            by_source: Mutex::new(HashMap::new()),
        })
    }

    fn semaphore(&self, source: IpAddr) -> Arc<Semaphore> {
        let mut by_source = self
            .by_source
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let share = self.share;
        let semaphore = by_source
            .entry(source)
            .or_insert_with(|| Arc::new(Semaphore::new(share)));
        Arc::clone(semaphore)
    }

    /// A place of `source`'s share, waiting for one to be given back if it holds them all.
    pub(crate) async fn turn(self: &Arc<Self>, source: IpAddr) -> Turn {
        let semaphore = self.semaphore(source);
        // The semaphore is never closed.
        let permit = Arc::clone(&semaphore).acquire_owned().await.ok();
        self.made(source, semaphore, permit)
    }

    /// A place of `source`'s share now, or `None` when it holds them all.
    pub(crate) fn try_turn(self: &Arc<Self>, source: IpAddr) -> Option<Turn> {
        let semaphore = self.semaphore(source);
        let permit = Arc::clone(&semaphore).try_acquire_owned().ok();
        let turn = self.made(source, semaphore, permit);
        turn.permit.is_some().then_some(turn)
    }

    fn made(
        self: &Arc<Self>,
        source: IpAddr,
        semaphore: Arc<Semaphore>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Turn {
        Turn {
            shares: Arc::clone(self),
            source,
            semaphore,
            permit,
        }
    }

    /// Sources holding (or waiting for) a place now.
    #[cfg(test)]
    fn sources(&self) -> usize {
        self.by_source
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        drop(self.permit.take());
        let by_source = &self.shares.by_source;
        let mut by_source = by_source.lock().unwrap_or_else(PoisonError::into_inner);
        // The map and this turn hold the semaphore: no one else holds or waits for a place.
        if Arc::strong_count(&self.semaphore) == 2 {
            by_source.remove(&self.source);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn turn_of(shares: Arc<Shares>, source: IpAddr) -> Turn {
        shares.turn(source).await
    }

    #[tokio::test]
    async fn a_source_holds_its_share_and_no_more_and_leaves_nothing_behind() {
        let shares = Shares::new(2);
        let one: IpAddr = [127, 0, 0, 2].into();
        let other: IpAddr = [127, 0, 0, 3].into();
        let first = shares.try_turn(one).expect("a place");
        let second = shares.try_turn(one).expect("a second place");
        assert!(shares.try_turn(one).is_none(), "past its share");
        let elsewhere = shares.try_turn(other).expect("another source's own share");
        let waiting = tokio::spawn(turn_of(Arc::clone(&shares), one));
        drop(first);
        let third = waiting.await.expect("its turn came");
        drop((second, third, elsewhere));
        assert_eq!(shares.sources(), 0, "nothing held, nothing kept");
    }
}
