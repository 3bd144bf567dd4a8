//! One level of relay (RFC 9915 section 9): the Relay-Forward the storm's relay wraps a
//! client message in (link-address, the client's link-local as peer-address, an
//! Interface-ID), and the Relay-Reply it unwraps.

use std::net::Ipv6Addr;

use thiserror::Error;

use crate::stateful::msg::{options, MAX_OUT};

pub const RELAY_FORW: u8 = 12;
pub const RELAY_REPL: u8 = 13;
const OPT_RELAY_MSG: u16 = 9;
const OPT_INTERFACE_ID: u16 = 18;
const HEADER: usize = 34;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RelayError {
    #[error("the Relay-Forward would not fit the generator's buffer")]
    TooLong,
    #[error("not a well-formed Relay-Reply with a Relay Message")]
    Malformed,
}

/// Writes the Relay-Forward carrying `inner` into `buf`; its length.
pub fn forward(
    inner: &[u8],
    link: Ipv6Addr,
    peer: Ipv6Addr,
    interface_id: &[u8],
    buf: &mut [u8; MAX_OUT],
) -> Result<usize, RelayError> {
    let total = HEADER + 4 + interface_id.len() + 4 + inner.len();
    if total > MAX_OUT {
        return Err(RelayError::TooLong);
    }
    // Both lengths are below MAX_OUT (checked above), so they fit 16 bits.
    let len16 = |n: usize| u16::try_from(n).map_err(|_| RelayError::TooLong);
    buf[0] = RELAY_FORW;
    buf[1] = 0;
    buf[2..18].copy_from_slice(&link.octets());
    buf[18..34].copy_from_slice(&peer.octets());
    let mut at = HEADER;
    for (code, body) in [(OPT_INTERFACE_ID, interface_id), (OPT_RELAY_MSG, inner)] {
        buf[at..at + 2].copy_from_slice(&code.to_be_bytes());
        buf[at + 2..at + 4].copy_from_slice(&len16(body.len())?.to_be_bytes());
        buf[at + 4..at + 4 + body.len()].copy_from_slice(body);
        at += 4 + body.len();
    }
    Ok(at)
}

/// (peer-address, the relayed message) of a one-level Relay-Reply.
pub fn unwrap_reply(b: &[u8]) -> Result<(Ipv6Addr, &[u8]), RelayError> {
    if b.first() != Some(&RELAY_REPL) || b.len() < HEADER {
        return Err(RelayError::Malformed);
    }
    let peer: [u8; 16] = b[18..34].try_into().map_err(|_| RelayError::Malformed)?;
    for o in options(&b[HEADER..]) {
        let (code, body) = o.ok_or(RelayError::Malformed)?;
        if code == OPT_RELAY_MSG {
            return Ok((Ipv6Addr::from(peer), body));
        }
    }
    Err(RelayError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forward_turned_into_a_reply_unwraps_to_its_message() {
        let mut buf = [0u8; MAX_OUT];
        let link: Ipv6Addr = "2001:db8:2::1".parse().unwrap();
        let peer: Ipv6Addr = "fe80::ff:fe00:1".parse().unwrap();
        let n = forward(&[1, 0, 0, 5, 0, 8, 0, 2, 0, 0], link, peer, b"storm-relay", &mut buf).unwrap();
        assert_eq!(n, 34 + 4 + 11 + 4 + 10);
        assert_eq!(&buf[2..18], &link.octets());
        // What a server sends back: the same header with type 13, the Interface-ID echoed.
        let mut reply = buf[..n].to_vec();
        reply[0] = RELAY_REPL;
        let (p, inner) = unwrap_reply(&reply).unwrap();
        assert_eq!(p, peer);
        assert_eq!(inner, &[1, 0, 0, 5, 0, 8, 0, 2, 0, 0]);
        // Truncated or of another type: refused, no panic.
        for k in 0..n {
            let _ = unwrap_reply(&reply[..k]);
        }
        assert_eq!(unwrap_reply(&buf[..n]), Err(RelayError::Malformed));
        assert_eq!(forward(&[0; MAX_OUT], link, peer, b"x", &mut buf), Err(RelayError::TooLong));
    }
}
