//! The timer service's messages, in text a person can read in `harmony chat`.
//!
//! - A tick, shouted to `<base>/<rate>`: one frame `"<number> <stamp> <series>"`, three
//!   decimal numbers: the tick's number in its series (from 1), its slot's time in µs since the
//!   Unix epoch, and the series (the stamp of the series' first tick).
//! - A leader's note to a standby timer, whispered: three frames, `TIMER-PREPARE` or
//!   `TIMER-COMMIT`, the rate group, and the tick's text. PREPARE comes before the tick is
//!   shouted; COMMIT once the shout was written to every peer's connection.

use bytes::Bytes;

use crate::error::{Result, WireError};

/// The longest group name a tick or note may carry (a ZRE group is a short string).
pub const MAX_GROUP: usize = 255;

/// The longest tick text: three `u64`s and two spaces.
pub const MAX_TICK_TEXT: usize = 3 * 20 + 2;

/// One tick of one rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tick {
    /// Ticks per second (from the group's `/<rate>` suffix).
    pub rate: u32,
    /// The tick's number in its series, from 1, carried across leaders.
    pub number: u64,
    /// The slot's time, µs since the Unix epoch.
    pub stamp_us: u64,
    /// The series: the stamp of its first tick. A new series restarts the numbers at 1.
    pub series: u64,
}

impl Tick {
    /// The group a tick of `rate` goes to.
    pub fn group(base: &str, rate: u32) -> String {
        format!("{base}/{rate}")
    }

    /// The shouted text.
    pub fn text(&self) -> String {
        format!("{} {} {}", self.number, self.stamp_us, self.series)
    }

    /// Reads the tick shouted to `group` (`<base>/<rate>`) as `text`.
    pub fn decode(group: &str, text: &[u8]) -> Result<Self> {
        let (_, rate) = split_group(group)?;
        if text.len() > MAX_TICK_TEXT {
            return Err(WireError::TooLong {
                what: "tick text",
                len: text.len() as u64,
                limit: MAX_TICK_TEXT as u64,
            });
        }
        let text = std::str::from_utf8(text).map_err(|_| WireError::Invalid("tick text"))?;
        let mut fields = text.split(' ');
        let mut next = |what| -> Result<u64> {
            let field = fields.next().ok_or(WireError::Truncated(what))?;
            decimal(field).ok_or(WireError::Invalid(what))
        };
        let tick = Self {
            rate,
            number: next("tick number")?,
            stamp_us: next("tick stamp")?,
            series: next("tick series")?,
        };
        match fields.next() {
            Some(rest) => Err(WireError::Trailing(rest.len() + 1)),
            None => Ok(tick),
        }
    }
}

/// Digits only: no sign, no spaces, no empty field.
fn decimal(field: &str) -> Option<u64> {
    if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    field.parse().ok()
}

/// `<base>/<rate>` split into its base and a rate of at least 1.
fn split_group(group: &str) -> Result<(&str, u32)> {
    if group.len() > MAX_GROUP {
        return Err(WireError::TooLong {
            what: "tick group",
            len: group.len() as u64,
            limit: MAX_GROUP as u64,
        });
    }
    let (base, rate) = group
        .rsplit_once('/')
        .ok_or(WireError::Invalid("tick group (no /<rate>)"))?;
    match decimal(rate).and_then(|r| u32::try_from(r).ok()) {
        Some(rate) if rate >= 1 => Ok((base, rate)),
        _ => Err(WireError::Invalid("tick rate")),
    }
}

/// What a leader tells a standby timer about a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoteKind {
    /// The tick is about to be shouted.
    Prepare,
    /// The tick was written to every peer's connection.
    Commit,
}

impl NoteKind {
    fn tag(self) -> &'static str {
        match self {
            Self::Prepare => "TIMER-PREPARE",
            Self::Commit => "TIMER-COMMIT",
        }
    }
}

/// A leader's note to a standby timer, whispered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerNote {
    /// Prepare or commit.
    pub kind: NoteKind,
    /// The timers' base group (the tick goes to `<base>/<rate>`).
    pub base: String,
    /// The tick.
    pub tick: Tick,
}

impl TimerNote {
    /// The whispered frames.
    pub fn to_frames(&self) -> Vec<Bytes> {
        vec![
            Bytes::from_static(self.kind.tag().as_bytes()),
            Bytes::from(Tick::group(&self.base, self.tick.rate)),
            Bytes::from(self.tick.text()),
        ]
    }

    /// Reads a whisper's frames; an error if it is not a timer note.
    pub fn decode(frames: &[Bytes]) -> Result<Self> {
        let [kind, group, text] = frames else {
            return Err(WireError::Invalid("timer note (not 3 frames)"));
        };
        let kind = [NoteKind::Prepare, NoteKind::Commit]
            .into_iter()
            .find(|k| k.tag().as_bytes() == kind.as_ref())
            .ok_or(WireError::BadSignature("timer note"))?;
        let group = std::str::from_utf8(group).map_err(|_| WireError::Invalid("tick group"))?;
        let tick = Tick::decode(group, text)?;
        let (base, _) = split_group(group)?;
        Ok(Self {
            kind,
            base: base.to_owned(),
            tick,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Tick = Tick {
        rate: 100,
        number: 42,
        stamp_us: 1_700_000_000_010_000,
        series: 1_700_000_000_000_000,
    };

    #[test]
    fn a_tick_round_trips() {
        assert_eq!(
            TICK.text(),
            "42 1700000000010000 1700000000000000".to_owned()
        );
        assert_eq!(Tick::decode("TIME/100", TICK.text().as_bytes()), Ok(TICK));
        assert_eq!(Tick::decode("A/B/100", TICK.text().as_bytes()), Ok(TICK));
    }

    #[test]
    fn bad_ticks_are_refused() {
        for (group, text) in [
            ("TIME", "1 2 3"),
            ("TIME/0", "1 2 3"),
            ("TIME/x", "1 2 3"),
            ("TIME/99999999999", "1 2 3"),
            ("TIME/10", "1 2"),
            ("TIME/10", "1 2 3 4"),
            ("TIME/10", "1  2 3"),
            ("TIME/10", "+1 2 3"),
            ("TIME/10", "1 2 x"),
            ("TIME/10", "1 2 3 "),
            ("TIME/10", "99999999999999999999 2 3"),
            ("TIME/10", ""),
        ] {
            assert!(
                Tick::decode(group, text.as_bytes()).is_err(),
                "{group} {text:?}"
            );
        }
        assert!(Tick::decode("TIME/10", &[b'1'; MAX_TICK_TEXT + 1]).is_err());
        assert!(Tick::decode(&format!("{}/1", "g".repeat(300)), b"1 2 3").is_err());
        assert!(Tick::decode("TIME/10", b"1 2 \xff").is_err());
    }

    #[test]
    fn a_note_round_trips_and_others_are_refused() {
        for kind in [NoteKind::Prepare, NoteKind::Commit] {
            let note = TimerNote {
                kind,
                base: "TIME".into(),
                tick: TICK,
            };
            assert_eq!(TimerNote::decode(&note.to_frames()), Ok(note));
        }
        let good = TimerNote {
            kind: NoteKind::Commit,
            base: "TIME".into(),
            tick: TICK,
        }
        .to_frames();
        assert!(TimerNote::decode(&good[..2]).is_err());
        let mut other = good.clone();
        other[0] = Bytes::from_static(b"hello");
        assert_eq!(
            TimerNote::decode(&other),
            Err(WireError::BadSignature("timer note"))
        );
        let mut bad = good;
        bad[1] = Bytes::from_static(b"TIME");
        assert!(TimerNote::decode(&bad).is_err());
    }
}
