//! `tcp://host:port` endpoints: parsing, bind patterns (`*`, port 0, `*[first-last]`) and resolution.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use crate::error::ZmtpError;

/// A concrete TCP endpoint, e.g. the address a socket actually bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    addr: SocketAddr,
}

impl Endpoint {
    /// The endpoint of a socket address.
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr }
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SocketAddr's Display already brackets IPv6 hosts.
        write!(f, "tcp://{}", self.addr)
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Self {
        Self { addr }
    }
}

impl FromStr for Endpoint {
    type Err = ZmtpError;

    /// Parses `tcp://ip:port` with a literal address (no name resolution).
    fn from_str(s: &str) -> Result<Self, ZmtpError> {
        let (host, port) = split(s)?;
        let ip = host
            .parse::<IpAddr>()
            .map_err(|_| invalid(s, "host is not an IP address"))?;
        let port = port
            .parse::<u16>()
            .map_err(|_| invalid(s, "port is not a number"))?;
        Ok(Self::new(SocketAddr::new(ip, port)))
    }
}

fn invalid(endpoint: &str, reason: &'static str) -> ZmtpError {
    ZmtpError::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        reason,
    }
}

/// Splits `tcp://host:port` into host (without IPv6 brackets) and port text.
fn split(s: &str) -> Result<(&str, &str), ZmtpError> {
    let rest = s
        .strip_prefix("tcp://")
        .ok_or_else(|| invalid(s, "only tcp:// endpoints are supported"))?;
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| invalid(s, "unclosed '['"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| invalid(s, "missing port"))?;
        (host, port)
    } else {
        rest.rsplit_once(':')
            .ok_or_else(|| invalid(s, "missing port"))?
    };
    if host.is_empty() {
        return Err(invalid(s, "missing host"));
    }
    if port.is_empty() {
        return Err(invalid(s, "missing port"));
    }
    Ok((host, port))
}

/// Where to bind: a host and the ports to try in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BindSpec {
    /// An address or name, or `*` for every address (IPv6 and IPv4).
    pub(crate) host: String,
    /// Inclusive range; `(0, 0)` means "let the system choose".
    pub(crate) ports: (u16, u16),
}

impl BindSpec {
    pub(crate) fn parse(s: &str) -> Result<Self, ZmtpError> {
        let (host, port) = split(s)?;
        let host = host.to_owned();
        let ports = if port == "*" || port == "0" {
            (0, 0)
        } else if let Some(range) = port.strip_prefix("*[").and_then(|r| r.strip_suffix(']')) {
            // libzmq's ephemeral range syntax: *[first-last], *[first-], *[-last].
            let (first, last) = range
                .split_once('-')
                .ok_or_else(|| invalid(s, "port range needs '-'"))?;
            let parse = |p: &str, default: u16| -> Result<u16, ZmtpError> {
                if p.is_empty() {
                    Ok(default)
                } else {
                    p.parse().map_err(|_| invalid(s, "bad port in range"))
                }
            };
            let (first, last) = (parse(first, 49152)?, parse(last, 65535)?);
            if first == 0 || first > last {
                return Err(invalid(s, "empty port range"));
            }
            (first, last)
        } else {
            let p = port
                .parse::<u16>()
                .map_err(|_| invalid(s, "port is not a number"))?;
            (p, p)
        };
        Ok(Self { host, ports })
    }
}

/// Where to connect: host name or address, and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnectSpec {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) text: String,
}

impl ConnectSpec {
    pub(crate) fn parse(s: &str) -> Result<Self, ZmtpError> {
        let (host, port) = split(s)?;
        if host == "*" {
            return Err(invalid(s, "cannot connect to '*'"));
        }
        let port = port
            .parse::<u16>()
            .map_err(|_| invalid(s, "port is not a number"))?;
        if port == 0 {
            return Err(invalid(s, "cannot connect to port 0"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            text: s.to_owned(),
        })
    }

    /// Resolves the host (again at every reconnect, so a changed name is followed).
    pub(crate) async fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        Ok(tokio::net::lookup_host((self.host.as_str(), self.port))
            .await?
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let e: Endpoint = "tcp://127.0.0.1:5555".parse().unwrap();
        assert_eq!(e.port(), 5555);
        assert_eq!(e.to_string(), "tcp://127.0.0.1:5555");
        let e: Endpoint = "tcp://[::1]:7".parse().unwrap();
        assert_eq!(e.to_string(), "tcp://[::1]:7");
        for bad in [
            "udp://1.2.3.4:5",
            "tcp://1.2.3.4",
            "tcp://:5",
            "tcp://[::1:5",
            "tcp://host:x",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn bind_patterns() {
        let b = BindSpec::parse("tcp://*:*").unwrap();
        assert_eq!((b.host.as_str(), b.ports), ("*", (0, 0)));
        assert_eq!(BindSpec::parse("tcp://127.0.0.1:0").unwrap().ports, (0, 0));
        assert_eq!(
            BindSpec::parse("tcp://[::1]:*[60000-60010]").unwrap(),
            BindSpec {
                host: "::1".into(),
                ports: (60000, 60010)
            }
        );
        assert!(BindSpec::parse("tcp://127.0.0.1:*[-100]").is_err());
        assert!(BindSpec::parse("tcp://127.0.0.1:*[60010-60000]").is_err());
        assert_eq!(
            BindSpec::parse("tcp://127.0.0.1:*[60000-]").unwrap().ports,
            (60000, 65535)
        );
    }

    #[test]
    fn connect_specs() {
        let c = ConnectSpec::parse("tcp://localhost:80").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("localhost", 80));
        assert!(ConnectSpec::parse("tcp://*:80").is_err());
        assert!(ConnectSpec::parse("tcp://1.2.3.4:0").is_err());
    }
}
