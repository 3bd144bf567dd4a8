//! Message handling: decide what to answer. Pure functions over parsed messages; sockets
//! and stores are the daemon's business.

pub mod leasequery;
pub mod options;
pub mod relay;
pub mod relay_agent;
pub mod split;
pub mod stateful;
pub mod stateless;
pub mod trust;
pub mod typed_options;
pub mod user_class;

pub use options::{ConfiguredOption, SendPolicy, ServiceOptions};
pub use stateless::{information_request, information_request_with, Discard, IfaceService, LinkService};
