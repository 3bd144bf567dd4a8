//! Per-interface reply data for the XDP program (`DHCPV6_IFACES` map values).

use std::net::Ipv6Addr;

use dhcpv6_common::{
    csum_add_bytes,
    limits::{BLOCK_CAP, MAX_SEGMENTS, ORO_MASK_CODES},
    IfaceReply, Segment, IFACE_FAST_PATH, SEG_REQUESTED_ONLY,
};

use crate::server::{IfaceService, SendPolicy};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplyDataError {
    #[error("{0} options do not fit the fast path's {MAX_SEGMENTS} segments")]
    TooManyOptions(usize),
    #[error("{0} bytes of options do not fit the fast path's {BLOCK_CAP}-byte block")]
    TooLarge(usize),
    #[error("option {0} is sent only on request but its code is too high for the fast path")]
    RequestedCodeTooHigh(u16),
}

/// Lays out the Server Identifier and the configured options back to back, with each
/// option's checksum contribution precomputed.
pub fn build(
    mac: [u8; 6],
    link_local: Ipv6Addr,
    svc: &IfaceService,
    fast_path: bool,
    generation: u32,
) -> Result<IfaceReply, ReplyDataError> {
    let mut r = IfaceReply::default();
    r.mac = mac;
    r.link_local = link_local.octets();
    r.flags = if fast_path { IFACE_FAST_PATH } else { 0 };
    r.generation = generation;
    let duid = svc.duid.as_bytes();
    r.duid[..duid.len()].copy_from_slice(duid);
    r.duid_len = duid.len() as u16;

    let server_id = svc.server_id_option();
    let parts = std::iter::once((dhcpv6_common::wire::opt::SERVERID, SendPolicy::Always, server_id.as_slice()))
        .chain(svc.options.iter().map(|o| (o.code, o.policy, o.encoded.as_slice())));
    let count = svc.options.len() + 1;
    if count > MAX_SEGMENTS {
        return Err(ReplyDataError::TooManyOptions(count));
    }
    let total: usize = server_id.len() + svc.options.iter().map(|o| o.encoded.len()).sum::<usize>();
    if total > BLOCK_CAP {
        return Err(ReplyDataError::TooLarge(total));
    }
    let mut off = 0usize;
    for (i, (code, policy, bytes)) in parts.enumerate() {
        let requested_only = policy == SendPolicy::WhenRequested;
        if requested_only && code >= ORO_MASK_CODES {
            return Err(ReplyDataError::RequestedCodeTooHigh(code));
        }
        r.block[off..off + bytes.len()].copy_from_slice(bytes);
        r.segs[i] = Segment {
            code,
            flags: if requested_only { SEG_REQUESTED_ONLY } else { 0 },
            off: off as u16,
            len: bytes.len() as u16,
            csum: csum_add_bytes(0, bytes) as u16,
            _pad: 0,
        };
        off += bytes.len();
    }
    r.nsegs = count as u16;
    Ok(r)
}
