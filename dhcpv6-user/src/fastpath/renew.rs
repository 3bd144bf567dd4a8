//! The XDP program's Renew path (`dhcpv6-ebpf/src/renew.rs`), modelled in userspace: which
//! Renews it answers from `DHCPV6_RENEWS` and the interface's reply data, which it drops as
//! userspace would, and why it passes the others up. The Reply is built here from the same
//! map contents with the engine's option rule (`in_stateful_reply() && selected(requested)`),
//! so that the differential tests can hold the program to both this model and the engine.

use std::collections::HashMap;

use dhcpv6_common::{
    limits::{BLOCK_CAP, MAX_OPTIONS, MAX_ORO_CODES, MAX_RENEW_IAS},
    wire::{msg, opt, DUID_MAX_LEN, DUID_MIN_LEN},
    IfaceKey, RenewEntry, RenewKey, Verdict, RENEW_DUID_CAP, RENEW_IA_CAP,
};

use super::frame::be16;
use super::model::{ModelIface, Outcome};
use crate::wire::options::oro_codes;

/// What the program's walk found (option offsets in the message, header included).
#[derive(Default)]
struct Walk {
    cid: Option<usize>,
    sid: Option<usize>,
    oros: usize,
    oro: Option<usize>,
    ias: Vec<usize>,
    pass: Option<Verdict>,
}

fn len_at(m: &[u8], off: usize) -> usize {
    usize::from(be16(m, off + 2).unwrap_or(0))
}

/// The walk over `m` (the DHCPv6 message): a malformed structure is a drop, the first other
/// reason to go up is kept.
fn walk(m: &[u8]) -> Result<Walk, Outcome> {
    let mut w = Walk::default();
    let mut off = 4usize;
    let first = |w: &mut Walk, v: Verdict| {
        w.pass.get_or_insert(v);
    };
    for _ in 0..MAX_OPTIONS {
        if off >= m.len() {
            break;
        }
        let (Some(code), Some(len)) = (be16(m, off), be16(m, off + 2)) else {
            return Err(Outcome::Drop(Verdict::DropMalformed));
        };
        let len = usize::from(len);
        let next = off + 4 + len;
        if next > m.len() {
            return Err(Outcome::Drop(Verdict::DropMalformed));
        }
        let duid_ok = (DUID_MIN_LEN..=DUID_MAX_LEN).contains(&len);
        match code {
            opt::CLIENTID if w.cid.is_some() || !duid_ok => return Err(Outcome::Drop(Verdict::DropMalformed)),
            opt::SERVERID if w.sid.is_some() || !duid_ok => return Err(Outcome::Drop(Verdict::DropMalformed)),
            opt::CLIENTID => w.cid = Some(off),
            opt::SERVERID => w.sid = Some(off),
            opt::ORO if len % 2 != 0 => return Err(Outcome::Drop(Verdict::DropMalformed)),
            opt::ORO => {
                w.oros += 1;
                w.oro = Some(off);
            }
            opt::ELAPSED_TIME => {}
            opt::IA_NA | opt::IA_PD => {
                let (want, sub, sub_len) =
                    if code == opt::IA_NA { (40, opt::IAADDR, 24) } else { (41, opt::IAPREFIX, 25) };
                let shaped = len == want && be16(m, off + 16) == Some(sub) && len_at(m, off + 16) == sub_len;
                if w.ias.len() >= MAX_RENEW_IAS || !shaped {
                    first(&mut w, Verdict::PassRenewIa);
                } else {
                    w.ias.push(off);
                }
            }
            opt::IA_TA => first(&mut w, Verdict::PassRenewIa),
            _ => first(&mut w, Verdict::PassRenewOptions),
        }
        off = next;
    }
    if off < m.len() || w.oros > 1 {
        first(&mut w, Verdict::PassLimits);
    }
    Ok(w)
}

fn data(m: &[u8], off: usize) -> &[u8] {
    &m[off + 4..off + 4 + len_at(m, off)]
}

/// The Renew `m` on an interface (or VLAN) `key` with `IFACE_RENEW`, checksum verified: the
/// Reply's DHCPv6 message, or the outcome instead. `boot_ns`: the program's clock
/// (`bpf_ktime_get_boot_ns`) now.
pub(super) fn serve(
    m: &[u8],
    key: IfaceKey,
    iface: &ModelIface,
    renews: &HashMap<RenewKey, RenewEntry>,
    boot_ns: u64,
) -> Result<Vec<u8>, Outcome> {
    debug_assert_eq!(m.first(), Some(&msg::RENEW));
    let w = walk(m)?;
    if w.sid.is_some_and(|s| data(m, s) != iface.svc.duid.as_bytes()) {
        return Err(Outcome::Drop(Verdict::DropForeignServerId));
    }
    if let Some(v) = w.pass {
        return Err(Outcome::Pass(v));
    }
    let (Some(cid), Some(_)) = (w.cid, w.sid) else {
        return Err(Outcome::Pass(Verdict::PassRenewOptions));
    };
    if w.ias.is_empty() {
        return Err(Outcome::Pass(Verdict::PassRenewIa));
    }
    let duid = data(m, cid);
    if duid.len() > RENEW_DUID_CAP {
        return Err(Outcome::Pass(Verdict::PassRenewDuid));
    }
    let requested: Vec<u16> = match w.oro {
        Some(o) => oro_codes(data(m, o)).map_err(|_| Outcome::Drop(Verdict::DropMalformed))?.collect(),
        None => Vec::new(),
    };
    if requested.len() > MAX_ORO_CODES {
        return Err(Outcome::Pass(Verdict::PassLimits));
    }
    // Code and IAID of each IA.
    let ident = |off: usize| (be16(m, off), &m[off + 4..off + 8]);
    if w.ias.len() == 2 && ident(w.ias[0]) == ident(w.ias[1]) {
        return Err(Outcome::Pass(Verdict::PassRenewIa));
    }
    let mut reply = vec![msg::REPLY, m[1], m[2], m[3]];
    reply.extend_from_slice(&m[cid..cid + 4 + duid.len()]);
    reply.extend_from_slice(&iface.svc.server_id_option());
    for &off in &w.ias {
        let iaid = u32::from_be_bytes(m[off + 4..off + 8].try_into().expect("four bytes"));
        let kind = m[off + 1];
        let k = RenewKey::new(key, duid, iaid, kind).ok_or(Outcome::Pass(Verdict::PassRenewDuid))?;
        let e = renews.get(&k).ok_or(Outcome::Pass(Verdict::PassRenewNoEntry))?;
        if !e.is_sealed(&k) {
            return Err(Outcome::Pass(Verdict::PassRenewTorn));
        }
        if boot_ns >= e.answer_until_ns {
            return Err(Outcome::Pass(Verdict::PassRenewExpired));
        }
        let (named, len) = if kind == opt::IA_NA as u8 {
            (&m[off + 20..off + 36], 128)
        } else {
            (&m[off + 29..off + 45], m[off + 28])
        };
        if named != e.lease || len != e.prefix_len {
            return Err(Outcome::Pass(Verdict::PassRenewChanged));
        }
        let ia_len = usize::from(e.ia_len);
        if !(4..=RENEW_IA_CAP).contains(&ia_len) {
            return Err(Outcome::Pass(Verdict::PassLimits));
        }
        reply.extend_from_slice(&e.ia[..ia_len]);
    }
    // The engine's `write_options`: the same rule, over the interface's options (the reply
    // data's block holds the same ones, SOL_MAX_RT aside, which keeps IFACE_RENEW off).
    let opts: Vec<u8> = iface
        .svc
        .options
        .iter()
        .filter(|o| o.in_stateful_reply() && o.selected(&requested))
        .flat_map(|o| o.encoded.iter().copied())
        .collect();
    if opts.len() > BLOCK_CAP {
        return Err(Outcome::Pass(Verdict::PassLimits));
    }
    reply.extend_from_slice(&opts);
    Ok(reply)
}
