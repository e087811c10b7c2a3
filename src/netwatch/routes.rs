//! Address and route changes on Linux, from rtnetlink: the kernel tells a
//! socket subscribed to the IPv4 and IPv6 address and route groups about
//! every address added or removed and every route added, changed or
//! removed. A link going down or up shows here too, as the routes through
//! it go and come back.
//
// Only what changes reachability counts. The kernel re-announces an IPv6
// address or route each time a router advertisement refreshes its
// lifetime; so each address and route is remembered by what identifies it
// (its header and attributes, less the lifetimes), and an announcement of
// one already known is not a change.

use std::{collections::HashSet, io};

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    RouteNetlinkMessage,
    address::{AddressAttribute, AddressMessage},
    route::{RouteAttribute, RouteMessage},
};
use netlink_sys::{AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket, protocols::NETLINK_ROUTE};
use nix::libc;
use tokio::sync::mpsc;

use super::Change;

/// Addresses and routes remembered; past this, the set starts afresh
/// (a router with a full routing table does not need them all).
const MAX_KNOWN: usize = 4096;

/// Length of a netlink message header (struct nlmsghdr).
const NLMSG_HEADER_LEN: usize = 16;

/// Sends [`Change::Routes`] for each batch of messages that changed an
/// address or a route, until the socket fails or nobody listens.
pub(super) async fn watch(changes: mpsc::UnboundedSender<Change>) -> io::Result<()> {
    let mut socket = TokioSocket::new(NETLINK_ROUTE)?;
    let groups = libc::RTMGRP_IPV4_IFADDR
        | libc::RTMGRP_IPV6_IFADDR
        | libc::RTMGRP_IPV4_ROUTE
        | libc::RTMGRP_IPV6_ROUTE;
    let groups = u32::try_from(groups).map_err(|_| io::ErrorKind::InvalidInput)?;
    socket.socket_mut().bind(&SocketAddr::new(0, groups))?;
    let mut known = Known::default();
    let mut buffer = Vec::with_capacity(64 * 1024);
    loop {
        buffer.clear();
        let changed = match socket.recv(&mut buffer).await {
            Ok(()) => known.apply(&buffer),
            // The kernel dropped messages (ENOBUFS): what changed is
            // unknown, so everything may have.
            Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => {
                known = Known::default();
                true
            }
            Err(error) => return Err(error),
        };
        if changed && changes.send(Change::Routes).is_err() {
            return Ok(());
        }
    }
}

/// The addresses and routes seen so far, by identity.
#[derive(Debug, Default)]
struct Known(HashSet<String>);

impl Known {
    /// Takes one datagram of netlink messages; true when any of them
    /// added or removed an address or route not already so.
    fn apply(&mut self, mut datagram: &[u8]) -> bool {
        let mut changed = false;
        // Walked by each message's own length (nlmsg_len, the header's
        // first field), so one message that does not parse costs only
        // itself: it counts as a change, since what it said is unknown.
        while let Some(len) = datagram
            .first_chunk::<4>()
            .map(|len| u32::from_ne_bytes(*len))
        {
            let len = usize::try_from(len).unwrap_or(0);
            let Some(message) = datagram.get(..len).filter(|_| len >= NLMSG_HEADER_LEN) else {
                break;
            };
            changed |= match NetlinkMessage::<RouteNetlinkMessage>::deserialize(message) {
                Ok(NetlinkMessage {
                    payload: NetlinkPayload::InnerMessage(inner),
                    ..
                }) => self.take(inner),
                Ok(_) => false,
                Err(_) => true,
            };
            // Messages are 4-octet aligned (NLMSG_ALIGN).
            match datagram.get(len.next_multiple_of(4)..) {
                Some(rest) if !rest.is_empty() => datagram = rest,
                _ => break,
            }
        }
        changed
    }

    fn take(&mut self, message: RouteNetlinkMessage) -> bool {
        if self.0.len() >= MAX_KNOWN {
            self.0.clear();
        }
        match message {
            RouteNetlinkMessage::NewAddress(address) => self
                .0
                .insert(format!("address {:?}", address_identity(address))),
            RouteNetlinkMessage::DelAddress(address) => {
                // Removed: a change whether or not it was seen added.
                self.0
                    .remove(&format!("address {:?}", address_identity(address)));
                true
            }
            // The local table holds the host's own addresses, which the
            // address messages already tell; its routes come and go with
            // them (an IPv6 link-local one when duplicate address
            // detection ends), and lead nowhere off the machine.
            RouteNetlinkMessage::NewRoute(route) | RouteNetlinkMessage::DelRoute(route)
                if is_local_table(&route) =>
            {
                false
            }
            RouteNetlinkMessage::NewRoute(mut route) => {
                route.attributes.retain(is_identity);
                self.0.insert(format!("route {route:?}"))
            }
            RouteNetlinkMessage::DelRoute(mut route) => {
                route.attributes.retain(is_identity);
                self.0.remove(&format!("route {route:?}"));
                true
            }
            _ => false,
        }
    }
}

/// What identifies an address: not its lifetimes, nor its flags (duplicate
/// address detection turns a tentative IPv6 address permanent a second
/// after it came; a temporary one turns deprecated), which change nothing
/// of where it leads.
fn address_identity(mut address: AddressMessage) -> AddressMessage {
    address.header.flags = Default::default();
    address.attributes.retain(|attribute| {
        !matches!(
            attribute,
            AddressAttribute::CacheInfo(_) | AddressAttribute::Flags(_)
        )
    });
    address
}

/// Whether `route` is in the local table (RT_TABLE_LOCAL).
fn is_local_table(route: &RouteMessage) -> bool {
    let local = u32::from(libc::RT_TABLE_LOCAL);
    let table = route
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            RouteAttribute::Table(table) => Some(*table),
            _ => None,
        });
    table.unwrap_or(u32::from(route.header.table)) == local
}

/// Whether a route attribute says where the route goes, rather than how
/// long it lives.
fn is_identity(attribute: &RouteAttribute) -> bool {
    !matches!(
        attribute,
        RouteAttribute::CacheInfo(_) | RouteAttribute::Expires(_)
    )
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::NetlinkHeader;
    use netlink_packet_route::{AddressFamily, route::RouteAddress};

    use super::*;

    fn datagram(messages: Vec<RouteNetlinkMessage>) -> Vec<u8> {
        let mut out = Vec::new();
        for inner in messages {
            let mut message = NetlinkMessage::new(
                NetlinkHeader::default(),
                NetlinkPayload::InnerMessage(inner),
            );
            message.finalize();
            let mut bytes = vec![0; message.buffer_len()];
            message.serialize(&mut bytes);
            out.extend_from_slice(&bytes);
            out.resize(out.len().next_multiple_of(4), 0);
        }
        out
    }

    fn address(last: u8, lifetime: u32) -> AddressMessage {
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet6;
        message.header.index = 2;
        message.header.prefix_len = 64;
        let ip = std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u16::from(last));
        message
            .attributes
            .push(AddressAttribute::Address(ip.into()));
        let mut info = netlink_packet_route::address::CacheInfo::default();
        info.ifa_preferred = lifetime;
        info.ifa_valid = lifetime;
        message.attributes.push(AddressAttribute::CacheInfo(info));
        message
    }

    fn default_route(gateway: u8, expires: u32) -> RouteMessage {
        let mut message = RouteMessage::default();
        message.header.address_family = AddressFamily::Inet;
        let gateway = std::net::Ipv4Addr::new(10, 0, 0, gateway);
        message
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        message.attributes.push(RouteAttribute::Oif(2));
        message.attributes.push(RouteAttribute::Expires(expires));
        message
    }

    #[test]
    fn a_new_address_is_a_change_and_a_lifetime_refresh_is_not() {
        let mut known = Known::default();
        let added = datagram(vec![RouteNetlinkMessage::NewAddress(address(1, 3600))]);
        assert!(known.apply(&added));
        let refreshed = datagram(vec![RouteNetlinkMessage::NewAddress(address(1, 1800))]);
        assert!(!known.apply(&refreshed));
        let other = datagram(vec![RouteNetlinkMessage::NewAddress(address(2, 3600))]);
        assert!(known.apply(&other));
        let removed = datagram(vec![RouteNetlinkMessage::DelAddress(address(1, 0))]);
        assert!(known.apply(&removed));
        assert!(known.apply(&added), "added again after its removal");
    }

    #[test]
    fn routes_count_by_where_they_go_not_when_they_expire() {
        let mut known = Known::default();
        assert!(known.apply(&datagram(vec![RouteNetlinkMessage::NewRoute(
            default_route(1, 1800)
        )])));
        assert!(!known.apply(&datagram(vec![RouteNetlinkMessage::NewRoute(
            default_route(1, 1700)
        )])));
        // A new gateway, in a datagram behind a refresh of a known route.
        let both = datagram(vec![
            RouteNetlinkMessage::NewRoute(default_route(1, 1600)),
            RouteNetlinkMessage::NewRoute(default_route(254, 1800)),
        ]);
        assert!(known.apply(&both));
        assert!(known.apply(&datagram(vec![RouteNetlinkMessage::DelRoute(
            default_route(254, 0)
        )])));
    }

    #[test]
    fn an_address_turning_permanent_is_not_a_change() {
        use netlink_packet_route::address::AddressHeaderFlags;

        let mut known = Known::default();
        let mut tentative = address(3, 3600);
        tentative.header.flags = AddressHeaderFlags::Tentative;
        let mut permanent = address(3, 3600);
        permanent.header.flags = AddressHeaderFlags::Permanent;
        assert!(known.apply(&datagram(vec![RouteNetlinkMessage::NewAddress(tentative)])));
        assert!(!known.apply(&datagram(vec![RouteNetlinkMessage::NewAddress(permanent)])));
    }

    #[test]
    fn a_message_that_does_not_parse_counts_and_the_rest_are_read() {
        let mut known = Known::default();
        // A well-framed RTM_NEWADDR whose body is too short to parse.
        let mut broken = vec![0u8; NLMSG_HEADER_LEN + 4];
        let len = u32::try_from(broken.len()).unwrap();
        broken[..4].copy_from_slice(&len.to_ne_bytes());
        broken[4..6].copy_from_slice(&20u16.to_ne_bytes());
        assert!(known.apply(&broken));
        let mut both = broken.clone();
        both.extend(datagram(vec![RouteNetlinkMessage::NewRoute(
            default_route(9, 60),
        )]));
        assert!(known.apply(&both));
        let again = datagram(vec![RouteNetlinkMessage::NewRoute(default_route(9, 30))]);
        assert!(!known.apply(&again), "the route behind it was read");
    }

    #[test]
    fn local_table_routes_are_not_a_change() {
        let mut known = Known::default();
        let mut local = default_route(5, 0);
        local.header.table = libc::RT_TABLE_LOCAL;
        assert!(!known.apply(&datagram(vec![RouteNetlinkMessage::NewRoute(
            local.clone()
        )])));
        assert!(!known.apply(&datagram(vec![RouteNetlinkMessage::DelRoute(local)])));
        let mut tagged = default_route(5, 0);
        tagged
            .attributes
            .push(RouteAttribute::Table(u32::from(libc::RT_TABLE_LOCAL)));
        assert!(!known.apply(&datagram(vec![RouteNetlinkMessage::NewRoute(tagged)])));
        assert!(known.apply(&datagram(vec![RouteNetlinkMessage::NewRoute(
            default_route(5, 0)
        )])));
    }

    #[test]
    fn bytes_that_are_not_netlink_change_nothing() {
        let mut known = Known::default();
        assert!(!known.apply(&[]));
        assert!(!known.apply(&[0xff; 7]));
    }
}
