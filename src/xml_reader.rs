//! A streaming XML reader for the restore tools: elements one at a time, with
//! the line and column of each, so every complaint about the input can say where
//! it is. Memory does not grow with the size of the document.
//!
//! Only what the dump formats use is accepted: elements with attributes, white
//! space between them, and the usual prolog (declaration, comments, processing
//! instructions). Text content, CDATA and DOCTYPE are errors.
//!
//! The restores read documents of tens of millions of elements, so nothing here
//! allocates per element: names and attribute values are borrowed from the read
//! buffer (only a value with an entity is decoded, into a side buffer), and the
//! line and column are kept up to date by the scan itself.

use std::fmt;
use std::io::{self, Read};
use std::ops::Range;

use memchr::memchr;

mod scan;
#[cfg(test)]
mod tests;

/// A complaint about the input, with its position (both 1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlError {
    /// Line.
    pub line: u64,
    /// Column, in bytes.
    pub column: u64,
    /// What is wrong.
    pub msg: String,
}

impl fmt::Display for XmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.msg
        )
    }
}

impl std::error::Error for XmlError {}

/// One element event; the name and attributes of a start tag are read with
/// [`XmlIn::name`] and [`XmlIn::attrs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Element {
    /// `<name …>` or `<name …/>` (`empty`).
    Start {
        /// True for `<name …/>`.
        empty: bool,
    },
    /// `</name>`.
    End,
    /// End of the input (only after the root element closed).
    Eof,
}

/// Where an attribute's value is: in the read buffer, or decoded into the side
/// buffer because it held an entity.
#[derive(Debug, Clone)]
enum Value {
    Raw(Range<usize>),
    Decoded(Range<usize>),
}

/// The longest single construct (tag, comment, instruction) accepted: bounds the
/// read buffer, whatever the input.
const MAX_CONSTRUCT: usize = 16 << 20;

/// The streaming reader.
pub struct XmlIn<R: Read> {
    src: R,
    /// Input bytes `buf[pos..len]` not yet scanned.
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    /// Input offset of `buf[0]`.
    base: u64,
    at_eof: bool,
    /// Line of `pos` (1-based) and the input offset where that line starts.
    line: u64,
    line_start: u64,
    /// Line and column of the last element returned.
    start: (u64, u64),
    /// The last start tag's name and attributes, as ranges of `buf`.
    name: Range<usize>,
    attrs: Vec<(Range<usize>, Value)>,
    decoded: String,
    open: Vec<Vec<u8>>,
    root_seen: bool,
}

impl<R: Read> XmlIn<R> {
    /// Reads XML from `r`.
    pub fn new(r: R) -> Self {
        Self::with_buffer(r, 1 << 18)
    }

    fn with_buffer(r: R, size: usize) -> Self {
        XmlIn {
            src: r,
            buf: vec![0; size.max(16)],
            pos: 0,
            len: 0,
            base: 0,
            at_eof: false,
            line: 1,
            line_start: 0,
            start: (1, 1),
            name: 0..0,
            attrs: Vec::with_capacity(8),
            decoded: String::new(),
            open: Vec::new(),
            root_seen: false,
        }
    }

    /// Bytes consumed so far (for progress).
    pub fn bytes_read(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Reads the document's first element, which must be `<superblock>`; returns
    /// whether it is empty (its attributes are [`attrs`](Self::attrs)).
    /// `dump_tool` names the tool whose output is expected, for the message.
    pub fn open_superblock(&mut self, dump_tool: &str) -> Result<bool, XmlError> {
        match self.next_element()? {
            Element::Start { empty } if self.is("superblock") => Ok(empty),
            Element::Start { .. } => Err(self.error(format!(
                "expected <superblock>, found <{}> (is this {dump_tool} output?)",
                self.name()
            ))),
            _ => Err(self.error("expected <superblock>")),
        }
    }

    /// An error at the start of the last element returned.
    pub fn error(&self, msg: impl Into<String>) -> XmlError {
        XmlError {
            line: self.start.0,
            column: self.start.1,
            msg: msg.into(),
        }
    }

    /// An error at the current scan position.
    fn error_here(&self, msg: impl Into<String>) -> XmlError {
        XmlError {
            line: self.line,
            column: self.base + self.pos as u64 - self.line_start + 1,
            msg: msg.into(),
        }
    }

    /// The name of the last start tag returned.
    pub fn name(&self) -> &str {
        // Checked to be UTF-8 when it was scanned.
        std::str::from_utf8(&self.buf[self.name.clone()]).unwrap_or("")
    }

    /// Whether the last start tag returned is `<name …>` (cheaper than
    /// [`name`](Self::name)).
    pub fn is(&self, name: &str) -> bool {
        scan::same(&self.buf[self.name.clone()], name.as_bytes())
    }

    /// The attributes of the last start tag returned.
    pub fn attrs(&self) -> RawAttrs<'_> {
        RawAttrs {
            buf: &self.buf,
            decoded: &self.decoded,
            list: &self.attrs,
        }
    }

    /// Makes at least one more byte available after `buf[..len]`, keeping
    /// `buf[keep..]` (which moves to the front, `pos` with it); false at the end
    /// of the input.
    fn refill(&mut self, keep: usize) -> Result<bool, XmlError> {
        if self.at_eof {
            return Ok(false);
        }
        let shift = keep;
        if shift > 0 {
            self.buf.copy_within(shift..self.len, 0);
            self.len -= shift;
            self.pos -= shift;
            self.base += shift as u64;
        }
        if self.len == self.buf.len() {
            if self.buf.len() >= MAX_CONSTRUCT {
                return Err(self.error_here(format!(
                    "a single tag, comment or instruction longer than {} MiB",
                    MAX_CONSTRUCT >> 20
                )));
            }
            let n = (self.buf.len() * 2).min(MAX_CONSTRUCT);
            self.buf.resize(n, 0);
        }
        loop {
            match self.src.read(&mut self.buf[self.len..]) {
                Ok(0) => {
                    self.at_eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.len += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.error_here(format!("cannot read the input: {e}"))),
            }
        }
    }

    /// The next element event.
    pub fn next_element(&mut self) -> Result<Element, XmlError> {
        loop {
            self.skip_space()?;
            if self.pos == self.len {
                self.start = (self.line, self.bytes_read() - self.line_start + 1);
                return self.end_of_input();
            }
            if self.buf[self.pos] != b'<' {
                return Err(self.unexpected_text());
            }
            self.start = (self.line, self.bytes_read() - self.line_start + 1);
            if let Some(e) = self.construct()? {
                return Ok(e);
            }
        }
    }

    /// Skips white space, counting lines, reading more input as needed.
    fn skip_space(&mut self) -> Result<(), XmlError> {
        loop {
            while self.pos < self.len {
                match self.buf[self.pos] {
                    b'\n' => {
                        self.pos += 1;
                        self.line += 1;
                        self.line_start = self.bytes_read();
                    }
                    b' ' | b'\t' | b'\r' => self.pos += 1,
                    _ => return Ok(()),
                }
            }
            let keep = self.pos;
            if !self.refill(keep)? {
                return Ok(());
            }
        }
    }

    fn end_of_input(&self) -> Result<Element, XmlError> {
        if let Some(open) = self.open.last() {
            return Err(self.error(format!(
                "the input ends before <{}> is closed (truncated file?)",
                String::from_utf8_lossy(open)
            )));
        }
        if !self.root_seen {
            return Err(self.error("the input holds no XML element"));
        }
        Ok(Element::Eof)
    }

    fn unexpected_text(&self) -> XmlError {
        let rest = &self.buf[self.pos..self.len];
        let end = memchr(b'<', rest).unwrap_or(rest.len()).min(80);
        let shown: String = String::from_utf8_lossy(&rest[..end])
            .trim()
            .chars()
            .take(20)
            .collect();
        self.error_here(format!("unexpected text \"{shown}\""))
    }
}

/// The attributes of a start tag, borrowed from the reader.
#[derive(Clone, Copy)]
pub struct RawAttrs<'a> {
    buf: &'a [u8],
    decoded: &'a str,
    list: &'a [(Range<usize>, Value)],
}

impl<'a> RawAttrs<'a> {
    /// The attributes in document order, as (name, value) bytes (both checked
    /// to be UTF-8 when they were scanned).
    fn iter_bytes(self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        self.list.iter().map(move |(k, v)| {
            let value = match v {
                Value::Raw(r) => &self.buf[r.clone()],
                Value::Decoded(r) => &self.decoded.as_bytes()[r.clone()],
            };
            (&self.buf[k.clone()], value)
        })
    }

    /// The attributes in document order, as (name, value).
    pub fn iter(self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.iter_bytes().map(|(k, v)| (text(k), text(v)))
    }
}

/// Bytes the scanner checked to be UTF-8, as text.
fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or("")
}

/// The attributes of one element, checked against what it may carry.
pub struct Attrs<'a> {
    elem: &'a str,
    attrs: RawAttrs<'a>,
}

impl<'a> Attrs<'a> {
    /// Checks that `attrs` of `<elem>` are all in `allowed`; `Err` names the first
    /// unknown one.
    pub fn new(elem: &'a str, attrs: RawAttrs<'a>, allowed: &[&str]) -> Result<Self, String> {
        if let Some((k, _)) = attrs
            .iter_bytes()
            .find(|(k, _)| !allowed.iter().any(|a| scan::same(a.as_bytes(), k)))
        {
            return Err(format!(
                "<{elem}>: unknown attribute {} (expected {})",
                text(k),
                allowed.join(", ")
            ));
        }
        Ok(Attrs { elem, attrs })
    }

    fn get_bytes(&self, key: &str) -> Option<&'a [u8]> {
        self.attrs
            .iter_bytes()
            .find(|(k, _)| scan::same(k, key.as_bytes()))
            .map(|(_, v)| v)
    }

    /// The raw value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.get_bytes(key).map(text)
    }

    /// The value of `key`, which must be present.
    pub fn req(&self, key: &str) -> Result<&'a str, String> {
        self.get(key)
            .ok_or_else(|| format!("<{}>: attribute {key} is missing", self.elem))
    }

    /// `key` as a decimal number no larger than `max`.
    pub fn num(&self, key: &str, max: u64) -> Result<u64, String> {
        let v = self
            .get_bytes(key)
            .ok_or_else(|| format!("<{}>: attribute {key} is missing", self.elem))?;
        let n = parse_decimal_bytes(v).ok_or_else(|| {
            format!(
                "<{}> {key}=\"{}\": not a decimal number",
                self.elem,
                text(v)
            )
        })?;
        if n > max {
            return Err(format!(
                "<{}> {key}=\"{}\": larger than the maximum {max}",
                self.elem,
                text(v)
            ));
        }
        Ok(n)
    }

    /// `key` as `true` or `false`.
    pub fn boolean(&self, key: &str) -> Result<bool, String> {
        match self.req(key)? {
            "true" => Ok(true),
            "false" => Ok(false),
            v => Err(format!(
                "<{}> {key}=\"{v}\": expected true or false",
                self.elem
            )),
        }
    }
}

/// Plain decimal digits, no sign, no spaces, fitting in a u64.
pub fn parse_decimal(s: &str) -> Option<u64> {
    parse_decimal_bytes(s.as_bytes())
}

fn parse_decimal_bytes(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &c in s {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(d as u64)?;
    }
    Some(n)
}
