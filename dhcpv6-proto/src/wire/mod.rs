//! DHCPv6 message codec for userspace, in the smoltcp manner: untrusted bytes are checked once
//! by a view (`Message`, `RelayMessage`) whose byte ranges are named in a `field` module, then
//! read by name; each option with structure has a `Repr`-like type (`ia`, `status`, `relay`)
//! with `parse` from bytes and `emit` into a [`Writer`], which refuses any length a 16-bit
//! field cannot hold.

pub mod domain;
pub mod duid;
pub mod ia;
pub mod leasequery;
pub mod message;
pub mod options;
pub mod relay;
pub mod status;
pub mod writer;

pub use duid::Duid;
pub use ia::{IaAddress, IaNa, IaPd, IaPrefix};
pub use message::{DhcpOption, Message, Repr};
pub use options::{OptionIter, RawOption};
pub use relay::{RelayKind, RelayLevel, RelayMessage};
pub use status::StatusCode;
pub use writer::{Writer, MAX_MESSAGE_LEN};

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    #[error("message shorter than its {0}-byte header")]
    ShortHeader(usize),
    #[error("option {code} at offset {offset} runs past the end of its container")]
    OptionPastEnd { code: u16, offset: usize },
    #[error("option header at offset {0} is truncated")]
    TruncatedOptionHeader(usize),
    #[error("DUID of {0} bytes (a DUID is 3 to 130 bytes)")]
    DuidLength(usize),
    #[error("option {0} appears more than once")]
    Duplicate(u16),
    #[error("option {code} has a bad length {len}")]
    BadLength { code: u16, len: usize },
    #[error("bad domain name: {0}")]
    Domain(&'static str),
    #[error("relay messages nested deeper than the hop limit")]
    TooDeep,
    #[error("relay message without a Relay Message option")]
    NoRelayMessage,
    #[error("relay hop-count {0} is over HOP_COUNT_LIMIT")]
    HopCountOverLimit(u8),
    #[error("prefix length {0} is over 128")]
    PrefixLength(u8),
    #[error("status message is not UTF-8")]
    StatusNotUtf8,
    /// An option's data does not fit its 16-bit length field: refused, never truncated.
    #[error("option {code} of {len} bytes does not fit a 16-bit length (at most 65,535)")]
    OptionTooLong { code: u16, len: usize },
    /// A message larger than a UDP datagram can carry.
    #[error("message of {len} bytes does not fit a UDP datagram (at most {max})", max = MAX_MESSAGE_LEN)]
    MessageTooLong { len: usize },
}
