//! Domain names in DNS wire format, uncompressed (RFC 9915 section 10, RFC 3646).

use super::WireError;

/// Appends `name` as a sequence of labels ending in the root label.
pub fn encode(name: &str, out: &mut Vec<u8>) -> Result<(), WireError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err(WireError::Domain("empty name"));
    }
    let start = out.len();
    for label in name.split('.') {
        if label.is_empty() {
            return Err(WireError::Domain("empty label"));
        }
        if label.len() > 63 {
            return Err(WireError::Domain("label longer than 63 bytes"));
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(WireError::Domain("label with a character other than letters, digits, '-' or '_'"));
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    if out.len() - start > 255 {
        out.truncate(start);
        return Err(WireError::Domain("name longer than 255 bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_labels() {
        let mut v = Vec::new();
        encode("example.net.", &mut v).unwrap();
        assert_eq!(v, b"\x07example\x03net\x00");
        assert!(encode("a..b", &mut Vec::new()).is_err());
        assert!(encode(&"a".repeat(64), &mut Vec::new()).is_err());
    }
}
