//! Timeouts of the peer session.

use std::time::Duration;

/// How long a peer may stay quiet, and whether beacons count as a sign of life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// Quiet time after which the peer is PINGed and reported EVASIVE (Zyre: 5 s).
    pub evasive_timeout: Duration,
    /// Quiet time after which the peer is removed, EXIT (Zyre: 30 s).
    pub expired_timeout: Duration,
    /// Whether a beacon from a known peer refreshes its timers. Zyre C: no (default);
    /// pyre, gyre and NetMQ: yes. With `true`, a peer whose ZMTP path is broken but whose
    /// beacons still arrive is never expired.
    pub beacons_refresh: bool,
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self {
            evasive_timeout: Duration::from_millis(5000),
            expired_timeout: Duration::from_millis(30000),
            beacons_refresh: false,
        }
    }
}

impl PeerConfig {
    /// How often the node checks its peers: `min(evasive, expired, 1 s)` as in Zyre
    /// (never zero: at least 1 ms, so a driver cannot spin).
    pub fn reap_interval(&self) -> Duration {
        self.evasive_timeout
            .min(self.expired_timeout)
            .min(Duration::from_secs(1))
            .max(Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reap_interval_is_min_of_timeouts_and_one_second() {
        assert_eq!(
            PeerConfig::default().reap_interval(),
            Duration::from_secs(1)
        );
        let c = PeerConfig {
            evasive_timeout: Duration::from_millis(300),
            expired_timeout: Duration::from_millis(2000),
            beacons_refresh: false,
        };
        assert_eq!(c.reap_interval(), Duration::from_millis(300));
        let c = PeerConfig {
            evasive_timeout: Duration::ZERO,
            ..c
        };
        assert_eq!(c.reap_interval(), Duration::from_millis(1));
    }
}
