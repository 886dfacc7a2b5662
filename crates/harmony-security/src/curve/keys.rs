//! CURVE key pairs: Curve25519, 32-byte keys, printed as 40 Z85 characters.

use std::fmt;

use crypto_box::aead::rand_core::RngCore;
use crypto_box::aead::OsRng;
use zeroize::Zeroizing;

use crate::error::{Result, SecurityError};
use crate::z85::{self, Z85Error};

/// Length of a Curve25519 key.
pub const KEY_LEN: usize = 32;

/// A Curve25519 key pair. The secret half is wiped from memory when the pair is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPair {
    public: [u8; KEY_LEN],
    secret: Zeroizing<[u8; KEY_LEN]>,
}

impl KeyPair {
    /// A fresh random key pair from the operating system's generator.
    ///
    /// # Panics
    ///
    /// When the operating system has no random source (see [`KeyPair::try_generate`]).
    pub fn generate() -> Self {
        match Self::try_generate() {
            Ok(keys) => keys,
            Err(e) => panic!("cannot generate a CURVE key pair: {e}"),
        }
    }

    /// A fresh random key pair, or an error when the system has no random source.
    pub fn try_generate() -> Result<Self> {
        Ok(Self::from_secret(random_bytes::<KEY_LEN>()?))
    }

    /// The key pair of a known secret key (its public half is derived).
    pub fn from_secret(secret: [u8; KEY_LEN]) -> Self {
        let secret = Zeroizing::new(secret);
        let public = crypto_box::SecretKey::from_bytes(*secret)
            .public_key()
            .to_bytes();
        Self { public, secret }
    }

    /// The key pair of a Z85 secret key (40 characters).
    pub fn from_secret_z85(secret: &str) -> std::result::Result<Self, Z85Error> {
        Ok(Self::from_secret(*Zeroizing::new(z85::decode_key(secret)?)))
    }

    /// The public key.
    pub fn public(&self) -> &[u8; KEY_LEN] {
        &self.public
    }

    /// The secret key. Handle with care: copies are not wiped automatically.
    pub fn secret(&self) -> &[u8; KEY_LEN] {
        &self.secret
    }

    /// The public key as 40 Z85 characters.
    pub fn public_z85(&self) -> String {
        z85::encode_key(&self.public)
    }

    /// The secret key as 40 Z85 characters, wiped when dropped.
    pub fn secret_z85(&self) -> Zeroizing<String> {
        Zeroizing::new(z85::encode_key(&self.secret))
    }

    /// The crypto_box secret key (its scalar is wiped on drop).
    #[cfg(any(not(feature = "libsodium"), test))]
    pub(crate) fn box_secret(&self) -> crypto_box::SecretKey {
        crypto_box::SecretKey::from_bytes(*self.secret)
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public_z85())
            .finish_non_exhaustive()
    }
}

/// Decodes a 40-character Z85 public key.
pub fn public_key_from_z85(text: &str) -> std::result::Result<[u8; KEY_LEN], Z85Error> {
    z85::decode_key(text)
}

/// `N` bytes from the operating system's random source.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|_| SecurityError::Crypto("no system randomness"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libzmq's `tests/testutil_security.cpp` server key pair: the public key follows from
    /// the secret one exactly as in libsodium.
    #[test]
    fn derives_the_libzmq_test_public_key() {
        let keys = KeyPair::from_secret_z85("JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6").unwrap();
        assert_eq!(
            keys.public_z85(),
            "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
        );
    }

    #[test]
    fn generated_pairs_differ_and_round_trip() {
        let a = KeyPair::generate();
        let b = KeyPair::generate();
        assert_ne!(a.public(), b.public());
        let again = KeyPair::from_secret_z85(&a.secret_z85()).unwrap();
        assert_eq!(again, a);
        assert_eq!(public_key_from_z85(&a.public_z85()).unwrap(), *a.public());
        assert!(!format!("{a:?}").contains(a.secret_z85().as_str()));
    }
}
