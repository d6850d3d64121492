//! Writing JSON as it is produced, for the tools' `--format json`: nothing is
//! built in memory, so a dump of any size streams. Objects and arrays are either
//! *block* containers (one member per line, indented) or *inline* ones (one line);
//! the dumps put each range on a line of its own, so the output greps and diffs
//! well.
//!
//! Every string is escaped here ([`write_string`]): quotes, backslashes, all control
//! characters (C0, DEL and C1, so that nothing reaching a terminal is obeyed) and
//! the line and paragraph separators, which some JSON consumers mistake for line
//! ends. The output is always valid UTF-8.

use std::io::{self, Write};

use crate::xml::XmlOut;

#[derive(Debug, Clone, Copy)]
struct Frame {
    first: bool,
    inline: bool,
    array: bool,
}

/// A streaming JSON writer.
pub struct JsonOut<W: Write> {
    x: XmlOut<W>,
    stack: Vec<Frame>,
    after_key: bool,
}

impl<W: Write> JsonOut<W> {
    /// Writes to `w` through a large buffer.
    pub fn new(w: W) -> Self {
        JsonOut {
            x: XmlOut::new(w),
            stack: Vec::new(),
            after_key: false,
        }
    }

    fn indent(&mut self) -> io::Result<()> {
        // A newline and two spaces per level, in one write for the usual depths.
        const PAD: &str = "\n                ";
        let n = 1 + 2 * self.stack.len();
        if n <= PAD.len() {
            return self.x.s(&PAD[..n]);
        }
        self.x.s("\n")?;
        for _ in 0..self.stack.len() {
            self.x.s("  ")?;
        }
        Ok(())
    }

    /// What comes before a value: a comma after a sibling, and in a block container
    /// a new line.
    fn before_value(&mut self) -> io::Result<()> {
        if std::mem::take(&mut self.after_key) {
            return Ok(());
        }
        let Some(top) = self.stack.last_mut() else {
            return Ok(());
        };
        let (first, inline) = (top.first, top.inline);
        top.first = false;
        if !first {
            self.x.s(",")?;
        }
        if !inline {
            self.indent()?;
        }
        Ok(())
    }

    fn open(&mut self, c: &str, inline: bool, array: bool) -> io::Result<()> {
        self.before_value()?;
        self.x.s(c)?;
        // An inline container makes everything inside it inline.
        let inline = inline || self.stack.last().is_some_and(|f| f.inline);
        self.stack.push(Frame {
            first: true,
            inline,
            array,
        });
        Ok(())
    }

    /// Opens an object; `inline` keeps it on one line.
    pub fn begin_object(&mut self, inline: bool) -> io::Result<()> {
        self.open("{", inline, false)
    }

    /// Opens an array; `inline` keeps it on one line.
    pub fn begin_array(&mut self, inline: bool) -> io::Result<()> {
        self.open("[", inline, true)
    }

    /// Closes the innermost object or array; after the outermost, a newline.
    pub fn end(&mut self) -> io::Result<()> {
        let f = self.stack.pop().expect("end() matches a begin_*()");
        if !f.inline && !f.first {
            self.indent()?;
        }
        self.x.s(if f.array { "]" } else { "}" })?;
        if self.stack.is_empty() {
            self.x.s("\n")?;
        }
        Ok(())
    }

    /// Writes a member's key; its value follows.
    pub fn key(&mut self, k: &str) -> io::Result<()> {
        debug_assert!(self.stack.last().is_some_and(|f| !f.array));
        self.before_value()?;
        self.string_raw(k)?;
        self.x.s(if self.stack.last().is_some_and(|f| f.inline) {
            ":"
        } else {
            ": "
        })?;
        self.after_key = true;
        Ok(())
    }

    /// A number.
    pub fn num(&mut self, v: u64) -> io::Result<()> {
        self.before_value()?;
        self.x.n(v)
    }

    /// A string, escaped.
    pub fn str(&mut self, s: &str) -> io::Result<()> {
        self.before_value()?;
        self.string_raw(s)
    }

    /// `true` or `false`.
    pub fn bool(&mut self, v: bool) -> io::Result<()> {
        self.before_value()?;
        self.x.s(if v { "true" } else { "false" })
    }

    /// `null`.
    pub fn null(&mut self) -> io::Result<()> {
        self.before_value()?;
        self.x.s("null")
    }

    /// A number or `null`.
    pub fn opt_num(&mut self, v: Option<u64>) -> io::Result<()> {
        match v {
            Some(v) => self.num(v),
            None => self.null(),
        }
    }

    /// `"k": v` for a number.
    pub fn field_num(&mut self, k: &str, v: u64) -> io::Result<()> {
        self.key(k)?;
        self.num(v)
    }

    /// `"k": "v"`.
    pub fn field_str(&mut self, k: &str, v: &str) -> io::Result<()> {
        self.key(k)?;
        self.str(v)
    }

    /// `"k": true|false`.
    pub fn field_bool(&mut self, k: &str, v: bool) -> io::Result<()> {
        self.key(k)?;
        self.bool(v)
    }

    /// `{"k1":v1,"k2":v2,...}` on one line, for objects of numbers only: the runs of
    /// the dumps, written without the bookkeeping of a container. The keys must be
    /// plain (printable ASCII without quotes or backslashes).
    pub fn num_object(&mut self, fields: &[(&str, u64)]) -> io::Result<()> {
        self.before_value()?;
        self.x.s("{")?;
        for (i, (k, v)) in fields.iter().enumerate() {
            debug_assert!(k
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'));
            self.x.s(if i == 0 { "\"" } else { ",\"" })?;
            self.x.s(k)?;
            self.x.s("\":")?;
            self.x.n(*v)?;
        }
        self.x.s("}")
    }

    /// `{"begin":b,"end":e}` on one line: a half-open range.
    pub fn range(&mut self, b: u64, e: u64) -> io::Result<()> {
        self.num_object(&[("begin", b), ("end", e)])
    }

    fn string_raw(&mut self, s: &str) -> io::Result<()> {
        write_string(&mut self.x, s)
    }

    /// Flushes and returns the writer; every container must have been closed.
    pub fn finish(self) -> io::Result<W> {
        debug_assert!(self.stack.is_empty(), "unclosed JSON container");
        self.x.finish()
    }
}

/// Writes `s` as a JSON string literal, quotes included. Escaped: `"` and `\`, every
/// control character (U+0000-U+001F, U+007F, U+0080-U+009F) and U+2028/U+2029;
/// everything else is written as it is.
pub fn write_string<W: Write + ?Sized>(w: &mut W, s: &str) -> io::Result<()> {
    // Keys and most messages are plain ASCII: nothing to look at character by
    // character.
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        w.write_all(b"\"")?;
        w.write_all(s.as_bytes())?;
        return w.write_all(b"\"");
    }
    w.write_all(b"\"")?;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc: Option<&[u8]> = match c {
            '"' => Some(b"\\\""),
            '\\' => Some(b"\\\\"),
            '\n' => Some(b"\\n"),
            '\r' => Some(b"\\r"),
            '\t' => Some(b"\\t"),
            '\u{8}' => Some(b"\\b"),
            '\u{c}' => Some(b"\\f"),
            _ => None,
        };
        let needs_u = c.is_control() || c == '\u{2028}' || c == '\u{2029}';
        if esc.is_none() && !needs_u {
            continue;
        }
        w.write_all(&s.as_bytes()[start..i])?;
        match esc {
            Some(e) => w.write_all(e)?,
            None => write!(w, "\\u{:04x}", c as u32)?,
        }
        start = i + c.len_utf8();
    }
    w.write_all(&s.as_bytes()[start..])?;
    w.write_all(b"\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(f: impl FnOnce(&mut JsonOut<Vec<u8>>) -> io::Result<()>) -> String {
        let mut j = JsonOut::new(Vec::new());
        f(&mut j).unwrap();
        String::from_utf8(j.finish().unwrap()).unwrap()
    }

    #[test]
    fn block_and_inline_containers() {
        let s = doc(|j| {
            j.begin_object(false)?;
            j.field_num("a", 1)?;
            j.key("list")?;
            j.begin_array(false)?;
            j.range(0, 5)?;
            j.range(7, 8)?;
            j.begin_object(true)?;
            j.field_num("x", 1)?;
            j.key("y")?;
            j.num_object(&[("a", 2), ("b", 3)])?;
            j.end()?;
            j.end()?;
            j.key("empty")?;
            j.begin_array(false)?;
            j.end()?;
            j.key("n")?;
            j.opt_num(None)?;
            j.field_bool("t", true)?;
            j.end()
        });
        assert_eq!(
            s,
            "{\n  \"a\": 1,\n  \"list\": [\n    {\"begin\":0,\"end\":5},\n    {\"begin\":7,\"end\":8},\n    {\"x\":1,\"y\":{\"a\":2,\"b\":3}}\n  ],\n  \"empty\": [],\n  \"n\": null,\n  \"t\": true\n}\n"
        );
    }

    #[test]
    fn strings_escape_quotes_backslashes_and_every_control_character() {
        let mut b = Vec::new();
        write_string(&mut b, "a\"b\\c\n\t\u{1b}[31m\u{7f}\u{9b}\u{2028}é").unwrap();
        assert_eq!(
            String::from_utf8(b).unwrap(),
            "\"a\\\"b\\\\c\\n\\t\\u001b[31m\\u007f\\u009b\\u2028é\""
        );
        // No control character survives, and every code point comes back.
        for c in (0u32..0x3000).filter_map(char::from_u32) {
            let s = format!("x{c}y");
            let mut b = Vec::new();
            write_string(&mut b, &s).unwrap();
            let out = String::from_utf8(b).unwrap();
            assert!(!out.chars().any(|c| c.is_control()), "{c:?}");
            let back: String = serde_json::from_str(&out).unwrap();
            assert_eq!(back, s);
        }
    }
}
