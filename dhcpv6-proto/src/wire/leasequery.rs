//! Leasequery options (RFC 5007, bulk leasequery RFC 5460): the query a requestor sends
//! (OPTION_LQ_QUERY, 44), the client data a server answers with (OPTION_CLIENT_DATA, 45, holding
//! the client's DUID, its IAADDR/IAPREFIX options and OPTION_CLT_TIME, 46), the relay data of a
//! client's last relayed message (OPTION_LQ_RELAY_DATA, 47), the links a client has bindings
//! on (OPTION_LQ_CLIENT_LINK, 48); and the 2-byte length framing of leasequery over TCP
//! (RFC 5460 section 5.1).

use std::net::Ipv6Addr;

use dhcpv6_common::wire::opt;

use super::{
    ia::IaLease,
    options::{addr, be32, OptionIter},
    IaAddress, IaPrefix, RawOption, WireError, Writer,
};

/// Byte ranges of OPTION_LQ_QUERY data (RFC 5007 section 4.1.2.1).
mod query_field {
    use std::ops::{Range, RangeFrom};

    pub const QUERY_TYPE: usize = 0;
    pub const LINK_ADDRESS: Range<usize> = 1..17;
    pub const OPTIONS: RangeFrom<usize> = 17..;
}

/// Byte ranges of OPTION_LQ_RELAY_DATA data (RFC 5007 section 4.1.2.4).
mod relay_data_field {
    use std::ops::{Range, RangeFrom};

    pub const PEER_ADDRESS: Range<usize> = 0..16;
    pub const RELAY_MESSAGE: RangeFrom<usize> = 16..;
}

/// Query types of OPTION_LQ_QUERY: 1 and 2 from RFC 5007 section 4.1.2.1, 3 to 5 from RFC 5460
/// section 5.3 (bulk leasequery only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryType {
    ByAddress,
    ByClientId,
    ByRelayId,
    ByLinkAddress,
    ByRemoteId,
}

impl QueryType {
    pub const fn code(self) -> u8 {
        match self {
            QueryType::ByAddress => 1,
            QueryType::ByClientId => 2,
            QueryType::ByRelayId => 3,
            QueryType::ByLinkAddress => 4,
            QueryType::ByRemoteId => 5,
        }
    }

    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(QueryType::ByAddress),
            2 => Some(QueryType::ByClientId),
            3 => Some(QueryType::ByRelayId),
            4 => Some(QueryType::ByLinkAddress),
            5 => Some(QueryType::ByRemoteId),
            _ => None,
        }
    }

    /// RFC 5460 types need the TCP transport; RFC 5007's work on both.
    pub const fn is_bulk_only(self) -> bool {
        matches!(self, QueryType::ByRelayId | QueryType::ByLinkAddress | QueryType::ByRemoteId)
    }
}

/// Why a leasequery option is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LeasequeryError {
    #[error("OPTION_LQ_QUERY of {0} bytes is shorter than its 17-byte fixed part")]
    ShortQuery(usize),
    #[error("OPTION_LQ_RELAY_DATA of {0} bytes is shorter than its peer-address")]
    ShortRelayData(usize),
    #[error("OPTION_LQ_CLIENT_LINK of {0} bytes is not a list of IPv6 addresses")]
    ClientLinkLength(usize),
    #[error("OPTION_CLT_TIME of {0} bytes (it is 4)")]
    CltTimeLength(usize),
    #[error("query options: {0}")]
    Options(WireError),
    #[error("OPTION_CLIENT_DATA: {0}")]
    ClientData(WireError),
    #[error("OPTION_CLIENT_DATA without a Client Identifier")]
    NoClientId,
    #[error("leasequery message of {len} bytes does not fit the 2-byte TCP length (at most 65,535)")]
    FrameTooLong { len: usize },
}

/// OPTION_LQ_QUERY: what the requestor asks about. `query_type` is kept as sent, so that an
/// unknown one can be answered UnknownQueryType; `options` are validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LqQuery<'a> {
    pub query_type: u8,
    /// The link the query is about (query by link address), or limits it to; `::` for none.
    pub link_address: Ipv6Addr,
    options: &'a [u8],
}

impl<'a> LqQuery<'a> {
    /// From the option's data.
    pub fn parse(data: &'a [u8]) -> Result<Self, LeasequeryError> {
        let (Some(&query_type), Some(link_address)) =
            (data.get(query_field::QUERY_TYPE), addr(data, query_field::LINK_ADDRESS))
        else {
            return Err(LeasequeryError::ShortQuery(data.len()));
        };
        let options = &data[query_field::OPTIONS];
        OptionIter::validate(options).map_err(LeasequeryError::Options)?;
        Ok(Self { query_type, link_address, options })
    }

    pub fn kind(&self) -> Option<QueryType> {
        QueryType::from_code(self.query_type)
    }

    /// The query's own options (validated by `parse`).
    pub fn options(&self) -> impl Iterator<Item = RawOption<'a>> + 'a {
        OptionIter::new(self.options).map_while(Result::ok)
    }

    /// Data of the first query option with `code`.
    pub fn find(&self, code: u16) -> Option<&'a [u8]> {
        self.options().find(|o| o.code == code).map(|o| o.data)
    }

    /// The option codes the query's Option Request options ask for.
    pub fn requested(&self) -> Vec<u16> {
        self.options()
            .filter(|o| o.code == opt::ORO)
            .filter_map(|o| super::options::oro_codes(o.data).ok())
            .flatten()
            .collect()
    }

    /// An OPTION_LQ_QUERY from its parts; `options` are encoded options (IAADDR, CLIENTID, ...).
    pub fn emit(w: &mut Writer, query_type: u8, link_address: Ipv6Addr, options: &[u8]) {
        let o = w.begin(opt::LQ_QUERY);
        w.bytes(&[query_type]).bytes(&link_address.octets()).bytes(options);
        w.end(o);
    }
}

/// OPTION_LQ_RELAY_DATA: the peer-address and the relay message the client's data came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LqRelayData {
    pub peer_address: Ipv6Addr,
    pub relay_message: Vec<u8>,
}

impl LqRelayData {
    pub fn parse(data: &[u8]) -> Result<Self, LeasequeryError> {
        let peer_address =
            addr(data, relay_data_field::PEER_ADDRESS).ok_or(LeasequeryError::ShortRelayData(data.len()))?;
        Ok(Self { peer_address, relay_message: data[relay_data_field::RELAY_MESSAGE].to_vec() })
    }

    pub fn emit(&self, w: &mut Writer) {
        let o = w.begin(opt::LQ_RELAY_DATA);
        w.bytes(&self.peer_address.octets()).bytes(&self.relay_message);
        w.end(o);
    }
}

/// OPTION_CLIENT_DATA: one client's bindings as the server holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientData {
    pub client_id: Vec<u8>,
    pub addresses: Vec<IaAddress>,
    pub prefixes: Vec<IaPrefix>,
    /// OPTION_CLT_TIME: seconds since the server last heard from the client.
    pub clt_time: u32,
    pub relay_data: Option<LqRelayData>,
}

impl ClientData {
    pub fn parse(data: &[u8]) -> Result<Self, LeasequeryError> {
        let mut out = ClientData {
            client_id: Vec::new(),
            addresses: Vec::new(),
            prefixes: Vec::new(),
            clt_time: 0,
            relay_data: None,
        };
        for o in OptionIter::new(data) {
            let o = o.map_err(LeasequeryError::ClientData)?;
            match o.code {
                opt::CLIENTID => out.client_id = o.data.to_vec(),
                opt::IAADDR => out.addresses.push(IaAddress::parse(o.data).map_err(LeasequeryError::ClientData)?),
                opt::IAPREFIX => out.prefixes.push(IaPrefix::parse(o.data).map_err(LeasequeryError::ClientData)?),
                opt::CLT_TIME => {
                    out.clt_time = be32(o.data, 0..4)
                        .filter(|_| o.data.len() == 4)
                        .ok_or(LeasequeryError::CltTimeLength(o.data.len()))?;
                }
                opt::LQ_RELAY_DATA => out.relay_data = Some(LqRelayData::parse(o.data)?),
                _ => {}
            }
        }
        if out.client_id.is_empty() {
            return Err(LeasequeryError::NoClientId);
        }
        Ok(out)
    }

    /// Client ID, addresses, prefixes, CLT_TIME, then the relay data.
    pub fn emit(&self, w: &mut Writer) {
        let o = w.begin(opt::CLIENT_DATA);
        w.option(opt::CLIENTID, &self.client_id);
        self.addresses.iter().for_each(|a| a.emit(w));
        self.prefixes.iter().for_each(|p| p.emit(w));
        w.option(opt::CLT_TIME, &self.clt_time.to_be_bytes());
        if let Some(r) = &self.relay_data {
            r.emit(w);
        }
        w.end(o);
    }
}

/// OPTION_LQ_CLIENT_LINK data: the links (by link-address) a client has bindings on.
pub fn parse_client_links(data: &[u8]) -> Result<Vec<Ipv6Addr>, LeasequeryError> {
    if !data.len().is_multiple_of(16) {
        return Err(LeasequeryError::ClientLinkLength(data.len()));
    }
    Ok(data.chunks_exact(16).filter_map(|c| <[u8; 16]>::try_from(c).ok().map(Ipv6Addr::from)).collect())
}

pub fn emit_client_links(w: &mut Writer, links: &[Ipv6Addr]) {
    let o = w.begin(opt::LQ_CLIENT_LINK);
    links.iter().for_each(|l| {
        w.bytes(&l.octets());
    });
    w.end(o);
}

/// One leasequery message framed for TCP (RFC 5460 section 5.1): its length in two bytes, then
/// the message.
pub fn frame(message: &[u8]) -> Result<Vec<u8>, LeasequeryError> {
    let len = u16::try_from(message.len()).map_err(|_| LeasequeryError::FrameTooLong { len: message.len() })?;
    let mut out = Vec::with_capacity(message.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Message;
    use dhcpv6_common::wire::msg;

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// A LEASEQUERY by address as RFC 5007 section 4.1.2.1 lays it out: header, the requestor's
    /// Client Identifier, OPTION_LQ_QUERY (type 1, link-address ::, an IAADDR naming the
    /// address with zero lifetimes).
    const BY_ADDRESS: &[u8] = &[
        14, 0x12, 0x34, 0x56, // LEASEQUERY, transaction id
        0, 1, 0, 10, 0, 3, 0, 1, 2, 0, 0, 0, 0, 9, // Client Identifier: DUID-LL 02:00:00:00:00:09
        0, 44, 0, 45, // OPTION_LQ_QUERY, 45 bytes
        1,  // QUERY_BY_ADDRESS
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // link-address ::
        0, 5, 0, 24, // IAADDR, 24 bytes
        0x20, 1, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, // 2001:db8:1::100
        0, 0, 0, 0, 0, 0, 0, 0, // preferred, valid
    ];

    #[test]
    fn query_by_address_literal_bytes() {
        let m = Message::parse(BY_ADDRESS).unwrap();
        assert_eq!(m.msg_type(), msg::LEASEQUERY);
        let q = LqQuery::parse(m.find(opt::LQ_QUERY).unwrap()).unwrap();
        assert_eq!(q.kind(), Some(QueryType::ByAddress));
        assert_eq!(q.link_address, Ipv6Addr::UNSPECIFIED);
        let ia = IaAddress::parse(q.find(opt::IAADDR).unwrap()).unwrap();
        assert_eq!(ia.addr, ip("2001:db8:1::100"));

        let mut w = Writer::message(msg::LEASEQUERY, [0x12, 0x34, 0x56]);
        w.option(opt::CLIENTID, &[0, 3, 0, 1, 2, 0, 0, 0, 0, 9]);
        let mut inner = Writer::default();
        IaAddress { addr: ip("2001:db8:1::100"), preferred: 0, valid: 0, status: None }.emit(&mut inner);
        LqQuery::emit(&mut w, QueryType::ByAddress.code(), Ipv6Addr::UNSPECIFIED, &inner.finish().unwrap());
        assert_eq!(w.finish().unwrap(), BY_ADDRESS);
    }

    #[test]
    fn short_or_broken_queries_are_errors() {
        assert_eq!(LqQuery::parse(&[1; 16]), Err(LeasequeryError::ShortQuery(16)));
        let mut q = vec![2; 17];
        q.extend_from_slice(&[0, 1, 0, 9, 1]);
        assert!(matches!(LqQuery::parse(&q), Err(LeasequeryError::Options(_))));
        let q = LqQuery::parse(&[9; 17]).unwrap();
        assert_eq!((q.query_type, q.kind()), (9, None));
    }

    /// OPTION_CLIENT_DATA (RFC 5007 section 4.1.2.2) with one address, one prefix and
    /// OPTION_CLT_TIME (section 4.1.2.3), and the relay data (4.1.2.4).
    #[test]
    fn client_data_literal_bytes_both_ways() {
        let data = ClientData {
            client_id: vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 9],
            addresses: vec![IaAddress { addr: ip("2001:db8:1::100"), preferred: 1800, valid: 3600, status: None }],
            prefixes: vec![IaPrefix {
                preferred: 1800,
                valid: 3600,
                prefix_len: 56,
                prefix: ip("2001:db8:100::"),
                status: None,
            }],
            clt_time: 42,
            relay_data: Some(LqRelayData { peer_address: ip("fe80::9"), relay_message: vec![12, 0] }),
        };
        let mut w = Writer::default();
        data.emit(&mut w);
        let bytes = w.finish().unwrap();
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            &[0, 45, 0, 101][..],
            &[0, 1, 0, 10, 0, 3, 0, 1, 2, 0, 0, 0, 0, 9],
            &[0, 5, 0, 24, 0x20, 1, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 7, 8, 0, 0, 14, 16],
            &[0, 26, 0, 25, 0, 0, 7, 8, 0, 0, 14, 16, 56, 0x20, 1, 0x0d, 0xb8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0, 46, 0, 4, 0, 0, 0, 42],
            &[0, 47, 0, 18, 0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 12, 0],
        ]
        .concat();
        assert_eq!(bytes, expected);
        assert_eq!(ClientData::parse(&bytes[4..]).unwrap(), data);
        assert_eq!(ClientData::parse(&[0, 46, 0, 4, 0, 0, 0, 1]), Err(LeasequeryError::NoClientId));
        assert_eq!(ClientData::parse(&[0, 46, 0, 2, 0, 0]), Err(LeasequeryError::CltTimeLength(2)));
    }

    #[test]
    fn client_links_and_tcp_frames() {
        let mut w = Writer::default();
        emit_client_links(&mut w, &[ip("2001:db8:a::1"), ip("2001:db8:b::1")]);
        let bytes = w.finish().unwrap();
        assert_eq!(&bytes[..4], &[0, 48, 0, 32]);
        assert_eq!(parse_client_links(&bytes[4..]).unwrap(), vec![ip("2001:db8:a::1"), ip("2001:db8:b::1")]);
        assert_eq!(parse_client_links(&[0; 15]), Err(LeasequeryError::ClientLinkLength(15)));
        assert_eq!(frame(&[15, 1, 2, 3]).unwrap(), vec![0, 4, 15, 1, 2, 3]);
        assert_eq!(frame(&vec![0; 65_536]), Err(LeasequeryError::FrameTooLong { len: 65_536 }));
    }
}
