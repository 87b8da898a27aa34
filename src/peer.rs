//! Who a client is, for the limits that count per client: the connection
//! caps of the engine and the login and sign-up limiters alike.

use std::net::IpAddr;

/// Where a client's requests count as one: its IPv4 address, or its IPv6
/// /64 (what one host or home network is usually given, so that a client
/// cannot slip past a limit by rotating through its own addresses). An IPv4
/// address mapped into IPv6 counts as itself.
pub fn client_address(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let host = |last: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, last));
        assert_eq!(client_address(host(1)), client_address(host(2)));
        let other = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 3, 0, 0, 0, 1));
        assert_ne!(client_address(host(1)), client_address(other));
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        assert_eq!(
            client_address(mapped),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))
        );
        let v4 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(client_address(v4), v4);
    }
}
