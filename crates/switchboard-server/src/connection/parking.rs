//! Idle sessions parked without a task of their own.
//!
//! A task per connection costs more than an idle session needs (its header, the
//! scheduler's fields and a future that holds every state of the request loop's wait,
//! rounded up to whole cache lines). So a session that has waited a moment with nothing
//! buffered leaves its task: its state goes into a compact record handed to the
//! [`Parking`] of its hub, and one shared task, [`run`], waits for all parked sessions
//! at once. The writer side does the same with its queue (`OutboxReceiver::park`).
//!
//! A parked session's outbox knows its key: its kill switch, shutdown and reload nudges
//! push the key onto the ready list and wake the shared task. A session whose socket is
//! waited on through its read half (not watched, below) also has a waker of its own, a
//! small `Arc` that does the same, given to the socket's readiness. So a wake costs the
//! shared task one look at that session, never a scan of all.
//! The deadlines (three heartbeats, a JWT's expiry) are kept in one ordered set with a
//! single timer for the earliest. Whatever wakes a parked session gives it a task again,
//! which serves it exactly as before it parked: it reads what came, or ends the session
//! for the reason it was woken.
//!
//! A plain socket (TCP or Unix, on unix) leaves the runtime's reactor while its session
//! is parked and its writer too (see `detached`): its readiness is watched instead in
//! one poller of the shared task's own (epoll, or kqueue, through mio, which tokio
//! itself is built on), itself registered with the reactor once. A session whose socket
//! is watched there resumes on its first readiness (bytes, or the peer gone); the
//! others are waited on through their read half's waker as above.

use std::collections::BTreeSet;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use parking_lot::Mutex;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use super::transport::Descriptor;
use crate::hub::Hub;
use crate::log;
use crate::outbox::{Outbox, WakeParked};

/// A session's state while it is parked: what its task would hold while waiting.
pub(super) trait ParkedSession: Send {
    /// Ready once a read would not block (bytes, the end of the stream, or an error);
    /// asked only of a session whose descriptor is not watched.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// The descriptor to watch for the session's readiness, if its socket left the
    /// reactor.
    fn watched(&self) -> Option<Descriptor>;
    /// The session's outbox, whose signal (kill switch, shutdown, reload) wakes it.
    fn outbox(&self) -> &Outbox;
    /// Whether a reload put a new policy in force since the session last looked, given
    /// the hub's policy generation now.
    fn policy_changed(&self, generation: u64) -> bool;
    /// When the session must be looked at whatever happens (its heartbeat deadline, or
    /// its credentials' expiry), on `clock`.
    fn deadline(&self, clock: Clock) -> Nanos;
    /// Gives the session a task again.
    fn resume(self: Box<Self>, hub: &Arc<Hub>, tracker: &TaskTracker);
}

/// The parked sessions of a hub: what connection tasks hand over, for [`run`] to take.
#[derive(Default)]
pub(crate) struct Parking {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Parking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parking")
            .field("parked", &self.parked())
            .finish_non_exhaustive()
    }
}

struct Shared {
    inbox: Mutex<Inbox>,
    /// A task runs [`run`] and takes sessions.
    open: AtomicBool,
    /// Sessions parked now (a gauge for STATS).
    parked: AtomicUsize,
    /// What parked sessions' instants count from.
    clock: Clock,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("parked", &self.parked.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl WakeParked for Shared {
    fn wake_parked(&self, key: u32) {
        let mut inbox = self.inbox.lock();
        inbox.ready.push(key);
        Inbox::wake(inbox);
    }
}

impl Default for Shared {
    fn default() -> Shared {
        Shared {
            inbox: Mutex::default(),
            open: AtomicBool::new(false),
            parked: AtomicUsize::new(0),
            clock: Clock {
                start: Instant::now(),
            },
        }
    }
}

/// Instants in 8 bytes (an `Instant` is 16), in every parked session's record and
/// entry and its place in the ordered set of deadlines: nanoseconds after the hub's
/// parking table was made, before any session opened.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    start: Instant,
}

impl Clock {
    /// `at` as nanoseconds after the start (the start itself for an earlier instant,
    /// which is as passed as it).
    pub(super) fn nanos(self, at: Instant) -> Nanos {
        let after = at.saturating_duration_since(self.start).as_nanos();
        Nanos::try_from(after).unwrap_or(Nanos::MAX)
    }

    pub(super) fn instant(self, nanos: Nanos) -> Instant {
        self.start + std::time::Duration::from_nanos(nanos)
    }
}

/// What the shared task has to look at, filled by connection tasks and wakers.
///
/// Neither list is bounded by a length of its own: `incoming` holds at most one record
/// per connection, and a key is on `ready` at most once per waker and once per event
/// its outbox was woken for (a kill, a reload, the shutdown), which are few.
#[derive(Default)]
struct Inbox {
    incoming: Vec<Box<dyn ParkedSession>>,
    ready: Vec<u32>,
    /// The shared task's waker while it waits.
    waker: Option<Waker>,
}

impl Inbox {
    fn wake(mut guard: parking_lot::MutexGuard<'_, Inbox>) {
        let waker = guard.waker.take();
        drop(guard);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl Parking {
    /// Whether sessions may park: a task takes them, and the server is not stopping.
    pub(super) fn is_open(&self) -> bool {
        self.shared.open.load(Ordering::Relaxed)
    }

    /// What parked sessions' instants count from.
    pub(super) fn clock(&self) -> Clock {
        self.shared.clock
    }

    /// Sessions parked now.
    pub(crate) fn parked(&self) -> usize {
        self.shared.parked.load(Ordering::Relaxed)
    }

    /// Hands a session over; gives it back when no task takes parked sessions (the
    /// server is stopping), for its own task to go on serving it.
    pub(super) fn park<P: ParkedSession + 'static>(&self, session: Box<P>) -> Result<(), Box<P>> {
        let mut inbox = self.shared.inbox.lock();
        if !self.is_open() {
            return Err(session);
        }
        inbox.incoming.push(session);
        self.shared.parked.fetch_add(1, Ordering::Relaxed);
        Inbox::wake(inbox);
        Ok(())
    }

    /// What outboxes wake their parked sessions through.
    pub(crate) fn waker(&self) -> Arc<dyn WakeParked> {
        self.shared.clone()
    }

    /// Wakes the shared task to look at the server's state (it is shutting down).
    pub(crate) fn wake(&self) {
        Inbox::wake(self.shared.inbox.lock());
    }
}

/// The waker of one parked session whose socket is not watched, given to its read
/// half's readiness: puts its key on the ready list (once until the shared task looks)
/// and wakes the shared task.
struct SessionWaker {
    key: u32,
    queued: AtomicBool,
    shared: Arc<Shared>,
}

impl Wake for SessionWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut inbox = self.shared.inbox.lock();
        inbox.ready.push(self.key);
        Inbox::wake(inbox);
    }
}

/// One parked session in the shared task's table.
struct Entry {
    session: Box<dyn ParkedSession>,
    /// Only for a session whose socket is not watched (see [`SessionWaker`]).
    waker: Option<Arc<SessionWaker>>,
    deadline: Nanos,
}

/// An instant as nanoseconds on a [`Clock`].
pub(super) type Nanos = u64;

/// The shared task's own state: the parked sessions by key, and their deadlines in
/// order.
struct Table {
    entries: Vec<Option<Entry>>,
    /// Where the descriptors of parked sockets out of the reactor are watched.
    watch: Watch,
    free: Vec<u32>,
    deadlines: BTreeSet<(Nanos, u32)>,
    /// What the deadlines count from.
    clock: Clock,
}

impl Table {
    fn new(watch: Watch, clock: Clock) -> Table {
        Table {
            entries: Vec::new(),
            watch,
            free: Vec::new(),
            deadlines: BTreeSet::new(),
            clock,
        }
    }

    fn nanos(&self, at: Instant) -> Nanos {
        self.clock.nanos(at)
    }

    fn instant(&self, nanos: Nanos) -> Instant {
        self.clock.instant(nanos)
    }

    /// The earliest deadline of a parked session, if any.
    fn first_deadline(&self) -> Option<Instant> {
        self.deadlines
            .first()
            .map(|&(deadline, _)| self.instant(deadline))
    }

    fn is_empty(&self) -> bool {
        self.deadlines.is_empty()
    }

    /// Takes a session in; its key, and whether what may wake it is watched (a
    /// descriptor that could not be watched leaves the session nothing to wake it but
    /// its deadline: it resumes at once).
    fn insert(&mut self, session: Box<dyn ParkedSession>, shared: &Arc<Shared>) -> (u32, bool) {
        let key = self.free.pop().unwrap_or_else(|| {
            self.entries.push(None);
            // More sessions than keys would need more connections than a process has.
            u32::try_from(self.entries.len() - 1).unwrap_or(u32::MAX)
        });
        let deadline = session.deadline(self.clock);
        self.deadlines.insert((deadline, key));
        let (watched, waker) = match session.watched() {
            Some(fd) => match self.watch.add(fd, key) {
                Ok(()) => (true, None),
                Err(error) => {
                    tracing::warn!(target: log::ERROR, %error, "cannot watch a parked socket; resuming it");
                    (false, None)
                }
            },
            None => {
                let waker = Arc::new(SessionWaker {
                    key,
                    queued: AtomicBool::new(false),
                    shared: shared.clone(),
                });
                (true, Some(waker))
            }
        };
        self.entries[key as usize] = Some(Entry {
            session,
            waker,
            deadline,
        });
        (key, watched)
    }

    fn remove(&mut self, key: u32) -> Option<Box<dyn ParkedSession>> {
        let entry = self.entries.get_mut(key as usize)?.take()?;
        self.deadlines.remove(&(entry.deadline, key));
        self.free.push(key);
        if let Some(fd) = entry.session.watched() {
            self.watch.remove(fd);
        }
        entry.session.outbox().forget_parked_key();
        Some(entry.session)
    }

    /// Looks at a parked session after a wake (or when it arrives): whether it needs its
    /// task again. Otherwise what may wake it is told anew.
    fn needs_task(&mut self, key: u32, shutting_down: bool, hub: &Hub) -> bool {
        let Some(Some(entry)) = self.entries.get_mut(key as usize) else {
            // The key of a session resumed since (a wake it left behind).
            return false;
        };
        // Told before the looks, so that nothing happening after them is missed.
        entry.session.outbox().set_parked_key(key);
        if shutting_down
            || entry.session.outbox().is_killed()
            || entry.session.policy_changed(hub.policy_generation())
        {
            return true;
        }
        let Some(waker) = &entry.waker else {
            // Its descriptor's readiness comes from the watch.
            return false;
        };
        // Cleared before looking, so that a wake during the look queues the key again.
        waker.queued.store(false, Ordering::Release);
        let waker = Waker::from(waker.clone());
        let mut cx = Context::from_waker(&waker);
        entry.session.poll_read_ready(&mut cx).is_ready()
    }
}

/// The task that waits for every parked session of `hub` and gives each a task again
/// (on `tracker`) when its socket is readable, its outbox signals, or its deadline
/// passes. It ends once the server is shutting down and every parked session resumed.
pub(crate) async fn run(hub: Arc<Hub>, tracker: TaskTracker) {
    let shared = hub.parking().shared.clone();
    let watch = match Watch::new() {
        Ok(watch) => watch,
        Err(error) => {
            // Sessions keep their tasks: more memory, nothing else lost.
            tracing::error!(target: log::ERROR, %error, "cannot watch parked sockets; idle sessions will not park");
            return;
        }
    };
    shared.open.store(true, Ordering::Relaxed);
    let mut table = Table::new(watch, shared.clock);
    let never = far_future();
    let mut timer = Box::pin(tokio::time::sleep_until(never));
    let mut incoming = Vec::new();
    let mut ready = Vec::new();
    let mut readable = Vec::new();
    let mut resumed = Vec::new();
    loop {
        // A flood of wakes never keeps the worker from its other tasks.
        tokio::task::consume_budget().await;
        let waiting = Waiting {
            shared: &shared,
            hub: &hub,
            next_deadline: table.first_deadline().unwrap_or(never),
        };
        std::future::poll_fn(|cx| {
            // Readiness of watched sockets is taken first, outside the inbox's lock.
            let watched = table.watch.poll_ready(cx, &mut readable);
            let waited = waiting.poll(timer.as_mut(), &mut incoming, &mut ready, cx);
            if watched.is_ready() {
                Poll::Ready(())
            } else {
                waited
            }
        })
        .await;
        let shutting_down = hub.is_shutting_down();
        for session in incoming.drain(..) {
            let (key, watched) = table.insert(session, &shared);
            if watched {
                ready.push(key);
            } else if let Some(session) = table.remove(key) {
                resumed.push(session);
            }
        }
        if shutting_down {
            // Every session ends now: no need to wait for each one's wake.
            ready.clear();
            ready.extend(table.deadlines.iter().map(|&(_, key)| key));
        }
        for key in ready.drain(..) {
            if table.needs_task(key, shutting_down, &hub)
                && let Some(session) = table.remove(key)
            {
                resumed.push(session);
            }
        }
        // Readable (or gone): read by its task. A key whose session resumed since is
        // not watched any more, and its entry, if any, is another session's.
        for key in readable.drain(..) {
            if let Some(session) = table.remove(key) {
                resumed.push(session);
            }
        }
        // Within the timer's resolution of now counts as passed, so that a timer that
        // fired never finds its deadline still ahead (and fires again at once).
        let now = table.nanos(Instant::now() + TIMER_SLACK);
        while let Some(&(deadline, key)) = table.deadlines.first() {
            if deadline > now {
                break;
            }
            // Taken off first, so that the loop moves on whatever the entry's state.
            table.deadlines.pop_first();
            if let Some(session) = table.remove(key) {
                resumed.push(session);
            }
        }
        shared.parked.fetch_sub(resumed.len(), Ordering::Relaxed);
        for session in resumed.drain(..) {
            session.resume(&hub, &tracker);
        }
        if shutting_down && table.is_empty() {
            let inbox = shared.inbox.lock();
            if inbox.incoming.is_empty() {
                shared.open.store(false, Ordering::Relaxed);
                return;
            }
            drop(inbox);
        }
    }
}

/// What the shared task waits for.
struct Waiting<'a> {
    shared: &'a Shared,
    hub: &'a Hub,
    /// The earliest deadline of a parked session (far off when none is parked).
    next_deadline: Instant,
}

impl Waiting<'_> {
    /// Takes what the shared task has to look at, or waits for it, for the earliest
    /// deadline, or for the server to start shutting down.
    fn poll(
        &self,
        mut timer: Pin<&mut tokio::time::Sleep>,
        incoming: &mut Vec<Box<dyn ParkedSession>>,
        ready: &mut Vec<u32>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        let mut inbox = self.shared.inbox.lock();
        if !inbox.incoming.is_empty() || !inbox.ready.is_empty() {
            std::mem::swap(incoming, &mut inbox.incoming);
            std::mem::swap(ready, &mut inbox.ready);
            return Poll::Ready(());
        }
        if self.hub.is_shutting_down() {
            return Poll::Ready(());
        }
        let next = self.next_deadline;
        if timer.deadline() != next {
            timer.as_mut().reset(next);
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        if !inbox
            .waker
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            inbox.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// How early a deadline may be served: the timer's resolution.
const TIMER_SLACK: std::time::Duration = std::time::Duration::from_millis(1);

/// A deadline never reached, for a timer with nothing to wait for.
fn far_future() -> Instant {
    Instant::now() + std::time::Duration::from_secs(100 * 365 * 24 * 3600)
}

/// The poller of the descriptors of parked sockets out of the reactor: one epoll (or
/// kqueue) instance, registered with the reactor once, each descriptor in it under its
/// session's key. Edge-triggered: a descriptor readable when it is added is reported
/// then, and its session resumes at its first report, so none is reported twice.
#[cfg(unix)]
struct Watch {
    poller: tokio::io::unix::AsyncFd<mio::Poll>,
    events: mio::Events,
}

/// Events taken from the poller at a time.
#[cfg(unix)]
const WATCH_EVENTS: usize = 256;

#[cfg(unix)]
impl Watch {
    fn new() -> io::Result<Watch> {
        let poll = mio::Poll::new()?;
        // SAFETY: the descriptor registered is the poller's own, which it owns and keeps
        // open, unchanged, for as long as it lives; the `AsyncFd` owns the poller, so
        // the descriptor outlives the registration, and nothing else closes it.
        let poller = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(poll, tokio::io::Interest::READABLE)
        }?;
        Ok(Watch {
            poller,
            events: mio::Events::with_capacity(WATCH_EVENTS),
        })
    }

    fn add(&self, fd: Descriptor, key: u32) -> io::Result<()> {
        self.poller.get_ref().registry().register(
            &mut mio::unix::SourceFd(&fd),
            mio::Token(key as usize),
            mio::Interest::READABLE,
        )
    }

    fn remove(&self, fd: Descriptor) {
        // It fails only for a descriptor never added (adding failed): nothing to undo.
        let _ = self
            .poller
            .get_ref()
            .registry()
            .deregister(&mut mio::unix::SourceFd(&fd));
    }

    /// Takes the keys of the descriptors reported ready into `keys`; ready if any were.
    fn poll_ready(&mut self, cx: &mut Context<'_>, keys: &mut Vec<u32>) -> Poll<()> {
        let Watch { poller, events } = self;
        let before = keys.len();
        while let Poll::Ready(Ok(mut guard)) = poller.poll_read_ready_mut(cx) {
            match guard
                .get_inner_mut()
                .poll(events, Some(std::time::Duration::ZERO))
            {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    tracing::error!(target: log::ERROR, %error, "cannot poll parked sockets");
                    break;
                }
            }
            let mut taken = 0;
            for event in events.iter() {
                // Keys are u32 (see `Table::insert`).
                keys.push(u32::try_from(event.token().0).unwrap_or(u32::MAX));
                taken += 1;
            }
            if taken < WATCH_EVENTS {
                // Drained: wait for the next report (the loop registers the waker).
                guard.clear_ready();
            }
        }
        if keys.len() > before {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Off unix no socket leaves the reactor: nothing is ever watched.
#[cfg(not(unix))]
struct Watch;

#[cfg(not(unix))]
impl Watch {
    fn new() -> io::Result<Watch> {
        Ok(Watch)
    }

    fn add(&self, fd: Descriptor, _key: u32) -> io::Result<()> {
        match fd {}
    }

    fn remove(&self, fd: Descriptor) {
        match fd {}
    }

    fn poll_ready(&mut self, _cx: &mut Context<'_>, _keys: &mut Vec<u32>) -> Poll<()> {
        Poll::Pending
    }
}
