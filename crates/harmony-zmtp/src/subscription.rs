//! Counted prefix subscriptions (two SUBSCRIBEs of a topic need two CANCELs).

use bytes::Bytes;

/// A set of topic prefixes with counts. Small and linear: subscriptions per peer are few.
#[derive(Debug, Default, Clone)]
pub(crate) struct Subscriptions {
    entries: Vec<(Bytes, usize)>,
}

impl Subscriptions {
    /// Adds one count; true if the topic is new.
    pub(crate) fn add(&mut self, topic: Bytes) -> bool {
        match self.entries.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, n)) => {
                *n += 1;
                false
            }
            None => {
                self.entries.push((topic, 1));
                true
            }
        }
    }

    /// Removes one count; true if the topic is gone now.
    pub(crate) fn remove(&mut self, topic: &[u8]) -> bool {
        let Some(i) = self.entries.iter().position(|(t, _)| t == topic) else {
            return false;
        };
        self.entries[i].1 -= 1;
        if self.entries[i].1 == 0 {
            self.entries.swap_remove(i);
            true
        } else {
            false
        }
    }

    /// Whether some prefix matches the start of `data`.
    pub(crate) fn matches(&self, data: &[u8]) -> bool {
        self.entries.iter().any(|(t, _)| data.starts_with(t))
    }

    /// The distinct topics.
    pub(crate) fn topics(&self) -> impl Iterator<Item = &Bytes> {
        self.entries.iter().map(|(t, _)| t)
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_prefixes() {
        let mut s = Subscriptions::default();
        assert!(!s.matches(b"abc"));
        assert!(s.add(Bytes::from_static(b"ab")));
        assert!(!s.add(Bytes::from_static(b"ab")));
        assert!(s.matches(b"abc"));
        assert!(!s.matches(b"a"));
        assert!(!s.remove(b"ab"));
        assert!(s.matches(b"abc"));
        assert!(s.remove(b"ab"));
        assert!(!s.matches(b"abc"));
        s.add(Bytes::new());
        assert!(s.matches(b""));
        assert_eq!(s.topics().count(), 1);
    }
}
