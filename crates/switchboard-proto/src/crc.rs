//! CRC32C of every piece of a frame: the small ones (its prefix, its header block, a
//! small body) and the large bodies.
//!
//! Long inputs and short ones want different code. A short input takes the CPU's CRC32C
//! instruction eight bytes at a time (unaligned loads are fine on x86-64): setting up
//! anything wider costs more than the checksum of the few dozen bytes a header holds.
//! A long input goes to `crc-fast`, which folds 64 bytes at a time with carry-less
//! multiplications (VPCLMULQDQ where the CPU has it): on a 64 KiB body about four times
//! the speed of the CRC32C instruction on three interleaved streams (the `crc32c`
//! crate's way), which mattered because each 64 KiB message is checked three times on
//! its way (publisher, hub, subscriber). Without SSE 4.2 the short inputs go to the
//! `crc32c` crate. All compute the same CRC32C (Castagnoli), so either end may use
//! either.

/// Inputs at least this long go to `crc-fast`.
const SMALL: usize = 448;

/// The CRC32C of `bytes` continuing from `crc` (0 to start), as
/// `crc32c::crc32c_append` computes it.
pub fn crc32c_append(crc: u32, bytes: &[u8]) -> u32 {
    if bytes.len() >= SMALL {
        return long_crc32c_append(crc, bytes);
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the CPU has SSE 4.2, as just checked.
        return unsafe { sse42::crc32c_append(crc, bytes) };
    }
    crc32c::crc32c_append(crc, bytes)
}

/// [`crc32c_append`] of a long input.
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
    if block.len() < SMALL && std::arch::is_x86_feature_detected!("sse4.2") {
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
    if block.len() < SMALL && content.len() < SMALL && std::arch::is_x86_feature_detected!("sse4.2")
    {
        // SAFETY: the CPU has SSE 4.2, as just checked.
        return unsafe { sse42::frame_crcs(prefix, block, content) };
    }
    (header_crc(prefix, block), crc32c(content))
}

#[cfg(target_arch = "x86_64")]
mod sse42 {
    use std::arch::x86_64::{_mm_crc32_u8, _mm_crc32_u32, _mm_crc32_u64};

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

    /// Every length up to past the cut-over, from every alignment, continuing from
    /// several starting values, against the `crc32c` crate.
    #[test]
    fn matches_the_crate_for_every_length_and_alignment() {
        let data: Vec<u8> = (0..3 * SMALL + 64)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(7))
            .collect();
        for start in 0..64 {
            for len in 0..=SMALL + 16 {
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
        for len in 0..=SMALL + 16 {
            let (prefix, block) = data.split_at(20);
            let prefix: &[u8; 20] = prefix.try_into().unwrap();
            let block = &block[..len];
            assert_eq!(
                header_crc(prefix, block),
                crc32c::crc32c_append(crc32c::crc32c(prefix), block),
                "header block of {len} bytes"
            );
        }
        for block_len in 0..=SMALL + 16 {
            for content_len in (0..=SMALL + 16).step_by(3) {
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

    /// Long inputs, around the sizes the wide code works in (64 and 256 bytes and
    /// their multiples, a 64 KiB body, up to a megabyte), from several alignments and
    /// starting values, against the `crc32c` crate; and a changed byte anywhere in a
    /// 64 KiB body changes its CRC.
    #[test]
    fn long_inputs_match_the_crate() {
        let data: Vec<u8> = (0..(1 << 20) + 300)
            .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut lengths: Vec<usize> = (SMALL..SMALL + 700).collect();
        for base in [1024, 4096, 16 * 1024, 64 * 1024] {
            lengths.extend(base - 65..=base + 65);
        }
        lengths.extend((1 << 20) - 3..=(1 << 20) + 3);
        for len in lengths {
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
}
