//! The two UDP sockets of a beacon, set up like czmq's zbeacon.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use crate::error::{BeaconError, Result};
use crate::interface::SelectedInterface;

/// A beacon's sockets and where it sends.
#[derive(Debug)]
pub(crate) struct Sockets {
    /// Bound to the wildcard address on the beacon port, shared with other nodes on the host.
    pub(crate) recv: UdpSocket,
    /// Bound to the interface address on an ephemeral port, so unicast to the beacon port is
    /// never stolen from a receiver.
    pub(crate) send: UdpSocket,
    /// Directed broadcast (or multicast group) and beacon port.
    pub(crate) dest: SocketAddr,
}

fn new_udp(domain: Domain) -> Result<Socket> {
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))
        .map_err(BeaconError::io("creating a UDP socket"))?;
    s.set_nonblocking(true)
        .map_err(BeaconError::io("setting a UDP socket non-blocking"))?;
    Ok(s)
}

fn scope_of(addr: &Ipv6Addr, iface: &SelectedInterface) -> u32 {
    let link_scope = addr.segments()[0] & 0xffc0 == 0xfe80 || addr.segments()[0] & 0xff0f == 0xff02;
    if link_scope {
        iface.index
    } else {
        0
    }
}

fn tokio_socket(s: Socket) -> Result<UdpSocket> {
    UdpSocket::from_std(s.into()).map_err(BeaconError::io("registering a UDP socket with tokio"))
}

/// Opens the receive and send sockets for `iface` on `port`.
pub(crate) fn open(iface: &SelectedInterface, port: u16) -> Result<Sockets> {
    let domain = if iface.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let recv = new_udp(domain)?;
    recv.set_reuse_address(true)
        .map_err(BeaconError::io("setting SO_REUSEADDR"))?;
    recv.set_reuse_port(true)
        .map_err(BeaconError::io("setting SO_REUSEPORT"))?;
    let send = new_udp(domain)?;
    let (recv_addr, send_addr, dest): (SocketAddr, SocketAddr, SocketAddr) =
        match (iface.address, iface.broadcast) {
            (IpAddr::V4(address), IpAddr::V4(broadcast)) => {
                recv.set_broadcast(true)
                    .map_err(BeaconError::io("setting SO_BROADCAST"))?;
                send.set_broadcast(true)
                    .map_err(BeaconError::io("setting SO_BROADCAST"))?;
                (
                    SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into(),
                    SocketAddrV4::new(address, 0).into(),
                    SocketAddrV4::new(broadcast, port).into(),
                )
            }
            (IpAddr::V6(address), IpAddr::V6(group)) => {
                recv.set_only_v6(true)
                    .map_err(BeaconError::io("setting IPV6_V6ONLY"))?;
                send.set_multicast_if_v6(iface.index)
                    .map_err(BeaconError::io("setting IPV6_MULTICAST_IF"))?;
                send.set_multicast_loop_v6(true)
                    .map_err(BeaconError::io("setting IPV6_MULTICAST_LOOP"))?;
                send.set_multicast_hops_v6(1)
                    .map_err(BeaconError::io("setting IPV6_MULTICAST_HOPS"))?;
                (
                    SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0).into(),
                    SocketAddrV6::new(address, 0, 0, scope_of(&address, iface)).into(),
                    SocketAddrV6::new(group, port, 0, scope_of(&group, iface)).into(),
                )
            }
            _ => {
                return Err(BeaconError::InterfaceUnusable {
                    name: iface.name.clone(),
                    reason: "address and broadcast are of different IP families",
                })
            }
        };
    recv.bind(&recv_addr.into()).map_err(|source| {
        if source.kind() == io::ErrorKind::AddrInUse {
            BeaconError::PortInUse { port, source }
        } else {
            BeaconError::Io {
                context: "binding the beacon receive socket",
                source,
            }
        }
    })?;
    if let IpAddr::V6(group) = iface.broadcast {
        recv.join_multicast_v6(&group, iface.index)
            .map_err(BeaconError::io("joining the IPv6 beacon group"))?;
    }
    send.bind(&send_addr.into()).map_err(BeaconError::io(
        "binding the beacon send socket to the interface address",
    ))?;
    Ok(Sockets {
        recv: tokio_socket(recv)?,
        send: tokio_socket(send)?,
        dest,
    })
}
