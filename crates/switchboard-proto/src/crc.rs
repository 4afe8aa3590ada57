//! CRC32C of every piece of a frame: the small ones (its prefix, its header block, a
//! small body) and the large bodies.
//!
//! Inputs of different lengths want different code, and so do different CPUs:
//!
//! - A short input takes the CPU's CRC32C instruction eight bytes at a time (unaligned
//!   loads are fine on x86-64): setting up anything wider costs more than the checksum
//!   of the few dozen bytes a header holds.
//! - From `THREE_STREAMS` bytes on, the input is cut into three equal parts whose CRCs
//!   run side by side and are joined with one carry-less multiplication each. The
//!   instruction takes three cycles but the CPU starts one per cycle, so one stream
//!   leaves two thirds of it idle: three streams run at the instruction's full rate,
//!   about eight bytes a cycle (on an AMD EPYC without AVX-512, 1 KiB in 48–57 ns
//!   where `crc-fast`'s SSE code takes 129, 64 KiB in 2.75 µs where it takes 4.57:
//!   docs/BENCHMARKS.md).
//! - On a CPU with AVX-512 and VPCLMULQDQ, inputs from `WIDE_FOLD` bytes on go to
//!   `crc-fast`, which folds 256 bytes at a time there: a 64 KiB body in 0.7–0.9 µs.
//! - CPUs without SSE 4.2 and carry-less multiplication use the `crc32c` crate for short
//!   inputs and `crc-fast` for long ones.
//!
//! All compute the same CRC32C (Castagnoli), so either end of a connection may use any.

/// Inputs at least this long are checksummed as three streams where the CPU allows.
/// Below it, one stream of a few words finishes before three would be joined.
const THREE_STREAMS: usize = 256;

/// Inputs at least this long go to `crc-fast` on a CPU whose AVX-512 VPCLMULQDQ lets it
/// fold faster than three streams of the CRC32C instruction (on such a CPU `crc-fast`
/// took 60 ns for 1 KiB, where three streams take about 45).
const WIDE_FOLD: usize = 2048;

/// Inputs at least this long go to `crc-fast` on CPUs where the CRC32C instruction
/// cannot be used.
const PORTABLE_LONG: usize = 448;

/// The CRC32C of `bytes` continuing from `crc` (0 to start), as
/// `crc32c::crc32c_append` computes it.
pub fn crc32c_append(crc: u32, bytes: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        if bytes.len() < THREE_STREAMS {
            // SAFETY: the CPU has SSE 4.2, as just checked.
            return unsafe { sse42::crc32c_append(crc, bytes) };
        }
        if bytes.len() >= WIDE_FOLD && x86_wide_fold() {
            return long_crc32c_append(crc, bytes);
        }
        if std::arch::is_x86_feature_detected!("pclmulqdq") {
            // SAFETY: the CPU has SSE 4.2 and PCLMULQDQ, as just checked.
            return unsafe { sse42::three_streams_append(crc, bytes) };
        }
    }
    if bytes.len() >= PORTABLE_LONG {
        return long_crc32c_append(crc, bytes);
    }
    crc32c::crc32c_append(crc, bytes)
}

/// Whether `crc-fast` has its AVX-512 VPCLMULQDQ code on this CPU.
#[cfg(target_arch = "x86_64")]
fn x86_wide_fold() -> bool {
    std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("vpclmulqdq")
}

/// [`crc32c_append`] by `crc-fast`.
fn long_crc32c_append(crc: u32, bytes: &[u8]) -> u32 {
    if crc == 0 {
        return crc_fast::crc32_iscsi(bytes);
    }
    // The running state is the complement of the CRC so far, as the crate keeps it.
    let mut digest =
        crc_fast::Digest::new_with_init_state(crc_fast::CrcAlgorithm::Crc32Iscsi, u64::from(!crc));
    digest.update(bytes);
    // A CRC-32's digest fits in 32 bits.
    digest.finalize() as u32
}

/// The CRC32C of `bytes`.
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c_append(0, bytes)
}

/// The header CRC of a frame: the CRC32C of the first 20 bytes of its prefix followed
/// by its header block (the prefix's last four bytes, where the CRC goes, left out).
/// The same as `crc32c_append(crc32c(prefix), block)`, in one pass.
pub fn header_crc(prefix: &[u8; 20], block: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if block.len() < THREE_STREAMS && std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the CPU has SSE 4.2, as just checked.
        return unsafe { sse42::header_crc(prefix, block) };
    }
    crc32c_append(crc32c(prefix), block)
}

/// Both CRCs of a frame that arrived whole: its header CRC (see [`header_crc`]) and the
/// CRC32C of its content, in one pass when both are short (the two checksums computed
/// side by side, so that neither waits on the other's instructions). The same values as
/// `(header_crc(prefix, block), crc32c(content))`.
pub fn frame_crcs(prefix: &[u8; 20], block: &[u8], content: &[u8]) -> (u32, u32) {
    #[cfg(target_arch = "x86_64")]
    if block.len() < THREE_STREAMS
        && content.len() < THREE_STREAMS
        && std::arch::is_x86_feature_detected!("sse4.2")
    {
        // SAFETY: the CPU has SSE 4.2, as just checked.
        return unsafe { sse42::frame_crcs(prefix, block, content) };
    }
    (header_crc(prefix, block), crc32c(content))
}

#[cfg(target_arch = "x86_64")]
mod sse42 {
    use std::arch::x86_64::{
        _mm_clmulepi64_si128, _mm_crc32_u8, _mm_crc32_u32, _mm_crc32_u64, _mm_cvtsi32_si128,
        _mm_cvtsi128_si64,
    };

    /// The most words (of eight bytes) each of the three streams takes in one round;
    /// a longer input is taken in rounds of three times this.
    const ROUND_WORDS: usize = 192;

    /// The CRC32C polynomial, bit-reversed as the instruction uses it.
    const POLYNOMIAL: u32 = 0x82F6_3B78;

    /// `x` multiplied by x^n modulo the polynomial, bit-reversed.
    const fn times_x_to_the(mut x: u32, n: u32) -> u32 {
        let mut i = 0;
        while i < n {
            x = if x & 1 == 1 {
                (x >> 1) ^ POLYNOMIAL
            } else {
                x >> 1
            };
            i += 1;
        }
        x
    }

    /// `SKIP[k]` moves a CRC state past `k` words of zeros: x^(64k - 33) modulo the
    /// polynomial. Multiplied (carry-less) by a state, it gives a 64-bit value whose
    /// CRC32C from 0 is the state as if `k` zero words had followed (the instruction's
    /// own 64 bits of shift are where the 64k - 33 falls short). Built at compile time,
    /// each entry from the one before it.
    static SKIP: [u32; 2 * ROUND_WORDS + 1] = {
        let mut table = [0u32; 2 * ROUND_WORDS + 1];
        table[1] = times_x_to_the(1 << 31, 31);
        let mut k = 2;
        while k < table.len() {
            table[k] = times_x_to_the(table[k - 1], 64);
            k += 1;
        }
        table
    };

    /// `state` moved past `words` words of zeros, as a value to be folded in by one more
    /// CRC32C instruction (whose own 64 bits of shift complete the move).
    #[target_feature(enable = "sse4.2,pclmulqdq")]
    fn skip(state: u64, words: usize) -> u64 {
        // The state is 32 bits wide; the instruction keeps it in the low half.
        let product = _mm_clmulepi64_si128(
            _mm_cvtsi32_si128(state as u32 as i32),
            _mm_cvtsi32_si128(SKIP[words] as i32),
            0,
        );
        _mm_cvtsi128_si64(product) as u64
    }

    /// CRC32C of `bytes` continuing from `crc`, as three streams side by side.
    #[target_feature(enable = "sse4.2,pclmulqdq")]
    pub(super) fn three_streams_append(crc: u32, bytes: &[u8]) -> u32 {
        let (all_words, _) = bytes.as_chunks::<8>();
        let mut words = all_words;
        let mut state = u64::from(!crc);
        while words.len() >= 3 {
            let per_stream = (words.len() / 3).min(ROUND_WORDS);
            let (first, others) = words.split_at(per_stream);
            let (second, others) = others.split_at(per_stream);
            let (third, others) = others.split_at(per_stream);
            // The first stream continues the state so far; the other two start from
            // zero, and are joined to it once all three are done (the CRC is linear).
            let (mut a, mut b, mut c) = (state, 0u64, 0u64);
            for ((wa, wb), wc) in first.iter().zip(second).zip(third) {
                a = _mm_crc32_u64(a, u64::from_le_bytes(*wa));
                b = _mm_crc32_u64(b, u64::from_le_bytes(*wb));
                c = _mm_crc32_u64(c, u64::from_le_bytes(*wc));
            }
            state = c
                ^ _mm_crc32_u64(0, skip(a, 2 * per_stream))
                ^ _mm_crc32_u64(0, skip(b, per_stream));
            words = others;
        }
        // The last few words and bytes, one stream. The instruction leaves the 32-bit
        // state in the low half.
        let joined = (all_words.len() - words.len()) * 8;
        crc32c_append(!(state as u32), &bytes[joined..])
    }

    #[target_feature(enable = "sse4.2")]
    pub(super) fn header_crc(prefix: &[u8; 20], block: &[u8]) -> u32 {
        let (words, last) = prefix.as_chunks::<8>();
        let mut state = u64::from(!0u32);
        for word in words {
            state = _mm_crc32_u64(state, u64::from_le_bytes(*word));
        }
        let last: [u8; 4] = [last[0], last[1], last[2], last[3]];
        let state = _mm_crc32_u32(state as u32, u32::from_le_bytes(last));
        crc32c_append(!state, block)
    }

    #[target_feature(enable = "sse4.2")]
    pub(super) fn frame_crcs(prefix: &[u8; 20], block: &[u8], content: &[u8]) -> (u32, u32) {
        let (words, last) = prefix.as_chunks::<8>();
        let mut header = u64::from(!0u32);
        for word in words {
            header = _mm_crc32_u64(header, u64::from_le_bytes(*word));
        }
        let last: [u8; 4] = [last[0], last[1], last[2], last[3]];
        let mut header = u64::from(_mm_crc32_u32(header as u32, u32::from_le_bytes(last)));
        let mut body = u64::from(!0u32);
        let (block_words, block_rest) = block.as_chunks::<8>();
        let (content_words, content_rest) = content.as_chunks::<8>();
        let both = block_words.len().min(content_words.len());
        for (block_word, content_word) in block_words[..both].iter().zip(&content_words[..both]) {
            header = _mm_crc32_u64(header, u64::from_le_bytes(*block_word));
            body = _mm_crc32_u64(body, u64::from_le_bytes(*content_word));
        }
        for word in &block_words[both..] {
            header = _mm_crc32_u64(header, u64::from_le_bytes(*word));
        }
        for word in &content_words[both..] {
            body = _mm_crc32_u64(body, u64::from_le_bytes(*word));
        }
        // The instruction leaves the 32-bit state in the low half.
        let mut header = header as u32;
        for &byte in block_rest {
            header = _mm_crc32_u8(header, byte);
        }
        let mut body = body as u32;
        for &byte in content_rest {
            body = _mm_crc32_u8(body, byte);
        }
        (!header, !body)
    }

    #[target_feature(enable = "sse4.2")]
    pub(super) fn crc32c_append(crc: u32, bytes: &[u8]) -> u32 {
        let (words, rest) = bytes.as_chunks::<8>();
        let mut state = u64::from(!crc);
        for word in words {
            state = _mm_crc32_u64(state, u64::from_le_bytes(*word));
        }
        // The instruction leaves the 32-bit state in the low half.
        let mut state = state as u32;
        for &byte in rest {
            state = _mm_crc32_u8(state, byte);
        }
        !state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length up to past the cut-overs, from every alignment, continuing from
    /// several starting values, against the `crc32c` crate.
    #[test]
    fn matches_the_crate_for_every_length_and_alignment() {
        let data: Vec<u8> = (0..3 * PORTABLE_LONG + 64)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(7))
            .collect();
        for start in 0..64 {
            for len in 0..=PORTABLE_LONG + 16 {
                let bytes = &data[start..start + len];
                for crc in [0, 1, 0xdead_beef, u32::MAX] {
                    assert_eq!(
                        crc32c_append(crc, bytes),
                        crc32c::crc32c_append(crc, bytes),
                        "start {start}, len {len}, crc {crc:#x}"
                    );
                }
            }
        }
        for len in 0..=PORTABLE_LONG + 16 {
            let (prefix, block) = data.split_at(20);
            let prefix: &[u8; 20] = prefix.try_into().unwrap();
            let block = &block[..len];
            assert_eq!(
                header_crc(prefix, block),
                crc32c::crc32c_append(crc32c::crc32c(prefix), block),
                "header block of {len} bytes"
            );
        }
        for block_len in 0..=PORTABLE_LONG + 16 {
            for content_len in (0..=PORTABLE_LONG + 16).step_by(3) {
                let (prefix, rest) = data.split_at(20);
                let prefix: &[u8; 20] = prefix.try_into().unwrap();
                let (block, rest) = rest.split_at(block_len);
                let content = &rest[..content_len];
                assert_eq!(
                    frame_crcs(prefix, block, content),
                    (
                        crc32c::crc32c_append(crc32c::crc32c(prefix), block),
                        crc32c::crc32c(content)
                    ),
                    "header block of {block_len} bytes, content of {content_len}"
                );
            }
        }
        assert_eq!(
            crc32c(b"123456789"),
            0xe306_9283,
            "the standard check value"
        );
    }

    /// The lengths `long_inputs_match_the_crate` tries: around the sizes the wide code
    /// works in (64 and 256 bytes and their multiples, a round of three streams and
    /// two, a 64 KiB body, up to a megabyte).
    fn long_lengths() -> Vec<usize> {
        let mut lengths: Vec<usize> = (THREE_STREAMS..PORTABLE_LONG + 700).collect();
        for base in [1024, WIDE_FOLD, 4096, 4608, 9216, 16 * 1024, 64 * 1024] {
            lengths.extend(base - 65..=base + 65);
        }
        lengths.extend((1 << 20) - 3..=(1 << 20) + 3);
        lengths
    }

    fn long_data() -> Vec<u8> {
        (0..(1 << 20) + 300)
            .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    /// Long inputs (see `long_lengths`), from several alignments and starting values,
    /// against the `crc32c` crate; and a changed byte anywhere in a 64 KiB body changes
    /// its CRC.
    #[test]
    fn long_inputs_match_the_crate() {
        let data = long_data();
        for len in long_lengths() {
            for start in [0, 1, 3, 8, 13, 64, 255] {
                let bytes = &data[start..start + len];
                for crc in [0, 1, 0xdead_beef, u32::MAX] {
                    assert_eq!(
                        crc32c_append(crc, bytes),
                        crc32c::crc32c_append(crc, bytes),
                        "start {start}, len {len}, crc {crc:#x}"
                    );
                }
            }
        }
        let body = &data[..64 * 1024];
        let sound = crc32c(body);
        let mut changed = body.to_vec();
        for at in [0, 1, 63, 64, 4095, 32 * 1024 + 7, 64 * 1024 - 1] {
            changed[at] ^= 0x10;
            assert_ne!(crc32c(&changed), sound, "byte {at} changed");
            changed[at] ^= 0x10;
        }
    }

    /// The three-stream code on every long length, also where this CPU sends those
    /// lengths to `crc-fast` instead.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn three_streams_match_the_crate() {
        if !(std::arch::is_x86_feature_detected!("sse4.2")
            && std::arch::is_x86_feature_detected!("pclmulqdq"))
        {
            return;
        }
        let data = long_data();
        for len in long_lengths() {
            for start in [0, 5, 64] {
                let bytes = &data[start..start + len];
                for crc in [0, 0xdead_beef] {
                    // SAFETY: the CPU has SSE 4.2 and PCLMULQDQ, as checked above.
                    let ours = unsafe { sse42::three_streams_append(crc, bytes) };
                    assert_eq!(
                        ours,
                        crc32c::crc32c_append(crc, bytes),
                        "start {start}, len {len}, crc {crc:#x}"
                    );
                }
            }
        }
    }
}
