//! Repeated Events, folded the way kubelet's event recorder folds them (client-go
//! `tools/record/events_cache.go`, `EventCorrelator`):
//!
//! - **spam filter** (`EventSourceObjectSpamFilter`): a token bucket per source and involved
//!   object, [`SPAM_BURST`] events at once, then one per [`SPAM_REFILL`]; an event over it is
//!   dropped (and counted), not queued;
//! - **aggregation** (`EventAggregator`): more than [`AGGREGATE_MAX`] events that differ only
//!   by message on one object within [`AGGREGATE_WINDOW`] become one event whose message starts
//!   `(combined from similar events): `;
//! - **deduplication** (`eventLogger`): an event equal to one already written (same object,
//!   type, reason, message) is not created again: the existing one is patched with its `count`
//!   and `lastTimestamp` incremented.
//!
//! The caches hold at most [`CACHE_ENTRIES`] keys each (client-go's LRU size); the oldest key
//! goes first.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

pub const SPAM_BURST: f64 = 25.0;
pub const SPAM_REFILL: Duration = Duration::from_secs(300);
pub const AGGREGATE_MAX: usize = 10;
pub const AGGREGATE_WINDOW: Duration = Duration::from_secs(600);
pub const CACHE_ENTRIES: usize = 4096;
pub const COMBINED_PREFIX: &str = "(combined from similar events): ";

/// What to do with one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create it: the first of its kind (or its earlier one was lost), with this message.
    Create { message: String },
    /// Patch the event named `name` (written with `message`) to this count.
    Patch {
        name: String,
        count: i32,
        message: String,
    },
    /// Over the spam filter.
    Drop,
}

/// A map that forgets its oldest key past a size.
#[derive(Debug)]
struct Lru<V> {
    map: BTreeMap<String, V>,
    order: VecDeque<String>,
}

impl<V> Default for Lru<V> {
    fn default() -> Self {
        Lru {
            map: BTreeMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<V> Lru<V> {
    fn get_mut(&mut self, k: &str) -> Option<&mut V> {
        self.map.get_mut(k)
    }
    fn insert(&mut self, k: String, v: V) {
        if self.map.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
            while self.order.len() > CACHE_ENTRIES {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
struct Similar {
    messages: Vec<String>,
    since: Instant,
}

#[derive(Debug)]
struct Written {
    name: Option<String>,
    count: i32,
}

#[derive(Debug, Default)]
pub struct Correlator {
    buckets: Lru<Bucket>,
    similar: Lru<Similar>,
    written: Lru<Written>,
}

impl Correlator {
    /// Decides one event about `object` (a stable key of the involved object: kind, namespace,
    /// name, uid) with this reason and message.
    pub fn observe(&mut self, object: &str, reason: &str, message: &str, now: Instant) -> Action {
        // Spam filter first, as client-go does: a dropped event touches no other cache.
        match self.buckets.get_mut(object) {
            Some(b) => {
                let refill = now.duration_since(b.at).as_secs_f64() / SPAM_REFILL.as_secs_f64();
                b.tokens = (b.tokens + refill).min(SPAM_BURST);
                b.at = now;
                if b.tokens < 1.0 {
                    return Action::Drop;
                }
                b.tokens -= 1.0;
            }
            None => self.buckets.insert(
                object.to_owned(),
                Bucket {
                    tokens: SPAM_BURST - 1.0,
                    at: now,
                },
            ),
        }
        let agg_key = format!("{object}\u{0}{reason}");
        let mut message = message.to_owned();
        match self.similar.get_mut(&agg_key) {
            Some(s) if now.duration_since(s.since) <= AGGREGATE_WINDOW => {
                if !s.messages.contains(&message) {
                    s.messages.push(message.clone());
                }
                if s.messages.len() > AGGREGATE_MAX {
                    message = format!("{COMBINED_PREFIX}{message}");
                }
            }
            Some(s) => {
                s.messages = vec![message.clone()];
                s.since = now;
            }
            None => self.similar.insert(
                agg_key,
                Similar {
                    messages: vec![message.clone()],
                    since: now,
                },
            ),
        }
        // An aggregated event keys on the combined message alone, so all similar events after
        // the tenth count up one event.
        let key = Correlator::key(object, reason, &message);
        match self.written.get_mut(&key) {
            Some(w) => {
                w.count += 1;
                match &w.name {
                    Some(name) => Action::Patch {
                        name: name.clone(),
                        count: w.count,
                        message,
                    },
                    None => Action::Create { message },
                }
            }
            None => {
                self.written.insert(
                    key,
                    Written {
                        name: None,
                        count: 1,
                    },
                );
                Action::Create { message }
            }
        }
    }

    fn key(object: &str, reason: &str, message: &str) -> String {
        if message.starts_with(COMBINED_PREFIX) {
            format!("{object}\u{0}{reason}\u{0}{COMBINED_PREFIX}")
        } else {
            format!("{object}\u{0}{reason}\u{0}{message}")
        }
    }

    /// The event (with the message `Create` gave) now exists as `name` with `count`.
    pub fn created(&mut self, object: &str, reason: &str, message: &str, name: &str, count: i32) {
        let key = Correlator::key(object, reason, message);
        match self.written.get_mut(&key) {
            Some(w) => {
                w.name = Some(name.to_owned());
                w.count = count;
            }
            None => self.written.insert(
                key,
                Written {
                    name: Some(name.to_owned()),
                    count,
                },
            ),
        }
    }

    /// The event is gone on the server (a patch answered 404: events expire, an hour by
    /// default): the next one is created anew.
    pub fn lost(&mut self, object: &str, reason: &str, message: &str) {
        if let Some(w) = self
            .written
            .get_mut(&Correlator::key(object, reason, message))
        {
            w.name = None;
        }
    }

    /// The count to create with: how many times this event has been seen.
    pub fn count(&mut self, object: &str, reason: &str, message: &str) -> i32 {
        self.written
            .get_mut(&Correlator::key(object, reason, message))
            .map_or(1, |w| w.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_patches_the_count_of_the_first() {
        let mut c = Correlator::default();
        let t = Instant::now();
        let a = c.observe("Pod/ns/web/u1", "R", "m", t);
        assert_eq!(
            a,
            Action::Create {
                message: "m".into()
            }
        );
        c.created("Pod/ns/web/u1", "R", "m", "web.1", 1);
        assert_eq!(
            c.observe("Pod/ns/web/u1", "R", "m", t),
            Action::Patch {
                name: "web.1".into(),
                count: 2,
                message: "m".into()
            }
        );
        assert_eq!(
            c.observe("Pod/ns/web/u1", "R", "m", t),
            Action::Patch {
                name: "web.1".into(),
                count: 3,
                message: "m".into()
            }
        );
        // Another object, reason or message is another event.
        assert!(matches!(
            c.observe("Pod/ns/db/u2", "R", "m", t),
            Action::Create { .. }
        ));
        c.lost("Pod/ns/web/u1", "R", "m");
        assert!(matches!(
            c.observe("Pod/ns/web/u1", "R", "m", t),
            Action::Create { .. }
        ));
        assert_eq!(c.count("Pod/ns/web/u1", "R", "m"), 4);
    }

    #[test]
    fn the_spam_filter_allows_a_burst_then_one_per_refill() {
        let mut c = Correlator::default();
        let t = Instant::now();
        let mut passed = 0;
        for i in 0..40 {
            if c.observe("Deployment/ns/web/u", "R", &format!("m{}", i % 3), t) != Action::Drop {
                passed += 1;
            }
        }
        assert_eq!(passed, 25);
        assert_eq!(c.observe("Deployment/ns/web/u", "R", "m0", t), Action::Drop);
        assert_ne!(
            c.observe("Deployment/ns/web/u", "R", "m0", t + SPAM_REFILL),
            Action::Drop
        );
    }

    #[test]
    fn more_than_ten_similar_messages_are_combined() {
        let mut c = Correlator::default();
        let t = Instant::now();
        for i in 0..AGGREGATE_MAX {
            let a = c.observe("Pod/ns/p/u", "R", &format!("m{i}"), t);
            assert_eq!(
                a,
                Action::Create {
                    message: format!("m{i}")
                }
            );
        }
        let a = c.observe("Pod/ns/p/u", "R", "m10", t);
        assert_eq!(
            a,
            Action::Create {
                message: format!("{COMBINED_PREFIX}m10")
            }
        );
        c.created(
            "Pod/ns/p/u",
            "R",
            &format!("{COMBINED_PREFIX}m10"),
            "p.x",
            1,
        );
        assert_eq!(
            c.observe("Pod/ns/p/u", "R", "m11", t),
            Action::Patch {
                name: "p.x".into(),
                count: 2,
                message: format!("{COMBINED_PREFIX}m11")
            }
        );
    }
}
