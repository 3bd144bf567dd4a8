//! The checks behind dhcpv6d's fuzz targets, one module per target. The targets in
//! `fuzz_targets/` only hand libFuzzer's input to `check`; keeping the checks here lets the
//! unit tests (`tests/corpus.rs`) replay the kept corpus and reproducers without libFuzzer.
//! docs/fuzzing.md says how to run them and what each one checks.

pub mod codec;
pub mod config;
pub mod engine;
pub mod leasequery;
pub mod relay;
