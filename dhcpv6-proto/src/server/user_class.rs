//! The User Class filter (`ignore_user_classes`): a client whose User Class option (15,
//! RFC 9915 section 21.15) carries one of the configured classes gets no answer at all.
//! odhcpd has the same filter; both the XDP path (which passes every Information-Request
//! with a User Class up when a filter is configured) and userspace end here.

use dhcpv6_common::wire::opt;

use crate::wire::Message;

/// Whether any user-class-data item of any User Class option in `m` is one of `ignored`.
/// Items are 16-bit-length-prefixed opaque data; a malformed tail ends the scan (what was
/// read before it still counts).
pub fn ignored(m: &Message<'_>, ignored: &[Vec<u8>]) -> bool {
    if ignored.is_empty() {
        return false;
    }
    m.options().filter(|o| o.code == opt::USER_CLASS).any(|o| items(o.data).any(|c| ignored.iter().any(|i| i == c)))
}

fn items(mut d: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_be_bytes([*d.first()?, *d.get(1)?]));
        let item = d.get(2..2 + len)?;
        d = &d[2 + len..];
        Some(item)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ir(user_class: &[u8]) -> Vec<u8> {
        let mut v = vec![dhcpv6_common::wire::msg::INFORMATION_REQUEST, 1, 2, 3, 0, 15];
        v.extend_from_slice(&u16::try_from(user_class.len()).expect("test option fits").to_be_bytes());
        v.extend_from_slice(user_class);
        v
    }

    #[test]
    fn any_item_matching_a_class_is_ignored() {
        let classes = vec![b"iptv".to_vec(), b"guest".to_vec()];
        let two = ir(&[0, 3, b'v', b'o', b'd', 0, 5, b'g', b'u', b'e', b's', b't']);
        assert!(ignored(&Message::parse(&two).unwrap(), &classes));
        let other = ir(&[0, 3, b'v', b'o', b'd']);
        assert!(!ignored(&Message::parse(&other).unwrap(), &classes));
        assert!(!ignored(&Message::parse(&two).unwrap(), &[]));
        // A prefix of an item is not the item.
        let prefix = ir(&[0, 5, b'i', b'p', b't', b'v', b'x']);
        assert!(!ignored(&Message::parse(&prefix).unwrap(), &classes));
        // An item running past its option ends the scan; the items before it count.
        let tail = ir(&[0, 4, b'i', b'p', b't', b'v', 0, 9, 1]);
        assert!(ignored(&Message::parse(&tail).unwrap(), &classes));
        let broken = ir(&[0, 9, b'i', b'p', b't', b'v']);
        assert!(!ignored(&Message::parse(&broken).unwrap(), &classes));
    }
}
