//! Identical questions in flight share one upstream exchange: the first
//! asker leads, the others follow and take its answer.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use tokio::sync::watch;

use super::{ResolveError, Resolved};
use crate::cache::Key;

/// What a leader publishes: its answer or why there is none.
pub(super) type Outcome = Result<Arc<Resolved>, ResolveError>;
/// Where followers wait for a leader's outcome.
pub(super) type Follow = watch::Receiver<Option<Outcome>>;

/// The questions being asked upstream now.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    /// A std mutex: looked up and updated without awaiting.
    questions: Mutex<HashMap<Key, Follow>>,
}

/// The part a query plays for its question.
pub(super) enum Role<'a> {
    /// Ask upstream and publish the outcome.
    Lead(Leader<'a>),
    /// Wait for the leader's outcome.
    Follow(Follow),
}

impl InFlight {
    /// Leads `key` when nobody asks it yet, else follows the leader.
    pub(super) fn lead_or_join(&self, key: &[u8]) -> Role<'_> {
        let mut questions = self.lock();
        match questions.get(key) {
            Some(follow) => Role::Follow(follow.clone()),
            None => {
                let (publish, follow) = watch::channel(None);
                let key: Key = key.into();
                questions.insert(key.clone(), follow);
                Role::Lead(Leader {
                    in_flight: self,
                    key,
                    publish,
                    published: false,
                })
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Follow>> {
        self.questions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The one query asking upstream for its question. Dropped without
/// publishing (cancelled), it leaves the map and its followers ask again.
pub(super) struct Leader<'a> {
    in_flight: &'a InFlight,
    key: Key,
    publish: watch::Sender<Option<Outcome>>,
    /// Once published the question may already have a new leader, whose
    /// entry dropping this one must not remove.
    published: bool,
}

impl Leader<'_> {
    /// Hands `outcome` to the followers. The question leaves the map first,
    /// so a follower that asks again starts a new exchange.
    pub(super) fn publish(mut self, outcome: &Outcome) {
        self.in_flight.lock().remove(&self.key);
        self.published = true;
        self.publish.send_replace(Some(outcome.clone()));
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if !self.published {
            self.in_flight.lock().remove(&self.key);
        }
    }
}
