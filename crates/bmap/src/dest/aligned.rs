//! Buffers whose first byte sits at an address aligned for direct I/O: a `Vec<u8>`
//! over-allocated by the alignment and sliced at the first aligned address, so no
//! `unsafe` is needed and the buffer can travel between threads like any `Vec`.

/// A zeroed buffer of `len` bytes whose first byte is aligned to `align` bytes. (Not
/// `Clone`: a copied `Vec` would have another address, and the slice another
/// alignment.)
pub struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
    align: usize,
}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes aligned to `align` (a power of two).
    ///
    /// # Panics
    /// When `align` is not a power of two.
    pub fn new(len: usize, align: usize) -> AlignedBuf {
        assert!(
            align.is_power_of_two(),
            "alignment {align} is not a power of two"
        );
        let raw = vec![0u8; len + align];
        // align_offset of a u8 pointer to a power of two is always below `align`.
        let start = raw.as_ptr().align_offset(align);
        AlignedBuf {
            raw,
            start,
            len,
            align,
        }
    }

    /// The alignment of the first byte.
    pub fn align(&self) -> usize {
        self.align
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.len)
            .field("align", &self.align)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::AlignedBuf;

    #[test]
    fn the_first_byte_is_aligned_and_the_length_is_kept() {
        for align in [512, 4096, 65536] {
            let mut buf = AlignedBuf::new(10_000, align);
            assert_eq!(buf.as_ptr() as usize % align, 0);
            assert_eq!(buf.len(), 10_000);
            assert!(buf.iter().all(|&b| b == 0));
            buf[9_999] = 7;
            assert_eq!(buf[9_999], 7);
        }
    }
}
