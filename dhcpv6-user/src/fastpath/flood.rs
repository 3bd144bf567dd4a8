//! Flood isolation settings: the token buckets the XDP program keeps for frames it passes up
//! to userspace (see docs/fast-path.md, "Flood isolation").

use std::net::Ipv6Addr;

use dhcpv6_common::{FloodConfig, FloodLimit};

/// A CPE sends a few messages a minute (a handful at boot, retransmissions included): ten a
/// second sustained, fifty at once, is far above that and far below any flood.
pub const DEFAULT_RATE: u32 = 10;
pub const DEFAULT_BURST: u32 = 50;
/// A relay speaks for a whole access network: after a power cut thousands of CPEs restart at
/// once, each with its four-message exchange.
pub const DEFAULT_RELAY_RATE: u32 = 1000;
pub const DEFAULT_RELAY_BURST: u32 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloodOptions {
    /// Frames per second per (interface, source MAC); 0 turns metering off.
    pub rate: u32,
    pub burst: u32,
    /// Per (interface, source address) of a configured relay source; 0 turns it off.
    pub relay_rate: u32,
    pub relay_burst: u32,
    /// Relay agents' source addresses: their frames use the relay buckets.
    pub relays: Vec<Ipv6Addr>,
}

impl Default for FloodOptions {
    fn default() -> Self {
        FloodOptions {
            rate: DEFAULT_RATE,
            burst: DEFAULT_BURST,
            relay_rate: DEFAULT_RELAY_RATE,
            relay_burst: DEFAULT_RELAY_BURST,
            relays: Vec::new(),
        }
    }
}

impl FloodOptions {
    /// The limits as the program's config map holds them (the relay count is the writer's).
    pub fn config(&self) -> FloodConfig {
        FloodConfig {
            client: FloodLimit::new(self.rate, self.burst),
            relay: FloodLimit::new(self.relay_rate, self.relay_burst),
            relays: 0,
            _pad: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpe_stays_inside_the_default_bucket_and_a_flood_does_not() {
        let l = FloodOptions::default().config().client;
        // A CPE: a boot-time exchange of eight messages in a second, then one a minute.
        let (mut tat, mut now) = (0u64, 1_000_000_000u64);
        for i in 0..8 {
            tat = l.admit(tat, now + i * 100_000_000).expect("boot exchange admitted");
        }
        for _ in 0..60 {
            now += 60_000_000_000;
            tat = l.admit(tat, now).expect("one a minute admitted");
        }
        // A flood from a full bucket: a thousand frames in a tenth of a second.
        now += 600_000_000_000;
        let admitted = (0..1000u64).filter(|i| l.admit(tat, now + i * 100_000).map(|t| tat = t).is_some()).count();
        assert_eq!(admitted, DEFAULT_BURST as usize, "the burst and nothing more (no token refills in 0.1 s)");
    }

    #[test]
    fn zero_rate_or_burst_is_off() {
        assert!(FloodOptions { rate: 0, ..Default::default() }.config().client.is_off());
        assert!(FloodOptions { burst: 0, ..Default::default() }.config().client.is_off());
        assert!(!FloodOptions::default().config().relay.is_off());
    }
}
