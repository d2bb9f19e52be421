//! The limiter's client id of a peer known only by its IPv4 address (a UDP
//! source, an HTTP client that named no client): its dotted quad, so that
//! `[[limits.client]] id = "198.18.1.3"` names it. HTTP and UDP key such
//! clients the same way through this one formatter.

use std::net::Ipv4Addr;

/// Longest dotted quad (`255.255.255.255`).
pub const ADDRESS_ID_BYTES: usize = 15;

/// Writes `ip` as a dotted quad into a stack buffer (no allocation per
/// datagram or request) and returns the written part.
pub fn address_id(ip: Ipv4Addr, buf: &mut [u8; ADDRESS_ID_BYTES]) -> &[u8] {
    let mut n = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            buf[n] = b'.';
            n += 1;
        }
        if octet >= 100 {
            buf[n] = b'0' + octet / 100;
            n += 1;
        }
        if octet >= 10 {
            buf[n] = b'0' + octet / 10 % 10;
            n += 1;
        }
        buf[n] = b'0' + octet % 10;
        n += 1;
    }
    &buf[..n]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_id_is_the_dotted_quad() {
        let mut buf = [0u8; ADDRESS_ID_BYTES];
        assert_eq!(address_id(Ipv4Addr::new(198, 18, 1, 3), &mut buf), b"198.18.1.3");
        assert_eq!(address_id(Ipv4Addr::new(255, 0, 10, 100), &mut buf), b"255.0.10.100");
        assert_eq!(address_id(Ipv4Addr::new(0, 0, 0, 0), &mut buf), b"0.0.0.0");
        assert_eq!(address_id(Ipv4Addr::new(255, 255, 255, 255), &mut buf), b"255.255.255.255");
    }
}
