//! Shared by the proptest files: an allocation meter and the perturbations applied to valid
//! encodings.
//!
//! The meter is a global allocator that counts, per thread, the bytes live since
//! [`peak_alloc`] started, so a decoder can be shown to allocate in proportion to its input and
//! never by a length or count the input declares.
#![allow(dead_code, unsafe_code)] // each test binary uses a subset; GlobalAlloc is an unsafe trait

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use proptest::prelude::*;

struct Meter;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn on_alloc(size: usize) {
    let _ = ON.try_with(|on| {
        if on.get() {
            let live = LIVE.with(|l| {
                l.set(l.get() + size);
                l.get()
            });
            PEAK.with(|p| p.set(p.get().max(live)));
        }
    });
}

fn on_dealloc(size: usize) {
    let _ = ON.try_with(|on| {
        if on.get() {
            LIVE.with(|l| l.set(l.get().saturating_sub(size)));
        }
    });
}

// SAFETY: forwards every call to the system allocator unchanged; the bookkeeping only touches
// const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Meter {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        on_dealloc(layout.size());
        System.dealloc(ptr, layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        on_alloc(new_size);
        on_dealloc(layout.size());
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static METER: Meter = Meter;

/// Runs `f` and returns its result and the most bytes it had allocated at once on this thread.
pub(crate) fn peak_alloc<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    ON.with(|on| on.set(true));
    let out = f();
    ON.with(|on| on.set(false));
    (out, PEAK.with(Cell::get))
}

/// The most a decoder may allocate for `input_len` bytes: a small multiple of the input (each
/// decoded entry costs a few machine words) plus a constant.
pub(crate) fn alloc_budget(input_len: usize) -> usize {
    16 * input_len + 4096
}

/// The shared body of each single-buffer codec's "damaged message" property: decoding the
/// damaged `bytes` allocates within [`alloc_budget`], and whatever still decodes re-encodes to
/// exactly those bytes.
pub(crate) fn damaged_is_an_error_or_re_encodes<M>(
    bytes: &bytes::Bytes,
    decode: impl FnOnce(&bytes::Bytes) -> harmony_wire::error::Result<M>,
    encode: impl FnOnce(&M) -> harmony_wire::error::Result<bytes::Bytes>,
) -> Result<(), TestCaseError> {
    let (result, peak) = peak_alloc(|| decode(bytes));
    prop_assert!(
        peak <= alloc_budget(bytes.len()),
        "decoding {} bytes allocated {} bytes",
        bytes.len(),
        peak
    );
    if let Ok(back) = result {
        prop_assert_eq!(&encode(&back)?, bytes);
    }
    Ok(())
}

/// A way to damage a valid encoding.
#[derive(Debug, Clone)]
pub(crate) enum Damage {
    /// Keep only this many bytes (taken modulo the length).
    Truncate(usize),
    /// Flip these bits (byte index modulo the length, bit 0-7).
    Flip(Vec<(usize, u8)>),
    /// Overwrite 4 bytes at this index with a large number (a huge length or count).
    Huge(usize),
    /// Append this many bytes.
    Extend(Vec<u8>),
}

/// Any damage.
pub(crate) fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<usize>().prop_map(Damage::Truncate),
        prop::collection::vec((any::<usize>(), 0u8..8), 1..4).prop_map(Damage::Flip),
        any::<usize>().prop_map(Damage::Huge),
        prop::collection::vec(any::<u8>(), 1..8).prop_map(Damage::Extend),
    ]
}

/// `bytes` with `damage` applied.
pub(crate) fn apply(bytes: &[u8], damage: &Damage) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if out.is_empty() {
        return out;
    }
    let n = out.len();
    match damage {
        Damage::Truncate(at) => out.truncate(at % n),
        Damage::Flip(flips) => {
            for &(i, bit) in flips {
                out[i % n] ^= 1 << bit;
            }
        }
        Damage::Huge(at) => {
            let at = at % n;
            for (i, b) in out[at..].iter_mut().take(4).enumerate() {
                *b = if i == 0 { 0x7f } else { 0xff };
            }
        }
        Damage::Extend(tail) => out.extend_from_slice(tail),
    }
    out
}

/// Text fields: short, with some non-ASCII to exercise UTF-8 lengths.
pub(crate) fn text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            8 => prop::char::range('a', 'z'),
            1 => prop::char::range('0', '9'),
            1 => Just('é'),
            1 => Just('/'),
        ],
        0..=max,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

/// Key/value lists in wire order (keys may repeat: the wire allows it).
pub(crate) fn pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((text(12), text(40)), 0..5)
}

/// The proptest configuration of every file: few enough cases for a 2-core CI machine.
pub(crate) fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}
