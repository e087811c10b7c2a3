//! Network changes and resume from sleep, which leave pooled upstream
//! connections dead and backoff stale: the watcher tells the pool to
//! start afresh ([`crate::upstream::Pool::network_changed`]) and probes
//! every upstream at once, so dotstub never needs a restart after a
//! suspend, a new address or a link that went down and up.
//!
//! - `routes` (Linux): address and route events from rtnetlink.
//! - `resume`: a jump between a clock that runs through suspend and one
//!   that does not.
//!
//! Tests replace both with [`Events::Manual`], a channel they send
//! changes into, so the host's own network events never reach them.

mod resume;
#[cfg(any(target_os = "linux", target_os = "android"))]
mod routes;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use resume::{CHECK_EVERY, Clocks, MIN_SLEEP, ResumeDetector, SystemClocks};

use crate::resolver::Resolver;

/// Events arriving this close together are one change: bringing a link
/// up adds its addresses and routes one message at a time.
const SETTLE: Duration = Duration::from_millis(100);

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// An address or a route was added or removed.
    Routes,
    /// The machine slept this long and woke up.
    Resumed {
        /// How long it slept.
        slept: Duration,
    },
}

/// Where changes come from.
#[derive(Debug)]
pub enum Events {
    /// The system: rtnetlink on Linux, and the resume detector.
    System,
    /// Only what is sent into the channel (tests, simulations).
    Manual(mpsc::UnboundedReceiver<Change>),
}

impl Events {
    /// A manual source and the sender that feeds it.
    pub fn manual() -> (mpsc::UnboundedSender<Change>, Self) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (sender, Self::Manual(receiver))
    }
}

/// Watches `events` until `shutdown`; on each change, the pool of
/// `resolver` starts afresh and every upstream is probed.
pub async fn watch(events: Events, resolver: Arc<Resolver>, shutdown: CancellationToken) {
    let mut changes = match events {
        Events::Manual(changes) => changes,
        Events::System => system_events(&shutdown),
    };
    let reacting = async {
        while let Some(change) = changes.recv().await {
            // Let the rest of the burst arrive, then act once.
            tokio::time::sleep(SETTLE).await;
            while changes.try_recv().is_ok() {}
            react(change, &resolver).await;
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        () = reacting => {}
    }
}

/// Starts the pool afresh after `change`, and probes every upstream.
async fn react(change: Change, resolver: &Resolver) {
    match change {
        Change::Routes => info!("network changed: new upstream connections, backoff reset"),
        Change::Resumed { slept } => info!(
            slept_s = slept.as_secs(),
            "resumed from sleep: new upstream connections, backoff reset"
        ),
    }
    let pool = resolver.pool();
    pool.network_changed();
    let deadline = Instant::now() + resolver.settings().timeout;
    let answering = pool.probe_all(deadline).await;
    debug!(answering, "upstreams probed after the change");
}

/// Starts the system's sources, feeding one channel; they stop with
/// `shutdown`.
fn system_events(shutdown: &CancellationToken) -> mpsc::UnboundedReceiver<Change> {
    let (sender, receiver) = mpsc::unbounded_channel();
    let resume = detect_resume(sender.clone(), SystemClocks);
    tokio::spawn(until(shutdown.clone(), resume));
    #[cfg(any(target_os = "linux", target_os = "android"))]
    tokio::spawn(until(shutdown.clone(), async move {
        if let Err(error) = routes::watch(sender).await {
            warn!(
                %error,
                "cannot watch for network changes: after one, upstream connections \
                 recover only as they fail"
            );
        }
    }));
    receiver
}

/// Runs `task` until `shutdown`.
async fn until(shutdown: CancellationToken, task: impl Future<Output = ()>) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        () = task => {}
    }
}

/// Compares `clocks` every [`CHECK_EVERY`] and reports each resume.
async fn detect_resume(changes: mpsc::UnboundedSender<Change>, clocks: impl Clocks) {
    let mut detector = ResumeDetector::new(&clocks);
    let mut ticks = tokio::time::interval(CHECK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Some(slept) = detector.check(&clocks)
            && changes.send(Change::Resumed { slept }).is_err()
        {
            return;
        }
    }
}
