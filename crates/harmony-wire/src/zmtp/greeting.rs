//! The 64-byte ZMTP greeting: signature, version, mechanism, as-server, filler.

use crate::error::{Result, WireError};

/// Length of the full greeting.
pub const GREETING_LEN: usize = 64;
/// Length of the signature part (`FF` + 8 padding bytes + `7F`), enough to tell ZMTP 3 apart.
pub const SIGNATURE_LEN: usize = 10;

/// A security mechanism name as carried in the greeting (20 bytes, NUL padded).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mechanism {
    /// No security (rfc/23).
    Null,
    /// Clear-text user name and password (rfc/24).
    Plain,
    /// CurveZMQ (rfc/25, rfc/26).
    Curve,
    /// Any other valid name, e.g. `GSSAPI`.
    Other(String),
}

impl Mechanism {
    /// The name as it appears in the greeting.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Null => "NULL",
            Self::Plain => "PLAIN",
            Self::Curve => "CURVE",
            Self::Other(name) => name,
        }
    }

    fn from_field(field: &[u8]) -> Result<Self> {
        let len = field.iter().position(|&b| b == 0).unwrap_or(field.len());
        let (name, pad) = field.split_at(len);
        let valid = |b: &u8| b.is_ascii_uppercase() || b.is_ascii_digit() || b"-_.+".contains(b);
        if name.is_empty() || !name.iter().all(valid) || pad.iter().any(|&b| b != 0) {
            return Err(WireError::Invalid("mechanism name"));
        }
        Ok(match name {
            b"NULL" => Self::Null,
            b"PLAIN" => Self::Plain,
            b"CURVE" => Self::Curve,
            // Validated as ASCII above.
            other => Self::Other(String::from_utf8_lossy(other).into_owned()),
        })
    }
}

/// A decoded greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// Major version, 3 for every peer this codec accepts.
    pub major: u8,
    /// Minor version: 0 (ZMTP 3.0) or 1 (ZMTP 3.1); higher minors are treated as 3.1.
    pub minor: u8,
    /// The security mechanism the sender wants.
    pub mechanism: Mechanism,
    /// Whether the sender acts as the mechanism's server.
    pub as_server: bool,
}

impl Greeting {
    /// The greeting Harmony sends: ZMTP 3.1.
    pub fn new(mechanism: Mechanism, as_server: bool) -> Self {
        Self {
            major: 3,
            minor: 1,
            mechanism,
            as_server,
        }
    }

    /// Whether the peer speaks 3.1 or later (SUBSCRIBE/CANCEL commands, PING/PONG defined).
    pub fn is_v31(&self) -> bool {
        self.major > 3 || self.minor >= 1
    }

    /// Checks the first [`SIGNATURE_LEN`] bytes, so a non-ZMTP-3 peer is refused early.
    pub fn check_signature(signature: &[u8]) -> Result<()> {
        if signature.len() < SIGNATURE_LEN {
            return Err(WireError::Truncated("greeting signature"));
        }
        // Padding bytes 1..9 are not significant (libzmq puts an identity length there).
        if signature[0] != 0xFF || signature[9] & 0x01 == 0 {
            return Err(WireError::BadSignature("greeting"));
        }
        Ok(())
    }

    /// Decodes a full 64-byte greeting; ZMTP 1.0 and 2.0 peers are refused.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < GREETING_LEN {
            return Err(WireError::Truncated("greeting"));
        }
        if bytes.len() > GREETING_LEN {
            return Err(WireError::Trailing(bytes.len() - GREETING_LEN));
        }
        Self::check_signature(bytes)?;
        let (major, minor) = (bytes[10], bytes[11]);
        if major < 3 {
            return Err(WireError::BadVersion {
                what: "ZMTP",
                version: u16::from_be_bytes([major, minor]),
            });
        }
        let mechanism = Mechanism::from_field(&bytes[12..32])?;
        let as_server = match bytes[32] {
            0 => false,
            1 => true,
            _ => return Err(WireError::Invalid("as-server flag")),
        };
        Ok(Self {
            major,
            minor,
            mechanism,
            as_server,
        })
    }

    /// Encodes the greeting into its 64 bytes. Fails only for a mechanism name over 20 bytes.
    pub fn encode(&self) -> Result<[u8; GREETING_LEN]> {
        let mut out = [0u8; GREETING_LEN];
        out[0] = 0xFF;
        out[9] = 0x7F;
        out[10] = self.major;
        out[11] = self.minor;
        let name = self.mechanism.as_str().as_bytes();
        if name.is_empty() || name.len() > 20 {
            return Err(WireError::Unencodable("mechanism name"));
        }
        out[12..12 + name.len()].copy_from_slice(name);
        out[32] = u8::from(self.as_server);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_spec_layout() {
        let g = Greeting::new(Mechanism::Null, false).encode().unwrap();
        let mut expected = [0u8; 64];
        expected[0] = 0xFF;
        expected[9] = 0x7F;
        expected[10] = 3;
        expected[11] = 1;
        expected[12..16].copy_from_slice(b"NULL");
        assert_eq!(g, expected);
        assert_eq!(
            Greeting::decode(&g).unwrap(),
            Greeting::new(Mechanism::Null, false)
        );
    }

    #[test]
    fn accepts_30_and_31_and_libzmq_padding() {
        for minor in [0, 1] {
            let mut g = Greeting::new(Mechanism::Curve, true).encode().unwrap();
            g[11] = minor;
            g[1..9].copy_from_slice(&1u64.to_be_bytes()); // libzmq: identity size + 1
            let d = Greeting::decode(&g).unwrap();
            assert_eq!(
                (d.minor, &d.mechanism, d.as_server),
                (minor, &Mechanism::Curve, true)
            );
            assert_eq!(d.is_v31(), minor == 1);
        }
    }

    #[test]
    fn refuses_old_versions_bad_signatures_and_names() {
        let good = Greeting::new(Mechanism::Plain, false).encode().unwrap();
        for major in [1u8, 2] {
            let mut g = good;
            g[10] = major;
            assert!(matches!(
                Greeting::decode(&g),
                Err(WireError::BadVersion { .. })
            ));
        }
        let mut g = good;
        g[0] = 0x01;
        assert!(matches!(
            Greeting::decode(&g),
            Err(WireError::BadSignature(_))
        ));
        let mut g = good;
        g[9] = 0x7E;
        assert!(Greeting::check_signature(&g).is_err());
        let mut g = good;
        g[12..17].copy_from_slice(b"plain");
        assert!(matches!(Greeting::decode(&g), Err(WireError::Invalid(_))));
        let mut g = good;
        g[20] = b'X'; // garbage after the NUL padding started
        assert!(Greeting::decode(&g).is_err());
        let mut g = good;
        g[32] = 7;
        assert!(Greeting::decode(&g).is_err());
        assert!(matches!(
            Greeting::decode(&good[..63]),
            Err(WireError::Truncated(_))
        ));
    }
}
