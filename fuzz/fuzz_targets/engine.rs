#![no_main]

libfuzzer_sys::fuzz_target!(|script: dhcpv6_fuzz::engine::Script| dhcpv6_fuzz::engine::check(&script));
