//! Multipart messages: a short list of zero-copy [`Bytes`] frames.

use std::ops::Index;

use bytes::Bytes;
use smallvec::SmallVec;

/// Frames kept inline before a message spills to the heap (identity + two frames).
const INLINE: usize = 3;

/// A multipart message. Received frames are slices of the connection's read buffer (no copy);
/// messages with up to three frames need no allocation of their own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Message {
    frames: SmallVec<[Bytes; INLINE]>,
}

impl Message {
    /// An empty message (add frames before sending it).
    pub fn new() -> Self {
        Self::default()
    }

    /// A message from its frames.
    pub fn from_frames<I, F>(frames: I) -> Self
    where
        I: IntoIterator<Item = F>,
        F: Into<Bytes>,
    {
        Self {
            frames: frames.into_iter().map(Into::into).collect(),
        }
    }

    /// Appends a frame.
    pub fn push_back(&mut self, frame: impl Into<Bytes>) {
        self.frames.push(frame.into());
    }

    /// Puts a frame in front (e.g. a routing identity).
    pub fn push_front(&mut self, frame: impl Into<Bytes>) {
        self.frames.insert(0, frame.into());
    }

    /// Takes the first frame off.
    pub fn pop_front(&mut self) -> Option<Bytes> {
        if self.frames.is_empty() {
            None
        } else {
            Some(self.frames.remove(0))
        }
    }

    /// Takes the last frame off.
    pub fn pop_back(&mut self) -> Option<Bytes> {
        self.frames.pop()
    }

    /// The frames in order.
    pub fn frames(&self) -> &[Bytes] {
        &self.frames
    }

    /// The frame at `index`.
    pub fn get(&self, index: usize) -> Option<&Bytes> {
        self.frames.get(index)
    }

    /// The first frame.
    pub fn first(&self) -> Option<&Bytes> {
        self.frames.first()
    }

    /// The last frame.
    pub fn last(&self) -> Option<&Bytes> {
        self.frames.last()
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether the message has no frames.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Total size of all frame bodies.
    pub fn byte_len(&self) -> usize {
        self.frames.iter().map(Bytes::len).sum()
    }

    /// Iterates over the frames.
    pub fn iter(&self) -> std::slice::Iter<'_, Bytes> {
        self.frames.iter()
    }

    /// The frames as a vector.
    pub fn into_vec(self) -> Vec<Bytes> {
        self.frames.into_vec()
    }

    pub(crate) fn from_smallvec(frames: SmallVec<[Bytes; INLINE]>) -> Self {
        Self { frames }
    }
}

/// The frame buffer used while a message is assembled.
pub(crate) type Frames = SmallVec<[Bytes; INLINE]>;

impl Index<usize> for Message {
    type Output = Bytes;

    fn index(&self, index: usize) -> &Bytes {
        &self.frames[index]
    }
}

impl From<Bytes> for Message {
    fn from(frame: Bytes) -> Self {
        let mut frames = SmallVec::new();
        frames.push(frame);
        Self { frames }
    }
}

impl From<Vec<u8>> for Message {
    fn from(frame: Vec<u8>) -> Self {
        Bytes::from(frame).into()
    }
}

impl From<&'static [u8]> for Message {
    fn from(frame: &'static [u8]) -> Self {
        Bytes::from_static(frame).into()
    }
}

impl From<&'static str> for Message {
    fn from(frame: &'static str) -> Self {
        Bytes::from_static(frame.as_bytes()).into()
    }
}

impl From<String> for Message {
    fn from(frame: String) -> Self {
        Bytes::from(frame).into()
    }
}

impl From<Vec<Bytes>> for Message {
    fn from(frames: Vec<Bytes>) -> Self {
        Self {
            frames: SmallVec::from_vec(frames),
        }
    }
}

impl<const N: usize> From<[Bytes; N]> for Message {
    fn from(frames: [Bytes; N]) -> Self {
        Self::from_frames(frames)
    }
}

impl From<Message> for Vec<Bytes> {
    fn from(msg: Message) -> Self {
        msg.into_vec()
    }
}

impl FromIterator<Bytes> for Message {
    fn from_iter<I: IntoIterator<Item = Bytes>>(iter: I) -> Self {
        Self {
            frames: iter.into_iter().collect(),
        }
    }
}

impl Extend<Bytes> for Message {
    fn extend<I: IntoIterator<Item = Bytes>>(&mut self, iter: I) {
        self.frames.extend(iter);
    }
}

impl IntoIterator for Message {
    type Item = Bytes;
    type IntoIter = smallvec::IntoIter<[Bytes; INLINE]>;

    fn into_iter(self) -> Self::IntoIter {
        self.frames.into_iter()
    }
}

impl<'a> IntoIterator for &'a Message {
    type Item = &'a Bytes;
    type IntoIter = std::slice::Iter<'a, Bytes>;

    fn into_iter(self) -> Self::IntoIter {
        self.frames.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_takes_apart() {
        let mut m = Message::from("body");
        m.push_front(Bytes::from_static(b"id"));
        m.push_back(Bytes::from_static(b"tail"));
        m.push_back(Bytes::from_static(b"more"));
        assert_eq!(m.len(), 4);
        assert_eq!(m.byte_len(), 2 + 4 + 4 + 4);
        assert_eq!(m.pop_front().unwrap(), "id");
        assert_eq!(&m[0], "body");
        assert_eq!(m.into_vec().len(), 3);
        assert_eq!(Message::new().pop_front(), None);
    }
}
