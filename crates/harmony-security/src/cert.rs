//! CURVE certificate files, readable and writable by czmq's zcert and pyzmq's `zmq.auth`.
//!
//! The format is ZPL (rfc/4): a `metadata` section of `name = "value"` lines and a `curve`
//! section with `public-key = "<40 Z85 characters>"`, plus `secret-key` in the secret file.
//! [`Certificate::save`] writes `PATH` (public) and `PATH_secret` (both keys), as zcert does;
//! pyzmq's `create_certificates(dir, name)` writes `name.key` and `name.key_secret`, the same
//! layout with `PATH = name.key`.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::curve::{KeyPair, KEY_LEN};
use crate::z85::{self, Z85Error};

/// Largest certificate file read (real ones are a few hundred bytes).
const MAX_FILE: u64 = 64 << 10;

/// Why a certificate could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The file system refused.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// The file is not a certificate.
    #[error("{}: {reason}", path.display())]
    Format {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A key is not valid Z85.
    #[error("{}: bad key: {source}", path.display())]
    Key {
        /// The file concerned.
        path: PathBuf,
        /// The decoding error.
        #[source]
        source: Z85Error,
    },
    /// A metadata name or value cannot be written as ZPL.
    #[error("metadata {0:?} cannot be written to a certificate")]
    Metadata(String),
}

/// A CURVE certificate: a public key, maybe its secret key, and metadata.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    public: [u8; KEY_LEN],
    keys: Option<KeyPair>,
    metadata: Vec<(String, String)>,
}

impl Certificate {
    /// A certificate holding a key pair.
    pub fn new(keys: KeyPair) -> Self {
        Self {
            public: *keys.public(),
            keys: Some(keys),
            metadata: Vec::new(),
        }
    }

    /// A certificate for a fresh random key pair.
    pub fn generate() -> Self {
        Self::new(KeyPair::generate())
    }

    /// A public-only certificate (someone else's key).
    pub fn from_public(public: [u8; KEY_LEN]) -> Self {
        Self {
            public,
            keys: None,
            metadata: Vec::new(),
        }
    }

    /// The public key.
    pub fn public_key(&self) -> &[u8; KEY_LEN] {
        &self.public
    }

    /// The public key in Z85.
    pub fn public_z85(&self) -> String {
        z85::encode_key(&self.public)
    }

    /// The key pair, when the secret key is known.
    pub fn key_pair(&self) -> Option<&KeyPair> {
        self.keys.as_ref()
    }

    /// The metadata, in file order.
    pub fn metadata(&self) -> &[(String, String)] {
        &self.metadata
    }

    /// A metadata value by name.
    pub fn meta(&self, name: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets a metadata value (replacing one of the same name).
    pub fn set_meta(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let (name, value) = (name.into(), value.into());
        match self.metadata.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((name, value)),
        }
    }

    /// Loads a certificate like zcert: `PATH_secret` when it exists (both keys), else `PATH`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, CertError> {
        let path = path.as_ref();
        let secret = secret_path(path);
        if secret.is_file() {
            Self::load_file(&secret)
        } else {
            Self::load_file(path)
        }
    }

    /// Loads exactly this file (public-only, or with a secret key if it has one).
    pub fn load_file(path: impl AsRef<Path>) -> Result<Self, CertError> {
        let path = path.as_ref();
        let text = read_limited(path)?;
        parse(path, &text)
    }

    /// Writes `PATH` (public key and metadata) and, when the secret key is known,
    /// `PATH_secret` (both keys; owner-only permissions on Unix).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), CertError> {
        let path = path.as_ref();
        self.save_public(path)?;
        if self.keys.is_some() {
            self.save_secret(secret_path(path))?;
        }
        Ok(())
    }

    /// Writes the public certificate to `path`.
    pub fn save_public(&self, path: impl AsRef<Path>) -> Result<(), CertError> {
        let text = self.render(false)?;
        write_file(path.as_ref(), text.as_bytes(), false)
    }

    /// Writes the secret certificate to `path` (nothing if the secret key is unknown).
    pub fn save_secret(&self, path: impl AsRef<Path>) -> Result<(), CertError> {
        if self.keys.is_none() {
            return Ok(());
        }
        let text = self.render(true)?;
        write_file(path.as_ref(), text.as_bytes(), true)
    }

    fn render(&self, secret: bool) -> Result<Zeroizing<String>, CertError> {
        let mut out = Zeroizing::new(String::new());
        if secret {
            out.push_str(
                "#   ****  Generated by Harmony  ****\n\
                 #   ZeroMQ CURVE **Secret** Certificate\n\
                 #   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n\n",
            );
        } else {
            out.push_str(
                "#   ****  Generated by Harmony  ****\n\
                 #   ZeroMQ CURVE Public Certificate\n\
                 #   Exchange securely, or use a secure mechanism to verify the contents\n\
                 #   of this file after exchange. Store public certificates in your home\n\
                 #   directory, in the .curve subdirectory.\n\n",
            );
        }
        out.push_str("metadata\n");
        for (name, value) in &self.metadata {
            if !valid_name(name) {
                return Err(CertError::Metadata(name.clone()));
            }
            let quote = if !value.contains('"') {
                '"'
            } else if !value.contains('\'') {
                '\''
            } else {
                return Err(CertError::Metadata(value.clone()));
            };
            if value.contains(['\n', '\r']) {
                return Err(CertError::Metadata(value.clone()));
            }
            out.push_str(&format!("    {name} = {quote}{value}{quote}\n"));
        }
        out.push_str("curve\n");
        out.push_str(&format!("    public-key = \"{}\"\n", self.public_z85()));
        if secret {
            if let Some(keys) = &self.keys {
                out.push_str(&format!(
                    "    secret-key = \"{}\"\n",
                    keys.secret_z85().as_str()
                ));
            }
        }
        Ok(out)
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("public", &self.public_z85())
            .field("has_secret", &self.keys.is_some())
            .field("metadata", &self.metadata)
            .finish()
    }
}

/// `PATH_secret`.
fn secret_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("_secret");
    PathBuf::from(name)
}

fn read_limited(path: &Path) -> Result<Zeroizing<String>, CertError> {
    let io_err = |source| CertError::Io {
        path: path.to_owned(),
        source,
    };
    let file = fs::File::open(path).map_err(io_err)?;
    let mut text = Zeroizing::new(String::new());
    file.take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(io_err)?;
    if text.len() as u64 > MAX_FILE {
        return Err(CertError::Format {
            path: path.to_owned(),
            reason: "file too large for a certificate".into(),
        });
    }
    Ok(text)
}

fn write_file(path: &Path, bytes: &[u8], private: bool) -> Result<(), CertError> {
    let io_err = |source| CertError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(io_err)?;
    file.write_all(bytes).map_err(io_err)?;
    file.sync_all().map_err(io_err)
}

/// ZPL names: letters, digits and `$-_@.&+/`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"$-_@.&+/".contains(&b))
}

/// A ZPL value: quoted with `"` or `'`, or bare up to a `#` comment.
fn zpl_value(raw: &str) -> Option<&str> {
    let raw = raw.trim();
    for quote in ['"', '\''] {
        if let Some(rest) = raw.strip_prefix(quote) {
            let end = rest.find(quote)?;
            let after = rest[end + 1..].trim_start();
            return (after.is_empty() || after.starts_with('#')).then(|| &rest[..end]);
        }
    }
    Some(raw.split('#').next().unwrap_or("").trim_end())
}

/// Reads the parts of a ZPL certificate that matter: `/metadata/*`, `/curve/public-key`,
/// `/curve/secret-key`. Other sections are ignored.
fn parse(path: &Path, text: &str) -> Result<Certificate, CertError> {
    let format = |reason: String| CertError::Format {
        path: path.to_owned(),
        reason,
    };
    let key_err = |source| CertError::Key {
        path: path.to_owned(),
        source,
    };
    let mut section = String::new();
    let mut public = None;
    let mut secret: Option<Zeroizing<String>> = None;
    let mut metadata = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = line.len() - content.len();
        let (name, value) = match content.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value)),
            None => (content.split('#').next().unwrap_or("").trim(), None),
        };
        if !valid_name(name) {
            return Err(format(format!(
                "line {}: invalid name {name:?}",
                number + 1
            )));
        }
        match (indent, value) {
            (0, None) => section = name.to_string(),
            (0, Some(_)) => section.clear(),
            (_, Some(raw)) => {
                let value = zpl_value(raw)
                    .ok_or_else(|| format(format!("line {}: unterminated quote", number + 1)))?;
                match (section.as_str(), name) {
                    ("curve", "public-key") => public = Some(value.to_string()),
                    ("curve", "secret-key") => secret = Some(Zeroizing::new(value.to_string())),
                    ("metadata", _) => metadata.push((name.to_string(), value.to_string())),
                    _ => {}
                }
            }
            (_, None) => {} // a nested section we do not use
        }
    }
    let public = public.ok_or_else(|| format("no curve/public-key".into()))?;
    let public = z85::decode_key(&public).map_err(key_err)?;
    let keys = match secret {
        None => None,
        Some(text) => {
            let keys = KeyPair::from_secret_z85(&text).map_err(key_err)?;
            if *keys.public() != public {
                return Err(format("secret-key does not belong to public-key".into()));
            }
            Some(keys)
        }
    };
    Ok(Certificate {
        public,
        keys,
        metadata,
    })
}

/// The public keys of every certificate file in `dir` (files that are not certificates are
/// skipped with a debug trace, as czmq's zcertstore does).
pub fn load_public_keys(dir: &Path) -> Result<Vec<[u8; KEY_LEN]>, CertError> {
    let io_err = |source| CertError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut keys = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err)? {
        let path = entry.map_err(io_err)?.path();
        if !path.is_file() {
            continue;
        }
        match Certificate::load_file(&path) {
            Ok(cert) => keys.push(cert.public),
            Err(e) => tracing::debug!(error = %e, "skipping a file that is not a certificate"),
        }
    }
    keys.sort_unstable();
    keys.dedup();
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(pub(crate) PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> Self {
            use std::sync::atomic::{AtomicU32, Ordering};
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "harmony-cert-{tag}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = TempDir::new("roundtrip");
        let mut cert = Certificate::generate();
        cert.set_meta("name", "harmony test");
        cert.set_meta("motto", r#"say "hi""#); // written with single quotes
        let path = dir.0.join("node.key");
        cert.save(&path).unwrap();

        let loaded = Certificate::load(&path).unwrap();
        assert_eq!(loaded, cert);
        let public = Certificate::load_file(&path).unwrap();
        assert_eq!(public.public_key(), cert.public_key());
        assert!(public.key_pair().is_none());
        assert_eq!(public.meta("name"), Some("harmony test"));

        let secret_text = fs::read_to_string(secret_path(&path)).unwrap();
        assert!(secret_text.contains("secret-key = \""));
        assert!(!fs::read_to_string(&path).unwrap().contains("secret-key"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(secret_path(&path))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "secret file readable by others: {mode:o}");
        }
        assert_eq!(load_public_keys(&dir.0).unwrap(), vec![*cert.public_key()]);
    }

    #[test]
    fn reads_czmq_and_pyzmq_layouts() {
        let czmq = "#   ****  Generated on 2026-01-01 by CZMQ  ****\n\
                    #   ZeroMQ CURVE **Secret** Certificate\n\n\
                    metadata\n    name = \"x\"   # who\ncurve\n\
                    \x20   public-key = \"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\"\n\
                    \x20   secret-key = \"JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6\"\n";
        let cert = parse(Path::new("czmq"), czmq).unwrap();
        assert_eq!(cert.meta("name"), Some("x"));
        assert!(cert.key_pair().is_some());
        let pyzmq = "metadata\n    owner = alice # bare value\ncurve\n\
                     \x20   public-key = \"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\"\n";
        let cert = parse(Path::new("pyzmq"), pyzmq).unwrap();
        assert_eq!(cert.meta("owner"), Some("alice"));
        assert!(cert.key_pair().is_none());
    }

    #[test]
    fn refuses_broken_files() {
        let bad = [
            "metadata\ncurve\n",
            "curve\n    public-key = \"short\"\n",
            "curve\n    public-key = \"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\n",
            "curve\n    public-key = \"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\"\n    \
             secret-key = \"D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs\"\n",
            "cur ve\n",
        ];
        for text in bad {
            assert!(parse(Path::new("bad"), text).is_err(), "{text}");
        }
        let mut cert = Certificate::generate();
        cert.set_meta("bad name", "v");
        let dir = TempDir::new("badmeta");
        assert!(matches!(
            cert.save(dir.0.join("x")),
            Err(CertError::Metadata(_))
        ));
    }
}
