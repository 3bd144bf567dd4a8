//! Counters of the userspace path, and the file through which `dhcpv6d stats` reads them
//! from another process (the XDP counters come from the pinned map instead).
//!
//! Every event the daemon counts is a [`Counter`]: one list, so a name cannot be misspelt at
//! one call site and a metric cannot appear that `dhcpv6d stats` does not know.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
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
    /// The lease store cannot write: a Renew, Rebind, Release or Decline that would change
    /// a lease is dropped without trying (the client keeps its stored lease and retransmits).
    DropStoreDown => "drop_store_down",
    /// The lease store cannot write: a Solicit or Request answered with NoAddrsAvail /
    /// NoPrefixAvail instead of a grant.
    RefusedStoreDown => "refused_store_down",
    /// Lease store outages begun, by reason (see `leases::Outage`), and ended.
    StoreOutageFull => "store_outage_full",
    StoreOutageIo => "store_outage_io",
    StoreOutageStopped => "store_outage_stopped",
    StoreOutageLost => "store_outage_lost",
    StoreOutageUnreachable => "store_outage_unreachable",
    StoreOutageOther => "store_outage_other",
    StoreRecovered => "store_recovered",
    DropUnknownLink => "drop_unknown_link",
    DropNoClientId => "drop_no_client_id",
    DropUnexpectedServerId => "drop_unexpected_server_id",
    DropMissingServerId => "drop_missing_server_id",
    /// A client message sent, not relayed, to a unicast address (RFC 9915 section 16: we
    /// never send Server Unicast).
    DropUnicast => "drop_unicast",
    DropRebindNothingToSay => "drop_rebind_nothing_to_say",
    DropConfirmUndecidable => "drop_confirm_undecidable",
    /// A reply that would not fit a datagram, or with an option too long for its 16-bit
    /// length (never sent truncated).
    DropReplyTooLong => "drop_reply_too_long",
    /// A client whose User Class is one of `ignore_user_classes` (any message type).
    DropUserClass => "drop_user_class",
    /// A Solicit left to another box: its DUID is in that box's share (`--load-split`).
    DropOtherShare => "drop_other_share",
    /// A new lease refused because the client's DUID holds as many as its link allows.
    LimitLeasesPerClient => "limit_leases_per_client",
    /// A new lease refused because the client's MAC (or relay identity) holds as many as its
    /// link allows.
    LimitLeasesPerMac => "limit_leases_per_mac",
    /// A Decline past the client's or the link's cap: the address was freed, not held.
    LimitDeclined => "limit_declined",
    /// A queued message dropped unanswered because newer ones filled the userspace queue
    /// (the oldest go first: their clients have retransmitted by now).
    ShedOldest => "shed_oldest",
    /// A stateful message whose lease change was decided while as many commits as the
    /// daemon allows were still on their way to the store: rolled back, not answered, not
    /// queued (its client retransmits; memory stays bounded under a storm).
    ShedCommitBacklog => "shed_commit_backlog",
    /// Relay-agent mode: a datagram for the relay agent while its queue was full.
    ShedRelayAgentBusy => "shed_relay_agent_busy",
    /// A Request, Renew or Rebind dropped because the same (client DUID, transaction ID,
    /// type) is already queued, being decided or waiting for its commit: a retransmission,
    /// which the Reply on its way answers (RFC 9915 keeps the transaction ID).
    DuplicateInFlightRequest => "duplicate_in_flight_request",
    DuplicateInFlightRenew => "duplicate_in_flight_renew",
    DuplicateInFlightRebind => "duplicate_in_flight_rebind",
    /// The same for a Solicit or an Information-Request still queued or being answered.
    DuplicateInFlightSolicit => "duplicate_in_flight_solicit",
    DuplicateInFlightInformationRequest => "duplicate_in_flight_information_request",
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
    /// Relay-agent mode: a Relay-Reply from a source that is not a configured server (or,
    /// with ff05::1:3, not link-local on the upstream).
    DropAgentUnexpectedServer => "drop_agent_unexpected_server",
    /// A Relay-Forward from a source no `--trusted-relay` / `trusted_relays` names.
    DropUntrustedRelay => "drop_untrusted_relay",
    /// A message straight from a client whose source is neither link-local nor on-link.
    DropOffLinkSource => "drop_off_link_source",
    /// Relay-agent mode: a Relay-Forward from below, from a relay nobody trusted.
    DropAgentUntrustedRelay => "drop_agent_untrusted_relay",
    /// Relay-agent mode: a client message from below whose source is off the link.
    DropAgentOffLinkSource => "drop_agent_off_link_source",
    /// Relay-agent mode: a Relay-Reply whose peer-address is neither link-local nor on the
    /// downstream link it names.
    DropAgentPeerOffLink => "drop_agent_peer_off_link",
    /// Relay-agent mode: a Relay-Reply carrying a message type we do not know.
    DropAgentUnknownType => "drop_agent_unknown_type",
    /// A leasequery (UDP or TCP) answered with the client data it asked for (or with none,
    /// when there is no such binding).
    LeasequeryAnswered => "leasequery_answered",
    /// A leasequery answered with an error status (MalformedQuery, UnknownQueryType,
    /// NotAllowed over TCP).
    LeasequeryRefused => "leasequery_refused",
    /// A UDP leasequery from a source no `--leasequery-from` names: dropped unanswered.
    DropLeasequeryNotAllowed => "drop_leasequery_not_allowed",
    /// A leasequery naming another server's Server Identifier, or not even a message.
    DropLeasequeryMalformed => "drop_leasequery_malformed",
    /// A leasequery the lease store could not answer (it is down, or 64 UDP queries are already
    /// waiting for it): dropped, the requestor retries.
    DropLeasequeryStore => "drop_leasequery_store",
    /// A TCP leasequery connection refused: as many as allowed are open.
    DropLeasequeryConnections => "drop_leasequery_connections",
    /// A message whose commit would change a lease whose Renew entry cannot be deleted: not
    /// committed, not answered (`xdp_renew`).
    DropXdpRenewDelete => "drop_xdp_renew_delete",
    /// Pre-extension batches whose commit was durable (`xdp_renew`).
    XdpRenewBatches => "xdp_renew_batches",
    /// Pre-extension batches whose commit failed: no entry was put, memory rolled back.
    XdpRenewBatchFailed => "xdp_renew_batch_failed",
    /// Entries put into `DHCPV6_RENEWS`, and taken out (by a change, a deadline, a reload):
    /// their difference is the entries in the map.
    XdpRenewEntriesPut => "xdp_renew_entries_put",
    XdpRenewEntriesDeleted => "xdp_renew_entries_deleted",
    /// A put or delete the kernel refused (a delete that fails leaves an entry whose lease
    /// changed: the daemon then stops committing nothing, see `fast_renew`).
    XdpRenewMapErrors => "xdp_renew_map_errors",
}

impl std::fmt::Display for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What became of one client message the userspace path took in (the reason of a drop is
/// its [`Counter`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageOutcome {
    /// Answered (for a stateful decision: once its leases were durable).
    Replied,
    /// No answer by decision (malformed, not for us, nothing to say, ...).
    Dropped,
    /// An answer was due but could not go out: the send or the lease commit failed.
    Failed,
}

impl MessageOutcome {
    pub const ALL: [MessageOutcome; 3] = [MessageOutcome::Replied, MessageOutcome::Dropped, MessageOutcome::Failed];

    pub const fn as_str(self) -> &'static str {
        match self {
            MessageOutcome::Replied => "replied",
            MessageOutcome::Dropped => "dropped",
            MessageOutcome::Failed => "failed",
        }
    }
}

/// Message type names (RFC 9915 section 7.3) by type code; index 0 stands for every code
/// not listed (unassigned or not a client message we know).
const MESSAGE_TYPES: [&str; 14] = [
    "other",
    "solicit",
    "advertise",
    "request",
    "confirm",
    "renew",
    "rebind",
    "reply",
    "release",
    "decline",
    "reconfigure",
    "information_request",
    "relay_forw",
    "relay_repl",
];

/// The label of message type `t` (`other` for codes without a name here).
pub fn message_type_name(t: u8) -> &'static str {
    MESSAGE_TYPES.get(usize::from(t)).copied().unwrap_or(MESSAGE_TYPES[0])
}

/// Every message type label, `other` last.
pub fn message_type_names() -> impl Iterator<Item = &'static str> {
    MESSAGE_TYPES[1..].iter().chain(&MESSAGE_TYPES[..1]).copied()
}

/// A change in the lease population, counted when it is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaseEvent {
    /// A binding that did not exist before.
    Granted,
    /// An existing binding extended or changed (Renew, Rebind, a repeated Request).
    Renewed,
    /// Ended by the client (Release) or by the server (no longer valid for the link).
    Released,
    /// The client found the address in use (Decline).
    Declined,
    /// Its valid lifetime ran out.
    Expired,
    /// Ended by an operator (`dhcpv6d ctl release`).
    OperatorReleased,
    /// Stored expiry moved on by a pre-extension batch, for Renews XDP answers (`xdp_renew`).
    PreExtended,
}

impl LeaseEvent {
    pub const ALL: [LeaseEvent; 7] = [
        LeaseEvent::Granted,
        LeaseEvent::Renewed,
        LeaseEvent::Released,
        LeaseEvent::Declined,
        LeaseEvent::Expired,
        LeaseEvent::OperatorReleased,
        LeaseEvent::PreExtended,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            LeaseEvent::Granted => "granted",
            LeaseEvent::Renewed => "renewed",
            LeaseEvent::Released => "released",
            LeaseEvent::Declined => "declined",
            LeaseEvent::Expired => "expired",
            LeaseEvent::OperatorReleased => "operator_released",
            LeaseEvent::PreExtended => "pre_extended",
        }
    }
}

/// Why a run of the lease script failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScriptFailure {
    /// It could not be started (gone, not executable any more, no processes left).
    Spawn,
    /// It exited non-zero or was killed by a signal.
    Exit,
    /// It ran past its timeout and was killed.
    Timeout,
}

impl ScriptFailure {
    pub const ALL: [ScriptFailure; 3] = [ScriptFailure::Spawn, ScriptFailure::Exit, ScriptFailure::Timeout];

    pub const fn as_str(self) -> &'static str {
        match self {
            ScriptFailure::Spawn => "spawn",
            ScriptFailure::Exit => "exit",
            ScriptFailure::Timeout => "timeout",
        }
    }
}

/// What became of the lease events handed to the lease script.
#[derive(Default)]
pub struct ScriptStats {
    runs: AtomicU64,
    dropped: AtomicU64,
    failures: [AtomicU64; ScriptFailure::ALL.len()],
}

impl ScriptStats {
    /// A run that ended, however it ended.
    pub fn ran(&self, failure: Option<ScriptFailure>) {
        self.runs.fetch_add(1, Ordering::Relaxed);
        if let Some(f) = failure {
            self.failures[f as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An event not run because the queue was full.
    pub fn drop_one(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Failed runs by reason, zeros included.
    pub fn failures(&self) -> Vec<(&'static str, u64)> {
        ScriptFailure::ALL.iter().map(|f| (f.as_str(), self.failures[*f as usize].load(Ordering::Relaxed))).collect()
    }
}

/// Upper bounds (seconds) of the lease-commit latency buckets: an fsync on an SSD takes
/// well under a millisecond, a loaded spinning disk tens of milliseconds, and a commit
/// queued behind others waits for theirs.
pub const COMMIT_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// Upper bounds (seconds) of the buckets of the steps of a message's way (`Phase`) and of the
/// store's writer (`leases::StoreTimings`): from the engine's microseconds to a stall of
/// seconds.
pub const PHASE_BUCKETS: [f64; 16] =
    [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// A latency histogram with fixed buckets, lock-free like the counters, and the largest
/// observation (a stall shows as the max long before it moves a percentile).
pub struct Histogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative); the last slot counts what is above every bound.
    buckets: Box<[AtomicU64]>,
    sum_micros: AtomicU64,
    max_micros: AtomicU64,
}

/// A histogram as read at one instant: cumulative counts per bound, as Prometheus has them.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound in seconds, observations at or below it); `+Inf` is `count`.
    pub cumulative: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
    pub max_seconds: f64,
}

impl HistogramSnapshot {
    /// The bound of the bucket that holds quantile `q` (0..=1): an upper estimate, as fine
    /// as the buckets; past the last bound, the max.
    pub fn quantile(&self, q: f64) -> f64 {
        let rank = (q * self.count as f64).ceil().max(1.0) as u64;
        self.cumulative.iter().find(|(_, n)| *n >= rank).map_or(self.max_seconds, |(b, _)| b.min(self.max_seconds))
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new(&COMMIT_BUCKETS)
    }
}

impl Histogram {
    /// A histogram over `bounds` (seconds, ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            max_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self.bounds.iter().position(|b| secs <= *b).unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.max_micros.fetch_max(micros, Ordering::Relaxed);
    }

    /// Observes the time since `started`.
    pub fn since(&self, started: std::time::Instant) {
        self.observe(started.elapsed());
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let mut cumulative = Vec::with_capacity(self.bounds.len());
        for (bound, n) in self.bounds.iter().zip(self.buckets.iter()) {
            running += n.load(Ordering::Relaxed);
            cumulative.push((*bound, running));
        }
        let count = running + self.buckets[self.bounds.len()].load(Ordering::Relaxed);
        // Micros to seconds for display only: precision far beyond what a dashboard shows.
        let sum_seconds = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let max_seconds = self.max_micros.load(Ordering::Relaxed) as f64 / 1e6;
        HistogramSnapshot { cumulative, count, sum_seconds, max_seconds }
    }
}

/// The steps of a stateful message's way through the daemon, each timed (`UserStats::phase`):
/// where a stall sits shows in which of them its time went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// From the datagram's receipt to the start of its handling (the receive queue).
    QueueWait,
    /// The engine's decision, the wait for its lock included.
    Decide,
    /// Sending a stateful reply once its leases are durable.
    ReplySend,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::QueueWait, Phase::Decide, Phase::ReplySend];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::QueueWait => "queue_wait",
            Phase::Decide => "decide",
            Phase::ReplySend => "reply_send",
        }
    }
}

/// The daemon's counters: one atomic per [`Counter`], so any task or thread bumps without a lock.
pub struct UserStats {
    counts: Box<[AtomicU64]>,
    /// Per message type code (`MESSAGE_TYPES`) and [`MessageOutcome`].
    messages: [[AtomicU64; 3]; MESSAGE_TYPES.len()],
    lease_events: [AtomicU64; LeaseEvent::ALL.len()],
    /// How long lease commits took to be durable.
    pub commit_latency: Histogram,
    /// The lease script's runs, failures and dropped events.
    pub lease_script: ScriptStats,
    /// Per `Phase`.
    phases: [Histogram; Phase::ALL.len()],
}

impl Default for UserStats {
    fn default() -> Self {
        Self {
            counts: Counter::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            messages: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            lease_events: std::array::from_fn(|_| AtomicU64::new(0)),
            commit_latency: Histogram::default(),
            lease_script: ScriptStats::default(),
            phases: std::array::from_fn(|_| Histogram::new(&PHASE_BUCKETS)),
        }
    }
}

impl UserStats {
    /// The histogram of one step of a message's way.
    pub fn phase(&self, p: Phase) -> &Histogram {
        &self.phases[p as usize]
    }

    pub fn bump(&self, c: Counter) {
        self.counts[c as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `n` events at once (a batch).
    pub fn add(&self, c: Counter, n: u64) {
        self.counts[c as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self, c: Counter) -> u64 {
        self.counts[c as usize].load(Ordering::Relaxed)
    }

    /// Every counter with its value, zeros included (a metric that exists at 0 can be graphed
    /// and alerted on before its first event).
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        Counter::ALL.iter().map(|&c| (c.as_str(), self.get(c))).collect()
    }

    /// Counts one client message of type `msg_type` by what became of it.
    pub fn message(&self, msg_type: u8, outcome: MessageOutcome) {
        let t = if usize::from(msg_type) < MESSAGE_TYPES.len() { usize::from(msg_type) } else { 0 };
        self.messages[t][outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// (type, outcome, count) for every message type and outcome, zeros included.
    pub fn messages(&self) -> Vec<(&'static str, &'static str, u64)> {
        let order = (1..MESSAGE_TYPES.len()).chain([0]);
        order
            .flat_map(|t| {
                MessageOutcome::ALL
                    .iter()
                    .map(move |o| (MESSAGE_TYPES[t], o.as_str(), self.messages[t][*o as usize].load(Ordering::Relaxed)))
            })
            .collect()
    }

    pub fn lease_event(&self, e: LeaseEvent, n: u64) {
        self.lease_events[e as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Every lease event with its count, zeros included.
    pub fn lease_events(&self) -> Vec<(&'static str, u64)> {
        LeaseEvent::ALL.iter().map(|e| (e.as_str(), self.lease_events[*e as usize].load(Ordering::Relaxed))).collect()
    }

    /// Every line of the stats file: the counters by name, then `msg_TYPE_OUTCOME`,
    /// `lease_EVENT` and the lease script's (so `dhcpv6d stats` shows them too).
    pub fn lines(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self.snapshot().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        out.extend(self.messages().into_iter().map(|(t, o, v)| (format!("msg_{t}_{o}"), v)));
        out.extend(self.lease_events().into_iter().map(|(e, v)| (format!("lease_{e}"), v)));
        let script = &self.lease_script;
        out.push(("lease_script_runs".to_owned(), script.runs()));
        out.push(("lease_script_dropped".to_owned(), script.dropped()));
        out.extend(script.failures().into_iter().map(|(f, v)| (format!("lease_script_failed_{f}"), v)));
        out
    }

    /// Rewrites `path` atomically (write then rename), `name value` per line.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text: String = self.lines().iter().map(|(k, v)| format!("{k} {v}\n")).collect();
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
    fn a_histogram_keeps_its_max_and_tells_quantiles_by_bucket() {
        let h = Histogram::new(&PHASE_BUCKETS);
        for _ in 0..99 {
            h.observe(Duration::from_micros(20));
        }
        h.observe(Duration::from_millis(300));
        let s = h.snapshot();
        assert_eq!(s.count, 100);
        assert_eq!(s.quantile(0.5), 0.000025, "the bound of the bucket holding the median");
        assert_eq!(s.quantile(0.99), 0.000025);
        assert_eq!(s.quantile(1.0), 0.3, "the top bucket's bound, capped by the max");
        assert_eq!(s.max_seconds, 0.3);
        assert_eq!(Histogram::default().snapshot().cumulative.len(), COMMIT_BUCKETS.len());
    }

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
    fn messages_are_counted_by_type_and_outcome() {
        let s = UserStats::default();
        s.message(1, MessageOutcome::Replied);
        s.message(1, MessageOutcome::Replied);
        s.message(3, MessageOutcome::Failed);
        s.message(200, MessageOutcome::Dropped);
        let m = s.messages();
        assert_eq!(m.len(), MESSAGE_TYPES.len() * 3);
        let get = |t, o| m.iter().find(|(a, b, _)| *a == t && *b == o).map(|x| x.2);
        assert_eq!(get("solicit", "replied"), Some(2));
        assert_eq!(get("request", "failed"), Some(1));
        assert_eq!(get("other", "dropped"), Some(1));
        assert_eq!(m.iter().map(|x| x.2).sum::<u64>(), 4);
        assert_eq!(message_type_name(11), "information_request");
        assert_eq!(message_type_name(99), "other");
        assert_eq!(message_type_names().count(), MESSAGE_TYPES.len());
        assert!(s.lines().iter().any(|(k, v)| k == "msg_solicit_replied" && *v == 2));
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(10));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.cumulative[0], (0.0005, 1));
        assert_eq!(s.cumulative.iter().find(|(b, _)| *b == 0.005).map(|x| x.1), Some(2));
        assert_eq!(s.cumulative.last().map(|x| x.1), Some(2), "10 s is only in +Inf");
        assert!((s.sum_seconds - 10.0033).abs() < 1e-9, "{}", s.sum_seconds);
    }

    #[test]
    fn lease_events_add_up() {
        let s = UserStats::default();
        s.lease_event(LeaseEvent::Granted, 3);
        s.lease_event(LeaseEvent::Expired, 1);
        let e = s.lease_events();
        assert_eq!(e.len(), LeaseEvent::ALL.len());
        assert!(e.contains(&("granted", 3)) && e.contains(&("expired", 1)) && e.contains(&("renewed", 0)));
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
