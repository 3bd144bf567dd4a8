//! DHCPv6 wire constants (RFC 9915 and the option RFCs named beside each code).

/// UDP port servers and relays listen on.
pub const SERVER_PORT: u16 = 547;
/// UDP port clients listen on.
pub const CLIENT_PORT: u16 = 546;

/// ff02::1:2, All_DHCP_Relay_Agents_and_Servers (link scope).
pub const ALL_DHCP_RELAY_AGENTS_AND_SERVERS: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0x02];
/// ff05::1:3, All_DHCP_Servers (site scope).
pub const ALL_DHCP_SERVERS: [u8; 16] = [0xff, 0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0x03];

/// Message types (RFC 9915 section 7.3).
pub mod msg {
    pub const SOLICIT: u8 = 1;
    pub const ADVERTISE: u8 = 2;
    pub const REQUEST: u8 = 3;
    pub const CONFIRM: u8 = 4;
    pub const RENEW: u8 = 5;
    pub const REBIND: u8 = 6;
    pub const REPLY: u8 = 7;
    pub const RELEASE: u8 = 8;
    pub const DECLINE: u8 = 9;
    pub const RECONFIGURE: u8 = 10;
    pub const INFORMATION_REQUEST: u8 = 11;
    pub const RELAY_FORW: u8 = 12;
    pub const RELAY_REPL: u8 = 13;
    /// RFC 5007 Leasequery (a requestor's query, unicast to a server) and its reply.
    pub const LEASEQUERY: u8 = 14;
    pub const LEASEQUERY_REPLY: u8 = 15;
    /// RFC 5460 bulk leasequery (TCP only): the end of the replies, and one more binding.
    pub const LEASEQUERY_DONE: u8 = 16;
    pub const LEASEQUERY_DATA: u8 = 17;
    /// RFC 7341 DHCPv4-over-DHCPv6.
    pub const DHCPV4_QUERY: u8 = 20;
    pub const DHCPV4_RESPONSE: u8 = 21;
    /// RFC 9686 address registration.
    pub const ADDR_REG_INFORM: u8 = 36;
    pub const ADDR_REG_REPLY: u8 = 37;

    /// A message a client sends (and a relay puts in a Relay-Forward): RFC 9915 section 7.3
    /// plus the later client-originated types. Relay-Forward is not one: it comes from a relay.
    #[inline(always)]
    pub const fn is_client_message(msg_type: u8) -> bool {
        matches!(
            msg_type,
            SOLICIT
                | REQUEST
                | CONFIRM
                | RENEW
                | REBIND
                | RELEASE
                | DECLINE
                | INFORMATION_REQUEST
                | DHCPV4_QUERY
                | ADDR_REG_INFORM
        )
    }

    /// A message only a server sends to a client (Relay-Reply excluded: it is a relay message).
    /// RFC 7610 (DHCPv6-Shield) lists these as the ones to stop on client-facing ports.
    pub const fn is_server_message(msg_type: u8) -> bool {
        matches!(
            msg_type,
            ADVERTISE
                | REPLY
                | RECONFIGURE
                | LEASEQUERY_REPLY
                | LEASEQUERY_DONE
                | LEASEQUERY_DATA
                | DHCPV4_RESPONSE
                | ADDR_REG_REPLY
        )
    }
}

/// Option codes (RFC 9915 section 21 unless noted).
pub mod opt {
    pub const CLIENTID: u16 = 1;
    pub const SERVERID: u16 = 2;
    pub const IA_NA: u16 = 3;
    pub const IA_TA: u16 = 4;
    pub const IAADDR: u16 = 5;
    pub const ORO: u16 = 6;
    pub const PREFERENCE: u16 = 7;
    pub const ELAPSED_TIME: u16 = 8;
    pub const RELAY_MSG: u16 = 9;
    pub const AUTH: u16 = 11;
    pub const UNICAST: u16 = 12;
    pub const STATUS_CODE: u16 = 13;
    pub const RAPID_COMMIT: u16 = 14;
    pub const USER_CLASS: u16 = 15;
    pub const VENDOR_CLASS: u16 = 16;
    pub const VENDOR_OPTS: u16 = 17;
    pub const INTERFACE_ID: u16 = 18;
    pub const RECONF_MSG: u16 = 19;
    pub const RECONF_ACCEPT: u16 = 20;
    /// RFC 4075.
    pub const SNTP_SERVERS: u16 = 31;
    /// RFC 3646.
    pub const DNS_SERVERS: u16 = 23;
    /// RFC 3646.
    pub const DOMAIN_LIST: u16 = 24;
    pub const IA_PD: u16 = 25;
    pub const IAPREFIX: u16 = 26;
    pub const INFORMATION_REFRESH_TIME: u16 = 32;
    /// RFC 4649.
    pub const REMOTE_ID: u16 = 37;
    /// RFC 4580.
    pub const SUBSCRIBER_ID: u16 = 38;
    /// RFC 5007 Leasequery: the query, the client data answering it, the client's last
    /// transaction time, the relay data of its last relayed message, the links it is on.
    pub const LQ_QUERY: u16 = 44;
    pub const CLIENT_DATA: u16 = 45;
    pub const CLT_TIME: u16 = 46;
    pub const LQ_RELAY_DATA: u16 = 47;
    pub const LQ_CLIENT_LINK: u16 = 48;
    /// RFC 5460: the relay's DUID, which a relay adds to its Relay-Forwards.
    pub const RELAY_ID: u16 = 53;
    /// RFC 5908.
    pub const NTP_SERVER: u16 = 56;
    /// RFC 6939.
    pub const CLIENT_LINKLAYER_ADDR: u16 = 79;
    pub const SOL_MAX_RT: u16 = 82;
    pub const INF_MAX_RT: u16 = 83;
}

/// Status codes (RFC 9915 section 21.13).
pub mod status {
    pub const SUCCESS: u16 = 0;
    pub const UNSPEC_FAIL: u16 = 1;
    pub const NO_ADDRS_AVAIL: u16 = 2;
    pub const NO_BINDING: u16 = 3;
    pub const NOT_ON_LINK: u16 = 4;
    pub const USE_MULTICAST: u16 = 5;
    pub const NO_PREFIX_AVAIL: u16 = 6;
    /// RFC 5007 leasequery replies (RFC 5460 reuses them and adds QueryTerminated).
    pub const UNKNOWN_QUERY_TYPE: u16 = 7;
    pub const MALFORMED_QUERY: u16 = 8;
    pub const NOT_CONFIGURED: u16 = 9;
    pub const NOT_ALLOWED: u16 = 10;
    pub const QUERY_TERMINATED: u16 = 11;
}

/// A DUID is a 2-octet type plus 1 to 128 octets (RFC 9915 section 11.1).
pub const DUID_MIN_LEN: usize = 3;
pub const DUID_MAX_LEN: usize = 130;
/// DUID types.
pub const DUID_LLT: u16 = 1;
pub const DUID_EN: u16 = 2;
pub const DUID_LL: u16 = 3;
pub const DUID_UUID: u16 = 4;
/// ARP hardware type for Ethernet, used in DUID-LL.
pub const HWTYPE_ETHERNET: u16 = 1;

/// RFC 9915 section 7.6: HOP_COUNT_LIMIT.
pub const HOP_COUNT_LIMIT: u8 = 8;

/// Ethernet and IP numbers the fast path classifies on.
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const IPPROTO_UDP: u8 = 17;

/// IPv6 extension headers (hop-by-hop, routing, fragment, ESP, AH, destination options,
/// mobility, HIP, shim6): a datagram behind one is not walked to by the fast path, which
/// passes it up rather than call it "not DHCP".
#[inline(always)]
pub const fn is_ipv6_ext_header(next: u8) -> bool {
    matches!(next, 0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140)
}
/// Hop limit the fast path writes in its replies (the kernel's default for unicast).
pub const REPLY_HOP_LIMIT: u8 = 64;
