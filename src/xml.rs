//! Helpers for writing the XML dumps quickly: a buffered writer with decimal
//! formatting that does not go through `fmt`.

use std::io::{self, Write};

/// A buffered XML text writer.
pub struct XmlOut<W: Write> {
    out: io::BufWriter<W>,
}

impl<W: Write> XmlOut<W> {
    /// Wraps `w` with a large buffer.
    pub fn new(w: W) -> Self {
        XmlOut {
            out: io::BufWriter::with_capacity(1 << 16, w),
        }
    }

    /// Writes raw text.
    #[inline]
    pub fn s(&mut self, s: &str) -> io::Result<()> {
        self.out.write_all(s.as_bytes())
    }

    /// Writes a number in decimal.
    #[inline]
    pub fn n(&mut self, mut v: u64) -> io::Result<()> {
        let mut buf = [0u8; 20];
        let mut i = buf.len();
        loop {
            i -= 1;
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.out.write_all(&buf[i..])
    }

    /// The buffered writer, for text written by other means (escaped strings).
    #[inline]
    pub fn raw(&mut self) -> &mut io::BufWriter<W> {
        &mut self.out
    }

    /// Flushes and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        self.out.into_inner().map_err(|e| e.into_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_decimal() {
        let mut x = XmlOut::new(Vec::new());
        for v in [0u64, 7, 10, 1234567890, u64::MAX] {
            x.n(v).unwrap();
            x.s(" ").unwrap();
        }
        let s = String::from_utf8(x.finish().unwrap()).unwrap();
        assert_eq!(s, format!("0 7 10 1234567890 {} ", u64::MAX));
    }
}
