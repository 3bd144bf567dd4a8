//! dhcpv6d: XDP-accelerated DHCPv6 server.

use std::{net::Ipv6Addr, path::PathBuf, process::ExitCode};

use anyhow::{anyhow, Context, Result};
use clap::{Args, Parser, Subcommand};
use dhcpv6::{
    config::Overrides,
    daemon::{self, Options},
    dataplane::{self, AttachMode, DEFAULT_PIN_DIR},
    fastpath::{flood, FloodOptions},
    stats::stats_file,
};

const DEFAULT_STATE_DIR: &str = "/run/dhcpv6d";
/// `--control-socket`'s default, in the default state folder.
const DEFAULT_CONTROL_SOCKET: &str = "/run/dhcpv6d/control.sock";

#[derive(Parser)]
#[command(
    name = "dhcpv6d",
    version,
    about = "XDP-accelerated DHCPv6 server: Information-Request (and, with --xdp-renew, Renew) answered in XDP, the rest in userspace"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args)]
struct RunArgs {
    /// Interface to serve (repeatable). Interfaces in --config are served too.
    #[arg(long = "iface", value_name = "IF")]
    ifaces: Vec<String>,
    /// TOML configuration file (see docs/config.md). SIGHUP re-reads it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// DNS server to announce (repeatable; replaces the config's and resolv.conf's).
    #[arg(long, value_name = "ADDR")]
    dns: Vec<Ipv6Addr>,
    /// Domain for the search list (repeatable).
    #[arg(long, value_name = "NAME")]
    domain: Vec<String>,
    /// Relay-agent mode: the interface towards the DHCPv6 servers.
    #[arg(long, value_name = "IF")]
    relay_upstream: Option<String>,
    /// Relay-agent mode: an interface whose clients are relayed (repeatable).
    #[arg(long, value_name = "IF")]
    relay_downstream: Vec<String>,
    /// Relay-agent mode: a server to relay to (repeatable; none: ff05::1:3 on the upstream).
    #[arg(long, value_name = "ADDR")]
    relay_server: Vec<Ipv6Addr>,
    /// Relay-agent mode: replace the DNS servers in relayed replies (not in authenticated ones).
    #[arg(long, value_name = "ADDR")]
    relay_rewrite_dns: Vec<Ipv6Addr>,
    /// Serve (or, in relay-agent mode, pass on) Relay-Forward from this relay: an address or
    /// PREFIX/LEN (repeatable; fe80::/10 for lightweight relays on the link, ::/0 for
    /// everyone). None: relayed messages are dropped. Adds to the file's trusted_relays.
    #[arg(long, value_name = "PREFIX")]
    trusted_relay: Vec<String>,
    /// Answer leasequeries (RFC 5007 on UDP/547, bulk RFC 5460 on TCP/547) from this
    /// requestor: an address or PREFIX/LEN (repeatable). None (the default): UDP queries are
    /// dropped and counted, TCP ones refused with NotAllowed. Adds to the file's leasequery_from.
    #[arg(long, value_name = "PREFIX")]
    leasequery_from: Vec<String>,
    /// Stateful: an address range for IA_NA, START-END (repeatable). Serves every --iface and
    /// relayed clients whose relay link-address lies in the range's /64.
    #[arg(long, value_name = "START-END")]
    na_pool: Vec<String>,
    /// Stateful: a prefix pool for IA_PD, PREFIX/LEN:DELEGATED_LEN (repeatable).
    #[arg(long, value_name = "PREFIX/LEN:DLEN")]
    pd_pool: Vec<String>,
    /// Stateful: answer a Solicit with Rapid Commit directly with a Reply (for --na/--pd-pool).
    #[arg(long)]
    rapid_commit: bool,
    /// SOL_MAX_RT (option 82, 60..86400 s) sent in every Advertise and Reply: after an outage,
    /// CPEs that keep retrying Solicits back off to at most this interval (RFC 9915 21.24)
    #[arg(long, value_name = "SECS")]
    sol_max_rt: Option<u32>,
    /// A raw option sent in every reply, as CODE:HEX (e.g. 100:0a0b); repeatable. Over the
    /// file's raw option of the same code.
    #[arg(long = "option", value_name = "CODE:HEX")]
    raw_option: Vec<String>,
    /// Give no answer to clients whose User Class option carries TEXT; repeatable.
    #[arg(long = "ignore-user-class", value_name = "TEXT")]
    ignore_user_class: Vec<String>,
    /// Stateful: at most N addresses and prefixes per client DUID on each link (0: no
    /// limit; default 8, or the file's max_leases_per_client). Over every link's own.
    #[arg(long, value_name = "N")]
    max_leases_per_client: Option<u32>,
    /// Stateful: at most N addresses and prefixes per client MAC (or relay identity) on each
    /// link, whatever DUIDs it uses (0: no limit; default 8). Over every link's own.
    #[arg(long, value_name = "N")]
    max_leases_per_mac: Option<u32>,
    /// The Server Identifier for every interface, in hex (e.g. 00:02:00:00:ab:11:...): for
    /// boxes sharing a lease database that should look like one server. Default: each
    /// interface's own DUID-LL from its MAC
    #[arg(long, value_name = "HEX")]
    server_duid: Option<String>,
    /// Run PATH once per lease event (grant, renew, rebind, release, decline, expire,
    /// reclaim), with the event in its environment (EVENT, DUID, IAID, ADDRESS or PREFIX,
    /// LINK, lifetimes, relay identities; see docs/operations.md). Runs after the Reply, off
    /// the serving thread, a few at a time; events beyond a queue of 4096 are dropped and
    /// counted. Over the file's lease_script. Refused at start if not an executable file.
    #[arg(long, value_name = "PATH")]
    lease_script: Option<PathBuf>,
    /// Kill a run of the lease script after SECS (1..3600) [default: 10, or the file's
    /// lease_script_timeout].
    #[arg(long, value_name = "SECS")]
    lease_script_timeout: Option<u32>,
    /// The lease database: every lease is durable before its Reply is sent. A path is an
    /// SQLite file (WAL, locked against a second daemon); a postgresql:// or postgres:// URL
    /// (libpq's form, e.g. postgresql:///dhcpv6?host=/run/postgresql&user=dhcp) is a
    /// PostgreSQL database several boxes can share. Over the file's [store]; default
    /// /var/lib/dhcpv6d/leases.db
    #[arg(long, value_name = "PATH|URL")]
    lease_db: Option<PathBuf>,
    /// Boxes on one PostgreSQL database and one link: answer Solicits only for this box's
    /// share of client DUIDs (RFC 3074 style, over the boxes whose heartbeat is fresh), and
    /// for a silent box's share once its heartbeat is stale. Over the file's [store] load_split
    #[arg(long)]
    load_split: bool,
    /// Seconds after which a box's heartbeat is stale (default 10)
    #[arg(long, value_name = "SECS")]
    heartbeat_stale: Option<u32>,
    /// Userspace receive workers, each with its own UDP/547 socket and thread (1..=256; 1:
    /// one thread, as before). Over the file's `workers`. Default: one per CPU the daemon
    /// may run on (its affinity, e.g. from taskset or systemd's CPUAffinity=).
    #[arg(long, value_name = "N")]
    workers: Option<u32>,
    /// Answer Renews in XDP, in the kernel, for leases the store already holds past what the
    /// Reply tells: the daemon extends stored leases in batches ahead of their Renews
    /// (xdp_renew_window, default 3600 s after the client's last transaction in userspace)
    /// and only then lets XDP answer them. Off by default: a Renew answered in the kernel
    /// updates no last-transaction time and has no lease event of its own (the batch's
    /// pre_extend event stands for it). SQLite only: refused with a PostgreSQL store. Over the
    /// file's xdp_renew. See docs/operations.md ("Renews answered in XDP").
    #[arg(long)]
    xdp_renew: bool,
    /// Serve Prometheus metrics (text format) on this address, e.g. [::1]:9547.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<std::net::SocketAddr>,
    /// Do not install routes to delegated prefixes.
    #[arg(long)]
    no_routes: bool,
    /// Keep the XDP program classifying and counting only; userspace answers everything.
    #[arg(long)]
    no_fast_path: bool,
    /// How to attach the XDP program.
    #[arg(long, value_enum, default_value = "auto")]
    xdp_mode: AttachMode,
    /// bpffs folder for the pinned maps and links.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
    /// Folder for the daemon's state (userspace counters, the control socket).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// The control socket for `dhcpv6d ctl` (mode 0600, root only) [default: STATE_DIR/control.sock].
    #[arg(long, value_name = "PATH")]
    control_socket: Option<PathBuf>,
    /// Let the XDP program log (aya-log) into the daemon's log.
    #[arg(long)]
    bpf_log: bool,
    /// Where host DNS defaults come from when none are configured.
    #[arg(long, value_name = "FILE", default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// Flood isolation: frames per second that one source MAC on one interface may pass up
    /// to userspace (answers given in XDP are not counted); excess is dropped in XDP. 0: off.
    #[arg(long, value_name = "PER_SEC", default_value_t = flood::DEFAULT_RATE)]
    flood_rate: u32,
    /// Flood isolation: frames one source MAC may send at once (the bucket's size). 0: off.
    #[arg(long, value_name = "N", default_value_t = flood::DEFAULT_BURST)]
    flood_burst: u32,
    /// A relay agent's source address (repeatable): its frames get a bucket of their own,
    /// per address, with the relay rate and burst.
    #[arg(long, value_name = "ADDR")]
    flood_relay: Vec<Ipv6Addr>,
    /// Flood isolation for each --flood-relay source. 0: off.
    #[arg(long, value_name = "PER_SEC", default_value_t = flood::DEFAULT_RELAY_RATE)]
    flood_relay_rate: u32,
    #[arg(long, value_name = "N", default_value_t = flood::DEFAULT_RELAY_BURST)]
    flood_relay_burst: u32,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the counters of a running daemon: XDP (pinned map, summed over CPUs) and userspace.
    Stats {
        #[arg(long, value_name = "DIR", default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
        #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Remove the XDP program for good: detach every pinned link, remove the pinned maps and
    /// the pin folder. A stopped daemon leaves them attached and answering; this ends that.
    Detach {
        #[arg(long, value_name = "DIR", default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// List the leases in the lease database (also while the daemon runs).
    Leases {
        /// An SQLite file, or a postgresql:// URL (libpq's form).
        #[arg(long, value_name = "PATH|URL", default_value = "/var/lib/dhcpv6d/leases.db")]
        lease_db: PathBuf,
    },
    /// Ask the running daemon over its control socket.
    Ctl {
        #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL_SOCKET)]
        socket: PathBuf,
        #[command(subcommand)]
        cmd: CtlCmd,
    },
    /// Attach a plain XDP_PASS program to IF and pin its link at PATH (for test set-ups:
    /// veth delivers XDP_TX frames only to a peer with an XDP program).
    #[command(hide = true)]
    AttachAux {
        #[arg(long)]
        iface: String,
        /// Which auxiliary program (only `pass` for now).
        #[arg(long, default_value = "pass", value_parser = ["pass"])]
        program: String,
        #[arg(long)]
        pin: PathBuf,
    },
}

#[derive(Subcommand)]
enum CtlCmd {
    /// Version, uptime, served interfaces, whether XDP is attached, lease count.
    Status,
    /// The leases in the daemon's lease store, optionally filtered (all filters hold).
    Leases {
        /// Only this client's (DUID in hex, colons allowed).
        #[arg(long, value_name = "HEX")]
        duid: Option<dhcpv6::control_proto::HexBytes>,
        /// Only on this link (interface name, `[[link]]` name, or `default`).
        #[arg(long, value_name = "LINK")]
        link: Option<String>,
        /// Only the lease of this address, or the delegated prefix that holds it.
        #[arg(long, value_name = "ADDR")]
        address: Option<Ipv6Addr>,
        /// A JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Free an address or a delegated prefix (and remove its route); its client is not told.
    Release {
        /// ADDRESS, or PREFIX/LEN.
        #[arg(value_name = "ADDRESS|PREFIX")]
        target: dhcpv6::control_proto::ReleaseTarget,
    },
    /// Re-read the configuration file, as SIGHUP does. A refused file exits non-zero with
    /// file, line and reason, and the configuration in force stays.
    Reload,
    /// Parse and validate FILE without applying it (by the daemon, with its command line,
    /// when one runs; else the file alone).
    ConfigCheck {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// The XDP and userspace counters, messages by type and outcome, lease events, commit latency.
    Stats {
        #[arg(long)]
        json: bool,
    },
}

fn main() -> Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in journald or a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let done = match cli.cmd {
        Some(Cmd::Stats { pin_dir, state_dir }) => stats(&pin_dir, &state_dir),
        Some(Cmd::AttachAux { iface, pin, .. }) => attach_aux(&iface, &pin),
        Some(Cmd::Leases { lease_db }) => leases(&lease_db),
        Some(Cmd::Detach { pin_dir }) => detach(&pin_dir),
        Some(Cmd::Ctl { socket, cmd }) => return dhcpv6::ctl::run(&socket, ctl_command(cmd)),
        None => {
            let r = cli.run;
            let opts = Options {
                config: r.config,
                overrides: Overrides {
                    ifaces: r.ifaces,
                    dns: r.dns,
                    domains: r.domain,
                    relay_upstream: r.relay_upstream,
                    relay_downstream: r.relay_downstream,
                    relay_servers: r.relay_server,
                    relay_rewrite_dns: r.relay_rewrite_dns,
                    na_pools: r.na_pool,
                    pd_pools: r.pd_pool,
                    rapid_commit: r.rapid_commit,
                    trusted_relays: r.trusted_relay,
                    sol_max_rt: r.sol_max_rt,
                    raw_options: r.raw_option,
                    ignore_user_classes: r.ignore_user_class,
                    max_leases_per_client: r.max_leases_per_client,
                    max_leases_per_mac: r.max_leases_per_mac,
                    server_duid: r.server_duid,
                    lease_script: r.lease_script,
                    lease_script_timeout: r.lease_script_timeout,
                    leasequery_from: r.leasequery_from,
                    lease_db: r.lease_db.map(PathBuf::into_os_string),
                    load_split: r.load_split,
                    heartbeat_stale: r.heartbeat_stale,
                    workers: r.workers,
                    xdp_renew: r.xdp_renew,
                },
                routes: !r.no_routes,
                metrics: r.metrics,
                control_socket: r.control_socket.unwrap_or_else(|| r.state_dir.join("control.sock")),
                fast_path: !r.no_fast_path,
                xdp_mode: r.xdp_mode,
                pin_dir: r.pin_dir,
                state_dir: r.state_dir,
                bpf_log: r.bpf_log,
                resolv_conf: r.resolv_conf,
                flood: FloodOptions {
                    rate: r.flood_rate,
                    burst: r.flood_burst,
                    relay_rate: r.flood_relay_rate,
                    relay_burst: r.flood_relay_burst,
                    relays: r.flood_relay,
                },
            };
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(daemon::run(opts))
        }
    };
    done.map(|()| ExitCode::SUCCESS)
}

fn ctl_command(c: CtlCmd) -> dhcpv6::ctl::Command {
    use dhcpv6::{control_proto::LeaseFilter, ctl::Command};
    match c {
        CtlCmd::Status => Command::Status,
        CtlCmd::Leases { duid, link, address, json } => {
            Command::Leases { filter: LeaseFilter { duid, link, address }, json }
        }
        CtlCmd::Release { target } => Command::Release { target },
        CtlCmd::Reload => Command::Reload,
        CtlCmd::ConfigCheck { file } => Command::ConfigCheck { file },
        CtlCmd::Stats { json } => Command::Stats { json },
    }
}

fn stats(pin_dir: &std::path::Path, state_dir: &std::path::Path) -> Result<()> {
    let c = dataplane::pinned_counters(pin_dir)?;
    println!("# XDP ({}, summed over CPUs)", pin_dir.display());
    for (name, v) in c.fields() {
        println!("xdp_{name} {v}");
    }
    let path = stats_file(state_dir);
    println!("# userspace ({})", path.display());
    match std::fs::read_to_string(&path) {
        Ok(text) => text.lines().for_each(|l| println!("user_{l}")),
        Err(e) => println!("# not readable: {e}"),
    }
    Ok(())
}

fn detach(pin_dir: &std::path::Path) -> Result<()> {
    let removed = dhcpv6::pins::remove_all(pin_dir)?;
    if removed.links.is_empty() && removed.others.is_empty() {
        println!("nothing pinned at {}", pin_dir.display());
        return Ok(());
    }
    for l in &removed.links {
        let ifname = l.strip_prefix(dhcpv6::pins::LINK_PREFIX).unwrap_or(l);
        println!("detached XDP from {ifname}");
    }
    println!("removed {} ({})", pin_dir.display(), removed.others.join(", "));
    Ok(())
}

fn leases(db: &std::path::Path) -> Result<()> {
    use dhcpv6::leases::StoreSpec;
    let spec = StoreSpec::parse(db)?;
    if let StoreSpec::Sqlite(path) = &spec {
        if !path.exists() {
            anyhow::bail!("{} does not exist (no lease was ever granted, or another --lease-db)", path.display());
        }
    }
    // Not the daemon's lock: listing allocates nothing, so it may run beside the daemon.
    let store = spec.open_for_inspection()?;
    let mut all = store.load_all()?;
    all.sort_by(|a, b| (&a.iface, a.addr).cmp(&(&b.iface, b.addr)));
    let now = dhcpv6::leases::unix_now();
    println!(
        "{:<4} {:<44} {:<30} {:>10} {:<12} {:>9} {:<8} ROUTE",
        "TYPE", "ADDRESS/PREFIX", "DUID", "IAID", "LINK", "EXPIRES", "STATE"
    );
    for l in &all {
        let what = if l.prefix_len == 128 { l.addr.to_string() } else { format!("{}/{}", l.addr, l.prefix_len) };
        let duid: String = l.duid.iter().map(|b| format!("{b:02x}")).collect();
        let left = l.valid_until.saturating_sub(now);
        let route = l.next_hop.as_ref().map_or_else(|| "-".to_owned(), |h| format!("via {} dev {}", h.via, h.dev));
        println!(
            "{:<4} {:<44} {:<30} {:>10} {:<12} {:>8}s {:<8} {}",
            l.kind, what, duid, l.iaid, l.iface, left, l.state, route
        );
    }
    eprintln!("{} leases", all.len());
    Ok(())
}

fn attach_aux(iface: &str, pin: &std::path::Path) -> Result<()> {
    use aya::programs::{links::FdLink, Xdp, XdpMode};
    dataplane::ensure_bpffs()?;
    let mut ebpf = aya::EbpfLoader::new()
        .override_global("AYA_LOG_LEVEL", &0u8, false)
        .load(dataplane::EBPF_OBJECT)
        .context("loading the XDP object")?;
    let prog: &mut Xdp = ebpf.program_mut("dhcpv6_pass").ok_or_else(|| anyhow!("no pass program"))?.try_into()?;
    prog.load()?;
    let id = prog.attach(iface, XdpMode::Driver).with_context(|| format!("attaching the pass program to {iface}"))?;
    let fd: FdLink = prog.take_link(id)?.try_into().map_err(|_| anyhow!("no bpf_link to pin"))?;
    fd.pin(pin).with_context(|| format!("pinning {}", pin.display()))?;
    Ok(())
}
