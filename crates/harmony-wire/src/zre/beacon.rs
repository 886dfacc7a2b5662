//! The UDP discovery beacon: `'Z' 'R' 'E' version uuid[16] port[2]` (+ `key[32]` in v3).

use bytes::{BufMut, BytesMut};
use uuid::Uuid;

use crate::error::{Result, WireError};

/// Size of a version 1 beacon (rfc/36).
pub const BEACON_V1_LEN: usize = 22;
/// Size of a version 3 beacon, which carries a CURVE public key (draft rfc/43, Zyre).
pub const BEACON_V3_LEN: usize = 54;

/// One ZRE discovery beacon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Beacon {
    /// The sender's node UUID.
    pub uuid: Uuid,
    /// The sender's ZMTP inbox port; 0 means the node is leaving.
    pub port: u16,
    /// The sender's CURVE public key; present exactly in version 3 beacons.
    pub public_key: Option<[u8; 32]>,
}

impl Beacon {
    /// The beacon's version byte: 1, or 3 when it carries a public key.
    pub fn version(&self) -> u8 {
        if self.public_key.is_some() {
            3
        } else {
            1
        }
    }

    /// The encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        if self.public_key.is_some() {
            BEACON_V3_LEN
        } else {
            BEACON_V1_LEN
        }
    }

    /// Decodes one datagram. Anything but a well-formed 22-byte v1 or 54-byte v3 beacon is an error.
    pub fn decode(datagram: &[u8]) -> Result<Self> {
        let (version, expected) = match datagram.len() {
            BEACON_V1_LEN => (1, BEACON_V1_LEN),
            BEACON_V3_LEN => (3, BEACON_V3_LEN),
            n if n < BEACON_V1_LEN => return Err(WireError::Truncated("beacon")),
            n => {
                return Err(WireError::TooLong {
                    what: "beacon",
                    len: n as u64,
                    limit: BEACON_V3_LEN as u64,
                })
            }
        };
        if &datagram[..3] != b"ZRE" {
            return Err(WireError::BadSignature("beacon"));
        }
        if datagram[3] != version {
            return Err(WireError::BadVersion {
                what: "beacon",
                version: u16::from(datagram[3]),
            });
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&datagram[4..20]);
        let port = u16::from_be_bytes([datagram[20], datagram[21]]);
        let public_key = (expected == BEACON_V3_LEN).then(|| {
            let mut key = [0u8; 32];
            key.copy_from_slice(&datagram[22..54]);
            key
        });
        Ok(Self {
            uuid: Uuid::from_bytes(uuid),
            port,
            public_key,
        })
    }

    /// Appends the encoded beacon to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.reserve(self.encoded_len());
        dst.put_slice(b"ZRE");
        dst.put_u8(self.version());
        dst.put_slice(self.uuid.as_bytes());
        dst.put_u16(self.port);
        if let Some(key) = &self.public_key {
            dst.put_slice(key);
        }
    }

    /// The encoded beacon as a fixed buffer (at most 54 bytes) and its length.
    pub fn to_bytes(&self) -> ([u8; BEACON_V3_LEN], usize) {
        let mut out = [0u8; BEACON_V3_LEN];
        let mut buf = BytesMut::with_capacity(BEACON_V3_LEN);
        self.encode(&mut buf);
        out[..buf.len()].copy_from_slice(&buf);
        (out, buf.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_layout_is_byte_exact() {
        let uuid = Uuid::from_bytes([0x11; 16]);
        let beacon = Beacon {
            uuid,
            port: 0xC001,
            public_key: None,
        };
        let mut buf = BytesMut::new();
        beacon.encode(&mut buf);
        let mut expected = b"ZRE\x01".to_vec();
        expected.extend_from_slice(&[0x11; 16]);
        expected.extend_from_slice(&[0xC0, 0x01]);
        assert_eq!(&buf[..], &expected[..]);
        assert_eq!(Beacon::decode(&buf).unwrap(), beacon);
    }

    #[test]
    fn v3_carries_the_key() {
        let beacon = Beacon {
            uuid: Uuid::from_bytes([7; 16]),
            port: 5,
            public_key: Some([9; 32]),
        };
        let (bytes, len) = beacon.to_bytes();
        assert_eq!(len, BEACON_V3_LEN);
        assert_eq!(bytes[3], 3);
        assert_eq!(Beacon::decode(&bytes[..len]).unwrap(), beacon);
    }

    #[test]
    fn rejects_wrong_size_signature_and_version() {
        let beacon = Beacon {
            uuid: Uuid::nil(),
            port: 1,
            public_key: None,
        };
        let (mut bytes, len) = beacon.to_bytes();
        assert!(matches!(
            Beacon::decode(&bytes[..len - 1]),
            Err(WireError::Truncated(_))
        ));
        assert!(matches!(
            Beacon::decode(&bytes[..len + 1]),
            Err(WireError::TooLong { .. })
        ));
        bytes[3] = 2;
        assert!(matches!(
            Beacon::decode(&bytes[..len]),
            Err(WireError::BadVersion { .. })
        ));
        bytes[3] = 1;
        bytes[0] = b'X';
        assert!(matches!(
            Beacon::decode(&bytes[..len]),
            Err(WireError::BadSignature(_))
        ));
        // A v3-sized datagram claiming version 1 is not a beacon either.
        let mut long = [0u8; BEACON_V3_LEN];
        long[..3].copy_from_slice(b"ZRE");
        long[3] = 1;
        assert!(Beacon::decode(&long).is_err());
    }
}
