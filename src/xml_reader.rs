//! A streaming XML reader for the restore tools: elements one at a time, with
//! the line and column of each, so every complaint about the input can say where
//! it is. Memory does not grow with the size of the document.
//!
//! Only what the dump formats use is accepted: elements with attributes, white
//! space between them, and the usual prolog (declaration, comments, processing
//! instructions). Text content, CDATA and DOCTYPE are errors.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, BufRead, Read};

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

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

/// Counts newlines in what the parser consumes, so a byte offset can be turned
/// into a line and column. Offsets of newlines not yet passed by a query are kept
/// (at most one buffer's worth).
struct Counter<R: Read> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    consumed: u64,
    lines: RefCell<Lines>,
}

#[derive(Default)]
struct Lines {
    pending: VecDeque<u64>,
    /// Newlines before the last query position.
    before: u64,
    /// Offset just after the last of those newlines.
    line_start: u64,
}

impl<R: Read> Counter<R> {
    fn new(inner: R) -> Self {
        Counter {
            inner,
            buf: vec![0u8; 1 << 16].into_boxed_slice(),
            pos: 0,
            len: 0,
            consumed: 0,
            lines: RefCell::new(Lines::default()),
        }
    }

    /// Line and column of byte offset `p` (queries must not go backwards by more
    /// than the current line).
    fn line_col(&self, p: u64) -> (u64, u64) {
        let mut l = self.lines.borrow_mut();
        while let Some(&nl) = l.pending.front() {
            if nl >= p {
                break;
            }
            l.pending.pop_front();
            l.before += 1;
            l.line_start = nl + 1;
        }
        (l.before + 1, p.saturating_sub(l.line_start) + 1)
    }
}

impl<R: Read> Read for Counter<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for Counter<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.len {
            self.len = loop {
                match self.inner.read(&mut self.buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            self.pos = 0;
        }
        Ok(&self.buf[self.pos..self.len])
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.len - self.pos);
        let base = self.consumed;
        let mut l = self.lines.borrow_mut();
        for (i, &c) in self.buf[self.pos..self.pos + n].iter().enumerate() {
            if c == b'\n' {
                l.pending.push_back(base + i as u64);
            }
        }
        drop(l);
        self.pos += n;
        self.consumed += n as u64;
    }
}

/// One element event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Element {
    /// `<name …>` or `<name …/>` (`empty`), with its attributes in order.
    Start {
        /// Element name.
        name: String,
        /// Attributes (name, raw value).
        attrs: Vec<(String, String)>,
        /// True for `<name …/>`.
        empty: bool,
    },
    /// `</name>`.
    End {
        /// Element name.
        name: String,
    },
    /// End of the input (only after the root element closed).
    Eof,
}

/// The streaming reader.
pub struct XmlIn<R: Read> {
    reader: Reader<Counter<R>>,
    buf: Vec<u8>,
    open: Vec<String>,
    root_seen: bool,
    /// Offset where the last returned event started.
    start: u64,
}

impl<R: Read> XmlIn<R> {
    /// Reads XML from `r`.
    pub fn new(r: R) -> Self {
        let mut reader = Reader::from_reader(Counter::new(r));
        let c = reader.config_mut();
        c.trim_text(false);
        c.check_end_names = true;
        c.expand_empty_elements = false;
        XmlIn {
            reader,
            buf: Vec::new(),
            open: Vec::new(),
            root_seen: false,
            start: 0,
        }
    }

    /// Bytes consumed so far (for progress).
    pub fn bytes_read(&self) -> u64 {
        self.reader.get_ref().consumed
    }

    /// An error at the start of the last element returned.
    /// Reads the document's first element, which must be `<superblock>`; returns its
    /// attributes and whether it is empty. `dump_tool` names the tool whose output
    /// is expected, for the error message.
    pub fn open_superblock(
        &mut self,
        dump_tool: &str,
    ) -> Result<(Vec<(String, String)>, bool), XmlError> {
        match self.next_element()? {
            Element::Start { name, attrs, empty } if name == "superblock" => Ok((attrs, empty)),
            Element::Start { name, .. } => Err(self.error(format!(
                "expected <superblock>, found <{name}> (is this {dump_tool} output?)"
            ))),
            _ => Err(self.error("expected <superblock>")),
        }
    }

    /// An error at the current position.
    pub fn error(&self, msg: impl Into<String>) -> XmlError {
        self.error_at(self.start, msg)
    }

    fn error_at(&self, p: u64, msg: impl Into<String>) -> XmlError {
        let (line, column) = self.reader.get_ref().line_col(p);
        XmlError {
            line,
            column,
            msg: msg.into(),
        }
    }

    /// The next element event.
    pub fn next_element(&mut self) -> Result<Element, XmlError> {
        loop {
            self.buf.clear();
            let at = self.reader.buffer_position();
            self.start = at;
            // Fold the newlines already passed into the line count, so that only
            // those of the current buffer are kept (memory stays bounded).
            self.reader.get_ref().line_col(at);
            let ev = match self.reader.read_event_into(&mut self.buf) {
                Ok(ev) => ev,
                Err(e) => {
                    let p = self.reader.error_position();
                    let msg = match &e {
                        quick_xml::Error::Io(io) => format!("cannot read the input: {io}"),
                        _ if e.to_string().contains("end of input") => {
                            format!("the input ends inside a tag (truncated file?): {e}")
                        }
                        _ => format!("malformed XML: {e}"),
                    };
                    return Err(self.error_at(p, msg));
                }
            };
            match ev {
                Event::Start(e) | Event::Empty(e) if self.open.is_empty() && self.root_seen => {
                    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                    return Err(
                        self.error_at(at, format!("<{name}> after the end of the document"))
                    );
                }
                Event::Start(e) => {
                    let (name, attrs) = decode(self.reader.get_ref(), at, &e)?;
                    self.open.push(name.clone());
                    self.root_seen = true;
                    return Ok(Element::Start {
                        name,
                        attrs,
                        empty: false,
                    });
                }
                Event::Empty(e) => {
                    let (name, attrs) = decode(self.reader.get_ref(), at, &e)?;
                    self.root_seen = true;
                    return Ok(Element::Start {
                        name,
                        attrs,
                        empty: true,
                    });
                }
                Event::End(e) => {
                    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                    self.open.pop();
                    return Ok(Element::End { name });
                }
                Event::Text(t) => {
                    if t.iter().any(|c| !c.is_ascii_whitespace()) {
                        let shown: String = String::from_utf8_lossy(&t)
                            .trim()
                            .chars()
                            .take(20)
                            .collect();
                        let lead = t.iter().take_while(|c| c.is_ascii_whitespace()).count();
                        return Err(
                            self.error_at(at + lead as u64, format!("unexpected text \"{shown}\""))
                        );
                    }
                }
                Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
                Event::CData(_) => return Err(self.error_at(at, "unexpected CDATA section")),
                Event::DocType(_) => return Err(self.error_at(at, "unexpected DOCTYPE")),
                Event::Eof => {
                    if let Some(open) = self.open.last() {
                        return Err(self.error_at(
                            at,
                            format!("the input ends before <{open}> is closed (truncated file?)"),
                        ));
                    }
                    if !self.root_seen {
                        return Err(self.error_at(at, "the input holds no XML element"));
                    }
                    return Ok(Element::Eof);
                }
            }
        }
    }
}

fn pos_error<R: Read>(c: &Counter<R>, p: u64, msg: String) -> XmlError {
    let (line, column) = c.line_col(p);
    XmlError { line, column, msg }
}

fn decode<R: Read>(
    c: &Counter<R>,
    at: u64,
    e: &BytesStart<'_>,
) -> Result<(String, Vec<(String, String)>), XmlError> {
    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
    let mut attrs: Vec<(String, String)> = Vec::with_capacity(4);
    for a in e.attributes().with_checks(true) {
        let a = a.map_err(|err| pos_error(c, at, format!("<{name}>: bad attribute: {err}")))?;
        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
        // Numbers and names need no unescaping; only pay for it when there is an
        // entity.
        let value = if a.value.contains(&b'&') {
            a.unescape_value()
                .map_err(|err| pos_error(c, at, format!("<{name}> {key}: {err}")))?
                .into_owned()
        } else {
            String::from_utf8(a.value.into_owned())
                .map_err(|_| pos_error(c, at, format!("<{name}> {key}: the value is not UTF-8")))?
        };
        if attrs.iter().any(|(k, _)| *k == key) {
            return Err(pos_error(
                c,
                at,
                format!("<{name}>: attribute {key} given twice"),
            ));
        }
        attrs.push((key, value));
    }
    Ok((name, attrs))
}

/// The attributes of one element, checked against what it may carry.
pub struct Attrs<'a> {
    elem: &'a str,
    attrs: &'a [(String, String)],
}

impl<'a> Attrs<'a> {
    /// Checks that `attrs` of `<elem>` are all in `allowed`; `Err` names the first
    /// unknown one.
    pub fn new(
        elem: &'a str,
        attrs: &'a [(String, String)],
        allowed: &[&str],
    ) -> Result<Self, String> {
        if let Some((k, _)) = attrs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            return Err(format!(
                "<{elem}>: unknown attribute {k} (expected {})",
                allowed.join(", ")
            ));
        }
        Ok(Attrs { elem, attrs })
    }

    /// The raw value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, which must be present.
    pub fn req(&self, key: &str) -> Result<&'a str, String> {
        self.get(key)
            .ok_or_else(|| format!("<{}>: attribute {key} is missing", self.elem))
    }

    /// `key` as a decimal number no larger than `max`.
    pub fn num(&self, key: &str, max: u64) -> Result<u64, String> {
        let v = self.req(key)?;
        let n = parse_decimal(v)
            .ok_or_else(|| format!("<{}> {key}=\"{v}\": not a decimal number", self.elem))?;
        if n > max {
            return Err(format!(
                "<{}> {key}=\"{v}\": larger than the maximum {max}",
                self.elem
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
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(s: &str) -> Result<Vec<Element>, XmlError> {
        let mut x = XmlIn::new(s.as_bytes());
        let mut out = Vec::new();
        loop {
            let e = x.next_element()?;
            let end = e == Element::Eof;
            out.push(e);
            if end {
                return Ok(out);
            }
        }
    }

    #[test]
    fn elements_and_positions() {
        let ev = events("<?xml version=\"1.0\"?>\n<a x=\"1\">\n  <b y=\"2\"/>\n</a>\n").unwrap();
        assert_eq!(ev.len(), 4);
        let mut x = XmlIn::new("<a>\n  <b/>\n  <c>\n".as_bytes());
        x.next_element().unwrap();
        x.next_element().unwrap();
        assert_eq!(x.error("here").line, 2);
        assert_eq!(x.error("here").column, 3);
        x.next_element().unwrap();
        let e = x.next_element().unwrap_err();
        assert_eq!((e.line, e.column), (4, 1));
        assert!(e.msg.contains("truncated"), "{e}");
    }

    #[test]
    fn text_and_mismatched_tags_are_errors() {
        let e = events("<a>\n  hello\n</a>").unwrap_err();
        assert_eq!((e.line, e.column), (2, 3));
        assert!(events("<a></b>").is_err());
        assert!(events("").is_err());
        assert!(events("<a/><b/>").is_err());
        assert!(events("<a x=\"1\" x=\"2\"/>").is_err());
    }

    #[test]
    fn line_bookkeeping_stays_bounded() {
        let mut s = String::from("<a>\n");
        for _ in 0..100_000 {
            s += "  <b/>\n";
        }
        s += "</a>\n";
        let mut x = XmlIn::new(s.as_bytes());
        while x.next_element().unwrap() != Element::Eof {}
        let pending = x.reader.get_ref().lines.borrow().pending.len();
        assert!(pending < 10_000, "{pending} newline offsets kept");
        assert_eq!(x.error("end").line, 100_003);
    }

    #[test]
    fn numbers_are_strict() {
        assert_eq!(parse_decimal("0"), Some(0));
        assert_eq!(parse_decimal("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal("18446744073709551616"), None);
        assert_eq!(parse_decimal("+1"), None);
        assert_eq!(parse_decimal(" 1"), None);
        assert_eq!(parse_decimal(""), None);
    }
}
