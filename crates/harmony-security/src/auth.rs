//! Deciding who may connect: the ZAP idea (rfc/27) as an in-process, async-friendly hook.
//!
//! A server-side mechanism asks with [`Handshake::Authenticate`](crate::Handshake); the driver
//! calls an [`Authenticator`] with the peer's address and hands the [`AuthReply`] back. Status
//! codes are libzmq's: "200" allowed, "300" temporary failure (closed silently), "400" refused,
//! "500" internal error (both answered with ERROR).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::path::Path;
use std::pin::Pin;

use bytes::Bytes;

use crate::cert::{load_public_keys, CertError};
use crate::curve::KEY_LEN;
use crate::mechanism::{AuthReply, AuthRequest, Credentials};
use crate::z85;

/// What [`Authenticator::authenticate`] returns: a boxed future, so the trait stays object-safe.
pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = AuthReply> + Send + 'a>>;

/// Judges a connecting peer. Shared by all connections of a socket (`Arc<dyn Authenticator>`).
pub trait Authenticator: Send + Sync {
    /// Answers one request from a peer at address `peer`.
    fn authenticate<'a>(&'a self, peer: IpAddr, request: &'a AuthRequest) -> AuthFuture<'a>;
}

/// Any `Fn(IpAddr, &AuthRequest) -> AuthReply` is a synchronous authenticator.
impl<F> Authenticator for F
where
    F: Fn(IpAddr, &AuthRequest) -> AuthReply + Send + Sync,
{
    fn authenticate<'a>(&'a self, peer: IpAddr, request: &'a AuthRequest) -> AuthFuture<'a> {
        Box::pin(std::future::ready(self(peer, request)))
    }
}

/// Which CURVE client keys a [`StandardAuthenticator`] lets in.
#[derive(Clone, Default, PartialEq, Eq)]
enum CurvePolicy {
    /// None: CURVE clients are refused.
    #[default]
    Nobody,
    /// Any key (encryption without authentication, the "Stonehouse" pattern).
    Any,
    /// Only these keys.
    Keys(HashSet<[u8; KEY_LEN]>),
}

/// The usual rules, as czmq's zauth and pyzmq's Authenticator apply them.
///
/// * Addresses: when an allow list is set, any other address is refused; otherwise addresses
///   on the deny list are refused.
/// * NULL: let in unless the address is refused.
/// * PLAIN: the user name and password must be in the password table (empty table: refused).
/// * CURVE: the client's public key must be allowed (one by one, from a certificate directory,
///   or any key).
///
/// Refusals answer "400". The user id is the PLAIN user name, or the CURVE key in Z85.
#[derive(Clone, Default)]
pub struct StandardAuthenticator {
    allow: HashSet<IpAddr>,
    deny: HashSet<IpAddr>,
    passwords: HashMap<Bytes, Bytes>,
    curve: CurvePolicy,
}

impl StandardAuthenticator {
    /// An authenticator that lets NULL peers in and refuses PLAIN and CURVE until configured.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an address to the allow list (every address not on it is then refused).
    pub fn allow(mut self, addr: IpAddr) -> Self {
        self.allow.insert(addr.to_canonical());
        self
    }

    /// Adds an address to the deny list (ignored while an allow list is set, as in zauth).
    pub fn deny(mut self, addr: IpAddr) -> Self {
        self.deny.insert(addr.to_canonical());
        self
    }

    /// Accepts this PLAIN user name with this password.
    pub fn password(mut self, username: impl Into<Bytes>, password: impl Into<Bytes>) -> Self {
        self.passwords.insert(username.into(), password.into());
        self
    }

    /// Accepts any CURVE client key (connections are still encrypted).
    pub fn curve_allow_any(mut self) -> Self {
        self.curve = CurvePolicy::Any;
        self
    }

    /// Accepts this CURVE client public key.
    pub fn curve_allow_key(mut self, key: [u8; KEY_LEN]) -> Self {
        match &mut self.curve {
            CurvePolicy::Any => {}
            CurvePolicy::Keys(keys) => {
                keys.insert(key);
            }
            CurvePolicy::Nobody => self.curve = CurvePolicy::Keys(HashSet::from([key])),
        }
        self
    }

    /// Accepts the public key of every certificate file in `dir` (czmq zcertstore style: every
    /// readable certificate; files that are not certificates are skipped).
    pub fn curve_directory(mut self, dir: impl AsRef<Path>) -> Result<Self, CertError> {
        for key in load_public_keys(dir.as_ref())? {
            self = self.curve_allow_key(key);
        }
        Ok(self)
    }

    /// The decision, synchronously.
    pub fn check(&self, peer: IpAddr, request: &AuthRequest) -> AuthReply {
        let peer = peer.to_canonical();
        let (listed, refused) = if !self.allow.is_empty() {
            let on = self.allow.contains(&peer);
            (on, !on)
        } else if !self.deny.is_empty() {
            let on = self.deny.contains(&peer);
            (!on, on)
        } else {
            (false, false)
        };
        if refused {
            tracing::debug!(%peer, "authentication refused: address");
            return AuthReply::deny();
        }
        let reply = match &request.credentials {
            Credentials::Null => AuthReply::allow(""),
            Credentials::Plain { username, password } => match self.passwords.get(username) {
                Some(expected) if expected == password => {
                    AuthReply::allow(String::from_utf8_lossy(username))
                }
                _ => AuthReply::deny(),
            },
            Credentials::Curve { public_key } => {
                let allowed = match &self.curve {
                    CurvePolicy::Nobody => false,
                    CurvePolicy::Any => true,
                    CurvePolicy::Keys(keys) => keys.contains(public_key),
                };
                if allowed {
                    AuthReply::allow(z85::encode_key(public_key))
                } else {
                    AuthReply::deny()
                }
            }
        };
        tracing::debug!(
            %peer,
            mechanism = request.mechanism.as_str(),
            status = %reply.status,
            address_listed = listed,
            "authentication"
        );
        reply
    }
}

impl Authenticator for StandardAuthenticator {
    fn authenticate<'a>(&'a self, peer: IpAddr, request: &'a AuthRequest) -> AuthFuture<'a> {
        Box::pin(std::future::ready(self.check(peer, request)))
    }
}

impl fmt::Debug for StandardAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let curve = match &self.curve {
            CurvePolicy::Nobody => "nobody".to_string(),
            CurvePolicy::Any => "any".to_string(),
            CurvePolicy::Keys(keys) => format!("{} keys", keys.len()),
        };
        f.debug_struct("StandardAuthenticator")
            .field("allow", &self.allow)
            .field("deny", &self.deny)
            .field("plain_users", &self.passwords.len())
            .field("curve", &curve)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use harmony_wire::zmtp;
    use std::net::Ipv4Addr;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

    fn null() -> AuthRequest {
        AuthRequest {
            mechanism: zmtp::Mechanism::Null,
            credentials: Credentials::Null,
        }
    }

    fn plain(user: &'static str, pass: &'static str) -> AuthRequest {
        AuthRequest {
            mechanism: zmtp::Mechanism::Plain,
            credentials: Credentials::Plain {
                username: user.into(),
                password: pass.into(),
            },
        }
    }

    fn curve(key: [u8; 32]) -> AuthRequest {
        AuthRequest {
            mechanism: zmtp::Mechanism::Curve,
            credentials: Credentials::Curve { public_key: key },
        }
    }

    #[test]
    fn address_lists() {
        let open = StandardAuthenticator::new();
        assert!(open.check(A, &null()).is_allowed());

        let allow = StandardAuthenticator::new().allow(A).deny(A);
        assert!(
            allow.check(A, &null()).is_allowed(),
            "allow list wins over deny list"
        );
        assert_eq!(allow.check(B, &null()).status, "400");
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(allow.check(mapped, &null()).is_allowed());

        let deny = StandardAuthenticator::new().deny(B);
        assert!(deny.check(A, &null()).is_allowed());
        assert_eq!(deny.check(B, &null()).status, "400");
        // A denied address is refused whatever its credentials.
        let deny = deny.password("admin", "secret");
        assert_eq!(deny.check(B, &plain("admin", "secret")).status, "400");
    }

    #[test]
    fn plain_passwords() {
        let auth = StandardAuthenticator::new();
        assert_eq!(auth.check(A, &plain("admin", "")).status, "400");
        let auth = auth.password("admin", "secret");
        let ok = auth.check(A, &plain("admin", "secret"));
        assert!(ok.is_allowed());
        assert_eq!(ok.user_id, "admin");
        assert_eq!(auth.check(A, &plain("admin", "wrong")).status, "400");
        assert_eq!(auth.check(A, &plain("root", "secret")).status, "400");
        // An allowed address must still present the right password.
        let auth = auth.allow(A);
        assert_eq!(auth.check(A, &plain("admin", "wrong")).status, "400");
    }

    #[test]
    fn curve_keys() {
        let known = [7u8; 32];
        let auth = StandardAuthenticator::new();
        assert_eq!(auth.check(A, &curve(known)).status, "400");
        let auth = auth.curve_allow_key(known);
        let ok = auth.check(A, &curve(known));
        assert!(ok.is_allowed());
        assert_eq!(ok.user_id, z85::encode_key(&known));
        assert_eq!(auth.check(A, &curve([8; 32])).status, "400");
        let any = auth.curve_allow_any();
        assert!(any.check(A, &curve([8; 32])).is_allowed());
    }

    #[test]
    fn closures_and_trait_objects() {
        let auth: std::sync::Arc<dyn Authenticator> =
            std::sync::Arc::new(|peer: IpAddr, _: &AuthRequest| {
                if peer == A {
                    AuthReply::allow("a")
                } else {
                    AuthReply::temporary()
                }
            });
        let request = null();
        let fut = auth.authenticate(B, &request);
        let reply = poll_ready(fut);
        assert_eq!(reply.status, "300");
        let std_auth: Box<dyn Authenticator> = Box::new(StandardAuthenticator::new());
        assert!(poll_ready(std_auth.authenticate(A, &request)).is_allowed());
    }

    /// Polls a future that is ready at once.
    fn poll_ready(mut fut: AuthFuture<'_>) -> AuthReply {
        use std::task::{Context, Poll, Waker};
        let mut cx = Context::from_waker(Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(reply) => reply,
            Poll::Pending => panic!("a synchronous authenticator returned a pending future"),
        }
    }
}
