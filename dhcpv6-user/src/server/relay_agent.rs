//! Relay-agent mode.
