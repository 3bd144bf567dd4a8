//! Reads and writes of per-CPU scratch fields that stay in memory: a value the compiler keeps
//! in a register across a loop becomes part of the verifier's state, and every combination
//! of such values is one more state to explore (see `WalkFound`).

#[inline(always)]
pub fn get(f: &u32) -> u32 {
    // SAFETY: a plain field of the per-CPU scratch map value.
    unsafe { core::ptr::read_volatile(f) }
}

#[inline(always)]
pub fn set(f: &mut u32, v: u32) {
    // SAFETY: as in `get`.
    unsafe { core::ptr::write_volatile(f, v) }
}
