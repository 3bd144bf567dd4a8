//! Per-interface reply data for the XDP program (`DHCPV6_IFACES` map values).

use std::net::Ipv6Addr;

use dhcpv6_common::{
    csum_add_bytes,
    limits::{BLOCK_CAP, MAX_SEGMENTS, ORO_MASK_CODES},
    IfaceReply, Segment, IFACE_FAST_PATH, IFACE_RENEW, IFACE_USER_CLASS_FILTER, SEG_REQUESTED_ONLY,
};

use crate::server::{IfaceService, LinkService, SendPolicy};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplyDataError {
    #[error("{0} options do not fit the fast path's {MAX_SEGMENTS} segments")]
    TooManyOptions(usize),
    #[error("{0} bytes of options do not fit the fast path's {BLOCK_CAP}-byte block")]
    TooLarge(usize),
    /// The daemon then leaves the interface out of the map: userspace answers all of its
    /// Information-Requests (a raw option with `always = false` and a code of 128 or more,
    /// or DNR, which is sent only on request and has code 144).
    #[error("option {0} is sent only on request but its code is too high for the fast path")]
    RequestedCodeTooHigh(u16),
    /// `allow_renew`: a stateful Reply carries an option the block leaves out (SOL_MAX_RT,
    /// which Information-Request Replies do not carry): Renews go up.
    #[error("option {0} belongs in stateful Replies but not in the fast path's block")]
    StatefulOptionMissing(u16),
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
    if !svc.ignore_user_classes.is_empty() {
        r.flags |= IFACE_USER_CLASS_FILTER;
    }
    r.generation = generation;
    let duid = svc.duid.as_bytes();
    r.duid[..duid.len()].copy_from_slice(duid);
    // A DUID is at most 130 bytes (wire::Duid checks); the map's field says so too.
    r.duid_len = u16::try_from(duid.len()).map_err(|_| ReplyDataError::TooLarge(duid.len()))?;

    let server_id = svc.server_id_option();
    // The program answers Information-Requests only: what the userspace twin leaves out of
    // those Replies (SOL_MAX_RT) is not in the block either.
    let options: Vec<_> = svc.options.iter().filter(|o| o.in_information_reply()).collect();
    let parts = std::iter::once((dhcpv6_common::wire::opt::SERVERID, SendPolicy::Always, server_id.as_slice()))
        .chain(options.iter().map(|o| (o.code, o.policy, o.encoded.as_slice())));
    let count = options.len() + 1;
    if count > MAX_SEGMENTS {
        return Err(ReplyDataError::TooManyOptions(count));
    }
    let total: usize = server_id.len() + options.iter().map(|o| o.encoded.len()).sum::<usize>();
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
            // Both inside the block, whose size was checked above: they fit.
            off: u16::try_from(off).map_err(|_| ReplyDataError::TooLarge(off))?,
            len: u16::try_from(bytes.len()).map_err(|_| ReplyDataError::TooLarge(bytes.len()))?,
            csum: csum_add_bytes(0, bytes) as u16,
            _pad: 0,
        };
        // Segment 0 is the Server Identifier, which a stateful Reply places itself.
        if i > 0 && options[i - 1].in_stateful_reply() {
            r.stateful_segs |= 1 << i;
        }
        off += bytes.len();
    }
    r.nsegs = count as u16;
    set_base(&mut r);
    Ok(r)
}

/// Lets the program answer Renews on the interface `r` was built for from `svc` (sets
/// `IFACE_RENEW`), when every option of a stateful Reply is in the block. The caller also
/// checks that the engine answers a direct client there with `svc`'s options (no `[[link]]`
/// of the same name with options of its own) and that the feature is on.
pub fn allow_renew(r: &mut IfaceReply, svc: &IfaceService) -> Result<(), ReplyDataError> {
    if let Some(o) = svc.options.iter().find(|o| o.in_stateful_reply() && !o.in_information_reply()) {
        return Err(ReplyDataError::StatefulOptionMissing(o.code));
    }
    r.flags |= IFACE_RENEW;
    Ok(())
}

/// The reply data of each `[[link]]` with options of its own, for relayed Information-Requests
/// whose Interface-ID names it (`Dataplane::set_relay_links`): the arrival interface's MAC,
/// address and DUID with the link's options. `None` where they do not fit the fast path
/// (the program then passes such requests up, `pass_relay_link`).
pub fn build_links(
    mac: [u8; 6],
    link_local: Ipv6Addr,
    duid: &crate::wire::Duid,
    links: &[(Vec<u8>, LinkService)],
    fast_path: bool,
    generation: u32,
) -> Vec<(Vec<u8>, Option<IfaceReply>)> {
    links
        .iter()
        .map(|(iid, l)| {
            let svc = IfaceService {
                duid: duid.clone(),
                options: l.options.clone(),
                ignore_user_classes: l.ignore_user_classes.clone(),
            };
            (iid.clone(), build(mac, link_local, &svc, fast_path, generation).ok())
        })
        .collect()
}

/// The `[[link]]`s with options of their own as the fast path looks them up, by the
/// Interface-ID that names them (`link::choose`: a relayed client whose Interface-ID is a
/// link's name is on that link). `None` when the program could not tell every such link from
/// an Interface-ID: a name longer than it looks up, or options on the link where a client
/// whose Interface-ID names no link ends up (`UNCONFIGURED_LINK`): relayed requests then all
/// go up.
pub fn relay_links(links: &[(String, Option<std::sync::Arc<LinkService>>)]) -> Option<Vec<(Vec<u8>, LinkService)>> {
    let mut out = Vec::new();
    for (name, svc) in links {
        let Some(svc) = svc else { continue };
        if name == crate::server::stateful::UNCONFIGURED_LINK || name.len() > dhcpv6_common::limits::MAX_INTERFACE_ID {
            return None;
        }
        out.push((name.as_bytes().to_vec(), LinkService::clone(svc)));
    }
    Some(out)
}

/// The shortcut for the usual request (none of the requested-only options asked for): when
/// the always-sent segments form the block's first bytes, their length and checksum.
fn set_base(r: &mut IfaceReply) {
    let segs = &r.segs[..r.nsegs as usize];
    for s in segs.iter().filter(|s| s.flags & SEG_REQUESTED_ONLY != 0) {
        r.requested_only[usize::from(s.code / 64)] |= 1 << (s.code % 64);
    }
    let always: Vec<&Segment> = segs.iter().filter(|s| s.flags & SEG_REQUESTED_ONLY == 0).collect();
    let mut end = 0usize;
    for s in &always {
        if usize::from(s.off) != end {
            return;
        }
        end += usize::from(s.len);
    }
    // `end` sums segment lengths that fit the block, itself far under 64 KiB.
    let Ok(base_len) = u16::try_from(end) else { return };
    r.base_len = base_len;
    r.base_csum = csum_add_bytes(0, &r.block[..end]) as u16;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::ConfiguredOption;
    use crate::wire::{writer::encode_option, Duid};

    fn option(code: u16, policy: SendPolicy, len: usize) -> ConfiguredOption {
        let data: Vec<u8> = (0..len).map(|i| i as u8 ^ code as u8).collect();
        ConfiguredOption { code, policy, encoded: encode_option(code, &data).expect("test option fits") }
    }

    fn service(options: Vec<ConfiguredOption>) -> IfaceService {
        IfaceService { duid: Duid::from_mac([2, 0, 0, 0, 0, 1]), options, ignore_user_classes: vec![] }
    }

    #[test]
    fn base_run_covers_the_always_sent_options_and_sums_them_as_one() {
        // An odd-length option in the middle: the run's sum is not the segments' sums added.
        let svc = service(vec![
            option(23, SendPolicy::Always, 16),
            option(24, SendPolicy::Always, 7),
            option(32, SendPolicy::Always, 4),
            option(56, SendPolicy::WhenRequested, 20),
            option(31, SendPolicy::WhenRequested, 16),
        ]);
        let r = build([2, 0, 0, 0, 0, 1], "fe80::1".parse().unwrap(), &svc, true, 1).unwrap();
        let always: usize = svc.server_id_option().len() + 20 + 11 + 8;
        assert_eq!(r.base_len as usize, always);
        assert_eq!(r.base_csum as u32, csum_add_bytes(0, &r.block[..always]));
        assert_eq!(r.requested_only, [1 << 56 | 1 << 31, 0]);
    }

    #[test]
    fn no_base_run_when_a_requested_only_option_sits_between() {
        let svc = service(vec![
            option(23, SendPolicy::Always, 16),
            option(56, SendPolicy::WhenRequested, 20),
            option(24, SendPolicy::Always, 8),
        ]);
        let r = build([2, 0, 0, 0, 0, 1], "fe80::1".parse().unwrap(), &svc, true, 1).unwrap();
        assert_eq!(r.base_len, 0, "the program must select segment by segment");
        assert_eq!(r.requested_only, [1 << 56, 0]);
    }

    #[test]
    fn relay_links_are_the_links_with_options_unless_one_cannot_be_told_apart() {
        use std::sync::Arc;
        let own =
            Arc::new(LinkService { options: vec![option(23, SendPolicy::Always, 16)], ignore_user_classes: vec![] });
        let links = vec![("vlan7".to_owned(), Some(own.clone())), ("vlan8".to_owned(), None)];
        let got = relay_links(&links).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].0.as_slice(), &got[0].1.options), (&b"vlan7"[..], &own.options));
        let long = vec![("x".repeat(65), Some(own.clone()))];
        assert!(relay_links(&long).is_none(), "a name past the program's key");
        assert!(relay_links(&[("x".repeat(65), None)]).unwrap().is_empty(), "no options: not looked up");
        let unconfigured = vec![(crate::server::stateful::UNCONFIGURED_LINK.to_owned(), Some(own))];
        assert!(relay_links(&unconfigured).is_none());
    }

    #[test]
    fn stateful_segments_leave_out_the_refresh_time_and_renew_needs_every_stateful_option() {
        use dhcpv6_common::wire::opt;
        let ll = "fe80::1".parse().unwrap();
        let svc = service(vec![
            option(23, SendPolicy::Always, 16),
            option(opt::INFORMATION_REFRESH_TIME, SendPolicy::Always, 4),
            option(56, SendPolicy::WhenRequested, 20),
        ]);
        let mut r = build([2, 0, 0, 0, 0, 1], ll, &svc, true, 1).unwrap();
        assert_eq!(r.stateful_segs, 0b1010, "DNS and NTP, not the Server ID nor the refresh time");
        allow_renew(&mut r, &svc).unwrap();
        assert_eq!(r.flags & IFACE_RENEW, IFACE_RENEW);
        let with_sol =
            service(vec![option(23, SendPolicy::Always, 16), option(opt::SOL_MAX_RT, SendPolicy::Always, 4)]);
        let mut r = build([2, 0, 0, 0, 0, 1], ll, &with_sol, true, 1).unwrap();
        assert_eq!(allow_renew(&mut r, &with_sol), Err(ReplyDataError::StatefulOptionMissing(opt::SOL_MAX_RT)));
        assert_eq!(r.flags & IFACE_RENEW, 0);
    }

    #[test]
    fn a_user_class_filter_sets_the_flag() {
        let ll = "fe80::1".parse().unwrap();
        let plain = service(vec![option(23, SendPolicy::Always, 16)]);
        assert_eq!(build([2, 0, 0, 0, 0, 1], ll, &plain, true, 1).unwrap().flags, IFACE_FAST_PATH);
        let filtered = IfaceService { ignore_user_classes: vec![b"iptv".to_vec()], ..plain };
        let r = build([2, 0, 0, 0, 0, 1], ll, &filtered, true, 1).unwrap();
        assert_eq!(r.flags, IFACE_FAST_PATH | IFACE_USER_CLASS_FILTER);
    }

    /// DNR (144) goes only on request and its code is past the Option Request mask: no
    /// reply data, so the daemon leaves userspace to answer the interface.
    #[test]
    fn dnr_and_high_requested_raw_options_keep_the_interface_out_of_the_fast_path() {
        use crate::server::typed_options::{CustomOption, DnrInstance};
        let ll = "fe80::1".parse().unwrap();
        let dnr = crate::server::ServiceOptions {
            dnr: vec![DnrInstance { priority: 1, adn: "dns.example".into(), ..Default::default() }],
            ..Default::default()
        };
        let e = build([2, 0, 0, 0, 0, 1], ll, &service(dnr.encode().unwrap()), true, 1).unwrap_err();
        assert_eq!(e, ReplyDataError::RequestedCodeTooHigh(144));
        let raw = |always| crate::server::ServiceOptions {
            raw: vec![CustomOption { code: 300, data: vec![1], always }],
            ..Default::default()
        };
        assert!(build([2, 0, 0, 0, 0, 1], ll, &service(raw(true).encode().unwrap()), true, 1).is_ok());
        let e = build([2, 0, 0, 0, 0, 1], ll, &service(raw(false).encode().unwrap()), true, 1).unwrap_err();
        assert_eq!(e, ReplyDataError::RequestedCodeTooHigh(300));
    }
}
