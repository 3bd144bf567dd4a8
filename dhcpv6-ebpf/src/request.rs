//! The option walk of an Information-Request: structure, identifiers, IAs, Option Request.

use aya_ebpf::programs::XdpContext;
use dhcpv6_common::{
    limits::{MAX_OPTIONS, MAX_ORO_CODES},
    wire::{opt, DUID_MAX_LEN, DUID_MIN_LEN},
    IfaceReply,
};

use crate::{
    frame::{be16, byte, Hdr},
    Verdict,
};

/// What the reply needs from the request.
pub struct Request {
    /// Offset and whole length (header included) of the Client Identifier option; 0 if absent.
    pub cid_off: usize,
    pub cid_len: usize,
    /// Option codes below 128 named in the Option Request option.
    pub oro: [u64; 2],
}

#[inline(always)]
fn duid_len_ok(len: usize) -> bool {
    (DUID_MIN_LEN..=DUID_MAX_LEN).contains(&len)
}

#[inline(always)]
pub fn walk(ctx: &XdpContext, hdr: &Hdr, udp_len: usize, iface: &IfaceReply) -> Result<Request, Verdict> {
    let end = hdr.l4 + udp_len;
    let mut off = hdr.l4 + 12;
    let (mut cid_off, mut cid_len) = (0usize, 0usize);
    let (mut sid_off, mut sid_len) = (0usize, 0usize);
    let (mut oro_off, mut oro_len) = (0usize, 0usize);
    let mut oro_count = 0u32;
    let mut ia = false;
    for _ in 0..MAX_OPTIONS {
        if off >= end {
            break;
        }
        if off + 4 > end {
            return Err(Verdict::DropMalformed);
        }
        let code = be16(ctx, off).ok_or(Verdict::DropMalformed)?;
        let len = be16(ctx, off + 2).ok_or(Verdict::DropMalformed)? as usize;
        let next = off + 4 + len;
        if next > end {
            return Err(Verdict::DropMalformed);
        }
        match code {
            opt::CLIENTID => {
                if cid_off != 0 || !duid_len_ok(len) {
                    return Err(Verdict::DropMalformed);
                }
                cid_off = off;
                cid_len = len + 4;
            }
            opt::SERVERID => {
                if sid_off != 0 || !duid_len_ok(len) {
                    return Err(Verdict::DropMalformed);
                }
                sid_off = off;
                sid_len = len;
            }
            opt::IA_NA | opt::IA_TA | opt::IA_PD => ia = true,
            opt::ORO => {
                if len % 2 != 0 {
                    return Err(Verdict::DropMalformed);
                }
                oro_count += 1;
                oro_off = off;
                oro_len = len;
            }
            _ => {}
        }
        off = next;
    }
    if off < end || oro_count > 1 {
        return Err(Verdict::PassLimits);
    }
    if ia {
        return Err(Verdict::DropIaPresent);
    }
    if sid_off != 0 && !server_id_ours(ctx, sid_off, sid_len, iface) {
        return Err(Verdict::DropForeignServerId);
    }
    let oro = if oro_off != 0 { oro_mask(ctx, oro_off, oro_len)? } else { [0, 0] };
    Ok(Request { cid_off, cid_len, oro })
}

#[inline(always)]
fn server_id_ours(ctx: &XdpContext, off: usize, len: usize, iface: &IfaceReply) -> bool {
    if len != iface.duid_len as usize {
        return false;
    }
    for i in 0..DUID_MAX_LEN {
        if i >= len {
            break;
        }
        match byte(ctx, off + 4 + i) {
            Some(b) if b == iface.duid[i] => {}
            _ => return false,
        }
    }
    true
}

#[inline(always)]
fn oro_mask(ctx: &XdpContext, off: usize, len: usize) -> Result<[u64; 2], Verdict> {
    let n = len / 2;
    if n > MAX_ORO_CODES {
        return Err(Verdict::PassLimits);
    }
    let mut mask = [0u64; 2];
    for i in 0..MAX_ORO_CODES {
        if i >= n {
            break;
        }
        let code = be16(ctx, off + 4 + i * 2).ok_or(Verdict::DropMalformed)?;
        if code < 64 {
            mask[0] |= 1 << code;
        } else if code < 128 {
            mask[1] |= 1 << (code - 64);
        }
    }
    Ok(mask)
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
