//! The option walk of an Information-Request (over the datagram copied into scratch, sent
//! directly or inside a Relay-Forward):
//! structure, identifiers, IAs, Option Request.

use dhcpv6_common::{
    limits::{MAX_OPTIONS, MAX_ORO_CODES},
    wire::{opt, DUID_MAX_LEN, DUID_MIN_LEN},
    IfaceReply, Scratch, IFACE_USER_CLASS_FILTER, REQ_BUF, REQ_MASK,
};

use crate::{
    scratch::{get, set},
    Verdict,
};

/// What the reply needs from the request.
pub struct Request {
    /// Offset in the datagram and whole length (header included) of the Client Identifier
    /// option; length 0 if absent.
    pub cid_off: usize,
    pub cid_len: usize,
}

#[inline(always)]
fn duid_len_ok(len: usize) -> bool {
    (DUID_MIN_LEN..=DUID_MAX_LEN).contains(&len)
}

#[inline(always)]
fn be16(req: &[u8; REQ_BUF], off: usize) -> u16 {
    let off = off & REQ_MASK;
    u16::from_be_bytes([req[off], req[off + 1]])
}

#[inline(always)]
pub fn walk(scratch: &mut Scratch, iface: &IfaceReply) -> Result<Request, Verdict> {
    // The message's range in scratch: the datagram's after the UDP header, or the Relay
    // Message's; read from memory so that both paths meet here in one verifier state.
    let end = get(&scratch.found.msg_end) as usize;
    let mut off = get(&scratch.found.msg_off) as usize + 4;
    // Only what the walk reads before writing it is reset (a whole-struct reset is a memset
    // call per frame); the offsets are read only when their length or count says so.
    let f = &mut scratch.found;
    for field in [&mut f.cid_len, &mut f.sid_len, &mut f.ia, &mut f.malformed, &mut f.oro_count, &mut f.user_class] {
        set(field, 0);
    }
    // SAFETY: plain fields of per-CPU scratch (volatile for the reason in `scratch`; word by
    // word, as an array store would be a memset call).
    unsafe {
        core::ptr::write_volatile(&mut f.oro_mask[0], 0);
        core::ptr::write_volatile(&mut f.oro_mask[1], 0);
    }
    for _ in 0..MAX_OPTIONS {
        if off >= end {
            break;
        }
        if off + 4 > end {
            return Err(Verdict::DropMalformed);
        }
        let code = be16(&scratch.req, off);
        let len = be16(&scratch.req, off + 2) as usize;
        let next = off + 4 + len;
        if next > end {
            return Err(Verdict::DropMalformed);
        }
        let f = &mut scratch.found;
        match code {
            opt::CLIENTID => {
                if get(&f.cid_len) != 0 || !duid_len_ok(len) {
                    set(&mut f.malformed, 1);
                }
                set(&mut f.cid_off, off as u32);
                set(&mut f.cid_len, len as u32 + 4);
            }
            opt::SERVERID => {
                if get(&f.sid_len) != 0 || !duid_len_ok(len) {
                    set(&mut f.malformed, 1);
                }
                set(&mut f.sid_off, off as u32);
                set(&mut f.sid_len, len as u32);
            }
            opt::IA_NA | opt::IA_TA | opt::IA_PD => set(&mut f.ia, 1),
            opt::USER_CLASS => set(&mut f.user_class, 1),
            opt::ORO => {
                if len % 2 != 0 {
                    set(&mut f.malformed, 1);
                }
                let n = get(&f.oro_count);
                set(&mut f.oro_count, n + 1);
                set(&mut f.oro_off, off as u32);
                set(&mut f.oro_len, len as u32);
            }
            _ => {}
        }
        if get(&f.malformed) != 0 {
            return Err(Verdict::DropMalformed);
        }
        off = next;
    }
    let f = &scratch.found;
    if off < end || get(&f.oro_count) > 1 {
        return Err(Verdict::PassLimits);
    }
    // Matching classes is userspace's job: the program only knows a filter exists.
    if get(&f.user_class) != 0 && iface.flags & IFACE_USER_CLASS_FILTER != 0 {
        return Err(Verdict::PassUserClass);
    }
    if get(&f.ia) != 0 {
        return Err(Verdict::DropIaPresent);
    }
    let sid_len = get(&f.sid_len) as usize;
    if sid_len != 0 && !server_id_ours(&scratch.req, get(&f.sid_off) as usize, sid_len, iface) {
        return Err(Verdict::DropForeignServerId);
    }
    let (cid_off, cid_len) = (get(&f.cid_off) as usize, get(&f.cid_len) as usize);
    if get(&f.oro_count) != 0 {
        let (oro_off, oro_len) = (get(&f.oro_off) as usize, get(&f.oro_len) as usize);
        oro_mask(scratch, oro_off, oro_len)?;
    }
    Ok(Request { cid_off, cid_len })
}

#[inline(always)]
fn server_id_ours(req: &[u8; REQ_BUF], off: usize, len: usize, iface: &IfaceReply) -> bool {
    if len != iface.duid_len as usize {
        return false;
    }
    // Eight bytes a step: 17 steps cover the longest DUID, few enough for the verifier.
    let start = (off + 4) & REQ_MASK;
    for k in 0..17 {
        let i = k * 8;
        if i >= len {
            break;
        }
        let n = len - i;
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        a.copy_from_slice(&req[start + i..start + i + 8]);
        b.copy_from_slice(&iface.duid[i..i + 8]);
        let (a, b) = (u64::from_be_bytes(a), u64::from_be_bytes(b));
        // Only the bytes that belong to the DUID count in its last step.
        let mask = if n >= 8 { u64::MAX } else { !(u64::MAX >> (n * 8)) };
        if (a ^ b) & mask != 0 {
            return false;
        }
    }
    true
}

#[inline(always)]
pub(crate) fn oro_mask(scratch: &mut Scratch, off: usize, len: usize) -> Result<(), Verdict> {
    let n = len / 2;
    if n > MAX_ORO_CODES {
        return Err(Verdict::PassLimits);
    }
    for i in 0..MAX_ORO_CODES {
        if i >= n {
            break;
        }
        let code = be16(&scratch.req, off + 4 + i * 2);
        let m = &mut scratch.found.oro_mask;
        // Volatile, like the walk's findings: the bits stay out of the verifier's state.
        // SAFETY: fields of per-CPU scratch.
        unsafe {
            if code < 64 {
                core::ptr::write_volatile(&mut m[0], core::ptr::read_volatile(&m[0]) | 1 << code);
            } else if code < 128 {
                core::ptr::write_volatile(&mut m[1], core::ptr::read_volatile(&m[1]) | 1 << (code - 64));
            }
        }
    }
    Ok(())
}

/// Is `code` (below 128) in the mask?
#[inline(always)]
pub fn requested(mask: &[u64; 2], code: u16) -> bool {
    if code < 64 {
        mask[0] & (1 << code) != 0
    } else if code < 128 {
        mask[1] & (1 << (code - 64)) != 0
    } else {
        false
    }
}
