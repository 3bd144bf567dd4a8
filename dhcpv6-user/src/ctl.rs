//! `dhcpv6d ctl`: asks a running daemon over its control socket and prints the answer.

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context, Result};

use crate::{
    config,
    control_proto::{self as proto, LeaseFilter, LeaseView, ReleaseTarget, Request, Response, Stats, Status},
};

/// Longer than the daemon's own limit on answering, so its "no answer" reaches the user.
const TIMEOUT: Duration = Duration::from_secs(60);

pub enum Command {
    Status,
    Leases { filter: LeaseFilter, json: bool },
    Release { target: ReleaseTarget },
    Reload,
    ConfigCheck { file: PathBuf },
    Stats { json: bool },
}

pub fn run(socket: &Path, cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Status => answer(call(socket, &Request::Status {})?, |r| match r {
            Response::Status(s) => {
                print_status(s);
                true
            }
            _ => false,
        }),
        Command::Leases { filter, json } => answer(call(socket, &Request::Leases { filter })?, |r| match r {
            Response::Leases { leases } => {
                print_leases(leases, json);
                true
            }
            _ => false,
        }),
        Command::Release { target } => answer(call(socket, &Request::Release { target })?, |r| match r {
            Response::Released { lease } => {
                println!(
                    "released {} {} (DUID {}, IAID {}, link {})",
                    lease.kind,
                    lease.what(),
                    lease.duid,
                    lease.iaid,
                    lease.link
                );
                true
            }
            _ => false,
        }),
        Command::Reload => match call(socket, &Request::Reload {})? {
            Response::Reloaded => {
                println!("configuration reloaded");
                Ok(ExitCode::SUCCESS)
            }
            Response::Error { message } => {
                eprintln!("reload refused, the configuration in force stays: {message}");
                Ok(ExitCode::FAILURE)
            }
            other => unexpected(&other),
        },
        Command::ConfigCheck { file } => config_check(socket, file),
        Command::Stats { json } => answer(call(socket, &Request::Stats {})?, |r| match r {
            Response::Stats(s) => {
                print_stats(s, json);
                true
            }
            _ => false,
        }),
    }
}

/// Prints what `show` knows (it says whether it did); a refusal goes to stderr with a failing exit code.
fn answer(r: Response, show: impl FnOnce(&Response) -> bool) -> Result<ExitCode> {
    if let Response::Error { message } = &r {
        eprintln!("{message}");
        return Ok(ExitCode::FAILURE);
    }
    if show(&r) {
        Ok(ExitCode::SUCCESS)
    } else {
        unexpected(&r)
    }
}

fn unexpected(r: &Response) -> Result<ExitCode> {
    anyhow::bail!("unexpected answer from the daemon: {r:?}")
}

/// Through the daemon when one runs (its command line counts too: interfaces given by
/// `--iface`, pools by `--na-pool`); else the file alone.
fn config_check(socket: &Path, file: PathBuf) -> Result<ExitCode> {
    // The daemon reads the path itself: give it one that does not depend on our directory.
    let path = std::path::absolute(&file).unwrap_or(file);
    match connect(socket) {
        Ok(conn) => match exchange(conn, &Request::ConfigCheck { path: path.clone() })? {
            Response::ConfigOk { path } => {
                println!("{}: ok (checked by the running daemon, with its command line)", path.display());
                Ok(ExitCode::SUCCESS)
            }
            Response::Error { message } => {
                eprintln!("{message}");
                Ok(ExitCode::FAILURE)
            }
            other => unexpected(&other),
        },
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {
            match config::read(&path) {
                Ok(_) => {
                    println!("{}: ok (no daemon at {}: the file alone was checked)", path.display(), socket.display());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Err(e) => Err(e).with_context(|| format!("connecting to {}", socket.display())),
    }
}

fn connect(socket: &Path) -> std::io::Result<UnixStream> {
    let c = UnixStream::connect(socket)?;
    c.set_read_timeout(Some(TIMEOUT))?;
    c.set_write_timeout(Some(TIMEOUT))?;
    Ok(c)
}

fn call(socket: &Path, req: &Request) -> Result<Response> {
    let conn = connect(socket).with_context(|| {
        format!("cannot reach dhcpv6d at {} (is it running? its --control-socket?)", socket.display())
    })?;
    exchange(conn, req)
}

fn exchange(mut conn: UnixStream, req: &Request) -> Result<Response> {
    conn.write_all(&proto::encode(req)).context("sending the request")?;
    let _ = conn.shutdown(std::net::Shutdown::Write);
    let mut buf = Vec::new();
    let limit = u64::try_from(proto::MAX_RESPONSE_LEN + 1).unwrap_or(u64::MAX);
    (&mut conn).take(limit).read_to_end(&mut buf).context("reading the answer")?;
    if buf.is_empty() {
        anyhow::bail!("the daemon closed the connection without answering");
    }
    Ok(proto::decode_response(&buf)?)
}

fn print_status(s: &Status) {
    println!("dhcpv6d {} (pid {}), up {} s", s.version, s.pid, s.uptime_seconds);
    println!("fast path: {}", if s.fast_path { "on" } else { "off (--no-fast-path)" });
    if let Some(u) = &s.relay_upstream {
        println!("relay agent towards {u}");
    }
    for i in &s.ifaces {
        let index = i.ifindex.map_or_else(|| "absent".to_owned(), |x| format!("ifindex {x}"));
        let xdp = if i.xdp_attached { "XDP attached" } else { "XDP not attached" };
        let data = if i.reply_data { "reply data written" } else { "no reply data yet" };
        println!("  {:<16} {index}, {xdp}, {data}", i.name);
    }
    match s.leases {
        Some(n) => println!("leases: {n}"),
        None => println!("leases: no stateful service (no pools)"),
    }
}

fn print_leases(leases: &[LeaseView], json: bool) {
    if json {
        // Plain data (strings and numbers): serialization cannot fail.
        println!("{}", serde_json::to_string_pretty(leases).unwrap_or_default());
        return;
    }
    println!(
        "{:<4} {:<44} {:<30} {:>10} {:<12} {:>9} {:>9} {:<8} ROUTE",
        "TYPE", "ADDRESS/PREFIX", "DUID", "IAID", "LINK", "VALID", "PREFERRED", "STATE"
    );
    for l in leases {
        println!(
            "{:<4} {:<44} {:<30} {:>10} {:<12} {:>8}s {:>8}s {:<8} {}",
            l.kind,
            l.what(),
            l.duid,
            l.iaid,
            l.link,
            l.valid_left,
            l.preferred_left,
            l.state,
            l.route.as_deref().unwrap_or("-")
        );
    }
    eprintln!("{} leases", leases.len());
}

fn print_stats(s: &Stats, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(s).unwrap_or_default());
        return;
    }
    match (&s.xdp, &s.xdp_error) {
        (Some(x), _) => x.iter().for_each(|(k, v)| println!("xdp_{k} {v}")),
        (None, e) => println!("# XDP counters not readable: {}", e.as_deref().unwrap_or("?")),
    }
    s.userspace.iter().for_each(|(k, v)| println!("user_{k} {v}"));
    for (t, outcomes) in &s.messages {
        outcomes.iter().for_each(|(o, v)| println!("msg_{t}_{o} {v}"));
    }
    s.lease_events.iter().for_each(|(k, v)| println!("lease_{k} {v}"));
    s.lease_script.iter().for_each(|(k, v)| println!("lease_script_{k} {v}"));
    let c = &s.commit_latency;
    println!("commit_count {}", c.count);
    println!("commit_seconds_sum {}", c.sum_seconds);
    c.buckets.iter().for_each(|(le, n)| println!("commit_seconds_le_{le} {n}"));
    for (i, w) in s.workers.iter().enumerate() {
        println!("worker_{i}_received {}", w.received);
        println!("worker_{i}_shed {}", w.shed);
        println!("worker_{i}_queue {}", w.queue);
    }
}
