//! The producer side of the reader: reads the input in chunks and scans each into
//! a [`Batch`] of element tokens, checking the nesting of the document. It runs
//! either inline or in a thread of its own, beside the code that builds metadata
//! from the elements (see [`XmlIn::parallel`](super::XmlIn::parallel)).

use std::io::{self, Read};

use super::scan::{Scan, Scanner};
use super::{Element, Span, Value, XmlError};

/// Bytes read per batch (a batch holds the elements that end in them).
const CHUNK: usize = 1 << 18;

/// The longest single construct (tag, comment, instruction) accepted: bounds the
/// read buffer, whatever the input.
pub(super) const MAX_CONSTRUCT: usize = 16 << 20;

/// One element as scanned.
#[derive(Debug, Clone)]
pub(super) struct Token {
    pub kind: Element,
    /// Its name, in the batch's buffer.
    pub name: Span,
    /// Its attributes, in the batch's attribute list.
    pub attrs: Span,
    /// Where it starts (1-based).
    pub line: u64,
    pub column: u64,
}

/// The elements scanned from one chunk of the input.
#[derive(Default)]
pub(super) struct Batch {
    pub buf: Vec<u8>,
    pub tokens: Vec<Token>,
    pub attrs: Vec<(Span, Value)>,
    pub decoded: String,
    /// Input offset just past the last construct scanned.
    pub end: u64,
    /// What stopped the scan after the tokens, if anything did.
    pub error: Option<XmlError>,
    /// True once the input is finished (an `Eof` token or an error was made).
    pub last: bool,
}

/// Reads and scans the input.
pub(super) struct Producer<R: Read> {
    src: R,
    chunk: usize,
    /// Bytes read but not yet scanned (the start of an unfinished construct).
    carry: Vec<u8>,
    /// Input offset of `carry[0]`.
    base: u64,
    at_eof: bool,
    line: u64,
    line_start: u64,
    open: Vec<Vec<u8>>,
    root_seen: bool,
    finished: bool,
}

impl<R: Read> Producer<R> {
    pub fn new(src: R, chunk: usize) -> Self {
        Producer {
            src,
            chunk: chunk.max(16),
            carry: Vec::new(),
            base: 0,
            at_eof: false,
            line: 1,
            line_start: 0,
            open: Vec::new(),
            root_seen: false,
            finished: false,
        }
    }

    pub fn with_default_chunk(src: R) -> Self {
        Self::new(src, CHUNK)
    }

    /// Whether the last batch was made.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Reads until `buf` holds at least `want` bytes or the input ends.
    fn fill(&mut self, buf: &mut Vec<u8>, want: usize) -> io::Result<()> {
        while !self.at_eof && buf.len() < want {
            let old = buf.len();
            buf.resize(want, 0);
            let r = self.src.read(&mut buf[old..]);
            match r {
                Ok(0) => {
                    buf.truncate(old);
                    self.at_eof = true;
                }
                Ok(n) => buf.truncate(old + n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => buf.truncate(old),
                Err(e) => {
                    buf.truncate(old);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn position(&self, pos: usize) -> (u64, u64) {
        (self.line, self.base + pos as u64 - self.line_start + 1)
    }

    fn stop(&mut self, b: &mut Batch, e: XmlError) {
        b.error = Some(e);
        b.last = true;
        self.finished = true;
    }

    /// The next batch, made in `spare` (a batch the reader is done with) when
    /// there is one, so that its buffers are not allocated again; after the one
    /// marked `last`, empty ones.
    pub fn next_batch(&mut self, spare: Option<Batch>) -> Batch {
        let mut b = match spare {
            // A batch grown by one huge construct is not kept.
            Some(mut b) if b.buf.capacity() <= 2 * self.chunk => {
                b.buf.clear();
                b.tokens.clear();
                b.attrs.clear();
                b.decoded.clear();
                b.error = None;
                b.last = false;
                b
            }
            _ => Batch {
                buf: Vec::with_capacity(self.chunk),
                tokens: Vec::with_capacity(self.chunk / 32),
                attrs: Vec::with_capacity(self.chunk / 16),
                ..Batch::default()
            },
        };
        b.buf.extend_from_slice(&self.carry);
        if self.finished {
            b.last = true;
            return b;
        }
        let mut want = self.chunk;
        if let Err(e) = self.fill(&mut b.buf, want) {
            let (line, column) = self.position(b.buf.len());
            self.stop(
                &mut b,
                XmlError {
                    line,
                    column,
                    msg: format!("cannot read the input: {e}"),
                },
            );
            return b;
        }
        let mut pos = 0;
        if self.base == 0 && b.buf.starts_with(b"\xEF\xBB\xBF") {
            // A UTF-8 byte-order mark: not part of the first line's columns.
            pos = 3;
            self.line_start = 3;
        }
        loop {
            let mut sc = Scanner {
                b: &b.buf,
                base: self.base,
                i: pos,
                line: self.line,
                line_start: self.line_start,
            };
            sc.space();
            pos = sc.i;
            (self.line, self.line_start) = (sc.line, sc.line_start);
            let (line, column) = self.position(pos);
            let at = |msg: String| XmlError { line, column, msg };
            if pos == b.buf.len() {
                if !self.at_eof {
                    break;
                }
                let end = if let Some(open) = self.open.last() {
                    Err(at(format!(
                        "the input ends before <{}> is closed (truncated file?)",
                        String::from_utf8_lossy(open)
                    )))
                } else if !self.root_seen {
                    Err(at("the input holds no XML element".into()))
                } else {
                    Ok(())
                };
                match end {
                    Ok(()) => {
                        b.tokens.push(Token {
                            kind: Element::Eof,
                            name: Span::default(),
                            attrs: Span::default(),
                            line,
                            column,
                        });
                        b.last = true;
                        self.finished = true;
                    }
                    Err(e) => self.stop(&mut b, e),
                }
                break;
            }
            if b.buf[pos] != b'<' {
                let e = unexpected_text(&b.buf[pos..], at);
                self.stop(&mut b, e);
                break;
            }
            let (nattrs, ndecoded) = (b.attrs.len(), b.decoded.len());
            let found = sc.construct(self.at_eof, &mut b.attrs, &mut b.decoded);
            let (end, end_line, end_line_start) = (sc.i, sc.line, sc.line_start);
            let kind = match found {
                Err(e) => {
                    self.stop(&mut b, e);
                    break;
                }
                Ok(Scan::NeedMore) => {
                    b.attrs.truncate(nattrs);
                    b.decoded.truncate(ndecoded);
                    if self.at_eof {
                        let e = at("the input ends inside a tag (truncated file?)".into());
                        self.stop(&mut b, e);
                        break;
                    }
                    if pos > 0 {
                        // The rest goes into the next batch.
                        break;
                    }
                    // One construct longer than the chunk: read more of it.
                    if want >= MAX_CONSTRUCT {
                        let e = at(format!(
                            "a single tag, comment or instruction longer than {} MiB",
                            MAX_CONSTRUCT >> 20
                        ));
                        self.stop(&mut b, e);
                        break;
                    }
                    want = (want * 2).min(MAX_CONSTRUCT);
                    if let Err(e) = self.fill(&mut b.buf, want) {
                        let e = at(format!("cannot read the input: {e}"));
                        self.stop(&mut b, e);
                        break;
                    }
                    continue;
                }
                Ok(Scan::Skip) => None,
                Ok(Scan::Start { name, empty }) => {
                    if self.open.is_empty() && self.root_seen {
                        let e = at(format!(
                            "<{}> after the end of the document",
                            String::from_utf8_lossy(&b.buf[name])
                        ));
                        self.stop(&mut b, e);
                        break;
                    }
                    if !empty {
                        self.open.push(b.buf[name.clone()].to_vec());
                    }
                    self.root_seen = true;
                    Some((Element::Start { empty }, name, nattrs..b.attrs.len()))
                }
                Ok(Scan::End { name }) => {
                    let found = &b.buf[name.clone()];
                    match self.open.pop() {
                        Some(open) if open == found => {}
                        open => {
                            let found = String::from_utf8_lossy(found);
                            let e = at(match open {
                                Some(o) => format!(
                                    "malformed XML: expected </{}>, found </{found}>",
                                    String::from_utf8_lossy(&o)
                                ),
                                None => format!("malformed XML: unexpected </{found}>"),
                            });
                            self.stop(&mut b, e);
                            break;
                        }
                    }
                    Some((Element::End, name, 0..0))
                }
            };
            if let Some((kind, name, attrs)) = kind {
                b.tokens.push(Token {
                    kind,
                    name: Span::of(name),
                    attrs: Span::of(attrs),
                    line,
                    column,
                });
            }
            pos = end;
            (self.line, self.line_start) = (end_line, end_line_start);
        }
        self.carry.clear();
        if !self.finished {
            self.carry.extend_from_slice(&b.buf[pos..]);
        }
        self.base += pos as u64;
        b.end = self.base;
        b
    }
}

fn unexpected_text(rest: &[u8], at: impl Fn(String) -> XmlError) -> XmlError {
    let end = memchr::memchr(b'<', rest).unwrap_or(rest.len()).min(80);
    let shown: String = String::from_utf8_lossy(&rest[..end])
        .trim()
        .chars()
        .take(20)
        .collect();
    at(format!("unexpected text \"{shown}\""))
}
