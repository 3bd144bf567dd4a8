//! Information-Request (RFC 9915 sections 16.12 and 18.3.6): the userspace twin of the XDP
//! fast path. Both apply the same rules in the same order, so that a request gets the same
//! answer whichever path sees it.

use crate::stats::Counter;
use dhcpv6_common::wire::{msg, opt};

use super::options::ConfiguredOption;
use crate::wire::{Duid, Message, WireError, Writer};

/// What a link serves statelessly: our identity and the encoded options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfaceService {
    pub duid: Duid,
    pub options: Vec<ConfiguredOption>,
    /// Clients whose User Class carries one of these get no answer (`user_class`).
    pub ignore_user_classes: Vec<Vec<u8>>,
}

/// What a relayed link (`[[link]]` with options of its own) serves in place of the arrival
/// interface's options: the same two things, without an identity (ours is the interface's).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinkService {
    pub options: Vec<ConfiguredOption>,
    pub ignore_user_classes: Vec<Vec<u8>>,
}

impl IfaceService {
    /// The Server Identifier option, header included.
    pub fn server_id_option(&self) -> Vec<u8> {
        crate::wire::writer::encode_option(opt::SERVERID, self.duid.as_bytes()).expect("a DUID is at most 130 bytes")
    }
}

/// Why a message got no answer; each is counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Discard {
    #[error("malformed: {0}")]
    Malformed(#[from] WireError),
    #[error("IA option in an Information-Request")]
    IaPresent,
    #[error("Server Identifier is not ours")]
    ForeignServerId,
    #[error("message type {0} is not served here")]
    Unsupported(u8),
    #[error("reply not sent: {0}")]
    ReplyTooLong(WireError),
    #[error("User Class is one of ignore_user_classes")]
    IgnoredUserClass,
}

impl Discard {
    pub fn counter(&self) -> Counter {
        match self {
            Discard::Malformed(_) => Counter::DropMalformed,
            Discard::IaPresent => Counter::DropIaPresent,
            Discard::ForeignServerId => Counter::DropForeignServerId,
            Discard::Unsupported(_) => Counter::DropUnsupported,
            Discard::ReplyTooLong(_) => Counter::DropReplyTooLong,
            Discard::IgnoredUserClass => Counter::DropUserClass,
        }
    }
}

/// Validates an Information-Request and builds its Reply.
pub fn information_request(m: &Message<'_>, svc: &IfaceService) -> Result<Vec<u8>, Discard> {
    information_request_with(m, &svc.duid, &svc.options, &svc.ignore_user_classes)
}

/// [`information_request`] with the options of the client's link (a relayed link's own,
/// else the interface's) and our identity.
pub fn information_request_with(
    m: &Message<'_>,
    duid: &Duid,
    options: &[ConfiguredOption],
    ignore_user_classes: &[Vec<u8>],
) -> Result<Vec<u8>, Discard> {
    debug_assert_eq!(m.msg_type(), msg::INFORMATION_REQUEST);
    let client_id = m.client_id()?;
    let server_id = m.server_id()?;
    let requested = m.requested_options()?;
    if super::user_class::ignored(m, ignore_user_classes) {
        return Err(Discard::IgnoredUserClass);
    }
    if m.has_ia() {
        return Err(Discard::IaPresent);
    }
    if server_id.is_some_and(|s| s != duid.as_bytes()) {
        return Err(Discard::ForeignServerId);
    }
    let mut w = Writer::message(msg::REPLY, m.xid());
    if let Some(cid) = client_id {
        w.option(opt::CLIENTID, cid);
    }
    w.option(opt::SERVERID, duid.as_bytes());
    for o in options.iter().filter(|o| o.in_information_reply() && o.selected(&requested)) {
        w.raw(&o.encoded);
    }
    w.finish().map_err(Discard::ReplyTooLong)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc() -> IfaceService {
        let options = crate::server::options::tests::sample().encode().unwrap();
        IfaceService { duid: Duid::from_mac([2, 0, 0, 0, 0, 1]), options, ignore_user_classes: vec![] }
    }

    fn req(opts: &[&[u8]]) -> Vec<u8> {
        let mut v = vec![msg::INFORMATION_REQUEST, 0xab, 0xcd, 0xef];
        for o in opts {
            v.extend_from_slice(o);
        }
        v
    }

    const CID: &[u8] = &[0, 1, 0, 10, 0, 3, 0, 1, 2, 0, 0, 0, 0, 9];
    const ORO_DNS: &[u8] = &[0, 6, 0, 4, 0, 23, 0, 24];
    const ORO_NTP: &[u8] = &[0, 6, 0, 2, 0, 56];

    fn answer(b: &[u8]) -> Result<Vec<u8>, Discard> {
        information_request(&Message::parse(b).map_err(Discard::Malformed)?, &svc())
    }

    fn codes(reply: &[u8]) -> Vec<u16> {
        Message::parse(reply).unwrap().options().map(|o| o.code).collect()
    }

    #[test]
    fn valid_request_gets_reply_with_everything_in_order() {
        let r = answer(&req(&[CID, ORO_DNS])).unwrap();
        assert_eq!(&r[..4], &[msg::REPLY, 0xab, 0xcd, 0xef]);
        assert_eq!(codes(&r), vec![1, 2, 23, 24, 32, 83]);
        let m = Message::parse(&r).unwrap();
        assert_eq!(m.client_id().unwrap(), Some(&CID[4..]));
        assert_eq!(m.server_id().unwrap(), Some(svc().duid.as_bytes()));
        assert_eq!(m.find(23), Some(&"2001:db8::53".parse::<std::net::Ipv6Addr>().unwrap().octets()[..]));
        assert_eq!(m.find(24), Some(&b"\x07example\x03net\x00"[..]));
    }

    #[test]
    fn ntp_only_when_requested() {
        assert!(!codes(&answer(&req(&[CID])).unwrap()).contains(&56));
        assert!(codes(&answer(&req(&[CID, ORO_NTP])).unwrap()).contains(&56));
    }

    #[test]
    fn no_client_id_is_answered_without_one() {
        assert_eq!(codes(&answer(&req(&[ORO_DNS])).unwrap()), vec![2, 23, 24, 32, 83]);
    }

    #[test]
    fn ia_present_is_discarded() {
        let ia_na = &[0, 3, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0][..];
        assert_eq!(answer(&req(&[CID, ia_na])), Err(Discard::IaPresent));
        let ia_pd = &[0, 25, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0][..];
        assert_eq!(answer(&req(&[ia_pd])), Err(Discard::IaPresent));
    }

    #[test]
    fn server_id_ours_is_answered_foreign_is_discarded() {
        let ours = crate::wire::writer::test_option(2, svc().duid.as_bytes());
        assert!(answer(&req(&[CID, &ours])).is_ok());
        let foreign = &[0, 2, 0, 10, 0, 3, 0, 1, 2, 0, 0, 0, 0, 2][..];
        assert_eq!(answer(&req(&[CID, foreign])), Err(Discard::ForeignServerId));
    }

    #[test]
    fn truncated_option_and_length_past_end_are_malformed() {
        let mut r = req(&[CID]);
        r.extend_from_slice(&[0, 8, 0]);
        assert!(matches!(answer(&r), Err(Discard::Malformed(WireError::TruncatedOptionHeader(_)))));
        let r = req(&[&[0, 8, 0, 9, 0, 0]]);
        assert!(matches!(answer(&r), Err(Discard::Malformed(WireError::OptionPastEnd { .. }))));
    }

    #[test]
    fn duid_of_130_bytes_is_echoed_and_131_is_malformed() {
        let mut cid = vec![0, 1, 0, 130, 0, 2];
        cid.extend(std::iter::repeat_n(7u8, 128));
        let r = answer(&req(&[&cid])).unwrap();
        assert_eq!(Message::parse(&r).unwrap().client_id().unwrap().map(<[u8]>::len), Some(130));
        let mut cid = vec![0, 1, 0, 131, 0, 2];
        cid.extend(std::iter::repeat_n(7u8, 129));
        assert_eq!(answer(&req(&[&cid])), Err(Discard::Malformed(WireError::DuidLength(131))));
    }

    #[test]
    fn an_ignored_user_class_gets_no_answer_and_others_do() {
        let filtered = IfaceService { ignore_user_classes: vec![b"iptv".to_vec()], ..svc() };
        let iptv = &[0, 15, 0, 6, 0, 4, b'i', b'p', b't', b'v'][..];
        let vod = &[0, 15, 0, 5, 0, 3, b'v', b'o', b'd'][..];
        let ask = |b: &[u8], s: &IfaceService| information_request(&Message::parse(b).unwrap(), s);
        let e = ask(&req(&[CID, iptv]), &filtered).unwrap_err();
        assert_eq!((e.clone(), e.counter()), (Discard::IgnoredUserClass, Counter::DropUserClass));
        assert!(ask(&req(&[CID, vod]), &filtered).is_ok());
        assert!(ask(&req(&[CID, iptv]), &svc()).is_ok(), "no filter configured");
    }

    #[test]
    fn a_reply_too_long_for_a_datagram_is_discarded() {
        let big = ConfiguredOption {
            code: opt::VENDOR_OPTS,
            policy: crate::server::SendPolicy::Always,
            encoded: crate::wire::writer::test_option(opt::VENDOR_OPTS, &[0; 40_000]),
        };
        let huge = IfaceService { options: vec![big.clone(), big], ..svc() };
        let e = information_request(&Message::parse(&req(&[CID])).unwrap(), &huge).unwrap_err();
        assert!(matches!(e, Discard::ReplyTooLong(WireError::MessageTooLong { .. })), "{e:?}");
        assert_eq!(e.counter(), Counter::DropReplyTooLong);
    }
}

#[cfg(test)]
mod timer_tests {
    use super::*;
    use crate::server::ServiceOptions;

    /// A Reply to Information-Request carries the refresh time and INF_MAX_RT, never
    /// SOL_MAX_RT (which only tunes Solicit retransmission).
    #[test]
    fn information_reply_has_the_refresh_time_and_no_sol_max_rt() {
        let options = ServiceOptions {
            information_refresh_time: Some(3600),
            inf_max_rt: Some(900),
            sol_max_rt: Some(1200),
            ..Default::default()
        }
        .encode()
        .unwrap();
        let svc = IfaceService { duid: Duid::from_mac([2, 0, 0, 0, 0, 1]), options, ignore_user_classes: vec![] };
        let req = [msg::INFORMATION_REQUEST, 1, 2, 3];
        let reply = information_request(&Message::parse(&req).unwrap(), &svc).unwrap();
        let codes: Vec<u16> = Message::parse(&reply).unwrap().options().map(|o| o.code).collect();
        assert!(codes.contains(&opt::INFORMATION_REFRESH_TIME) && codes.contains(&opt::INF_MAX_RT), "{codes:?}");
        assert!(!codes.contains(&opt::SOL_MAX_RT), "{codes:?}");
    }
}
