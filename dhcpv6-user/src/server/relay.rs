//! Relayed messages, server side.
