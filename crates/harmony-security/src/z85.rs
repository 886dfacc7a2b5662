//! Z85 (rfc/32): binary <-> printable text, 4 bytes to 5 characters, big-endian, strict.
//!
//! Only lengths the spec allows are accepted: binary in multiples of 4, text in multiples of 5.
//! A 32-byte CURVE key is 40 characters.

use zeroize::Zeroizing;

/// The 85 digits, value 0 first.
const ALPHABET: &[u8; 85] =
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

/// Marks a byte that is not a Z85 digit in [`DECODE`].
const NOT_A_DIGIT: u8 = 0xFF;

/// Digit values by ASCII code.
const DECODE: [u8; 256] = {
    let mut table = [NOT_A_DIGIT; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Why a Z85 encode or decode failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Z85Error {
    /// Binary input must be a multiple of 4 bytes, text a multiple of 5 characters.
    #[error("Z85 length {0} is not a multiple of {1}")]
    Length(usize, usize),
    /// A character outside the Z85 alphabet.
    #[error("invalid Z85 character at offset {0}")]
    Character(usize),
    /// Five digits whose value does not fit in 32 bits.
    #[error("Z85 group at offset {0} overflows 32 bits")]
    Overflow(usize),
}

/// Encodes `data` (a multiple of 4 bytes) as Z85 text.
pub fn encode(data: &[u8]) -> Result<String, Z85Error> {
    if data.len() % 4 != 0 {
        return Err(Z85Error::Length(data.len(), 4));
    }
    let mut out = String::with_capacity(data.len() / 4 * 5);
    for chunk in data.chunks_exact(4) {
        let mut value = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        let mut digits = [0u8; 5];
        for digit in digits.iter_mut().rev() {
            *digit = ALPHABET[(value % 85) as usize];
            value /= 85;
        }
        out.extend(digits.iter().map(|&d| char::from(d)));
    }
    Ok(out)
}

/// Decodes Z85 text (a multiple of 5 characters) into bytes.
pub fn decode(text: &str) -> Result<Vec<u8>, Z85Error> {
    let text = text.as_bytes();
    if text.len() % 5 != 0 {
        return Err(Z85Error::Length(text.len(), 5));
    }
    let mut out = Vec::with_capacity(text.len() / 5 * 4);
    for (group, chunk) in text.chunks_exact(5).enumerate() {
        let mut value: u64 = 0;
        for (i, &c) in chunk.iter().enumerate() {
            let digit = DECODE[c as usize];
            if digit == NOT_A_DIGIT {
                return Err(Z85Error::Character(group * 5 + i));
            }
            value = value * 85 + u64::from(digit);
        }
        let value = u32::try_from(value).map_err(|_| Z85Error::Overflow(group * 5))?;
        out.extend_from_slice(&value.to_be_bytes());
    }
    Ok(out)
}

/// Decodes a 40-character Z85 key into 32 bytes.
pub fn decode_key(text: &str) -> Result<[u8; 32], Z85Error> {
    if text.len() != 40 {
        return Err(Z85Error::Length(text.len(), 40));
    }
    let bytes = Zeroizing::new(decode(text)?);
    let mut key = [0u8; 32];
    key.copy_from_slice(&bytes);
    Ok(key)
}

/// Encodes a 32-byte key as 40 Z85 characters.
pub fn encode_key(key: &[u8; 32]) -> String {
    // 32 is a multiple of 4, so this cannot fail.
    encode(key).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The rfc/32 test vector.
    #[test]
    fn spec_test_vector() {
        let bin = [0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B];
        assert_eq!(encode(&bin).unwrap(), "HelloWorld");
        assert_eq!(decode("HelloWorld").unwrap(), bin);
    }

    /// The key pair from the libzmq / rfc/26 examples round-trips as 40 characters.
    #[test]
    fn keys_are_forty_characters() {
        let text = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
        let key = decode_key(text).unwrap();
        assert_eq!(encode_key(&key), text);
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(encode(&[1, 2, 3]), Err(Z85Error::Length(3, 4)));
        assert_eq!(decode("Hell"), Err(Z85Error::Length(4, 5)));
        assert_eq!(decode("Hello World"), Err(Z85Error::Length(11, 5)));
        assert_eq!(decode("Hell\"World"), Err(Z85Error::Character(4)));
        assert_eq!(decode("Hello~orld"), Err(Z85Error::Character(5)));
        // "#####" = 85^5 - 1 > u32::MAX.
        assert_eq!(decode("#####"), Err(Z85Error::Overflow(0)));
        // The largest group is exactly u32::MAX.
        assert_eq!(encode(&[0xFF; 4]).unwrap(), "%nSc0");
        assert_eq!(decode("%nSc0").unwrap(), [0xFF; 4]);
        assert_eq!(decode("%nSc1"), Err(Z85Error::Overflow(0)));
        assert!(decode_key("HelloWorld").is_err());
        assert_eq!(decode("").unwrap(), Vec::<u8>::new());
    }

    proptest! {
        #[test]
        fn round_trip(words in proptest::collection::vec(any::<[u8; 4]>(), 0..32)) {
            let data: Vec<u8> = words.concat();
            let text = encode(&data).unwrap();
            prop_assert_eq!(text.len(), data.len() / 4 * 5);
            prop_assert_eq!(decode(&text).unwrap(), data);
        }

        #[test]
        fn decode_never_panics(text in "\\PC{0,60}") {
            let _ = decode(&text);
        }
    }
}
