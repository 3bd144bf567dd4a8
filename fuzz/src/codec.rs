//! `codec_roundtrip`: a message parsed, emitted again with `Writer`, parsed again.
//!
//! Two codecs: the byte views (`Message`/`RelayMessage`, `OptionIter`, `Writer`) and the typed
//! reprs (`wire::Repr`).
//! The views keep the bytes they checked, so the round trip must give back the input byte
//! for byte; the tree of options read from the second parse must equal the first. Options
//! known to nest (IAs, their addresses and prefixes, a relay's Relay Message) are rebuilt
//! through `Writer::begin`/`end`, so patched lengths are checked too.

use dhcpv6_common::wire::{msg, opt};
use dhcpv6_proto::wire::{Message, OptionIter, RelayMessage, Repr, Writer};

/// Deeper nesting is kept as opaque bytes: enough to reach every container the server reads.
const MAX_DEPTH: usize = 16;

/// One option as read: opaque data, or a fixed head then options, or a whole message.
#[derive(Debug, PartialEq, Eq)]
enum Body<'a> {
    Raw(&'a [u8]),
    Container { head: &'a [u8], children: Vec<Opt<'a>> },
    Message(Box<Msg<'a>>),
}

#[derive(Debug, PartialEq, Eq)]
struct Opt<'a> {
    code: u16,
    body: Body<'a>,
}

#[derive(Debug, PartialEq, Eq)]
enum Msg<'a> {
    Client { msg_type: u8, xid: [u8; 3], options: Vec<Opt<'a>> },
    Relay { head: &'a [u8], options: Vec<Opt<'a>> },
}

/// Bytes before the options of a container option, for the codes that have options inside.
fn container_head(code: u16) -> Option<usize> {
    match code {
        opt::IA_NA | opt::IA_PD => Some(12),
        opt::IA_TA => Some(4),
        opt::IAADDR => Some(24),
        opt::IAPREFIX => Some(25),
        _ => None,
    }
}

fn is_relay(msg_type: u8) -> bool {
    matches!(msg_type, msg::RELAY_FORW | msg::RELAY_REPL)
}

fn read_msg(buf: &[u8], depth: usize) -> Option<Msg<'_>> {
    match buf.first() {
        Some(&t) if is_relay(t) => {
            let r = RelayMessage::parse(buf).ok()?;
            // Every accessor must be safe on what parse accepted.
            let _ = (r.hop_count(), r.link_address(), r.peer_address(), r.relay_message(), r.is_relay_forward());
            let options = r.options().map(|o| read_opt(o.code, o.data, depth)).collect();
            Some(Msg::Relay { head: &buf[..RelayMessage::HEADER_LEN], options })
        }
        _ => {
            let m = Message::parse(buf).ok()?;
            let _ = (m.client_id(), m.server_id(), m.requested_options(), m.has_ia(), m.count(opt::IA_NA));
            let options: Vec<Opt<'_>> = m.options().map(|o| read_opt(o.code, o.data, depth)).collect();
            assert_eq!(options.len(), OptionIter::new(&buf[4..]).count(), "every validated option is visited");
            Some(Msg::Client { msg_type: m.msg_type(), xid: m.xid(), options })
        }
    }
}

fn read_opt(code: u16, data: &[u8], depth: usize) -> Opt<'_> {
    let body = if depth >= MAX_DEPTH {
        Body::Raw(data)
    } else if code == opt::RELAY_MSG {
        read_msg(data, depth + 1).map_or(Body::Raw(data), |m| Body::Message(Box::new(m)))
    } else {
        match container_head(code).filter(|h| data.len() >= *h) {
            Some(h) if OptionIter::validate(&data[h..]).is_ok() => {
                let children = OptionIter::new(&data[h..])
                    .map(|o| o.expect("validated just above"))
                    .map(|o| read_opt(o.code, o.data, depth + 1))
                    .collect();
                Body::Container { head: &data[..h], children }
            }
            _ => Body::Raw(data),
        }
    };
    Opt { code, body }
}

fn write_msg(m: &Msg<'_>) -> Vec<u8> {
    let (mut w, options) = match m {
        Msg::Client { msg_type, xid, options } => (Writer::message(*msg_type, *xid), options),
        Msg::Relay { head, options } => {
            let addr =
                |at: usize| std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&head[at..at + 16]).expect("16 bytes"));
            (Writer::relay(head[0], head[1], addr(2), addr(18)), options)
        }
    };
    for o in options {
        write_opt(&mut w, o);
    }
    // What was parsed from a datagram always fits one again.
    w.finish().expect("a parsed message re-encodes within the length limits")
}

fn write_opt(w: &mut Writer, o: &Opt<'_>) {
    match &o.body {
        Body::Raw(data) => {
            w.option(o.code, data);
        }
        Body::Container { head, children } => {
            let open = w.begin(o.code);
            w.bytes(head);
            for c in children {
                write_opt(w, c);
            }
            w.end(open);
        }
        Body::Message(m) => {
            let open = w.begin(o.code);
            w.bytes(&write_msg(m));
            w.end(open);
        }
    }
}

/// Parse, emit, parse: the same bytes and the same options. Inputs that do not parse must
/// only be refused, never panic.
pub fn check(data: &[u8]) {
    let Some(first) = read_msg(data, 0) else { return };
    let emitted = write_msg(&first);
    assert_eq!(emitted, data, "re-encoding a parsed message gives back its bytes");
    let second = read_msg(&emitted, 0).expect("an emitted message parses");
    assert_eq!(first, second, "the second parse reads the same options");
    typed(data);
}

/// The typed codec (`wire::Repr`: IAs, addresses, prefixes, status codes as types): what it
/// accepts, it emits, and the emitted message parses to the same value and emits the same
/// bytes again.
fn typed(data: &[u8]) {
    let Ok(m) = Message::parse(data) else { return };
    let Ok(repr) = Repr::parse(&m) else { return };
    let bytes = repr.emit().expect("a message parsed from a datagram fits one when emitted");
    let again = Repr::parse(&Message::parse(&bytes).expect("an emitted Repr parses")).expect("and reads as a Repr");
    assert_eq!(repr, again, "parse -> emit -> parse gives the same Repr");
    assert_eq!(again.emit().expect("emits again"), bytes, "emitting is stable");
}
