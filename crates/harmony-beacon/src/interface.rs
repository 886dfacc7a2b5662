//! Choosing the network interface beacons go out on, the way Zyre (czmq `ziflist`) does.
//!
//! The choice is a pure function ([`choose`]) over a list of interface addresses, so the rules are
//! unit-tested on made-up lists; [`select_interface`] feeds it the machine's real list
//! (`getifaddrs`). Selecting never sends anything.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use nix::ifaddrs::getifaddrs;
use nix::net::if_::{if_nametoindex, InterfaceFlags};
use nix::sys::socket::SockaddrStorage;

use crate::error::{BeaconError, Result};

/// The IPv4 broadcast used in loopback mode (one-machine use).
pub const LOOPBACK_BROADCAST: Ipv4Addr = Ipv4Addr::new(127, 255, 255, 255);

/// How to choose the interface for beacons.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum InterfaceSelect {
    /// The first interface that is up, not loopback, not point-to-point and broadcast-capable
    /// (multicast-capable for IPv6), in the kernel's order: Zyre's default.
    #[default]
    Auto,
    /// The loopback interface: address 127.0.0.1, broadcast 127.255.255.255. Only nodes on this
    /// machine hear each other. IPv4 only: Linux does not loop IPv6 multicast over `lo`.
    Loopback,
    /// The interface with this name, e.g. `eth0`.
    Name(String),
    /// The interface that holds this address.
    Addr(IpAddr),
}

impl FromStr for InterfaceSelect {
    type Err = std::convert::Infallible;

    /// `""` or `auto` → [`Auto`](Self::Auto); `loopback` → [`Loopback`](Self::Loopback); an IP
    /// address → [`Addr`](Self::Addr); anything else is an interface name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "" | "auto" => Self::Auto,
            "loopback" => Self::Loopback,
            _ => match s.parse::<IpAddr>() {
                Ok(ip) => Self::Addr(ip),
                Err(_) => Self::Name(s.to_owned()),
            },
        })
    }
}

impl fmt::Display for InterfaceSelect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Loopback => f.write_str("loopback"),
            Self::Name(name) => f.write_str(name),
            Self::Addr(ip) => write!(f, "{ip}"),
        }
    }
}

/// One address of one network interface, as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddr {
    /// Interface name, e.g. `eth0`.
    pub name: String,
    /// Interface index (0 if unknown); IPv6 multicast needs it.
    pub index: u32,
    /// The interface is administratively up.
    pub up: bool,
    /// It is a loopback interface.
    pub loopback: bool,
    /// It supports broadcast.
    pub broadcast_capable: bool,
    /// It supports multicast.
    pub multicast_capable: bool,
    /// It is a point-to-point link (no broadcast domain).
    pub point_to_point: bool,
    /// It is a slave of a bonding interface.
    pub slave: bool,
    /// The address.
    pub address: IpAddr,
    /// The netmask, if the kernel reports one.
    pub netmask: Option<IpAddr>,
    /// The IPv4 broadcast address, if the kernel reports one.
    pub broadcast: Option<Ipv4Addr>,
}

impl InterfaceAddr {
    /// czmq's `ziflist` rule: up, not loopback, not point-to-point, not a bonding slave, and
    /// broadcast-capable (IPv4) or multicast-capable (IPv6).
    fn auto_eligible(&self) -> bool {
        let capable = match self.address {
            IpAddr::V4(_) => self.broadcast_capable,
            IpAddr::V6(_) => self.multicast_capable,
        };
        self.up && !self.loopback && !self.point_to_point && !self.slave && capable
    }

    /// The directed broadcast: the kernel's if it is one of the subnet's, else computed from the
    /// netmask. (When an address is added without `brd`, glibc reports the address itself.)
    fn directed_broadcast(&self) -> Option<Ipv4Addr> {
        let IpAddr::V4(addr) = self.address else {
            return None;
        };
        let mask = match self.netmask {
            Some(IpAddr::V4(mask)) => Some(u32::from(mask)),
            _ => None,
        };
        let in_subnet = |b: Ipv4Addr| match mask {
            Some(m) => u32::from(b) & m == u32::from(addr) & m,
            None => true,
        };
        if let Some(b) = self
            .broadcast
            .filter(|b| !b.is_unspecified() && *b != addr && in_subnet(*b))
        {
            return Some(b);
        }
        mask.map(|m| Ipv4Addr::from(u32::from(addr) | !m))
    }
}

/// The interface a beacon uses, and where it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedInterface {
    /// Interface name, e.g. `eth0` or `lo`.
    pub name: String,
    /// Interface index (0 if unknown).
    pub index: u32,
    /// The interface's address: the host part of the node's TCP endpoint.
    pub address: IpAddr,
    /// Where beacons go: the directed broadcast (IPv4) or the multicast group (IPv6).
    pub broadcast: IpAddr,
    /// Whether this is the loopback interface (only this machine hears the beacons).
    pub loopback: bool,
}

impl SelectedInterface {
    /// Whether beacons use IPv6 multicast.
    pub fn is_ipv6(&self) -> bool {
        self.broadcast.is_ipv6()
    }

    /// The ZMTP endpoint a node on this interface advertises: `tcp://<address>:<port>`
    /// (`tcp://[addr]:port` for IPv6, with `%<name>` for a link-local address).
    pub fn tcp_endpoint(&self, port: u16) -> String {
        match self.address {
            IpAddr::V4(a) => format!("tcp://{a}:{port}"),
            IpAddr::V6(a) if is_link_local(&a) => format!("tcp://[{a}%{}]:{port}", self.name),
            IpAddr::V6(a) => format!("tcp://[{a}]:{port}"),
        }
    }
}

impl fmt::Display for SelectedInterface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (address {}, broadcast {})",
            self.name, self.address, self.broadcast
        )
    }
}

fn is_link_local(a: &Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

fn ip_of(s: &SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
}

/// Lists the machine's IPv4 and IPv6 interface addresses in the kernel's order.
pub fn list_interfaces() -> Result<Vec<InterfaceAddr>> {
    let addrs =
        getifaddrs().map_err(|e| BeaconError::io("listing network interfaces")(e.into()))?;
    let mut out = Vec::new();
    for ifa in addrs {
        let Some(address) = ifa.address.as_ref().and_then(ip_of) else {
            continue;
        };
        let flags = ifa.flags;
        let index = if_nametoindex(ifa.interface_name.as_str()).unwrap_or(0);
        out.push(InterfaceAddr {
            index,
            up: flags.contains(InterfaceFlags::IFF_UP),
            loopback: flags.contains(InterfaceFlags::IFF_LOOPBACK),
            broadcast_capable: flags.contains(InterfaceFlags::IFF_BROADCAST),
            multicast_capable: flags.contains(InterfaceFlags::IFF_MULTICAST),
            point_to_point: flags.contains(InterfaceFlags::IFF_POINTOPOINT),
            slave: flags.contains(InterfaceFlags::IFF_SLAVE),
            address,
            netmask: ifa.netmask.as_ref().and_then(ip_of),
            broadcast: ifa
                .broadcast
                .as_ref()
                .and_then(ip_of)
                .and_then(|ip| match ip {
                    IpAddr::V4(b) => Some(b),
                    IpAddr::V6(_) => None,
                }),
            name: ifa.interface_name,
        });
    }
    Ok(out)
}

/// Selects the IPv4 interface for directed-broadcast beacons from the machine's interfaces.
pub fn select_interface(select: &InterfaceSelect) -> Result<SelectedInterface> {
    choose(&list_interfaces()?, select, None)
}

/// Selects the IPv6 interface for beacons multicast to `group`.
pub fn select_interface_v6(select: &InterfaceSelect, group: Ipv6Addr) -> Result<SelectedInterface> {
    choose(&list_interfaces()?, select, Some(group))
}

/// The selection rules over a given list: IPv4 broadcast when `ipv6_group` is `None`, else IPv6
/// multicast to that group.
pub fn choose(
    list: &[InterfaceAddr],
    select: &InterfaceSelect,
    ipv6_group: Option<Ipv6Addr>,
) -> Result<SelectedInterface> {
    let v6 = ipv6_group.is_some();
    let family = |a: &&InterfaceAddr| a.address.is_ipv6() == v6;
    let what = if v6 {
        "multicast-capable IPv6"
    } else {
        "broadcast-capable IPv4"
    };
    let entry = match select {
        InterfaceSelect::Auto => {
            let first = list
                .iter()
                .filter(family)
                .find(|a| a.auto_eligible())
                .ok_or(BeaconError::NoInterface(what))?;
            best_of(list, &first.name, v6).unwrap_or(first)
        }
        InterfaceSelect::Loopback => {
            let want = IpAddr::V4(Ipv4Addr::LOCALHOST);
            let name = list
                .iter()
                .find(|a| a.address == want)
                .map_or("lo", |a| a.name.as_str());
            if v6 {
                // Linux does not deliver IPv6 multicast over `lo` (checked in a namespace, even
                // with `multicast on` and an ff00::/8 route), so say so instead of going silent.
                return Err(BeaconError::InterfaceUnusable {
                    name: name.to_owned(),
                    reason: "IPv6 multicast does not work on loopback; use IPv4 loopback mode",
                });
            }
            let index = list.iter().find(|a| a.name == name).map_or(0, |a| a.index);
            return Ok(SelectedInterface {
                name: name.to_owned(),
                index,
                address: want,
                broadcast: LOOPBACK_BROADCAST.into(),
                loopback: true,
            });
        }
        InterfaceSelect::Name(name) => {
            if !list.iter().any(|a| &a.name == name) {
                return Err(BeaconError::InterfaceNotFound(name.clone()));
            }
            best_of(list, name, v6).ok_or_else(|| BeaconError::InterfaceUnusable {
                name: name.clone(),
                reason: if v6 {
                    "it has no IPv6 address"
                } else {
                    "it has no IPv4 address"
                },
            })?
        }
        InterfaceSelect::Addr(ip) => {
            let entry = list
                .iter()
                .find(|a| a.address == *ip)
                .ok_or_else(|| BeaconError::InterfaceNotFound(ip.to_string()))?;
            if ip.is_ipv6() != v6 {
                return Err(BeaconError::InterfaceUnusable {
                    name: entry.name.clone(),
                    reason: if v6 {
                        "an IPv4 address cannot carry IPv6 multicast beacons"
                    } else {
                        "an IPv6 address needs the IPv6 multicast option"
                    },
                });
            }
            entry
        }
    };
    finish(entry, ipv6_group)
}

/// The preferred address of interface `name` in the family: for IPv6 a routable one before a
/// link-local one; for IPv4 the first.
fn best_of<'a>(list: &'a [InterfaceAddr], name: &str, v6: bool) -> Option<&'a InterfaceAddr> {
    let mut of_name = list
        .iter()
        .filter(|a| a.name == name && a.address.is_ipv6() == v6);
    if !v6 {
        return of_name.next();
    }
    let all: Vec<_> = of_name.collect();
    all.iter()
        .find(|a| matches!(a.address, IpAddr::V6(x) if !is_link_local(&x)))
        .or_else(|| all.first())
        .copied()
}

/// Checks an explicitly or automatically chosen address and works out where beacons go.
fn finish(entry: &InterfaceAddr, ipv6_group: Option<Ipv6Addr>) -> Result<SelectedInterface> {
    let unusable = |reason| BeaconError::InterfaceUnusable {
        name: entry.name.clone(),
        reason,
    };
    if !entry.up {
        return Err(unusable("it is down"));
    }
    let broadcast = match ipv6_group {
        Some(group) => {
            if !entry.loopback && !entry.multicast_capable {
                return Err(unusable("it is not multicast-capable"));
            }
            IpAddr::V6(group)
        }
        None if entry.loopback => {
            IpAddr::V4(entry.directed_broadcast().unwrap_or(LOOPBACK_BROADCAST))
        }
        None => {
            if entry.point_to_point || !entry.broadcast_capable {
                return Err(unusable("it is not broadcast-capable"));
            }
            IpAddr::V4(
                entry
                    .directed_broadcast()
                    .ok_or_else(|| unusable("it has no broadcast address or netmask"))?,
            )
        }
    };
    Ok(SelectedInterface {
        name: entry.name.clone(),
        index: entry.index,
        address: entry.address,
        broadcast,
        loopback: entry.loopback,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(name: &str, index: u32, addr: [u8; 4], prefix: u32, flags: &str) -> InterfaceAddr {
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        let address = Ipv4Addr::from(addr);
        InterfaceAddr {
            name: name.into(),
            index,
            up: flags.contains('U'),
            loopback: flags.contains('L'),
            broadcast_capable: flags.contains('B'),
            multicast_capable: flags.contains('M'),
            point_to_point: flags.contains('P'),
            slave: flags.contains('S'),
            address: address.into(),
            netmask: Some(Ipv4Addr::from(mask).into()),
            broadcast: flags
                .contains('B')
                .then(|| Ipv4Addr::from(u32::from(address) | !mask)),
        }
    }

    fn v6(name: &str, index: u32, addr: &str, flags: &str) -> InterfaceAddr {
        InterfaceAddr {
            address: addr.parse().unwrap(),
            netmask: None,
            broadcast: None,
            ..v4(name, index, [0, 0, 0, 0], 0, flags)
        }
    }

    fn machine() -> Vec<InterfaceAddr> {
        vec![
            v4("lo", 1, [127, 0, 0, 1], 8, "UL"),
            v4("down0", 2, [10, 1, 0, 1], 24, "BM"),
            v4("tun0", 3, [10, 8, 0, 2], 32, "UPM"),
            v4("bond0s", 4, [10, 3, 0, 1], 24, "UBMS"),
            v4("eth0", 5, [192, 168, 1, 20], 24, "UBM"),
            v4("eth1", 6, [172, 16, 0, 9], 16, "UBM"),
            v6("lo", 1, "::1", "UL"),
            v6("eth0", 5, "fe80::1", "UBM"),
            v6("eth0", 5, "fd00::20", "UBM"),
            v6("eth1", 6, "fe80::2", "UBM"),
        ]
    }

    #[test]
    fn auto_takes_the_first_up_broadcast_non_loopback_interface() {
        let s = choose(&machine(), &InterfaceSelect::Auto, None).unwrap();
        assert_eq!(s.name, "eth0");
        assert_eq!(s.address, IpAddr::from([192, 168, 1, 20]));
        assert_eq!(s.broadcast, IpAddr::from([192, 168, 1, 255]));
        assert!(!s.loopback);
        assert_eq!(s.tcp_endpoint(49152), "tcp://192.168.1.20:49152");
    }

    #[test]
    fn a_broadcast_equal_to_the_address_is_recomputed() {
        // What glibc reports for `ip addr add 10.77.0.1/24` (no `brd`).
        let mut veth = v4("veth0", 9, [10, 77, 0, 1], 24, "UBM");
        veth.broadcast = Some(Ipv4Addr::new(10, 77, 0, 1));
        let s = choose(&[veth.clone()], &InterfaceSelect::Auto, None).unwrap();
        assert_eq!(s.broadcast, IpAddr::from([10, 77, 0, 255]));
        veth.broadcast = Some(Ipv4Addr::UNSPECIFIED);
        let s = choose(&[veth.clone()], &InterfaceSelect::Auto, None).unwrap();
        assert_eq!(s.broadcast, IpAddr::from([10, 77, 0, 255]));
        // A broadcast the administrator set inside the subnet is kept.
        veth.broadcast = Some(Ipv4Addr::new(10, 77, 0, 0));
        let s = choose(&[veth], &InterfaceSelect::Auto, None).unwrap();
        assert_eq!(s.broadcast, IpAddr::from([10, 77, 0, 0]));
    }

    #[test]
    fn auto_with_nothing_suitable_is_an_error() {
        let list: Vec<_> = machine()
            .into_iter()
            .filter(|a| !a.name.starts_with("eth"))
            .collect();
        assert!(matches!(
            choose(&list, &InterfaceSelect::Auto, None),
            Err(BeaconError::NoInterface(_))
        ));
    }

    #[test]
    fn by_name_and_by_address() {
        let list = machine();
        let by_name = choose(&list, &InterfaceSelect::Name("eth1".into()), None).unwrap();
        assert_eq!(by_name.broadcast, IpAddr::from([172, 16, 255, 255]));
        let by_addr = choose(&list, &"172.16.0.9".parse().unwrap(), None).unwrap();
        assert_eq!(by_addr, by_name);
        assert!(matches!(
            choose(&list, &"nope0".parse().unwrap(), None),
            Err(BeaconError::InterfaceNotFound(n)) if n == "nope0"
        ));
        assert!(matches!(
            choose(&list, &"10.9.9.9".parse().unwrap(), None),
            Err(BeaconError::InterfaceNotFound(_))
        ));
        assert!(matches!(
            choose(&list, &"down0".parse().unwrap(), None),
            Err(BeaconError::InterfaceUnusable {
                reason: "it is down",
                ..
            })
        ));
        assert!(matches!(
            choose(&list, &"tun0".parse().unwrap(), None),
            Err(BeaconError::InterfaceUnusable { .. })
        ));
    }

    #[test]
    fn loopback_mode_and_lo_by_name() {
        let list = machine();
        let s = choose(&list, &InterfaceSelect::Loopback, None).unwrap();
        assert_eq!(s.name, "lo");
        assert_eq!(s.address, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(s.broadcast, IpAddr::V4(LOOPBACK_BROADCAST));
        assert!(s.loopback);
        assert_eq!(choose(&list, &"lo".parse().unwrap(), None).unwrap(), s);
        assert_eq!(
            choose(&list, &"127.0.0.1".parse().unwrap(), None).unwrap(),
            s
        );
    }

    #[test]
    fn ipv6_prefers_a_routable_address_and_uses_the_group() {
        let group: Ipv6Addr = "ff02::1".parse().unwrap();
        let list = machine();
        let s = choose(&list, &InterfaceSelect::Auto, Some(group)).unwrap();
        assert_eq!((s.name.as_str(), s.index), ("eth0", 5));
        assert_eq!(s.address, "fd00::20".parse::<IpAddr>().unwrap());
        assert_eq!(s.broadcast, IpAddr::V6(group));
        assert_eq!(s.tcp_endpoint(7), "tcp://[fd00::20]:7");
        let s = choose(&list, &"eth1".parse().unwrap(), Some(group)).unwrap();
        assert_eq!(s.tcp_endpoint(7), "tcp://[fe80::2%eth1]:7");
        assert!(matches!(
            choose(&list, &InterfaceSelect::Loopback, Some(group)),
            Err(BeaconError::InterfaceUnusable { .. })
        ));
        assert!(matches!(
            choose(&list, &"192.168.1.20".parse().unwrap(), Some(group)),
            Err(BeaconError::InterfaceUnusable { .. })
        ));
    }

    #[test]
    fn parses_selection_strings() {
        assert_eq!("".parse(), Ok(InterfaceSelect::Auto));
        assert_eq!("auto".parse(), Ok(InterfaceSelect::Auto));
        assert_eq!("loopback".parse(), Ok(InterfaceSelect::Loopback));
        assert_eq!("eth0".parse(), Ok(InterfaceSelect::Name("eth0".into())));
        assert_eq!(
            "::1".parse(),
            Ok(InterfaceSelect::Addr("::1".parse().unwrap()))
        );
        assert_eq!(InterfaceSelect::Name("eth0".into()).to_string(), "eth0");
    }

    #[test]
    fn the_real_list_has_loopback_and_missing_names_fail() {
        // Selection only: nothing is sent.
        let s = select_interface(&InterfaceSelect::Loopback).unwrap();
        assert_eq!(s.address, IpAddr::from([127, 0, 0, 1]));
        assert!(s.index > 0);
        assert!(matches!(
            select_interface(&InterfaceSelect::Name("harmony-none0".into())),
            Err(BeaconError::InterfaceNotFound(_))
        ));
    }
}
