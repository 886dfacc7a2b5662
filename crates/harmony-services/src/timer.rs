//! The timer service: ticks at fixed rates (per second) shouted to `GROUP/<rate>`, each
//! numbered and stamped, by the one timer that the node's leader election picked.
//!
//! Ticks sit on absolute time: tick slots are the multiples of the period since the Unix epoch,
//! so a timer never drifts (each deadline is computed from the clock, not from the last one)
//! and timers agree on phase. A timer that wakes late sends one tick for the latest slot due,
//! never a burst for the ones missed. Numbers count ticks sent: a timer that takes over
//! continues from the last number it heard, so subscribers see neither a gap nor a repeat.
//! (That needs the successor to have heard its predecessor: a timer that is elected before it
//! heard any tick of a rate, e.g. it just started and the old leader died before ticking,
//! numbers that rate from 1 again; and a leader killed in the middle of sending a tick to its
//! peers, one after the other, can leave the successor without that tick, which it then
//! repeats.)
//!
//! [`TimerCore`] is the sans-IO schedule; [`Timer`] drives it with a node.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use harmony_node::{Event, Node, NodeBuilder, Uuid};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::ServiceError;
use crate::log::LogPublisher;

/// The default group.
pub const DEFAULT_GROUP: &str = "TIME";

/// One tick as shouted: `"<number> <stamp in µs since the Unix epoch>"` to `GROUP/<rate>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// Ticks per second.
    pub rate: u32,
    /// Counts ticks of this rate, from 1, across leaders.
    pub number: u64,
    /// The slot's time, µs since the Unix epoch.
    pub stamp_us: u64,
}

impl Tick {
    /// The group a tick of `rate` goes to.
    pub fn group(base: &str, rate: u32) -> String {
        format!("{base}/{rate}")
    }

    /// The shouted text.
    pub fn text(&self) -> String {
        format!("{} {}", self.number, self.stamp_us)
    }

    /// Reads a tick shouted to `group` (`BASE/<rate>`), if it is one.
    pub fn parse(group: &str, text: &str) -> Option<Self> {
        let rate = group.rsplit_once('/')?.1.parse().ok()?;
        let (number, stamp) = text.trim().split_once(' ')?;
        Some(Self {
            rate,
            number: number.parse().ok()?,
            stamp_us: stamp.parse().ok()?,
        })
    }
}

/// The sans-IO timer: which slots are due, what number comes next. Times are µs since the Unix
/// epoch.
#[derive(Debug, Clone)]
pub struct TimerCore {
    rates: BTreeMap<u32, RateState>,
    leading: bool,
}

#[derive(Debug, Clone, Default)]
struct RateState {
    /// The last number sent or heard.
    last: u64,
    /// The next slot index to tick.
    next_slot: u64,
}

fn period_us(rate: u32) -> u64 {
    1_000_000 / u64::from(rate.max(1))
}

impl TimerCore {
    /// A timer for these rates (1 to 1,000,000 per second); not leading.
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

    /// Starts or stops ticking; a new leader's first slot is the first one after `now` (pass a
    /// later time to hold the first tick back).
    pub fn set_leading(&mut self, leading: bool, now: u64) {
        if leading && !self.leading {
            for (rate, st) in &mut self.rates {
                st.next_slot = now / period_us(*rate) + 1;
            }
        }
        self.leading = leading;
    }

    /// A tick heard from another timer: numbering continues after it.
    pub fn heard(&mut self, tick: &Tick) {
        if let Some(st) = self.rates.get_mut(&tick.rate) {
            st.last = st.last.max(tick.number);
        }
    }

    /// When the next tick is due (`None` while not leading).
    pub fn poll_timeout(&self) -> Option<u64> {
        if !self.leading {
            return None;
        }
        self.rates
            .iter()
            .map(|(rate, st)| st.next_slot * period_us(*rate))
            .min()
    }

    /// The ticks due at `now`: at most one per rate, for its latest due slot.
    pub fn handle_timeout(&mut self, now: u64) -> Vec<Tick> {
        let mut out = Vec::new();
        if !self.leading {
            return out;
        }
        for (rate, st) in &mut self.rates {
            let period = period_us(*rate);
            if st.next_slot * period > now {
                continue;
            }
            let slot = now / period;
            st.last += 1;
            st.next_slot = slot + 1;
            out.push(Tick {
                rate: *rate,
                number: st.last,
                stamp_us: slot * period,
            });
        }
        out
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
    /// This timer sent a tick, `late_us` after its slot.
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

/// A new leader's first tick waits this long: the old leader's last ticks, still on their way
/// when its departure was seen, are heard first and numbering carries on after them.
const TAKEOVER_HOLD_US: u64 = 250_000;

/// How long a stopping leader waits for its last ticks to leave.
const STOP_DRAIN: Duration = Duration::from_millis(100);

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
    let report = |ev: TimerEvent| {
        let _ = tx.try_send(ev);
    };
    report(TimerEvent::Following { leader: None });
    loop {
        let deadline = if settled {
            core.poll_timeout().map(instant_at)
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
                    let now = now_us();
                    for tick in core.handle_timeout(now) {
                        let group = Tick::group(&config.group, tick.rate);
                        if node.shout(group, tick.text()).await.is_err() {
                            break;
                        }
                        report(TimerEvent::Sent { tick, late_us: now.saturating_sub(tick.stamp_us) });
                    }
                    continue;
                }
            }
            event = node.next_event() => {
                if let (Some(logs), Some(event)) = (&config.logs, &event) {
                    logs.handle_event(event).await;
                }
                match event {
                Some(Event::Leader { peer, name, group }) if group == config.group => {
                    leader = Some((peer, name.to_string()));
                }
                Some(Event::Shout { group, content, .. }) => {
                    if let Some(tick) = content.first().and_then(|c| Tick::parse(&group, &String::from_utf8_lossy(c))) {
                        core.heard(&tick);
                    }
                    continue;
                }
                Some(_) => continue,
                None => break,
            }},
        }
        let should_lead = settled && leader.as_ref().is_some_and(|(p, _)| *p == me);
        if should_lead != core.leading() {
            core.set_leading(should_lead, now_us() + TAKEOVER_HOLD_US);
            report(if should_lead {
                TimerEvent::Leading
            } else {
                TimerEvent::Following {
                    leader: leader.clone(),
                }
            });
        }
    }
    if core.leading() {
        // The node drops what is still queued when it stops: let the last ticks go out first,
        // so the successor hears them and carries the numbering on.
        tokio::time::sleep(STOP_DRAIN).await;
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
                stamp_us: 1_300_000
            }]
        );
        assert_eq!(core.poll_timeout(), Some(1_400_000));
        assert!(core.handle_timeout(1_399_999).is_empty());
    }

    #[test]
    fn a_new_leader_continues_the_numbers_it_heard() {
        let mut old = TimerCore::new(&[1, 10]);
        let mut new = TimerCore::new(&[1, 10]);
        old.set_leading(true, 0);
        for t in 1..=25u64 {
            for tick in old.handle_timeout(t * 100_000) {
                new.heard(&tick);
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
    }

    /// A small deterministic generator for the simulation.
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

    /// Thirty timers for a simulated minute: the leader dies now and then (its successor, any
    /// live timer, is elected 0.5-2 s later, as an expired timeout would), ticks reach the
    /// followers 0-50 ms late. A subscriber sees every rate's numbers consecutive throughout.
    fn simulate(seed: u64) {
        const TIMERS: usize = 30;
        const MS: u64 = 1000;
        let mut rng = Lcg(seed);
        let rates = [10, 100];
        let mut cores: Vec<TimerCore> = (0..TIMERS).map(|_| TimerCore::new(&rates)).collect();
        let mut alive = [true; TIMERS];
        let mut leader = Some(0usize);
        cores[0].set_leading(true, 0);
        let mut next_death = 1000 * MS + rng.below(2000) * MS;
        let mut election_at: Option<u64> = None;
        // (deliver at, to core or None = the subscriber, tick)
        let mut in_flight: Vec<(u64, Option<usize>, Tick)> = Vec::new();
        let mut seen: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        for now in (0..60_000 * MS).step_by(MS as usize) {
            if let Some(l) = leader {
                for tick in cores[l].handle_timeout(now) {
                    in_flight.push((now + rng.below(5) * MS, None, tick));
                    for f in (0..TIMERS).filter(|f| *f != l) {
                        in_flight.push((now + rng.below(50) * MS, Some(f), tick));
                    }
                }
            }
            in_flight.sort_by_key(|(at, _, _)| *at);
            while in_flight.first().is_some_and(|(at, _, _)| *at <= now) {
                let (_, to, tick) = in_flight.remove(0);
                match to {
                    None => seen.entry(tick.rate).or_default().push(tick.number),
                    Some(f) if alive[f] => cores[f].heard(&tick),
                    Some(_) => {}
                }
            }
            if now >= next_death {
                if let Some(l) = leader.take() {
                    alive[l] = false;
                    election_at = Some(now + 500 * MS + rng.below(1500) * MS);
                }
                next_death = now + 1000 * MS + rng.below(3000) * MS;
            }
            if election_at.is_some_and(|t| now >= t) {
                election_at = None;
                let candidates: Vec<usize> = (0..TIMERS).filter(|c| alive[*c]).collect();
                let l = candidates[rng.below(candidates.len() as u64) as usize];
                cores[l].set_leading(true, now + TAKEOVER_HOLD_US);
                leader = Some(l);
            }
        }
        for (rate, numbers) in &seen {
            assert!(numbers.len() > 100, "seed {seed}: rate {rate} ticked");
            for w in numbers.windows(2) {
                assert_eq!(w[1], w[0] + 1, "seed {seed}: rate {rate} after {}", w[0]);
            }
        }
    }

    #[test]
    fn seeded_failovers_never_break_the_numbering() {
        for seed in 1..=8 {
            simulate(seed);
        }
    }

    #[test]
    fn tick_text_round_trips() {
        let t = Tick {
            rate: 100,
            number: 42,
            stamp_us: 1_700_000_000_000_000,
        };
        assert_eq!(Tick::parse("TIME/100", &t.text()), Some(t));
        assert_eq!(Tick::parse("TIME", "1 2"), None);
        assert_eq!(Tick::parse("TIME/10", "x 2"), None);
    }
}
