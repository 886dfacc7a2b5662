//! The timer service: ticks at fixed rates (per second) shouted to `GROUP/<rate>`, each
//! numbered and stamped, by the one timer that the node's leader election picked.
//!
//! Ticks sit on absolute time: tick slots are the multiples of the period since the Unix epoch,
//! so a timer never drifts (each deadline is computed from the clock, not from the last one)
//! and timers agree on phase. A timer that wakes late sends one tick for the latest slot due,
//! never a burst for the ones missed.
//!
//! # Numbering across leaders
//!
//! A tick reads `"<number> <stamp> <series>"` ([`Tick`]): numbers count the ticks of a series
//! from 1; the series is the stamp of its first tick. The rule that keeps a subscriber from
//! ever seeing a gap or a repeat when the leader is killed at any instant:
//!
//! 1. **Standbys first.** The leader whispers each tick to every other timer of the group (a
//!    PREPARE note, [`TimerNote`]) and waits until those whispers are written to the operating
//!    system ([`Node::flushed`]). Only then does it shout the tick. A killed process's kernel
//!    still delivers what was written, and a successor is elected only after the old leader's
//!    connections closed, so whatever tick any subscriber got, every standby got too.
//! 2. **Commit.** Once the shout is written to every peer's connection, the leader whispers a
//!    COMMIT note: every subscriber has that tick (or will).
//! 3. **Take over.** A new leader first sends again, unchanged (same number, stamp and series),
//!    its newest prepared tick if no COMMIT followed it: some subscribers may have it, others
//!    not. Then it numbers on from it. A subscriber drops a tick identical to one it had
//!    ([`TickFilter`] says [`TickOrder::Replay`]).
//! 4. **No history, new series.** Numbering history comes only from PREPARE notes, never from
//!    overheard shouts (a timer that hears shouts before the leader knows it as a standby may
//!    have missed the newest tick). A timer with no history that leads starts a new series,
//!    numbered from 1, whose series value (its first stamp) is larger than any before it: a
//!    subscriber sees a restart ([`TickOrder::NewSeries`]), never a repeat.
//! 5. **One ticks.** Should the election let two timers lead at once, the one with the smaller
//!    UUID holds back while PREPARE notes of the larger keep coming, and numbers on from them.
//!
//! Limits: the guarantee is for timers that crash or stop. A standby that does not read for
//! [`FLUSH_LIMIT`] is not waited for (the tick goes out, with a warning); a partition that
//! elects a leader on each side, or an election that lets two timers lead for a moment, makes
//! two leaders tick at once (their ticks are identical only while they hear each other's notes
//! in time). "Written to the kernel" means delivered if the process dies, not if the host does.
//! Notes are taken only from members of the group, which timers trust. Series compare across
//! hosts only as far as their clocks agree.
//!
//! [`TimerCore`] is the sans-IO schedule and numbering; [`Timer`] drives it with a node.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use harmony_node::{Event, Node, NodeBuilder, Uuid};
pub use harmony_wire::timer::{NoteKind, Tick, TimerNote};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tracing::{debug, warn};

use crate::error::ServiceError;
use crate::log::LogPublisher;

/// The default group.
pub const DEFAULT_GROUP: &str = "TIME";

/// How long a leader waits for a step of its broadcast to be written out before the next.
pub const FLUSH_LIMIT: Duration = Duration::from_millis(500);

/// The sans-IO timer: which slots are due, what number comes next. Times are µs since the Unix
/// epoch.
#[derive(Debug, Clone)]
pub struct TimerCore {
    rates: BTreeMap<u32, RateState>,
    leading: bool,
}

#[derive(Debug, Clone, Default)]
struct RateState {
    /// The newest tick of this rate this timer knows: sent by it or prepared to it.
    last: Option<Tick>,
    /// `last` was written to every peer (this timer saw it flushed, or the leader committed it).
    committed: bool,
    /// The next slot index to tick.
    next_slot: u64,
    /// On taking over: the uncommitted tick to send again, and when.
    replay: Option<(Tick, u64)>,
}

fn period_us(rate: u32) -> u64 {
    1_000_000 / u64::from(rate.max(1))
}

/// Ticks compare by series, then number.
fn order_key(t: &Tick) -> (u64, u64) {
    (t.series, t.number)
}

/// One step of a leader's broadcast of the ticks due. [`TimerCore::steps`] gives them in order;
/// each starts only once the step before was written to the operating system.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// Whisper a PREPARE note of each tick to every standby timer.
    Prepare(Vec<Tick>),
    /// Shout each tick to its rate group.
    Shout(Vec<Tick>),
    /// Whisper a COMMIT note of each tick to every standby timer (only when the shout was
    /// written out; then call [`TimerCore::handle_committed`]).
    Commit(Vec<Tick>),
}

impl TimerCore {
    /// A timer for these rates (1 to 1,000,000 per second); not leading, no history.
    pub fn new(rates: &[u32]) -> Self {
        Self {
            rates: rates
                .iter()
                .map(|r| ((*r).clamp(1, 1_000_000), RateState::default()))
                .collect(),
            leading: false,
        }
    }

    /// Whether this timer ticks.
    pub fn leading(&self) -> bool {
        self.leading
    }

    /// Starts or stops ticking. A new leader first sends again its newest uncommitted tick, at
    /// `now`; its first own slot is the first one after `now` (pass a later time to hold both
    /// back).
    pub fn set_leading(&mut self, leading: bool, now: u64) {
        if leading && !self.leading {
            for (rate, st) in &mut self.rates {
                st.next_slot = now / period_us(*rate) + 1;
                st.replay = st.last.filter(|_| !st.committed).map(|t| (t, now));
            }
        }
        if !leading {
            for st in self.rates.values_mut() {
                st.replay = None;
            }
        }
        self.leading = leading;
    }

    /// A note from the leader: a PREPARE newer than what this timer knows becomes its newest
    /// tick; a COMMIT of that tick marks it written everywhere.
    pub fn handle_note(&mut self, note: &TimerNote) {
        let Some(st) = self.rates.get_mut(&note.tick.rate) else {
            return;
        };
        match note.kind {
            NoteKind::Prepare
                if st
                    .last
                    .is_none_or(|l| order_key(&note.tick) > order_key(&l)) =>
            {
                st.last = Some(note.tick);
                st.committed = false;
            }
            NoteKind::Commit if st.last == Some(note.tick) => st.committed = true,
            _ => {}
        }
    }

    /// This leader's shout of `tick` was written to every peer.
    pub fn handle_committed(&mut self, tick: &Tick) {
        if let Some(st) = self.rates.get_mut(&tick.rate) {
            if st.last == Some(*tick) {
                st.committed = true;
            }
        }
    }

    /// The newest tick of `rate` this timer knows, and whether it was committed.
    pub fn last(&self, rate: u32) -> Option<(Tick, bool)> {
        let st = self.rates.get(&rate)?;
        st.last.map(|t| (t, st.committed))
    }

    /// When the next tick is due (`None` while not leading).
    pub fn poll_timeout(&self) -> Option<u64> {
        if !self.leading {
            return None;
        }
        self.rates
            .iter()
            .map(|(rate, st)| match st.replay {
                Some((_, at)) => at,
                None => st.next_slot * period_us(*rate),
            })
            .min()
    }

    /// The ticks due at `now`: a replay on taking over, else at most one per rate, for its
    /// latest due slot.
    pub fn handle_timeout(&mut self, now: u64) -> Vec<Tick> {
        let mut out = Vec::new();
        if !self.leading {
            return out;
        }
        for (rate, st) in &mut self.rates {
            if let Some((tick, at)) = st.replay {
                if at <= now {
                    st.replay = None;
                    out.push(tick);
                }
                continue;
            }
            let period = period_us(*rate);
            if st.next_slot * period > now {
                continue;
            }
            let slot = now / period;
            let stamp_us = slot * period;
            let tick = match st.last {
                Some(l) => Tick {
                    rate: *rate,
                    number: l.number + 1,
                    stamp_us,
                    series: l.series,
                },
                None => Tick {
                    rate: *rate,
                    number: 1,
                    stamp_us,
                    series: stamp_us,
                },
            };
            st.last = Some(tick);
            st.committed = false;
            st.next_slot = slot + 1;
            out.push(tick);
        }
        out
    }

    /// How to broadcast the ticks [`handle_timeout`](Self::handle_timeout) gave: PREPARE to
    /// the standbys, the shout, COMMIT to the standbys.
    pub fn steps(ticks: &[Tick]) -> [Step; 3] {
        [
            Step::Prepare(ticks.to_vec()),
            Step::Shout(ticks.to_vec()),
            Step::Commit(ticks.to_vec()),
        ]
    }
}

/// How a tick a subscriber receives follows the ones before it (per rate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TickOrder {
    /// The first tick of this rate.
    First,
    /// The next number of the series.
    Next,
    /// A later series: the numbers restarted (a leader with no history took over).
    NewSeries,
    /// Identical to the last tick kept: a new leader sent it again for the subscribers that
    /// missed it. Drop it.
    Replay,
    /// Numbers skipped within the series (should not happen while timers only crash).
    Gap {
        /// How many numbers are missing.
        missed: u64,
    },
    /// An earlier number, or an earlier series, that is not a replay (should not happen while
    /// timers only crash). Drop it.
    Repeat,
}

impl TickOrder {
    /// Whether a subscriber keeps the tick.
    pub fn keep(self) -> bool {
        !matches!(self, Self::Replay | Self::Repeat)
    }
}

/// A subscriber's view of the ticks: each received tick is classified against the last one
/// kept of its rate ([`TickOrder`]).
#[derive(Debug, Clone, Default)]
pub struct TickFilter {
    last: BTreeMap<u32, Tick>,
}

impl TickFilter {
    /// A filter that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Classifies `tick` and, if it is kept, remembers it.
    pub fn order(&mut self, tick: &Tick) -> TickOrder {
        let order = match self.last.get(&tick.rate) {
            None => TickOrder::First,
            Some(l) if l == tick => TickOrder::Replay,
            Some(l) if tick.series > l.series => TickOrder::NewSeries,
            Some(l) if tick.series < l.series || tick.number <= l.number => TickOrder::Repeat,
            Some(l) if tick.number == l.number + 1 => TickOrder::Next,
            Some(l) => TickOrder::Gap {
                missed: tick.number - l.number - 1,
            },
        };
        if order.keep() {
            self.last.insert(tick.rate, *tick);
        }
        order
    }
}

/// What a running timer reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimerEvent {
    /// This timer became the ticking leader.
    Leading,
    /// Another timer leads (or none is known): this one does not tick.
    Following {
        /// The leader, if known.
        leader: Option<(Uuid, String)>,
    },
    /// This timer sent a tick (handed it to its peers' connections), `late_us` after its slot
    /// (a replay: after the replay was due).
    Sent {
        /// The tick.
        tick: Tick,
        /// How late it went out.
        late_us: u64,
    },
}

/// Timer settings.
#[derive(Debug, Clone)]
pub struct TimerConfig {
    /// The base group (default `TIME`); the election runs in it.
    pub group: String,
    /// Rates in ticks per second.
    pub rates: Vec<u32>,
    /// Time after start before a timer that finds itself leader ticks: long enough to hear the
    /// other timers (a few beacon intervals), so two never tick at once.
    pub settle: Duration,
    /// Publishes this program's logs to the collectors the timer's node finds.
    pub logs: Option<Arc<LogPublisher>>,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            group: DEFAULT_GROUP.to_owned(),
            rates: vec![1, 10, 100],
            settle: Duration::from_secs(3),
            logs: None,
        }
    }
}

/// A running timer on its own node.
#[derive(Debug)]
pub struct Timer {
    uuid: Uuid,
    name: String,
    events: mpsc::Receiver<TimerEvent>,
    task: Option<(JoinHandle<()>, oneshot::Sender<()>)>,
}

/// A new leader's first tick waits this long: notes of the old leader still being read when
/// its departure was seen are handled first.
const TAKEOVER_HOLD_US: u64 = 250_000;

/// How long a leader holds back after the last PREPARE of a rival leader with a larger UUID:
/// two of the slowest rate's periods, and a little more.
fn rival_quiet(rates: &[u32]) -> Duration {
    let slowest = rates.iter().copied().min().unwrap_or(1).max(1);
    Duration::from_micros(2 * period_us(slowest)) + Duration::from_millis(100)
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The tokio instant at which the wall clock reads `at_us`.
fn instant_at(at_us: u64) -> tokio::time::Instant {
    let now = now_us();
    tokio::time::Instant::now() + Duration::from_micros(at_us.saturating_sub(now))
}

impl Timer {
    /// Starts a node from `builder` (contesting the group's election), joins the group and its
    /// rate groups, and ticks whenever this node leads.
    pub async fn start(builder: NodeBuilder, config: TimerConfig) -> Result<Self, ServiceError> {
        if config.rates.is_empty() || config.rates.contains(&0) {
            return Err(ServiceError::Invalid(
                "timer rates must be 1 or more".into(),
            ));
        }
        let node = builder.contest(&config.group).start().await?;
        node.join(&config.group).await?;
        for rate in &config.rates {
            node.join(Tick::group(&config.group, *rate)).await?;
        }
        let (uuid, name) = (node.uuid(), node.name().to_owned());
        if let Some(logs) = &config.logs {
            logs.start(node.name(), node.endpoint()).await?;
        }
        let (tx, rx) = mpsc::channel(1024);
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(run(node, config, tx, stop_rx));
        Ok(Self {
            uuid,
            name,
            events: rx,
            task: Some((task, stop_tx)),
        })
    }

    /// The node's UUID.
    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next report (`None` once stopped). Reports that nobody reads are dropped beyond 1024.
    pub async fn next_event(&mut self) -> Option<TimerEvent> {
        self.events.recv().await
    }

    /// Stops ticking and leaves the mesh.
    pub async fn stop(&mut self) {
        if let Some((task, stop)) = self.task.take() {
            let _ = stop.send(());
            let _ = task.await;
        }
    }
}

/// Whispers a note of each tick to every standby.
async fn send_notes(node: &Node, base: &str, standbys: &[Uuid], kind: NoteKind, ticks: &[Tick]) {
    for tick in ticks {
        let note = TimerNote {
            kind,
            base: base.to_owned(),
            tick: *tick,
        }
        .to_frames();
        for peer in standbys {
            // A standby that left meanwhile needs no note.
            let _ = node.whisper(*peer, note.clone()).await;
        }
    }
}

/// Carries out the steps of one broadcast ([`TimerCore::steps`]). Returns when the ticks were
/// shouted (µs since the epoch), and whether the shout was written to every peer (and
/// COMMIT sent).
async fn broadcast(node: &Node, base: &str, standbys: &[Uuid], ticks: &[Tick]) -> (u64, bool) {
    let mut shouted_at = now_us();
    for step in TimerCore::steps(ticks) {
        match step {
            Step::Prepare(ticks) => {
                send_notes(node, base, standbys, NoteKind::Prepare, &ticks).await;
                if timeout(FLUSH_LIMIT, node.flushed(standbys)).await.is_err() {
                    warn!(
                        limit_ms = FLUSH_LIMIT.as_millis() as u64,
                        "a standby timer does not read: the tick goes out without it"
                    );
                }
            }
            Step::Shout(ticks) => {
                for tick in &ticks {
                    if node
                        .shout(Tick::group(base, tick.rate), tick.text())
                        .await
                        .is_err()
                    {
                        return (shouted_at, false);
                    }
                }
                shouted_at = now_us();
                if timeout(FLUSH_LIMIT, node.flushed_all()).await.is_err() {
                    debug!("a tick was not written to every peer in time: not committed");
                    return (shouted_at, false);
                }
            }
            Step::Commit(ticks) => {
                send_notes(node, base, standbys, NoteKind::Commit, &ticks).await;
            }
        }
    }
    (shouted_at, true)
}

async fn run(
    mut node: Node,
    config: TimerConfig,
    tx: mpsc::Sender<TimerEvent>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut core = TimerCore::new(&config.rates);
    let me = node.uuid();
    let settled_at = tokio::time::Instant::now() + config.settle;
    let mut settled = false;
    let mut leader: Option<(Uuid, String)> = None;
    let mut leading_since = 0;
    // A timer with a larger UUID that is ticking too (its PREPARE notes say so), and until when
    // this one holds back for it.
    let mut rival: Option<((Uuid, String), tokio::time::Instant)> = None;
    let rival_quiet = rival_quiet(&config.rates);
    // The other timers of the group, as this node's events tell.
    let mut standbys: BTreeSet<Uuid> = BTreeSet::new();
    let report = |ev: TimerEvent| {
        let _ = tx.try_send(ev);
    };
    report(TimerEvent::Following { leader: None });
    loop {
        let deadline = if settled {
            let rival_gone = rival.as_ref().map(|(_, until)| *until);
            core.poll_timeout()
                .map(instant_at)
                .into_iter()
                .chain(rival_gone)
                .min()
        } else {
            Some(settled_at)
        };
        tokio::select! {
            _ = &mut stop => break,
            () = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => {
                if !settled {
                    settled = true;
                } else {
                    let ticks = core.handle_timeout(now_us());
                    let to: Vec<Uuid> = standbys.iter().copied().collect();
                    let (shouted_at, committed) = broadcast(&node, &config.group, &to, &ticks).await;
                    for tick in ticks {
                        if committed {
                            core.handle_committed(&tick);
                        }
                        // A replay was due at the takeover, a tick of our own at its slot.
                        let due = tick.stamp_us.max(leading_since);
                        report(TimerEvent::Sent { tick, late_us: shouted_at.saturating_sub(due) });
                    }
                }
            }
            event = node.next_event() => {
                if let (Some(logs), Some(event)) = (&config.logs, &event) {
                    logs.handle_event(event).await;
                }
                match event {
                    Some(Event::Leader { peer, name, group }) if *group == *config.group => {
                        leader = Some((peer, name.to_string()));
                    }
                    Some(Event::Join { peer, group, .. }) if *group == *config.group => {
                        standbys.insert(peer);
                        continue;
                    }
                    Some(Event::Leave { peer, group, .. }) if *group == *config.group => {
                        standbys.remove(&peer);
                        continue;
                    }
                    Some(Event::Exit { peer, .. }) => {
                        standbys.remove(&peer);
                        if rival.as_ref().is_some_and(|((r, _), _)| *r == peer) {
                            rival = None;
                        }
                    }
                    // Notes count only from the group's timers (a peer in the group could
                    // still forge them: timers trust each other).
                    Some(Event::Whisper { peer, name, content }) if standbys.contains(&peer) => {
                        match TimerNote::decode(&content) {
                            Ok(note) if note.base == config.group => {
                                core.handle_note(&note);
                                if note.kind == NoteKind::Prepare && peer > me {
                                    let until = tokio::time::Instant::now() + rival_quiet;
                                    rival = Some(((peer, name.to_string()), until));
                                }
                            }
                            Ok(_) => {}
                            Err(e) => debug!(error = %e, "a whisper that is no timer note"),
                        }
                    }
                    Some(_) => continue,
                    None => break,
                }
            },
        }
        if rival
            .as_ref()
            .is_some_and(|(_, until)| *until <= tokio::time::Instant::now())
        {
            rival = None;
        }
        // Two leaders at once (an election that has not converged): the smaller UUID holds
        // back while the larger ticks, and numbers on from its notes.
        let should_lead =
            settled && rival.is_none() && leader.as_ref().is_some_and(|(p, _)| *p == me);
        if should_lead != core.leading() {
            leading_since = now_us() + TAKEOVER_HOLD_US;
            core.set_leading(should_lead, leading_since);
            report(if should_lead {
                TimerEvent::Leading
            } else {
                TimerEvent::Following {
                    leader: rival
                        .as_ref()
                        .map_or(leader.clone(), |(r, _)| Some(r.clone())),
                }
            });
        }
    }
    if core.leading() {
        // The node drops what is still queued when it stops: let the last ticks go out first.
        let _ = timeout(FLUSH_LIMIT, node.flushed_all()).await;
    }
    let _ = node.stop().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_sit_on_absolute_slots_without_drift() {
        let mut core = TimerCore::new(&[100]);
        core.set_leading(true, 1_000_000_123);
        let mut now = core.poll_timeout().unwrap();
        assert_eq!(now, 1_000_010_000);
        // An hour of ticks, each woken 0-3 ms late: the slots never move.
        for i in 0..360_000u64 {
            let late = (i * 7919) % 3000;
            let ticks = core.handle_timeout(now + late);
            assert_eq!(ticks.len(), 1);
            assert_eq!(ticks[0].number, i + 1);
            assert_eq!(ticks[0].stamp_us, 1_000_010_000 + i * 10_000);
            assert_eq!(ticks[0].series, 1_000_010_000);
            now = core.poll_timeout().unwrap();
        }
        assert_eq!(now, 1_000_010_000 + 360_000 * 10_000);
    }

    #[test]
    fn late_ticks_are_not_bunched_and_numbers_do_not_skip() {
        let mut core = TimerCore::new(&[10]);
        core.set_leading(true, 0);
        assert_eq!(core.handle_timeout(100_000)[0].number, 1);
        // Woken 1.25 s late: one tick, for the latest slot.
        let ticks = core.handle_timeout(1_350_000);
        assert_eq!(
            ticks,
            vec![Tick {
                rate: 10,
                number: 2,
                stamp_us: 1_300_000,
                series: 100_000,
            }]
        );
        assert_eq!(core.poll_timeout(), Some(1_400_000));
        assert!(core.handle_timeout(1_399_999).is_empty());
    }

    fn note(kind: NoteKind, tick: Tick) -> TimerNote {
        TimerNote {
            kind,
            base: DEFAULT_GROUP.into(),
            tick,
        }
    }

    #[test]
    fn a_new_leader_numbers_on_from_the_committed_ticks_without_a_replay() {
        let mut old = TimerCore::new(&[1, 10]);
        let mut new = TimerCore::new(&[1, 10]);
        old.set_leading(true, 0);
        for t in 1..=25u64 {
            for tick in old.handle_timeout(t * 100_000) {
                old.handle_committed(&tick);
                new.handle_note(&note(NoteKind::Prepare, tick));
                new.handle_note(&note(NoteKind::Commit, tick));
            }
        }
        assert!(
            new.handle_timeout(3_000_000).is_empty(),
            "a follower never ticks"
        );
        new.set_leading(true, 2_550_000);
        let ticks = new.handle_timeout(3_000_000);
        assert_eq!(
            ticks.iter().map(|t| (t.rate, t.number)).collect::<Vec<_>>(),
            vec![(1, 3), (10, 26)]
        );
        assert!(ticks
            .iter()
            .all(|t| t.series == old.last(t.rate).unwrap().0.series));
    }

    #[test]
    fn an_uncommitted_tick_is_sent_again_unchanged_before_the_next() {
        let mut old = TimerCore::new(&[10]);
        let mut new = TimerCore::new(&[10]);
        old.set_leading(true, 0);
        let first = old.handle_timeout(100_000)[0];
        new.handle_note(&note(NoteKind::Prepare, first));
        new.handle_note(&note(NoteKind::Commit, first));
        // The second is prepared, then the leader dies before its COMMIT.
        let second = old.handle_timeout(200_000)[0];
        new.handle_note(&note(NoteKind::Prepare, second));
        // A stale COMMIT (of the first) changes nothing.
        new.handle_note(&note(NoteKind::Commit, first));
        assert_eq!(new.last(10), Some((second, false)));
        new.set_leading(true, 1_250_000);
        assert_eq!(
            new.poll_timeout(),
            Some(1_250_000),
            "the replay is due first"
        );
        assert_eq!(new.handle_timeout(1_250_000), vec![second]);
        let next = new.handle_timeout(1_300_000);
        assert_eq!(next.len(), 1);
        assert_eq!(
            (next[0].number, next[0].stamp_us, next[0].series),
            (3, 1_300_000, second.series)
        );
    }

    #[test]
    fn a_timer_with_no_history_starts_a_later_series() {
        let mut old = TimerCore::new(&[10]);
        old.set_leading(true, 0);
        let mut filter = TickFilter::new();
        for t in 1..=3 {
            let tick = old.handle_timeout(t * 100_000)[0];
            assert!(filter.order(&tick).keep());
        }
        let mut fresh = TimerCore::new(&[10]);
        fresh.set_leading(true, 2_000_000);
        let tick = fresh.handle_timeout(2_100_000)[0];
        assert_eq!((tick.number, tick.series), (1, 2_100_000));
        assert_eq!(filter.order(&tick), TickOrder::NewSeries);
        let tick = fresh.handle_timeout(2_200_000)[0];
        assert_eq!(filter.order(&tick), TickOrder::Next);
    }

    #[test]
    fn the_filter_drops_replays_and_names_gaps_and_repeats() {
        let t = |number, stamp_us| Tick {
            rate: 10,
            number,
            stamp_us,
            series: 100,
        };
        let mut f = TickFilter::new();
        assert_eq!(f.order(&t(4, 400)), TickOrder::First);
        assert_eq!(f.order(&t(4, 400)), TickOrder::Replay);
        assert_eq!(f.order(&t(5, 500)), TickOrder::Next);
        assert_eq!(f.order(&t(5, 900)), TickOrder::Repeat);
        assert_eq!(f.order(&t(3, 300)), TickOrder::Repeat);
        assert_eq!(f.order(&t(8, 800)), TickOrder::Gap { missed: 2 });
        let mut old = t(9, 900);
        old.series = 50;
        assert_eq!(f.order(&old), TickOrder::Repeat);
        assert!(!TickOrder::Replay.keep() && !TickOrder::Repeat.keep());
    }

    /// A small deterministic generator for the simulations.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n.max(1)
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    enum Dest {
        Timer(usize),
        Sub(usize),
    }

    #[derive(Debug, Clone)]
    enum Msg {
        Note(TimerNote),
        Shout(Tick),
    }

    const MS: u64 = 1000;

    /// Timers and subscribers on a simulated mesh. A connection (sender, receiver) delivers in
    /// order, 0-50 ms late. A leader broadcasts with [`TimerCore::steps`]: within a step its
    /// connections are written in any order, a step starts when the one before was written. A
    /// killed leader's written messages are delivered (its kernel sends them), the rest are
    /// lost, and its successor is elected only after the last of them arrived and the
    /// connection closed, as an expired timeout does.
    struct Sim {
        rng: Lcg,
        cores: Vec<TimerCore>,
        alive: Vec<bool>,
        subs: Vec<TickFilter>,
        /// Every subscriber's classification of every tick it got.
        seen: Vec<Vec<(Tick, TickOrder)>>,
        in_flight: BTreeMap<(u64, u64), (usize, Dest, Msg)>,
        /// Per connection, when its latest message arrives.
        last_at: BTreeMap<(usize, Dest), u64>,
        sent: u64,
        /// Writes within a step are shuffled.
        shuffle: bool,
        /// In percent: how often the shout's flush times out (no COMMIT follows).
        slow_flush: u64,
    }

    impl Sim {
        fn new(seed: u64, timers: usize, subs: usize, rates: &[u32]) -> Self {
            Self {
                rng: Lcg(seed),
                cores: (0..timers).map(|_| TimerCore::new(rates)).collect(),
                alive: vec![true; timers],
                subs: vec![TickFilter::new(); subs],
                seen: vec![Vec::new(); subs],
                in_flight: BTreeMap::new(),
                last_at: BTreeMap::new(),
                sent: 0,
                shuffle: true,
                slow_flush: 0,
            }
        }

        /// The writes of one broadcast, step by step.
        fn writes(&mut self, leader: usize, ticks: &[Tick]) -> (Vec<(Dest, Msg)>, bool) {
            let standbys: Vec<usize> = (0..self.cores.len()).filter(|t| *t != leader).collect();
            let notes = |kind, ticks: &[Tick]| {
                let mut out = Vec::new();
                for tick in ticks {
                    for s in &standbys {
                        out.push((Dest::Timer(*s), Msg::Note(note(kind, *tick))));
                    }
                }
                out
            };
            let flushed = self.rng.below(100) >= self.slow_flush;
            let mut all = Vec::new();
            for step in TimerCore::steps(ticks) {
                let mut writes = match step {
                    Step::Prepare(ticks) => notes(NoteKind::Prepare, &ticks),
                    Step::Shout(ticks) => {
                        let mut out = Vec::new();
                        for tick in ticks {
                            for s in 0..self.subs.len() {
                                out.push((Dest::Sub(s), Msg::Shout(tick)));
                            }
                        }
                        out
                    }
                    Step::Commit(_) if !flushed => break,
                    Step::Commit(ticks) => notes(NoteKind::Commit, &ticks),
                };
                if self.shuffle {
                    for i in (1..writes.len()).rev() {
                        let j = self.rng.below(i as u64 + 1) as usize;
                        writes.swap(i, j);
                    }
                }
                all.extend(writes);
            }
            (all, flushed)
        }

        /// The leader's ticks due at `now`, broadcast; only the first `cut` writes if it is
        /// killed meanwhile (then it is dead). Returns the ticks.
        fn tick(&mut self, leader: usize, now: u64, kill_at: Option<u64>) -> Vec<Tick> {
            let ticks = self.cores[leader].handle_timeout(now);
            if ticks.is_empty() && kill_at.is_none() {
                return ticks;
            }
            let (writes, flushed) = self.writes(leader, &ticks);
            let cut = kill_at.map_or(writes.len(), |k| (k as usize).min(writes.len()));
            for (to, msg) in writes.into_iter().take(cut) {
                let at = now + self.rng.below(50) * MS;
                let at = at.max(self.last_at.get(&(leader, to)).copied().unwrap_or(0));
                self.last_at.insert((leader, to), at);
                self.sent += 1;
                self.in_flight.insert((at, self.sent), (leader, to, msg));
            }
            if kill_at.is_some() {
                self.alive[leader] = false;
            } else if flushed {
                for t in &ticks {
                    self.cores[leader].handle_committed(t);
                }
            }
            ticks
        }

        /// Delivers what arrives by `now`.
        fn deliver(&mut self, now: u64) {
            while let Some(entry) = self.in_flight.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let (_, to, msg) = entry.remove();
                match (to, msg) {
                    (Dest::Timer(t), Msg::Note(n)) if self.alive[t] => {
                        self.cores[t].handle_note(&n)
                    }
                    (Dest::Sub(s), Msg::Shout(tick)) => {
                        let order = self.subs[s].order(&tick);
                        self.seen[s].push((tick, order));
                    }
                    _ => {}
                }
            }
        }

        /// When the last message `from` sent arrives (its connections then close).
        fn drained(&self, from: usize) -> u64 {
            self.last_at
                .iter()
                .filter(|((f, _), _)| *f == from)
                .map(|(_, at)| *at)
                .max()
                .unwrap_or(0)
        }

        /// No subscriber kept a tick out of order: no gap, no repeat (replays are dropped).
        fn check(&self, what: &str) {
            for (s, seen) in self.seen.iter().enumerate() {
                for (tick, order) in seen {
                    assert!(
                        !matches!(order, TickOrder::Gap { .. } | TickOrder::Repeat),
                        "{what}: subscriber {s} got {tick:?}: {order:?}"
                    );
                }
            }
        }

        fn count(&self, f: impl Fn(&TickOrder) -> bool) -> usize {
            self.seen.iter().flatten().filter(|(_, o)| f(o)).count()
        }
    }

    /// The case, spelled out: the leader is killed after its shout of tick 6 reached
    /// one subscriber and not the others.
    #[test]
    fn a_leader_killed_mid_shout_leaves_no_gap_and_no_repeat() {
        let mut sim = Sim::new(7, 3, 3, &[10]);
        sim.shuffle = false;
        sim.cores[0].set_leading(true, 0);
        let mut now = 0;
        while sim.seen[0].len() < 5 {
            now += MS;
            sim.tick(0, now, None);
            sim.deliver(now);
        }
        // Tick 6: PREPARE to both standbys written, then the shout to subscriber 0 only.
        while sim.cores[0].poll_timeout().unwrap() > now {
            now += MS;
            sim.deliver(now);
        }
        let ticks = sim.tick(0, now, Some(3));
        assert_eq!(ticks[0].number, 6);
        let dead_at = sim.drained(0);
        while now <= dead_at {
            now += MS;
            sim.deliver(now);
        }
        assert_eq!(sim.seen[0].last().unwrap().0, ticks[0]);
        assert_eq!(sim.seen[1].last().unwrap().0.number, 5);
        assert_eq!(sim.cores[2].last(10), Some((ticks[0], false)));
        // Timer 2 takes over: tick 6 again, unchanged, then 7, 8...
        now += 900 * MS;
        sim.cores[2].set_leading(true, now + TAKEOVER_HOLD_US);
        for _ in 0..2000 {
            now += MS;
            sim.tick(2, now, None);
            sim.deliver(now);
        }
        sim.check("mid-shout kill");
        assert_eq!(sim.seen[0][5], (ticks[0], TickOrder::Next));
        assert_eq!(
            sim.seen[0][6],
            (ticks[0], TickOrder::Replay),
            "subscriber 0 had tick 6"
        );
        assert_eq!(
            sim.seen[1][5],
            (ticks[0], TickOrder::Next),
            "subscriber 1 gets it now"
        );
        for s in 0..3 {
            let kept: Vec<u64> = sim.seen[s]
                .iter()
                .filter(|(_, o)| o.keep())
                .map(|(t, _)| t.number)
                .collect();
            assert_eq!(kept, (1..=kept.len() as u64).collect::<Vec<_>>(), "sub {s}");
            assert!(kept.len() > 20, "sub {s} kept {}", kept.len());
        }
    }

    /// Ten timers and four subscribers for a simulated minute: the leader is killed at a random
    /// point of one of its broadcasts (or right after it) every 1-4 s, killed timers restart
    /// with no history, now and then a shout is not flushed in time (no COMMIT). No subscriber
    /// ever keeps a gap or a repeat.
    fn simulate(seed: u64) -> (usize, usize) {
        const TIMERS: usize = 10;
        let mut sim = Sim::new(seed, TIMERS, 4, &[10, 100]);
        sim.slow_flush = 5;
        let mut leader = Some(0usize);
        sim.cores[0].set_leading(true, 0);
        let mut next_death = 1000 * MS + sim.rng.below(3000) * MS;
        let mut election_at: Option<u64> = None;
        let mut restart_at: BTreeMap<u64, usize> = BTreeMap::new();
        for now in (0..60_000 * MS).step_by(MS as usize) {
            if let Some(l) = leader {
                let kill = (now >= next_death).then(|| sim.rng.below(60));
                sim.tick(l, now, kill);
                if kill.is_some() {
                    leader = None;
                    election_at =
                        Some(sim.drained(l).max(now) + 500 * MS + sim.rng.below(1500) * MS);
                    restart_at.insert(now + sim.rng.below(5000) * MS, l);
                    next_death = now + 1000 * MS + sim.rng.below(3000) * MS;
                }
            }
            sim.deliver(now);
            while let Some(entry) = restart_at.first_entry() {
                if *entry.key() > now {
                    break;
                }
                let t = entry.remove();
                sim.cores[t] = TimerCore::new(&[10, 100]);
                sim.alive[t] = true;
            }
            if election_at.is_some_and(|t| now >= t) {
                election_at = None;
                let candidates: Vec<usize> = (0..TIMERS).filter(|c| sim.alive[*c]).collect();
                let l = candidates[sim.rng.below(candidates.len() as u64) as usize];
                sim.cores[l].set_leading(true, now + TAKEOVER_HOLD_US);
                leader = Some(l);
            }
        }
        sim.check(&format!("seed {seed}"));
        assert!(
            sim.count(|o| o.keep()) > 4 * 2000,
            "seed {seed}: ticks kept"
        );
        (
            sim.count(|o| *o == TickOrder::Replay),
            sim.count(|o| *o == TickOrder::NewSeries),
        )
    }

    #[test]
    fn seeded_kills_at_any_point_never_break_the_numbering() {
        let (mut replays, mut restarts) = (0, 0);
        for seed in 1..=8 {
            let (r, n) = simulate(seed);
            replays += r;
            restarts += n;
        }
        // The sweep did reach the cases the rules are for.
        assert!(replays > 0, "no subscriber ever got a replay");
        assert!(restarts > 0, "no timer without history ever took over");
    }
}
