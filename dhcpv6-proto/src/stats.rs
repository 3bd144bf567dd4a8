//! Counters of the userspace path, and the file through which `dhcpv6d stats` reads them
//! from another process (the XDP counters come from the pinned map instead).
//!
//! Every event the daemon counts is a [`Counter`]: one list, so a name cannot be misspelt at
//! one call site and a metric cannot appear that `dhcpv6d stats` does not know.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

macro_rules! counters {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)+) => {
        /// One userspace event, counted under its name (metrics label, `dhcpv6d stats` line).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Counter {
            $($(#[$doc])* $variant,)+
        }

        impl Counter {
            /// Every counter, in declaration order.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)+];

            /// The name operators see.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Counter::$variant => $name,)+
                }
            }
        }
    };
}

counters! {
    /// A datagram read from the server socket.
    Received => "received",
    /// A datagram that arrived on an interface this daemon does not serve.
    IgnoredOtherIface => "ignored_other_iface",
    /// A datagram on a served interface whose reply data is not ready yet.
    IgnoredIfaceNotReady => "ignored_iface_not_ready",
    /// A Relay-Forward taken apart to its client message.
    Relayed => "relayed",
    Replied => "replied",
    SendFailed => "send_failed",
    /// Relay-agent mode: a client message forwarded upstream, a server reply sent down.
    RelayedUp => "relayed_up",
    RelayedDown => "relayed_down",
    RouteChanges => "route_changes",
    RouteFailures => "route_failures",
    DropMalformed => "drop_malformed",
    DropIaPresent => "drop_ia_present",
    DropForeignServerId => "drop_foreign_server_id",
    DropUnsupported => "drop_unsupported",
    DropNoStatefulService => "drop_no_stateful_service",
    DropNoReply => "drop_no_reply",
    DropCommitFailed => "drop_commit_failed",
    DropUnknownLink => "drop_unknown_link",
    DropNoClientId => "drop_no_client_id",
    DropUnexpectedServerId => "drop_unexpected_server_id",
    DropMissingServerId => "drop_missing_server_id",
    DropUnicast => "drop_unicast",
    DropRebindNothingToSay => "drop_rebind_nothing_to_say",
    DropConfirmUndecidable => "drop_confirm_undecidable",
    /// A reply that would not fit a datagram, or with an option too long for its 16-bit
    /// length (never sent truncated).
    DropReplyTooLong => "drop_reply_too_long",
    /// A client whose User Class is one of `ignore_user_classes` (any message type).
    DropUserClass => "drop_user_class",
    DropRelayEmpty => "drop_relay_empty",
    DropRelayNotRelayMsg => "drop_relay_not_relay_msg",
    DropRelayShortHeader => "drop_relay_short_header",
    DropRelayHopCountOverLimit => "drop_relay_hop_count_over_limit",
    DropRelayTooDeep => "drop_relay_too_deep",
    DropRelayTruncatedRelayMsg => "drop_relay_truncated_relay_msg",
    DropRelayOptionPastEnd => "drop_relay_option_past_end",
    DropRelayTruncatedOptionHeader => "drop_relay_truncated_option_header",
    DropRelayMalformed => "drop_relay_malformed",
    DropRelayNoRelayMsg => "drop_relay_no_relay_msg",
    DropRelayMultipleRelayMsg => "drop_relay_multiple_relay_msg",
    DropRelayDuplicateOption => "drop_relay_duplicate_option",
    DropRelayBadOptionLength => "drop_relay_bad_option_length",
    DropRelayInnerNotClientMsg => "drop_relay_inner_not_client_msg",
    DropRelayInnerNotServerMsg => "drop_relay_inner_not_server_msg",
    DropRelayInnerMalformed => "drop_relay_inner_malformed",
    DropRelayTooLarge => "drop_relay_too_large",
    DropAgentUnknownIface => "drop_agent_unknown_iface",
    DropAgentBadSource => "drop_agent_bad_source",
    DropAgentMalformed => "drop_agent_malformed",
    DropAgentServerMsgFromClient => "drop_agent_server_msg_from_client",
    DropAgentClientMsgFromServer => "drop_agent_client_msg_from_server",
    DropAgentTooLarge => "drop_agent_too_large",
    DropAgentNotRelayReply => "drop_agent_not_relay_reply",
    DropAgentBadPeerAddress => "drop_agent_bad_peer_address",
    DropAgentHopLimit => "drop_agent_hop_limit",
    DropAgentUnexpectedServer => "drop_agent_unexpected_server",
}

impl std::fmt::Display for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The daemon's counters: one atomic per [`Counter`], so any task or thread bumps without a lock.
pub struct UserStats {
    counts: Box<[AtomicU64]>,
}

impl Default for UserStats {
    fn default() -> Self {
        Self { counts: Counter::ALL.iter().map(|_| AtomicU64::new(0)).collect() }
    }
}

impl UserStats {
    pub fn bump(&self, c: Counter) {
        self.counts[c as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, c: Counter) -> u64 {
        self.counts[c as usize].load(Ordering::Relaxed)
    }

    /// Every counter with its value, zeros included (a metric that exists at 0 can be graphed
    /// and alerted on before its first event).
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        Counter::ALL.iter().map(|&c| (c.as_str(), self.get(c))).collect()
    }

    /// Rewrites `path` atomically (write then rename), `name value` per line.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text: String = self.snapshot().iter().map(|(k, v)| format!("{k} {v}\n")).collect();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(tmp, path)
    }
}

pub fn stats_file(state_dir: &Path) -> PathBuf {
    state_dir.join("userspace.stats")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_indices_match() {
        let mut names: Vec<_> = Counter::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Counter::ALL.len());
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
    }

    #[test]
    fn bump_moves_only_its_counter() {
        let s = UserStats::default();
        s.bump(Counter::DropUnicast);
        s.bump(Counter::DropUnicast);
        assert_eq!(s.get(Counter::DropUnicast), 2);
        assert_eq!(s.snapshot().iter().map(|(_, v)| v).sum::<u64>(), 2);
    }
}
