#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dhcpv6_fuzz::leasequery::check(data));
