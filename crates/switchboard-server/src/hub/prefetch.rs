//! Asking the CPU for memory ahead of its use: the record a channel's history lets go
//! of next. A full history lets one message go per publish, the one kept longest, whose
//! record was last touched a thousand messages ago; its first read would otherwise wait
//! for memory on the one thread that serves the publishing connection.

use std::mem::size_of;
use std::sync::Arc;

const CACHE_LINE: usize = 64;

/// Asks for the cache lines of the value `value` shares and of the two counts the
/// `Arc` keeps in front of it. A hint only: nothing is read or written, whatever the
/// address.
#[inline]
pub(crate) fn arc<T>(value: &Arc<T>) {
    let counts = 2 * size_of::<usize>();
    let start = Arc::as_ptr(value).cast::<u8>().wrapping_sub(counts);
    for address in lines(start, counts + size_of::<T>()) {
        line(address);
    }
}

/// The start of every cache line that holds some of the `len` bytes from `start`.
fn lines(start: *const u8, len: usize) -> impl Iterator<Item = *const u8> {
    let misalignment = start.addr() % CACHE_LINE;
    let first = start.wrapping_sub(misalignment);
    (0..len + misalignment)
        .step_by(CACHE_LINE)
        .map(move |offset| first.wrapping_add(offset))
}

#[inline]
fn line(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and changes nothing but the cache, whatever the
    // address, and SSE (which the instruction belongs to) is part of x86-64.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(address.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line from the one holding the first byte to the one holding the last, each
    /// once, from every alignment.
    #[test]
    fn the_lines_asked_for_cover_the_bytes_and_no_more() {
        let memory = vec![0u8; 8 * CACHE_LINE];
        for skew in 0..CACHE_LINE {
            for len in 1..=3 * CACHE_LINE {
                let start = memory.as_ptr().wrapping_add(CACHE_LINE + skew);
                let asked: Vec<usize> = lines(start, len).map(|at| at.addr()).collect();
                let first_line = start.addr() / CACHE_LINE;
                let last_line = (start.addr() + len - 1) / CACHE_LINE;
                let expected: Vec<usize> = (first_line..=last_line)
                    .map(|line| line * CACHE_LINE)
                    .collect();
                assert_eq!(asked, expected, "skew {skew}, len {len}");
            }
        }
    }
}
