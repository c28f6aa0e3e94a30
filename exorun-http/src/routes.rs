//! `Routes`: path prefixes and the instances that answer them (the longest prefix that covers
//! a path wins), each route with its replicas' shares and its request counters.

use std::sync::Arc;

use exorun_core::app::Export;
use exorun_core::instance::InstanceHandle;
use exorun_core::supervision::Replicas;

use crate::Error;
use crate::share::Shares;

/// The interface a routed instance must export (any 0.2 version).
pub const HANDLER: &str = "wasi:http/incoming-handler@0.2";

/// The most routes one server has.
pub const ROUTES_MAX: usize = 64;

/// One route: a path prefix and the instance that answers it.
pub(crate) struct Route {
    pub(super) prefix: String,
    pub(crate) name: String,
    pub(crate) handle: InstanceHandle,
    pub(crate) export: Export,
    /// Each source's share of the route's replicas (half of them, at least one).
    pub(crate) shares: Arc<Shares>,
    /// `exorun_http_requests_total` of this route by status class, made once.
    pub(crate) requests: [metrics::Counter; 5],
}

/// Path prefixes and their instances.
#[derive(Default)]
pub struct Routes {
    routes: Vec<Route>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let routes = self.routes.iter().map(|route| (&route.prefix, &route.name));
        f.debug_map().entries(routes).finish()
    }
}

impl Routes {
    /// Routes `prefix` to `handle` (named `name` in answers and logs). A prefix is kept without
    /// its trailing `/`, so `/api` and `/api/` are one prefix, routed once.
    pub fn add(&mut self, prefix: &str, name: &str, handle: InstanceHandle) -> Result<(), Error> {
        if self.routes.len() >= ROUTES_MAX {
            return Err(Error::TooManyRoutes);
        }
        let kept = prefix.trim_end_matches('/');
        let routed = self.routes.iter().any(|route| route.prefix == kept);
        if !prefix.starts_with('/') || routed {
            return Err(Error::Prefix {
                prefix: prefix.to_owned(),
            });
        }
        let no_handler = || Error::NoHandler {
            instance: name.to_owned(),
        };
        let exports = &handle.ledger().exports;
        let interface = exports
            .keys()
            .find(|interface| interface.starts_with(HANDLER));
        let interface = interface.ok_or_else(no_handler)?.clone();
        let export = handle
            .export(&interface, "handle")
            .map_err(|_| no_handler())?;
        let requests = STATUS_CLASSES.map(|class| {
            let labels = [("route", name.to_owned()), ("status", class.to_owned())];
            metrics::counter!("exorun_http_requests_total", &labels)
        });
        let replicas = match handle.replicas() {
            Replicas::Fixed(count) => count.get(),
            Replicas::PerCall { concurrency } => concurrency.get(),
        };
        self.routes.push(Route {
            prefix: kept.to_owned(),
            name: name.to_owned(),
            shares: Shares::new(replicas / 2),
            handle,
            export,
            requests,
        });
        // Longest prefix first: the first that covers a path is its route.
        self.routes
            .sort_by_key(|route| std::cmp::Reverse(route.prefix.len()));
        Ok(())
    }

    /// The route whose prefix covers `path` (the longest: they are kept longest first).
    pub(crate) fn find(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|route| covers(&route.prefix, path))
    }

    /// Whether nothing is routed.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// Whether a route's `prefix` (its trailing `/` removed: `/` is the empty prefix) covers
/// `path`: the path is the prefix, or lies below it.
fn covers(prefix: &str, path: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The status classes requests are counted by (a bounded label).
pub(crate) const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The index in `STATUS_CLASSES` of `status`'s class.
pub(crate) fn status_class(status: u16) -> usize {
    usize::from(status / 100).clamp(1, 5) - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Prefixes as `Routes::add` keeps them, longest first; the index of the one `find` picks.
    fn pick(prefixes: &[String], path: &str) -> Option<usize> {
        let mut kept: Vec<(usize, String)> = prefixes
            .iter()
            .map(|prefix| prefix.trim_end_matches('/').to_owned())
            .enumerate()
            .collect();
        kept.sort_by_key(|(_, prefix)| std::cmp::Reverse(prefix.len()));
        kept.iter()
            .find(|(_, prefix)| covers(prefix, path))
            .map(|(index, _)| *index)
    }

    proptest! {
        /// The route picked covers the path, segment by segment, and no longer prefix does; a
        /// path no prefix covers finds none; `/` covers everything.
        #[test]
        fn the_longest_covering_prefix_answers(
            prefixes in proptest::collection::vec("(/[ab]{1,2}){0,3}/?", 1..6),
            path in "(/[ab]{0,3}){1,4}",
        ) {
            let picked = pick(&prefixes, &path);
            let segments = |text: &str| -> Vec<String> {
                text.trim_end_matches('/').split('/').skip(1).map(str::to_owned).collect()
            };
            let covering = |prefix: &String| {
                let (prefix, path) = (segments(prefix), segments(&path));
                path.len() >= prefix.len() && path[..prefix.len()] == prefix[..]
                    || prefix.is_empty()
            };
            match picked {
                Some(index) => {
                    let chosen = &prefixes[index];
                    prop_assert!(covering(chosen), "{chosen} for {path}");
                    let chosen_length = chosen.trim_end_matches('/').len();
                    for other in &prefixes {
                        let longer = other.trim_end_matches('/').len() > chosen_length;
                        prop_assert!(!(longer && covering(other)), "{other} is longer for {path}");
                    }
                }
                None => prop_assert!(!prefixes.iter().any(covering), "{prefixes:?} {path}"),
            }
        }
    }

    #[test]
    fn a_prefix_covers_whole_segments_only() {
        assert!(covers("/api", "/api"));
        assert!(covers("/api", "/api/users"));
        assert!(!covers("/api", "/apiary"));
        assert!(covers("", "/anything"));
        assert!(!covers("/api", "/"));
    }
}
