//! Building DHCPv6 messages: a header, then options appended in order, nested ones through
//! `begin`/`end` so the length is patched once the contents are known.

use std::net::Ipv6Addr;

#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

/// An open container option; its length is written by [`Writer::end`].
#[must_use]
pub struct Open(usize);

impl Writer {
    pub fn message(msg_type: u8, xid: [u8; 3]) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.push(msg_type);
        buf.extend_from_slice(&xid);
        Self { buf }
    }

    pub fn relay(msg_type: u8, hop_count: u8, link: Ipv6Addr, peer: Ipv6Addr) -> Self {
        let mut buf = Vec::with_capacity(512);
        buf.push(msg_type);
        buf.push(hop_count);
        buf.extend_from_slice(&link.octets());
        buf.extend_from_slice(&peer.octets());
        Self { buf }
    }

    pub fn option(&mut self, code: u16, data: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(&code.to_be_bytes());
        self.buf.extend_from_slice(&(data.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(data);
        self
    }

    /// Appends an option already encoded with its header.
    pub fn raw(&mut self, encoded: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(encoded);
        self
    }

    pub fn begin(&mut self, code: u16) -> Open {
        let at = self.buf.len();
        self.buf.extend_from_slice(&code.to_be_bytes());
        self.buf.extend_from_slice(&[0, 0]);
        Open(at)
    }

    pub fn bytes(&mut self, data: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(data);
        self
    }

    pub fn end(&mut self, open: Open) {
        let len = (self.buf.len() - open.0 - 4) as u16;
        self.buf[open.0 + 2..open.0 + 4].copy_from_slice(&len.to_be_bytes());
    }

    pub fn status(&mut self, code: u16, message: &str) -> &mut Self {
        let o = self.begin(dhcpv6_common::wire::opt::STATUS_CODE);
        self.bytes(&code.to_be_bytes()).bytes(message.as_bytes());
        self.end(o);
        self
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// One option, header included.
pub fn encode_option(code: u16, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + data.len());
    v.extend_from_slice(&code.to_be_bytes());
    v.extend_from_slice(&(data.len() as u16).to_be_bytes());
    v.extend_from_slice(data);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_lengths_are_patched() {
        let mut w = Writer::message(7, [1, 2, 3]);
        let ia = w.begin(3);
        w.bytes(&[0; 12]);
        w.status(0, "ok");
        w.end(ia);
        let b = w.finish();
        assert_eq!(&b[..4], &[7, 1, 2, 3]);
        assert_eq!(&b[4..8], &[0, 3, 0, 12 + 4 + 2 + 2]);
        assert_eq!(&b[20..24], &[0, 13, 0, 4]);
    }
}
