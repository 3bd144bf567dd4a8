//! The XDP fast path seen from userspace: the map data it answers from, and a frame-level
//! model of what it must do, built on the userspace server's own decisions.

pub mod flood;
pub mod frame;
pub mod model;
pub mod renew;
pub mod reply_data;

pub use flood::FloodOptions;
pub use model::{model, ModelMaps, Outcome};
pub use reply_data::{
    allow_renew, build as build_reply_data, build_links as build_link_reply_data, relay_links, ReplyDataError,
};
