//! DHCPv6 message codec for userspace: untrusted bytes are checked once by the views in
//! `message`, then read by name; replies are built with `writer`.

pub mod domain;
pub mod duid;
pub mod message;
pub mod options;
pub mod writer;

pub use duid::Duid;
pub use message::{Message, RelayMessage};
pub use options::{OptionIter, RawOption};
pub use writer::Writer;

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
}
