//! Helpers for writing the XML dumps quickly: a buffered writer with decimal
//! formatting that does not go through `fmt`.

use std::io::{self, Write};

/// The buffer's size: it is written out when the next piece does not fit. Twice
/// the 64 KiB of the tools' output buffers, so that what is written out passes
/// through them without being copied again.
const BUF_SIZE: usize = 1 << 17;

/// Powers of ten, 10^0 to 10^19.
const POW10: [u64; 20] = {
    let mut t = [1u64; 20];
    let mut i = 1;
    while i < 20 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

/// A buffered XML text writer. Text and numbers go straight into one fixed buffer
/// (a number formatted in place, eight digits at a step), which goes to the inner
/// writer in blocks of 128 KiB: no allocation, one test for room per piece, or one
/// for a whole element with [`room`](Self::room).
pub struct XmlOut<W: Write> {
    buf: Box<[u8]>,
    /// Bytes of `buf` in use.
    len: usize,
    /// `None` only once `finish` took it.
    out: Option<W>,
}

impl<W: Write> XmlOut<W> {
    /// Wraps `w` with a large buffer.
    pub fn new(w: W) -> Self {
        XmlOut {
            buf: vec![0u8; BUF_SIZE].into_boxed_slice(),
            len: 0,
            out: Some(w),
        }
    }

    /// Writes raw text.
    #[inline]
    pub fn s(&mut self, s: &str) -> io::Result<()> {
        self.bytes(s.as_bytes())
    }

    #[inline]
    fn bytes(&mut self, b: &[u8]) -> io::Result<()> {
        if b.len() > BUF_SIZE - self.len {
            return self.bytes_cold(b);
        }
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
        Ok(())
    }

    #[cold]
    fn bytes_cold(&mut self, b: &[u8]) -> io::Result<()> {
        self.drain()?;
        if b.len() > BUF_SIZE {
            return self.out().write_all(b);
        }
        self.bytes(b)
    }

    /// Writes a number in decimal.
    #[inline]
    pub fn n(&mut self, v: u64) -> io::Result<()> {
        self.room(MAX_DIGITS)?.n(v);
        Ok(())
    }

    /// Room for `n` more bytes (at most the buffer's size), what is buffered being
    /// written out first if needed: the pieces of an element then go in through
    /// [`Room`] without a test each.
    #[inline]
    pub fn room(&mut self, n: usize) -> io::Result<Room<'_>> {
        if BUF_SIZE - self.len < n {
            self.drain()?;
        }
        Ok(Room {
            buf: &mut self.buf,
            len: &mut self.len,
        })
    }

    fn out(&mut self) -> &mut W {
        self.out
            .as_mut()
            .expect("the writer is not used after finish()")
    }

    #[cold]
    fn drain(&mut self) -> io::Result<()> {
        let n = std::mem::take(&mut self.len);
        let out = self
            .out
            .as_mut()
            .expect("the writer is not used after finish()");
        out.write_all(&self.buf[..n])
    }

    /// Writes what is buffered and returns the inner writer (not flushed itself).
    pub fn finish(mut self) -> io::Result<W> {
        self.drain()?;
        Ok(self.out.take().expect("finish() is called once"))
    }
}

/// Text written by other means (escaped strings) goes through the same buffer.
impl<W: Write> Write for XmlOut<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.bytes(b)?;
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.drain()?;
        self.out.as_mut().map_or(Ok(()), |o| o.flush())
    }
}

/// Like `BufWriter`, what was written is not lost when the writer is dropped
/// without `finish` (a dump stopped by damage keeps the output before it); errors
/// are ignored there, as they cannot be returned.
impl<W: Write> Drop for XmlOut<W> {
    fn drop(&mut self) {
        if let Some(out) = self.out.as_mut() {
            let _ = out.write_all(&self.buf[..self.len]);
        }
    }
}

/// The most digits a `u64` has (`u64::MAX`).
pub const MAX_DIGITS: usize = 20;

/// Bytes reserved by [`XmlOut::room`], filled without testing for room each time.
/// Writing more than was reserved is a bug in the caller, and panics.
pub struct Room<'a> {
    buf: &'a mut [u8],
    len: &'a mut usize,
}

impl Room<'_> {
    /// Text (counted in the room asked for).
    #[inline]
    pub fn s(&mut self, s: &str) {
        let at = *self.len;
        self.buf[at..at + s.len()].copy_from_slice(s.as_bytes());
        *self.len = at + s.len();
    }

    /// A number in decimal (counted as [`MAX_DIGITS`] in the room asked for).
    /// Always inline: a call's register saves cost a third of the number.
    #[inline(always)]
    pub fn n(&mut self, v: u64) {
        let at = *self.len;
        let d: &mut [u8; MAX_DIGITS] = (&mut self.buf[at..at + MAX_DIGITS])
            .try_into()
            .expect("a slice of MAX_DIGITS bytes");
        *self.len = at + put_decimal(d, v);
    }
}

/// Number of decimal digits of `v`: its bit length gives the number of digits of
/// the power of two just below it (`bits * 1233 / 4096` is `bits * log10(2)`
/// rounded down for every bit length up to 64), and one comparison with a power
/// of ten settles the rest. Zero is taken as one, which has the same length; no
/// power of ten above 1 is odd, so the lowest bit never changes the comparison.
#[inline]
fn decimal_len(v: u64) -> usize {
    let v = v | 1;
    let bits = 64 - v.leading_zeros();
    let t = ((bits * 1233) >> 12) as usize;
    t + usize::from(v >= POW10[t])
}

/// The eight decimal digits of `v < 10^8`, leading zeros included, as the bytes of
/// a little-endian `u64` whose lowest byte is the first digit. The halves, then
/// their pairs, then their digits are split in the lanes of one word at once: three
/// multiplications instead of a division per digit. (`x * 10486 >> 20` is `x / 100`
/// for `x < 10^4`, `x * 103 >> 10` is `x / 10` for `x < 100`; what a higher lane
/// shifts into a lower one lands above the mask.)
#[inline]
fn eight_digits(v: u64) -> u64 {
    // Lanes of 32 bits: the first four digits in the low one.
    let x = (v / 10_000) | ((v % 10_000) << 32);
    // Lanes of 16 bits: the first two digits of each four in the low one.
    let y = ((x * 10486) >> 20) & 0x0000_007f_0000_007f;
    let x = y | ((x - y * 100) << 16);
    // Bytes: the tens, then the units.
    let y = ((x * 103) >> 10) & 0x000f_000f_000f_000f;
    let x = y | ((x - y * 10) << 8);
    x | 0x3030_3030_3030_3030
}

/// Writes `v` in decimal at the start of `d` (which has room for the most digits),
/// eight digits at a time; returns the number of digits. A group of eight is
/// stored whole, so bytes past the last digit may be written: the next piece
/// overwrites them.
#[inline]
fn put_decimal(d: &mut [u8; MAX_DIGITS], v: u64) -> usize {
    const E8: u64 = 100_000_000;
    let len = decimal_len(v);
    // The first group, without its leading zeros (shifted out of the low bytes).
    let first = |x: u64, digits: usize| (eight_digits(x) >> (8 * (8 - digits))).to_le_bytes();
    if v < E8 {
        d[..8].copy_from_slice(&first(v, len));
    } else if v < E8 * E8 {
        let h = len - 8;
        d[..8].copy_from_slice(&first(v / E8, h));
        d[h..h + 8].copy_from_slice(&eight_digits(v % E8).to_le_bytes());
    } else {
        let (h, low) = (len - 16, v % (E8 * E8));
        d[..8].copy_from_slice(&first(v / (E8 * E8), h));
        d[h..h + 8].copy_from_slice(&eight_digits(low / E8).to_le_bytes());
        d[h + 8..h + 16].copy_from_slice(&eight_digits(low % E8).to_le_bytes());
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_decimal() {
        let mut x = XmlOut::new(Vec::new());
        let mut want = String::new();
        let mut vals = vec![0u64, 7, 10, 1234567890, u64::MAX];
        // Every length, and the edges of every length.
        for p in 0..20 {
            let t = 10u64.pow(p);
            vals.extend([t - 1, t, t + 1]);
            if p < 19 {
                vals.push(t * 10 - 1);
            }
        }
        for v in vals {
            x.n(v).unwrap();
            x.s(" ").unwrap();
            want.push_str(&format!("{v} "));
        }
        let s = String::from_utf8(x.finish().unwrap()).unwrap();
        assert_eq!(s, want);
    }

    #[test]
    fn random_numbers_of_every_size_are_decimal() {
        let mut x = XmlOut::new(Vec::new());
        let mut want = String::new();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..20_000u32 {
            // SplitMix64, cut to a random number of bits.
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            let v = (z ^ (z >> 31)) >> (i % 64);
            x.n(v).unwrap();
            x.s(",").unwrap();
            want.push_str(&format!("{v},"));
        }
        assert_eq!(String::from_utf8(x.finish().unwrap()).unwrap(), want);
    }

    #[test]
    fn decimal_lengths_are_exact_at_every_power_of_two_and_ten() {
        let mut vals = vec![0u64, u64::MAX];
        for p in 0..64 {
            let t = 1u64 << p;
            vals.extend([t - 1, t, t + 1]);
        }
        for t in POW10 {
            vals.extend([t - 1, t, t + 1]);
        }
        for v in vals {
            assert_eq!(decimal_len(v), v.to_string().len(), "{v}");
        }
    }

    #[test]
    fn text_longer_than_the_buffer_arrives_whole() {
        let long = "x".repeat(BUF_SIZE * 2 + 3);
        let mut x = XmlOut::new(Vec::new());
        x.s("<").unwrap();
        x.s(&long).unwrap();
        x.n(42).unwrap();
        x.s(&long[..BUF_SIZE]).unwrap();
        let got = x.finish().unwrap();
        assert_eq!(got, format!("<{long}42{}", &long[..BUF_SIZE]).into_bytes());
    }

    #[test]
    fn large_outputs_arrive_whole_and_in_order() {
        let mut x = XmlOut::new(Vec::new());
        let mut want = String::new();
        for v in 0..100_000u64 {
            x.s("<a n=\"").unwrap();
            x.n(v).unwrap();
            x.s("\"/>\n").unwrap();
            write!(x, "{}", v % 7).unwrap();
            want.push_str(&format!("<a n=\"{v}\"/>\n{}", v % 7));
        }
        assert_eq!(x.finish().unwrap(), want.into_bytes());
    }
}
