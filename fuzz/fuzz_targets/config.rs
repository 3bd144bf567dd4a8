#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| dhcpv6_fuzz::config::check(text));
