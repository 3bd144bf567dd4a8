//! The XDP fast path seen from userspace: the map data it answers from, and a frame-level
//! model of what it must do, built on the userspace server's own decisions.

pub mod frame;
pub mod model;
pub mod reply_data;

pub use model::{model, Outcome};
pub use reply_data::{build as build_reply_data, ReplyDataError};
