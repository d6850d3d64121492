//! The scanner of one construct (`<…>`, `<!--…-->`, `<?…?>`) in the read buffer.
//! It works on a slice and reports `NeedMore` when the construct is not complete
//! in it, so the reader can refill and scan it again from its start.

use std::ops::Range;

use super::{Span, Value, XmlError};

/// What one scan found.
pub(super) enum Scan {
    /// A start tag (its name; its attributes are in the reader's list).
    Start { name: Range<usize>, empty: bool },
    /// An end tag.
    End { name: Range<usize> },
    /// A comment or processing instruction.
    Skip,
    /// The construct goes on past the buffer.
    NeedMore,
}

/// A position in the buffer with its line.
pub(super) struct Scanner<'a> {
    /// The buffer.
    pub b: &'a [u8],
    /// Input offset of `b[0]`.
    pub base: u64,
    /// The position.
    pub i: usize,
    /// Its line, and the input offset where that line starts.
    pub line: u64,
    pub line_start: u64,
}

pub(super) fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// The class of a byte in a name: [`ENDS`] for white space and `/>=<"'`, which end
/// it; [`HIGH`] for a byte of a multi-byte UTF-8 sequence, which must be checked.
const NAME_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0x80;
    while i < 256 {
        t[i] = HIGH;
        i += 1;
    }
    let ends = b" \t\r\n/>=<\"'";
    let mut i = 0;
    while i < ends.len() {
        t[ends[i] as usize] = ENDS;
        i += 1;
    }
    t
};
const ENDS: u8 = 1;
const HIGH: u8 = 2;

/// The bytes of an attribute value that need a look: either quote, `<`, `&`,
/// newline, and every byte above ASCII.
const VALUE_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0x80;
    while i < 256 {
        t[i] = 1;
        i += 1;
    }
    let special = b"\"'<&\n";
    let mut i = 0;
    while i < special.len() {
        t[special[i] as usize] = 1;
        i += 1;
    }
    t
};

/// A name scanned: where it is, and whether it has a byte above ASCII.
struct Name {
    at: Range<usize>,
    high: bool,
}

/// Byte-wise equality, inline: the names compared here are a few bytes long,
/// shorter than a call to `memcmp` is worth.
pub(super) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

impl Scanner<'_> {
    pub fn error(&self, msg: impl Into<String>) -> XmlError {
        XmlError {
            line: self.line,
            column: self.base + self.i as u64 - self.line_start + 1,
            msg: msg.into(),
        }
    }

    fn newline_at(&mut self, i: usize) {
        self.line += 1;
        self.line_start = self.base + i as u64 + 1;
    }

    /// Skips white space; false when the buffer ends first.
    pub fn space(&mut self) -> bool {
        while let Some(&c) = self.b.get(self.i) {
            if !is_space(c) {
                return true;
            }
            if c == b'\n' {
                self.newline_at(self.i);
            }
            self.i += 1;
        }
        false
    }

    /// A name: bytes up to white space or one of `/>=<"'`; `None` when the buffer
    /// ends first.
    #[inline]
    fn name(&mut self) -> Option<Name> {
        let s = self.i;
        let mut high = false;
        for (k, &c) in self.b[s..].iter().enumerate() {
            match NAME_CLASS[c as usize] {
                0 => {}
                ENDS => {
                    self.i = s + k;
                    return Some(Name {
                        at: s..self.i,
                        high,
                    });
                }
                _ => high = true,
            }
        }
        None
    }

    /// Skips to just past `end` (counting lines); false when the buffer ends first.
    fn skip_past(&mut self, end: &[u8]) -> bool {
        let rest = &self.b[self.i..];
        let Some(k) = memchr::memmem::find(rest, end) else {
            return false;
        };
        for nl in memchr::memchr_iter(b'\n', &rest[..k]) {
            self.newline_at(self.i + nl);
        }
        self.i += k + end.len();
        true
    }

    /// The name's range, if it is one: not empty, and UTF-8.
    #[inline(always)]
    fn check_name(&self, n: Name, what: &str) -> Result<Range<usize>, XmlError> {
        if n.at.is_empty() || n.high {
            self.check_odd_name(&n, what)?;
        }
        Ok(n.at)
    }

    /// [`check_name`](Self::check_name) for an empty name or one above ASCII.
    #[cold]
    fn check_odd_name(&self, n: &Name, what: &str) -> Result<(), XmlError> {
        if n.at.is_empty() {
            return Err(self.error(format!("malformed XML: expected {what}")));
        }
        if std::str::from_utf8(&self.b[n.at.clone()]).is_err() {
            return Err(self.error(format!("malformed XML: {what} is not UTF-8")));
        }
        Ok(())
    }

    /// Scans the construct at `i` (a `<`), adding the attributes of a start tag
    /// to `attrs` (values with entities decoded onto `decoded`).
    pub fn construct(
        &mut self,
        at_eof: bool,
        attrs: &mut Vec<(Span, Value)>,
        decoded: &mut String,
    ) -> Result<Scan, XmlError> {
        const CDATA: &[u8] = b"<![CDATA[";
        const DOCTYPE: &[u8] = b"<!DOCTYPE";
        let rest = &self.b[self.i..];
        match rest.get(1) {
            None => Ok(Scan::NeedMore),
            Some(b'?') => {
                self.i += 2;
                Ok(if self.skip_past(b"?>") {
                    Scan::Skip
                } else {
                    Scan::NeedMore
                })
            }
            Some(b'!') if rest.starts_with(b"<!--") => {
                self.i += 4;
                Ok(if self.skip_past(b"-->") {
                    Scan::Skip
                } else {
                    Scan::NeedMore
                })
            }
            Some(b'!') if rest.starts_with(CDATA) => Err(self.error("unexpected CDATA section")),
            Some(b'!') if rest.starts_with(DOCTYPE) => Err(self.error("unexpected DOCTYPE")),
            Some(b'!')
                if !at_eof
                    && (CDATA.starts_with(rest) || DOCTYPE.starts_with(rest) || rest == b"<!-") =>
            {
                Ok(Scan::NeedMore)
            }
            Some(b'!') => Err(self.error("malformed XML: unknown construct after <!")),
            Some(b'/') => {
                self.i += 2;
                let Some(name) = self.name() else {
                    return Ok(Scan::NeedMore);
                };
                let name = self.check_name(name, "an element name after </")?;
                if !self.space() {
                    return Ok(Scan::NeedMore);
                }
                if self.b[self.i] != b'>' {
                    return Err(self.error("malformed XML: expected > to end the closing tag"));
                }
                self.i += 1;
                Ok(Scan::End { name })
            }
            Some(_) => self.start_tag(attrs, decoded),
        }
    }

    fn start_tag(
        &mut self,
        attrs: &mut Vec<(Span, Value)>,
        decoded: &mut String,
    ) -> Result<Scan, XmlError> {
        self.i += 1;
        let first = attrs.len();
        let Some(name) = self.name() else {
            return Ok(Scan::NeedMore);
        };
        let name = self.check_name(name, "an element name after <")?;
        loop {
            let before = self.i;
            if !self.space() {
                return Ok(Scan::NeedMore);
            }
            match self.b[self.i] {
                b'>' => {
                    self.i += 1;
                    return Ok(Scan::Start { name, empty: false });
                }
                b'/' => {
                    match self.b.get(self.i + 1) {
                        None => return Ok(Scan::NeedMore),
                        Some(b'>') => {}
                        Some(_) => return Err(self.error("malformed XML: expected /> or >")),
                    }
                    self.i += 2;
                    return Ok(Scan::Start { name, empty: true });
                }
                _ if before == self.i => {
                    return Err(
                        self.error("malformed XML: expected white space before an attribute")
                    )
                }
                _ => {}
            }
            let Some(key) = self.name() else {
                return Ok(Scan::NeedMore);
            };
            let key = self.check_name(key, "an attribute name, /> or >")?;
            let key_text = &self.b[key.clone()];
            if attrs[first..]
                .iter()
                .any(|(k, _)| same(&self.b[k.range()], key_text))
            {
                let key_text = String::from_utf8_lossy(key_text).into_owned();
                let name_text = String::from_utf8_lossy(&self.b[name.clone()]).into_owned();
                return Err(self.error(format!(
                    "<{name_text}>: bad attribute: {key_text} given twice"
                )));
            }
            if !self.space() {
                return Ok(Scan::NeedMore);
            }
            if self.b[self.i] != b'=' {
                return Err(self.error("malformed XML: expected = after the attribute name"));
            }
            self.i += 1;
            if !self.space() {
                return Ok(Scan::NeedMore);
            }
            let quote = self.b[self.i];
            if quote != b'"' && quote != b'\'' {
                return Err(self.error("malformed XML: an attribute value must be quoted"));
            }
            let Some(value) = self.value(quote, decoded)? else {
                return Ok(Scan::NeedMore);
            };
            attrs.push((Span::of(key), value));
        }
    }

    /// A quoted value starting at the quote `i`.
    fn value(&mut self, quote: u8, decoded: &mut String) -> Result<Option<Value>, XmlError> {
        // Errors about the whole value point at its opening quote, on its line.
        let at = (self.i, self.line, self.line_start);
        let s = self.i + 1;
        let (mut amp, mut high) = (false, false);
        let mut j = s;
        loop {
            // Most bytes of a value are plain: one table lookup each.
            while let Some(&c) = self.b.get(j) {
                if VALUE_CLASS[c as usize] != 0 {
                    break;
                }
                j += 1;
            }
            let Some(&c) = self.b.get(j) else {
                return Ok(None);
            };
            match c {
                _ if c == quote => break,
                b'<' => {
                    self.i = j;
                    return Err(self.error("malformed XML: < inside an attribute value"));
                }
                b'&' => amp = true,
                b'\n' => self.newline_at(j),
                0x80.. => high = true,
                _ => {}
            }
            j += 1;
        }
        let raw = &self.b[s..j];
        let fail = |sc: &mut Self, msg: String| {
            (sc.i, sc.line, sc.line_start) = at;
            sc.error(msg)
        };
        if high && std::str::from_utf8(raw).is_err() {
            return Err(fail(
                self,
                "malformed XML: an attribute value is not UTF-8".into(),
            ));
        }
        self.i = j + 1;
        if !amp {
            return Ok(Some(Value::Raw(Span::of(s..j))));
        }
        let from = decoded.len();
        // Checked above when it had a non-ASCII byte; ASCII otherwise.
        let text = std::str::from_utf8(raw).unwrap_or("");
        unescape(text, decoded).map_err(|m| fail(self, m))?;
        Ok(Some(Value::Decoded(Span::of(from..decoded.len()))))
    }
}

/// Decodes the predefined entities and character references of `s` onto `out`.
fn unescape(s: &str, out: &mut String) -> Result<(), String> {
    let mut rest = s;
    while let Some(k) = rest.find('&') {
        out.push_str(&rest[..k]);
        let after = &rest[k + 1..];
        let end = after
            .find(';')
            .ok_or_else(|| "malformed XML: an entity without its ;".to_string())?;
        let ent = &after[..end];
        let c = match ent {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(h) = ent.strip_prefix("#x") {
                    u32::from_str_radix(h, 16).ok()
                } else if let Some(d) = ent.strip_prefix('#') {
                    d.parse::<u32>().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
                    .ok_or_else(|| format!("malformed XML: unknown entity &{ent};"))?
            }
        };
        out.push(c);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(())
}
