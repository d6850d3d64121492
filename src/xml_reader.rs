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
//! line and column are kept up to date by the scan itself. The input is read and
//! scanned in chunks ([`produce`]), in a thread of its own when the caller gives
//! one ([`XmlIn::parallel`]).

use std::fmt;
use std::io::Read;
use std::ops::Range;
use std::sync::mpsc;
use std::thread;

use produce::{Batch, Producer, Token};

mod produce;
mod scan;
#[cfg(test)]
mod tests;

/// True when `head` starts (after white space or a byte-order mark) with `<` followed
/// by a name or `?`/`!`: XML, not a superblock or a pack.
pub fn looks_like_xml(head: &[u8]) -> bool {
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let mut it = head.iter().skip_while(|c| c.is_ascii_whitespace());
    matches!(it.next(), Some(b'<'))
        && matches!(it.next(), Some(c) if c.is_ascii_alphabetic() || *c == b'?' || *c == b'!')
}

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
#[derive(Debug, Clone, Copy)]
enum Value {
    Raw(Span),
    Decoded(Span),
}

/// Offsets `start..end` in a batch's buffer, decoded text or attribute list, as
/// `u32`s: a batch holds one chunk and at most one construct of `MAX_CONSTRUCT`
/// bytes, and the tokens of a large document stay small.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn of(r: Range<usize>) -> Span {
        debug_assert!(r.end <= u32::MAX as usize);
        Span {
            start: r.start as u32,
            end: r.end as u32,
        }
    }

    fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// Where the batches come from: a producer called in this thread (handed back
/// the batch read last, to refill), or one running in a thread of its own (the
/// batches read go back to it on the second channel).
enum Source<'a> {
    Inline(Box<dyn FnMut(Option<Batch>) -> Batch + 'a>),
    Thread(mpsc::Receiver<Batch>, mpsc::Sender<Batch>),
}

/// The streaming reader.
pub struct XmlIn<'a> {
    src: Source<'a>,
    batch: Batch,
    /// The next token of `batch`, and the one last returned.
    next: usize,
    cur: Option<usize>,
}

impl<'a> XmlIn<'a> {
    /// Reads XML from `r`, scanning it in this thread.
    pub fn new<R: Read + 'a>(r: R) -> Self {
        Self::inline(Producer::with_default_chunk(r))
    }

    /// Like [`new`](Self::new), reading `chunk` bytes at a time.
    #[cfg(test)]
    fn with_chunk<R: Read + 'a>(r: R, chunk: usize) -> Self {
        Self::inline(Producer::new(r, chunk))
    }

    fn inline<R: Read + 'a>(mut p: Producer<R>) -> Self {
        XmlIn::from_source(Source::Inline(Box::new(move |spare| p.next_batch(spare))))
    }

    /// Reads XML from `r`, scanning it in a thread of `scope` while the caller
    /// works on the elements already scanned. A few batches are in flight at
    /// most, so memory stays bounded; the thread ends when the input does, or
    /// when this reader is dropped.
    pub fn parallel<'scope, R: Read + Send + 'scope>(
        scope: &'scope thread::Scope<'scope, '_>,
        r: R,
    ) -> XmlIn<'a> {
        let (tx, rx) = mpsc::sync_channel(4);
        // At most the 4 queued, the one being made and the one being read exist,
        // so the channel of spent batches stays as short.
        let (spent_tx, spent) = mpsc::channel();
        let mut p = Producer::with_default_chunk(r);
        scope.spawn(move || {
            while !p.finished() {
                if tx.send(p.next_batch(spent.try_recv().ok())).is_err() {
                    return;
                }
            }
        });
        XmlIn::from_source(Source::Thread(rx, spent_tx))
    }

    fn from_source(src: Source<'a>) -> Self {
        XmlIn {
            src,
            batch: Batch::default(),
            next: 0,
            cur: None,
        }
    }

    /// Bytes consumed so far (for progress).
    pub fn bytes_read(&self) -> u64 {
        self.batch.end
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

    fn token(&self) -> Option<&Token> {
        self.cur.map(|i| &self.batch.tokens[i])
    }

    /// An error at the start of the last element returned.
    pub fn error(&self, msg: impl Into<String>) -> XmlError {
        let (line, column) = self.token().map_or((1, 1), |t| (t.line, t.column));
        XmlError {
            line,
            column,
            msg: msg.into(),
        }
    }

    fn name_bytes(&self) -> &[u8] {
        self.token()
            .map_or(&[], |t| &self.batch.buf[t.name.range()])
    }

    /// The name of the last start tag returned.
    pub fn name(&self) -> &str {
        text(self.name_bytes())
    }

    /// Whether the last start tag returned is `<name …>` (cheaper than
    /// [`name`](Self::name)).
    pub fn is(&self, name: &str) -> bool {
        scan::same(self.name_bytes(), name.as_bytes())
    }

    /// The attributes of the last start tag returned.
    pub fn attrs(&self) -> RawAttrs<'_> {
        let list = self.token().map_or(0..0, |t| t.attrs.range());
        RawAttrs {
            buf: &self.batch.buf,
            decoded: &self.batch.decoded,
            list: &self.batch.attrs[list],
        }
    }

    /// The next element event.
    pub fn next_element(&mut self) -> Result<Element, XmlError> {
        while self.next == self.batch.tokens.len() {
            if let Some(e) = &self.batch.error {
                return Err(e.clone());
            }
            if self.batch.last {
                // Only after an `Eof` token: it stays the answer.
                return Ok(Element::Eof);
            }
            let next = match &mut self.src {
                Source::Inline(next) => next(Some(std::mem::take(&mut self.batch))),
                Source::Thread(rx, _) => rx.recv().unwrap_or_else(|_| Batch {
                    error: Some(self.error("the XML reader stopped unexpectedly")),
                    last: true,
                    ..Batch::default()
                }),
            };
            let spent = std::mem::replace(&mut self.batch, next);
            if let Source::Thread(_, back) = &self.src {
                // The producer may have finished and gone: then it is dropped.
                let _ = back.send(spent);
            }
            self.next = 0;
            self.cur = None;
        }
        self.cur = Some(self.next);
        self.next += 1;
        Ok(self.batch.tokens[self.next - 1].kind)
    }
}

/// The attributes of a start tag, borrowed from the reader.
#[derive(Clone, Copy)]
pub struct RawAttrs<'a> {
    buf: &'a [u8],
    decoded: &'a str,
    list: &'a [(Span, Value)],
}

impl<'a> RawAttrs<'a> {
    /// The attributes in document order, as (name, value) bytes (both checked
    /// to be UTF-8 when they were scanned).
    pub fn iter_bytes(self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        self.list.iter().map(move |(k, v)| {
            let value = match v {
                Value::Raw(r) => &self.buf[r.range()],
                Value::Decoded(r) => &self.decoded.as_bytes()[r.range()],
            };
            (&self.buf[k.range()], value)
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
        self.get(key).ok_or_else(|| self.missing(key))
    }

    /// `key` as a decimal number no larger than `max`.
    pub fn num(&self, key: &str, max: u64) -> Result<u64, String> {
        let v = self.get_bytes(key).ok_or_else(|| self.missing(key))?;
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

    fn missing(&self, key: &str) -> String {
        format!("<{}>: attribute {key} is missing", self.elem)
    }

    /// `key` as `true` or `false`.
    pub fn boolean(&self, key: &str) -> Result<bool, String> {
        let v = self.get_bytes(key).ok_or_else(|| self.missing(key))?;
        match v {
            b"true" => Ok(true),
            b"false" => Ok(false),
            _ => Err(format!(
                "<{}> {key}=\"{}\": expected true or false",
                self.elem,
                text(v)
            )),
        }
    }
}

/// Plain decimal digits, no sign, no spaces, fitting in a u64.
pub fn parse_decimal(s: &str) -> Option<u64> {
    parse_decimal_bytes(s.as_bytes())
}

/// [`parse_decimal`] of bytes.
pub fn parse_decimal_bytes(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    if s.len() < 20 {
        // Nineteen digits never overflow a u64: no test but the digit's.
        let mut n: u64 = 0;
        for &c in s {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            n = n * 10 + d as u64;
        }
        return Some(n);
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
