//! Where encoded bytes go: a `Vec<u8>`, or anything else that grows like
//! one (a pool worker's result buffer in shared memory, `sys::ShmVec`).

/// A growable byte buffer that the encoder appends to.
pub(crate) trait Sink {
    /// The bytes written so far.
    fn len(&self) -> usize;
    /// Appends one byte.
    fn push(&mut self, byte: u8);
    /// Appends `bytes`.
    fn extend_from_slice(&mut self, bytes: &[u8]);
    /// Drops everything from `len` on.
    fn truncate(&mut self, len: usize);
    /// Makes room for `additional` more bytes.
    fn reserve(&mut self, additional: usize);
    /// The bytes written so far, to patch a header in place.
    fn written_mut(&mut self) -> &mut [u8];
}

impl Sink for Vec<u8> {
    #[inline]
    fn len(&self) -> usize {
        Vec::len(self)
    }

    #[inline]
    fn push(&mut self, byte: u8) {
        Vec::push(self, byte);
    }

    #[inline]
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        Vec::extend_from_slice(self, bytes);
    }

    #[inline]
    fn truncate(&mut self, len: usize) {
        Vec::truncate(self, len);
    }

    #[inline]
    fn reserve(&mut self, additional: usize) {
        Vec::reserve(self, additional);
    }

    #[inline]
    fn written_mut(&mut self) -> &mut [u8] {
        self
    }
}
