//! A cursor that writes into a caller's fixed buffer and reports overflow
//! instead of growing, so building a reply never allocates.

/// The buffer was too small for what had to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("message does not fit in the buffer")]
pub struct Overflow;

/// Appends big-endian fields to a borrowed buffer.
pub struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Writer<'a> {
    /// Starts writing at the beginning of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, len: 0 }
    }

    /// Octets written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `bytes`.
    pub fn put(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        let end = self.len + bytes.len();
        self.buf
            .get_mut(self.len..end)
            .map(|field| copy(field, bytes))
            .ok_or(Overflow)?;
        self.len = end;
        Ok(())
    }

    /// Appends one octet.
    pub fn put_u8(&mut self, value: u8) -> Result<(), Overflow> {
        self.put(&[value])
    }

    /// Appends a big-endian `u16`.
    pub fn put_u16(&mut self, value: u16) -> Result<(), Overflow> {
        self.put(&value.to_be_bytes())
    }

    /// Appends a big-endian `u32`.
    pub fn put_u32(&mut self, value: u32) -> Result<(), Overflow> {
        self.put(&value.to_be_bytes())
    }

    /// Appends `count` zero octets (padding, RFC 7830 §3).
    pub fn put_zeros(&mut self, count: usize) -> Result<(), Overflow> {
        let end = self.len + count;
        self.buf.get_mut(self.len..end).ok_or(Overflow)?.fill(0);
        self.len = end;
        Ok(())
    }

    /// The octets written so far, for in-place patches.
    pub fn written_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }
}

/// Copies `src` into `dst`, which is as long. Up to 32 octets (a question,
/// a header, a short answer: what a cache hit copies) move as two
/// overlapping words, inline; a `memcpy` call costs more than that for
/// them, and musl's (the static build's) copies with `rep movsq` and moves
/// the unaligned ends one octet at a time.
///
/// # Panics
/// If the lengths differ, as `copy_from_slice` does.
#[inline]
pub fn copy(dst: &mut [u8], src: &[u8]) {
    /// The first and last `N` octets of `src` (which overlap when it is
    /// shorter than 2N), written to the same places in `dst`.
    fn ends<const N: usize>(dst: &mut [u8], src: &[u8]) {
        let at = src.len() - N;
        let (head, tail): ([u8; N], [u8; N]) = (
            src[..N].try_into().expect("N octets"),
            src[at..].try_into().expect("N octets"),
        );
        dst[..N].copy_from_slice(&head);
        dst[at..].copy_from_slice(&tail);
    }
    assert_eq!(
        dst.len(),
        src.len(),
        "copy between slices of unequal length"
    );
    match src.len() {
        0 => {}
        1..4 => {
            let last = src.len() - 1;
            dst[0] = src[0];
            dst[last / 2] = src[last / 2];
            dst[last] = src[last];
        }
        4..8 => ends::<4>(dst, src),
        8..16 => ends::<8>(dst, src),
        16..=32 => ends::<16>(dst, src),
        _ => dst.copy_from_slice(src),
    }
}

/// Makes `out` at least `len` octets long, zero-filled as it grows; it is
/// never shrunk, so a reused buffer is zeroed once, not on every reply.
pub fn ensure_len(out: &mut Vec<u8>, len: usize) {
    if out.len() < len {
        out.resize(len, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_moves_every_length_exactly() {
        let src: Vec<u8> = (1..=80).collect();
        for len in 0..=src.len() {
            let mut dst = [0u8; 81];
            copy(&mut dst[..len], &src[..len]);
            assert_eq!(&dst[..len], &src[..len], "length {len}");
            assert!(dst[len..].iter().all(|&b| b == 0), "wrote past {len}");
        }
    }

    #[test]
    fn writes_until_full_then_overflows() {
        let mut buf = [0xffu8; 7];
        let mut writer = Writer::new(&mut buf);
        writer.put_u16(0x0102).unwrap();
        writer.put_u32(0x0304_0506).unwrap();
        assert_eq!(writer.put_u16(7), Err(Overflow));
        writer.put_zeros(1).unwrap();
        assert_eq!(writer.len(), 7);
        assert_eq!(buf, [1, 2, 3, 4, 5, 6, 0]);
    }
}
