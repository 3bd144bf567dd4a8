//! Test bed for dhcpv6d: network namespaces joined by veth pairs, and the
//! processes started inside them.
//!
//! Used by the end-to-end tests in `dhcpv6-user/tests`, by `cargo xtask lab`
//! and by `cargo xtask bench`. Everything it creates is owned by a guard that
//! removes it on `Drop` (so also when a test panics): a [`Netns`] deletes its
//! namespace (and with it its veth ends) and a [`Proc`] stops its process.
//! It only ever signals processes it started itself, by PID, and only while
//! they are unreaped children, so a PID can never have been reused.
//!
//! Everything needs root; call [`require_root`] first so the failure is clear.

mod exec;
mod link;
mod netns;
pub mod postgres;
mod process;
mod system;
mod tools;
mod wait;

#[cfg(test)]
mod tests;

pub use exec::{run_command, DEFAULT_RUN_TIMEOUT};
pub use link::veth_pair;
pub use netns::Netns;
pub use process::{signal, Proc, TERM_GRACE};
pub use system::{ensure_bpffs, require_root};
pub use tools::ensure_tools;
pub use wait::wait_for;
