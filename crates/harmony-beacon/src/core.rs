//! The beacon's logic without I/O: when to publish, what to publish, which datagrams to keep.

use std::time::{Duration, Instant};

use harmony_wire::zre::{Beacon as ZreBeacon, BEACON_V3_LEN};
use harmony_wire::WireError;

/// Why a received datagram was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Ignored {
    /// Not a beacon: wrong size, signature or version byte.
    #[error("not a ZRE beacon: {0}")]
    Malformed(#[from] WireError),
    /// Our own beacon, looped back.
    #[error("our own beacon")]
    Own,
    /// A beacon of another version than ours (v1 vs v3): CURVE and plain nodes ignore each other.
    #[error("beacon version {theirs}, ours is {ours}")]
    OtherVersion {
        /// Our version.
        ours: u8,
        /// The sender's version.
        theirs: u8,
    },
    /// A v3 beacon whose key starts with a zero byte (Zyre's anti-downgrade rule).
    #[error("v3 beacon with an invalid public key")]
    BadKey,
}

/// The publishing schedule and receive filter of one beacon.
#[derive(Debug, Clone)]
pub struct BeaconCore {
    payload: ZreBeacon,
    interval: Duration,
    next: Instant,
}

impl BeaconCore {
    /// A core that publishes `payload` every `interval` (at least 1 ms), the first time at `now`.
    pub fn new(payload: ZreBeacon, interval: Duration, now: Instant) -> Self {
        Self {
            payload,
            interval: interval.max(Duration::from_millis(1)),
            next: now,
        }
    }

    /// What we publish.
    pub fn payload(&self) -> &ZreBeacon {
        &self.payload
    }

    /// When the next beacon is due.
    pub fn poll_timeout(&self) -> Instant {
        self.next
    }

    /// The beacon to send now, if one is due. A late caller gets one beacon, not a burst: the next
    /// is then one interval after `now`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<([u8; BEACON_V3_LEN], usize)> {
        if now < self.next {
            return None;
        }
        self.next += self.interval;
        if self.next <= now {
            self.next = now + self.interval;
        }
        Some(self.payload.to_bytes())
    }

    /// The goodbye beacon: our payload with port 0.
    pub fn goodbye(&self) -> ([u8; BEACON_V3_LEN], usize) {
        ZreBeacon {
            port: 0,
            ..self.payload
        }
        .to_bytes()
    }

    /// Decodes and filters one datagram: only well-formed foreign beacons of our version pass.
    pub fn handle_datagram(&self, datagram: &[u8]) -> Result<ZreBeacon, Ignored> {
        let beacon = ZreBeacon::decode(datagram)?;
        if beacon.uuid == self.payload.uuid {
            return Err(Ignored::Own);
        }
        let (ours, theirs) = (self.payload.version(), beacon.version());
        if ours != theirs {
            return Err(Ignored::OtherVersion { ours, theirs });
        }
        if beacon.public_key.is_some_and(|k| k[0] == 0) {
            return Err(Ignored::BadKey);
        }
        Ok(beacon)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn payload(n: u8, port: u16) -> ZreBeacon {
        ZreBeacon {
            uuid: Uuid::from_bytes([n; 16]),
            port,
            public_key: None,
        }
    }

    #[test]
    fn first_beacon_is_immediate_then_one_per_interval() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut core = BeaconCore::new(payload(1, 9), s, t0);
        assert_eq!(core.poll_timeout(), t0);
        let (bytes, len) = core.poll_transmit(t0).unwrap();
        assert_eq!(ZreBeacon::decode(&bytes[..len]).unwrap(), payload(1, 9));
        assert_eq!(core.poll_transmit(t0 + s / 2), None);
        assert_eq!(core.poll_timeout(), t0 + s);
        assert!(core.poll_transmit(t0 + s).is_some());
        assert_eq!(core.poll_timeout(), t0 + 2 * s);
        // Slightly late: the schedule keeps its phase.
        assert!(core.poll_transmit(t0 + 2 * s + s / 10).is_some());
        assert_eq!(core.poll_timeout(), t0 + 3 * s);
        // Very late (e.g. a suspended machine): one beacon, no burst.
        let late = t0 + 10 * s + s / 2;
        assert!(core.poll_transmit(late).is_some());
        assert_eq!(core.poll_transmit(late), None);
        assert_eq!(core.poll_timeout(), late + s);
    }

    #[test]
    fn goodbye_has_port_zero() {
        let core = BeaconCore::new(payload(1, 9), Duration::from_secs(1), Instant::now());
        let (bytes, len) = core.goodbye();
        assert_eq!(ZreBeacon::decode(&bytes[..len]).unwrap(), payload(1, 0));
    }

    #[test]
    fn filter_keeps_only_foreign_beacons_of_our_version() {
        let core = BeaconCore::new(payload(1, 9), Duration::from_secs(1), Instant::now());
        let enc = |b: ZreBeacon| {
            let (bytes, len) = b.to_bytes();
            bytes[..len].to_vec()
        };
        assert_eq!(core.handle_datagram(&enc(payload(2, 5))), Ok(payload(2, 5)));
        assert_eq!(core.handle_datagram(&enc(payload(2, 0))), Ok(payload(2, 0)));
        assert_eq!(core.handle_datagram(&enc(payload(1, 9))), Err(Ignored::Own));
        let keyed = ZreBeacon {
            public_key: Some([7; 32]),
            ..payload(3, 5)
        };
        assert_eq!(
            core.handle_datagram(&enc(keyed)),
            Err(Ignored::OtherVersion { ours: 1, theirs: 3 })
        );
        for junk in [&b""[..], b"ZRE", &[0u8; 22], &[0u8; 1000]] {
            assert!(matches!(
                core.handle_datagram(junk),
                Err(Ignored::Malformed(_))
            ));
        }
        let mut v2 = enc(payload(2, 5));
        v2[3] = 2;
        assert!(matches!(
            core.handle_datagram(&v2),
            Err(Ignored::Malformed(_))
        ));
    }

    #[test]
    fn curve_nodes_reject_zero_keys() {
        let ours = ZreBeacon {
            public_key: Some([1; 32]),
            ..payload(1, 9)
        };
        let core = BeaconCore::new(ours, Duration::from_secs(1), Instant::now());
        let mut key = [5; 32];
        let good = ZreBeacon {
            public_key: Some(key),
            ..payload(2, 5)
        };
        let (bytes, len) = good.to_bytes();
        assert_eq!(core.handle_datagram(&bytes[..len]), Ok(good));
        key[0] = 0;
        let (bytes, len) = ZreBeacon {
            public_key: Some(key),
            ..good
        }
        .to_bytes();
        assert_eq!(core.handle_datagram(&bytes[..len]), Err(Ignored::BadKey));
    }
}
