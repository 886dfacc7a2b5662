//! How far ahead of the chunks queued for a client the server asks the kernel to read a
//! published file (`posix_fadvise(POSIX_FADV_WILLNEED)`). A chunk sent from its file is read
//! by sendfile(2) on the socket's one I/O worker: a page not in the cache would stall that
//! worker, and every connection on it, for the disk read. Asked for when a chunk is queued,
//! ahead of it by about what the client may have in flight, the pages are in the cache by the
//! time the worker reaches them.

use std::ops::Range;

/// The most asked for ahead of a chunk: a large credit never reads a whole large file at once.
pub(crate) const MAX_AHEAD: u64 = 32 << 20;

/// What to ask the kernel to read when the chunk `[offset, offset + len)` of a `size`-byte
/// file is queued for a client that holds up to `window` bytes of credit, `advised` being
/// where the transfer's previous request ended (0 before its first).
///
/// The range wanted is the chunk and `window` bytes after it (at most [`MAX_AHEAD`]), cut at
/// the end of the file; what is returned is the part of it not asked for yet, `None` if
/// nothing new. The chunks of one transfer thus ask for disjoint ranges, at most one each,
/// and a cached file costs one cheap call per chunk.
pub(crate) fn ahead(
    offset: u64,
    len: u64,
    size: u64,
    advised: u64,
    window: u64,
) -> Option<Range<u64>> {
    let end = offset
        .saturating_add(len)
        .saturating_add(window.min(MAX_AHEAD))
        .min(size);
    let start = advised.max(offset);
    (start < end).then_some(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn the_first_chunk_asks_for_itself_and_the_window_after_it() {
        assert_eq!(ahead(0, MIB, 100 * MIB, 0, 4 * MIB), Some(0..5 * MIB));
        // A resumed transfer starts where it resumes, not at the start of the file.
        assert_eq!(
            ahead(10 * MIB, MIB, 100 * MIB, 0, 4 * MIB),
            Some(10 * MIB..15 * MIB)
        );
    }

    #[test]
    fn later_chunks_ask_only_for_what_is_new_one_range_each() {
        let (size, chunk, window) = (50 * MIB + 123, MIB, 4 * MIB);
        let mut advised = 0;
        let mut offset = 0;
        let mut asked = Vec::new();
        while offset < size {
            let len = chunk.min(size - offset);
            if let Some(r) = ahead(offset, len, size, advised, window) {
                // Ahead of what is queued, never behind it, and never more than the window.
                assert!(r.start >= offset && r.start >= advised);
                assert!(r.end <= offset + len + window);
                advised = r.end;
                asked.push(r);
            }
            // Everything queued so far was asked for before (or with) its chunk.
            assert!(advised >= offset + len);
            offset += len;
        }
        // Disjoint, in order, covering the file exactly once, never past its end.
        assert_eq!(asked.first().unwrap().start, 0);
        assert_eq!(asked.last().unwrap().end, size);
        assert!(asked.windows(2).all(|w| w[0].end == w[1].start));
        // One range per chunk at most: the first one, then one per later chunk until the end.
        assert!(asked.len() <= size.div_ceil(chunk) as usize);
    }

    #[test]
    fn bounded_by_the_end_of_the_file_and_the_largest_step() {
        assert_eq!(ahead(0, 10, 25, 0, MIB), Some(0..25));
        assert_eq!(ahead(20, 5, 25, 25, MIB), None, "all asked for already");
        // A huge credit does not read a whole huge file at once.
        let huge = 1 << 40;
        assert_eq!(ahead(0, MIB, huge, 0, u64::MAX), Some(0..MIB + MAX_AHEAD));
        // Offsets near the end of the range of u64 do not overflow.
        assert_eq!(
            ahead(u64::MAX - 1, 1, u64::MAX, 0, u64::MAX),
            Some(u64::MAX - 1..u64::MAX)
        );
        // Empty file, or a chunk past the end (a file that shrank): nothing.
        assert_eq!(ahead(0, 0, 0, 0, MIB), None);
        assert_eq!(ahead(30, 5, 25, 0, MIB), None);
    }

    #[test]
    fn a_small_credit_still_reads_the_chunk_being_queued() {
        assert_eq!(ahead(0, 4096, MIB, 0, 0), Some(0..4096));
        assert_eq!(ahead(4096, 4096, MIB, 4096, 0), Some(4096..8192));
    }
}
