//! Defaults without a config file, as odhcpd has them: the host's own resolvers and search
//! domains from resolv.conf.

use std::{net::Ipv6Addr, path::Path};

#[derive(Debug, Default, PartialEq, Eq)]
pub struct HostResolver {
    pub dns: Vec<Ipv6Addr>,
    pub domains: Vec<String>,
}

/// IPv6 nameservers a client could reach (not loopback, not link-local without a zone) and
/// the search list. A missing or unreadable file gives nothing.
pub fn read(path: &Path) -> HostResolver {
    std::fs::read_to_string(path).map(|s| parse(&s)).unwrap_or_default()
}

pub fn parse(text: &str) -> HostResolver {
    let mut out = HostResolver::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(Ok(a)) = words.next().map(str::parse::<Ipv6Addr>) {
                    if !a.is_loopback() && !a.is_unspecified() && !a.is_unicast_link_local() {
                        out.dns.push(a);
                    }
                }
            }
            Some("search") | Some("domain") => {
                out.domains = words.map(|w| w.trim_end_matches('.').to_owned()).filter(|w| !w.is_empty()).collect();
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_ipv6_servers_and_search_list() {
        let r =
            parse("# c\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 2001:db8::1\nsearch a.example b.example.\n");
        assert_eq!(r.dns, vec!["2001:db8::1".parse::<Ipv6Addr>().unwrap()]);
        assert_eq!(r.domains, vec!["a.example", "b.example"]);
    }
}
