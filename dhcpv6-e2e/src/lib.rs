//! Nothing here: this crate holds the tests that need root (`tests/`), so that the protocol
//! crate's and the daemon's own tests build and run without it. `cargo xtask test` runs them.
