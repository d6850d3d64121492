//! Helpers for writing the XML dumps quickly: a buffered writer with decimal
//! formatting that does not go through `fmt`.

use std::io::{self, Write};

/// The buffer's size: it is written out when the next piece does not fit.
const BUF_SIZE: usize = 1 << 16;

/// Two decimal digits for each of 0..100.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// A buffered XML text writer. Text and numbers go straight into one fixed buffer
/// (a number formatted in place, two digits at a step), which goes to the inner
/// writer in blocks of 64 KiB: no allocation, one test for room per piece.
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
        // u64::MAX has 20 digits.
        if BUF_SIZE - self.len < 20 {
            self.drain()?;
        }
        let len = v.checked_ilog10().map_or(1, |l| l as usize + 1);
        put_decimal(&mut self.buf[self.len..self.len + len], v);
        self.len += len;
        Ok(())
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

/// Writes `v` in decimal into `d`, which has exactly its number of digits. Eight
/// digits are split off at a time and their four pairs found independently, so the
/// divisions do not wait on one another digit pair after digit pair.
#[inline]
fn put_decimal(d: &mut [u8], mut v: u64) {
    let mut i = d.len();
    while i > 8 {
        let low = (v % 100_000_000) as u32;
        v /= 100_000_000;
        put4(&mut d[i - 8..i - 4], low / 10_000);
        put4(&mut d[i - 4..i], low % 10_000);
        i -= 8;
    }
    // At most eight digits are left.
    let mut v = v as u32;
    if i > 4 {
        put4(&mut d[i - 4..i], v % 10_000);
        v /= 10_000;
        i -= 4;
    }
    if i > 2 {
        put2(&mut d[i - 2..i], v % 100);
        v /= 100;
        i -= 2;
    }
    if i == 2 {
        put2(&mut d[..2], v);
    } else {
        d[0] = b'0' + v as u8;
    }
}

/// Four digits of `v < 10_000`, leading zeros included.
#[inline]
fn put4(d: &mut [u8], v: u32) {
    put2(&mut d[..2], v / 100);
    put2(&mut d[2..4], v % 100);
}

/// Two digits of `v < 100`.
#[inline]
fn put2(d: &mut [u8], v: u32) {
    let r = v as usize * 2;
    d.copy_from_slice(&PAIRS[r..r + 2]);
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
