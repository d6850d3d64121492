//! Stage 1: text to generic statements (`[@<ms> ]verb{ key[=value]}`), with `nom`
//! over one line at a time; then each statement goes to [`super::lower`].
//!
//! Every parser here works on a suffix of its line, so an error's position is the
//! length of the line minus the length of the input left where it stopped.

use nom::branch::alt;
use nom::bytes::complete::{tag, take_while, take_while1};
use nom::character::complete::{char, satisfy};
use nom::combinator::{cut, recognize};
use nom::error::{ErrorKind, ParseError};
use nom::multi::{many0_count, separated_list1};
use nom::{Err as NomErr, IResult, Parser};

use super::{lower, Stmt, Target, Trace, TraceError, Value};

/// A stage-1 failure: the input left where it happened, and what was wanted.
#[derive(Debug)]
pub(super) struct PErr<'a> {
    at: &'a str,
    what: What,
}

#[derive(Debug)]
enum What {
    /// A combinator failed; the caller says what it expected.
    Nom,
    /// "expected {0}, found <the text at `at`>".
    Expected(String),
    /// A complete message.
    Message(String),
}

impl<'a> ParseError<&'a str> for PErr<'a> {
    fn from_error_kind(at: &'a str, _: ErrorKind) -> Self {
        PErr {
            at,
            what: What::Nom,
        }
    }

    fn append(_: &'a str, _: ErrorKind, other: Self) -> Self {
        other
    }
}

type Res<'a, T> = IResult<&'a str, T, PErr<'a>>;

fn expected_err(at: &str, what: impl Into<String>) -> NomErr<PErr<'_>> {
    NomErr::Failure(PErr {
        at,
        what: What::Expected(what.into()),
    })
}

fn message_err(at: &str, msg: String) -> NomErr<PErr<'_>> {
    NomErr::Failure(PErr {
        at,
        what: What::Message(msg),
    })
}

fn expected<T>(at: &str, what: impl Into<String>) -> Res<'_, T> {
    Err(expected_err(at, what))
}

fn message<T>(at: &str, msg: String) -> Res<'_, T> {
    Err(message_err(at, msg))
}

fn backtrack<T>(at: &str) -> Res<'_, T> {
    Err(NomErr::Error(PErr {
        at,
        what: What::Nom,
    }))
}

/// A statement as written: verb and arguments with their byte offsets in the line.
#[derive(Debug)]
pub(super) struct RawStmt<'a> {
    /// 1-based line number.
    pub line: usize,
    /// The whole line (without its newline).
    pub text: &'a str,
    /// The `@<ms>` prefix.
    pub time: Option<u64>,
    /// The verb, dots included (`commit.pre`).
    pub verb: &'a str,
    /// Byte offset of the verb.
    pub verb_at: usize,
    /// Byte offset just past the verb.
    pub verb_end: usize,
    /// The arguments in order.
    pub args: Vec<RawArg<'a>>,
}

/// One `key[=value]` argument.
#[derive(Debug)]
pub(super) struct RawArg<'a> {
    /// The key.
    pub key: &'a str,
    /// Byte offset of the key.
    pub key_at: usize,
    /// The value, if `=` was given.
    pub value: Option<RawValue<'a>>,
}

/// A value with its source text (numbers such as `id=0x10` keep their spelling).
#[derive(Debug)]
pub(super) struct RawValue<'a> {
    /// The classified value.
    pub value: Value,
    /// Its text.
    pub text: &'a str,
    /// Byte offset of the text.
    pub at: usize,
}

impl RawStmt<'_> {
    /// An error at byte offset `at` of this statement's line.
    pub fn err(&self, at: usize, msg: impl Into<String>) -> TraceError {
        TraceError {
            line: self.line,
            col: column(self.text, at),
            msg: msg.into(),
        }
    }
}

/// 1-based column, in characters, of byte offset `at` of `line`.
pub(super) fn column(line: &str, at: usize) -> usize {
    line.get(..at)
        .map_or(line.chars().count(), |s| s.chars().count())
        + 1
}

/// `s` in backquotes, control and invisible characters escaped, cut after 40
/// characters.
pub(super) fn quote(s: &str) -> String {
    let mut out = String::from("`");
    for (n, c) in s.chars().enumerate() {
        if n == 40 {
            out.push('…');
            break;
        }
        if c.is_ascii() && !c.is_ascii_control() {
            out.push(c);
        } else {
            out.extend(c.escape_debug());
        }
    }
    out.push('`');
    out
}

/// What the text at `at` looks like, for "found ..." in messages.
fn found(at: &str) -> String {
    match at.chars().next() {
        None => "the end of the line".into(),
        Some('#') => "a comment".into(),
        Some(' ') => "a space".into(),
        Some('\t') => "a tab".into(),
        Some(_) => quote(token(at)),
    }
}

/// The text of `at` up to the next space, tab or `#`.
fn token(at: &str) -> &str {
    let end = at.find([' ', '\t', '#']).unwrap_or(at.len());
    &at[..end]
}

fn is_ws(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_wchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '/' | '.')
}

/// True where a value may end: a space, tab, `#` or the end of the line; in a list
/// also a `,`.
fn ends(i: &str, in_list: bool) -> bool {
    i.is_empty() || i.starts_with([' ', '\t', '#']) || (in_list && i.starts_with(','))
}

fn ws0(i: &str) -> Res<'_, &str> {
    take_while(is_ws)(i)
}

fn ident(i: &str) -> Res<'_, &str> {
    recognize((
        satisfy(|c| c.is_ascii_alphabetic()),
        take_while(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
    ))
    .parse(i)
}

fn verb(i: &str) -> Res<'_, &str> {
    recognize((ident, many0_count((char('.'), ident)))).parse(i)
}

fn dec_digits(i: &str) -> Res<'_, &str> {
    recognize((
        satisfy(|c| c.is_ascii_digit()),
        take_while(|c: char| c.is_ascii_digit() || c == '_'),
    ))
    .parse(i)
}

fn hex_digits(i: &str) -> Res<'_, &str> {
    recognize((tag("0x"), take_while1(|c: char| c.is_ascii_hexdigit()))).parse(i)
}

/// The value of decimal digits with `_`, or `None` past `u64::MAX`.
fn dec_value(s: &str) -> Option<u64> {
    s.bytes().filter(|&b| b != b'_').try_fold(0u64, |n, b| {
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// The value of `0x` and hex digits, or `None` past `u64::MAX`.
fn hex_value(s: &str) -> Option<u64> {
    s[2..].chars().try_fold(0u64, |n, c| {
        n.checked_mul(16)?.checked_add(u64::from(c.to_digit(16)?))
    })
}

fn too_big(raw: &str) -> String {
    format!("number {} does not fit in 64 bits", quote(raw))
}

/// `a..b` or `a+n` as `(start, end)`.
fn range(i: &str, in_list: bool) -> Res<'_, (u64, u64)> {
    let (rest, (a_raw, op, b_raw)) =
        (dec_digits, alt((tag(".."), tag("+"))), dec_digits).parse(i)?;
    if !ends(rest, in_list) {
        return backtrack(i);
    }
    let b_at = &i[a_raw.len() + op.len()..];
    let Some(a) = dec_value(a_raw) else {
        return message(i, too_big(a_raw));
    };
    let Some(b) = dec_value(b_raw) else {
        return message(b_at, too_big(b_raw));
    };
    let text = &i[..i.len() - rest.len()];
    if op == ".." {
        if b < a {
            return message(i, format!("range {} ends before it starts", quote(text)));
        }
        Ok((rest, (a, b)))
    } else {
        match a.checked_add(b) {
            Some(end) => Ok((rest, (a, end))),
            None => message(i, format!("range {} ends past 2^64", quote(text))),
        }
    }
}

fn number(i: &str, in_list: bool) -> Res<'_, u64> {
    let (rest, raw) = alt((hex_digits, dec_digits)).parse(i)?;
    if !ends(rest, in_list) {
        return backtrack(i);
    }
    let n = if raw.starts_with("0x") {
        hex_value(raw)
    } else {
        dec_value(raw)
    };
    match n {
        Some(n) => Ok((rest, n)),
        None => message(i, too_big(raw)),
    }
}

fn word(i: &str, in_list: bool) -> Res<'_, &str> {
    let (rest, w) = take_while1(is_wchar)(i)?;
    if !ends(rest, in_list) {
        return backtrack(i);
    }
    Ok((rest, w))
}

fn item(i: &str, in_list: bool) -> Res<'_, Value> {
    alt((
        |i| range(i, in_list).map(|(r, (a, b))| (r, Value::Range(a, b))),
        |i| number(i, in_list).map(|(r, n)| (r, Value::Num(n))),
        |i| word(i, in_list).map(|(r, w)| (r, Value::Word(w.to_string()))),
    ))
    .parse(i)
}

fn list(i: &str) -> Res<'_, Vec<Value>> {
    let (rest, items) = separated_list1(char(','), |i| item(i, true)).parse(i)?;
    if items.len() < 2 || !ends(rest, false) {
        return backtrack(i);
    }
    Ok((rest, items))
}

/// `value = range | list | number | word`, each ending at a token boundary.
fn value(i: &str) -> Res<'_, Value> {
    let r = alt((
        |i| range(i, false).map(|(r, (a, b))| (r, Value::Range(a, b))),
        |i| list(i).map(|(r, l)| (r, Value::List(l))),
        |i| number(i, false).map(|(r, n)| (r, Value::Num(n))),
        |i| word(i, false).map(|(r, w)| (r, Value::Word(w.to_string()))),
    ))
    .parse(i);
    match r {
        Err(NomErr::Error(_)) => expected(i, "a value (number, range, list or word)"),
        r => r,
    }
}

/// `{ WS arg } [WS] [comment]` up to the end of the line; `line` is the whole
/// line, for offsets.
fn args<'a>(line: &'a str, mut i: &'a str) -> Res<'a, Vec<RawArg<'a>>> {
    let mut args = Vec::new();
    loop {
        if !ends(i, false) {
            return expected(i, "a space, a comment or the end of the line");
        }
        i = ws0(i)?.0;
        if i.is_empty() || i.starts_with('#') {
            return Ok((i, args));
        }
        let key_at = line.len() - i.len();
        let Ok((rest, key)) = ident(i) else {
            return expected(i, "an argument `name` or `name=value`");
        };
        i = rest;
        let mut value = None;
        if let Some(v) = i.strip_prefix('=') {
            let (rest, val) = value_with_text(line, v)?;
            value = Some(val);
            i = rest;
        } else if !ends(i, false) {
            return expected(i, "`=`, a space, a comment or the end of the line");
        }
        args.push(RawArg { key, key_at, value });
    }
}

fn value_with_text<'a>(line: &'a str, i: &'a str) -> Res<'a, RawValue<'a>> {
    let (rest, value) = value(i)?;
    let text = &i[..i.len() - rest.len()];
    Ok((
        rest,
        RawValue {
            value,
            text,
            at: line.len() - i.len(),
        },
    ))
}

/// `[@<uint> WS] verb { WS arg }`, or `None` for a blank or comment line.
fn statement(line: &str, n: usize) -> Result<Option<RawStmt<'_>>, NomErr<PErr<'_>>> {
    let (mut i, _) = ws0(line)?;
    if i.is_empty() || i.starts_with('#') {
        return Ok(None);
    }
    let mut time = None;
    if let Some(t) = i.strip_prefix('@') {
        let tok = token(t);
        let digits = dec_digits(t)
            .ok()
            .filter(|(r, _)| r.len() + tok.len() == t.len());
        let Some((rest, raw)) = digits else {
            return Err(expected_err(t, "a time in decimal milliseconds after `@`"));
        };
        let Some(ms) = dec_value(raw) else {
            return Err(message_err(t, too_big(raw)));
        };
        time = Some(ms);
        i = ws0(rest)?.0;
        if i.is_empty() || i.starts_with('#') {
            return Err(expected_err(i, "a verb after the time"));
        }
    }
    let verb_at = line.len() - i.len();
    let Ok((rest, verb)) = verb(i) else {
        return Err(expected_err(i, "a verb"));
    };
    let verb_end = line.len() - rest.len();
    let (_, args) = cut(|i| args(line, i)).parse(rest)?;
    Ok(Some(RawStmt {
        line: n,
        text: line,
        time,
        verb,
        verb_at,
        verb_end,
        args,
    }))
}

/// `dmtrace 1 <clone|era> { WS kv }`; `None` for a blank or comment line.
fn header(line: &str, n: usize) -> Result<Option<(Target, RawStmt<'_>)>, NomErr<PErr<'_>>> {
    let (i, _) = ws0(line)?;
    if i.is_empty() || i.starts_with('#') {
        return Ok(None);
    }
    let want = "the header `dmtrace 1 <clone|era>`";
    let magic = token(i);
    if magic != "dmtrace" {
        return Err(expected_err(i, want));
    }
    let verb_at = line.len() - i.len();
    let (i, _) = ws0(&i[magic.len()..])?;
    let version = token(i);
    if version != "1" {
        if dec_digits(i).is_ok_and(|(r, _)| r.len() + version.len() == i.len()) {
            return Err(message_err(
                i,
                format!(
                    "unsupported dmtrace version {}: this reads version 1",
                    quote(version)
                ),
            ));
        }
        return Err(expected_err(i, "the format version `1`"));
    }
    let (i, _) = ws0(&i[1..])?;
    let target = match token(i) {
        "clone" => Target::Clone,
        "era" => Target::Era,
        _ => return Err(expected_err(i, "the target `clone` or `era`")),
    };
    let rest = &i[token(i).len()..];
    let verb_end = line.len() - rest.len();
    let (_, args) = args(line, rest)?;
    let stmt = RawStmt {
        line: n,
        text: line,
        time: None,
        verb: "dmtrace",
        verb_at,
        verb_end,
        args,
    };
    Ok(Some((target, stmt)))
}

fn to_error(line: &str, n: usize, e: NomErr<PErr<'_>>) -> TraceError {
    let (at, what) = match e {
        NomErr::Error(e) | NomErr::Failure(e) => (e.at, e.what),
        NomErr::Incomplete(_) => ("", What::Nom),
    };
    let msg = match what {
        What::Nom => format!("unexpected {}", found(at)),
        What::Expected(w) => format!("expected {w}, found {}", found(at)),
        What::Message(m) => m,
    };
    TraceError {
        line: n,
        col: column(line, line.len() - at.len()),
        msg,
    }
}

/// Parses a `dmtrace` v1 trace (REPLAY.md §2.2).
///
/// The header must be the first line that is neither blank nor only a comment.
/// Lines end at `\n`; a `\r` before it is dropped, and so is a byte-order mark at
/// the start of the text.
pub fn parse(text: &str) -> Result<Trace, TraceError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut head = None;
    let mut stmts = Vec::new();
    for (idx, line) in text.split('\n').enumerate() {
        let n = idx + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        match &head {
            None => match header(line, n) {
                Ok(None) => {}
                Ok(Some((target, raw))) => head = Some(lower::header(target, &raw)?),
                Err(e) => return Err(to_error(line, n, e)),
            },
            Some(h) => match statement(line, n) {
                Ok(None) => {}
                Ok(Some(raw)) => stmts.push(Stmt {
                    line: n,
                    time: raw.time,
                    event: lower::lower(h.target, &raw)?,
                }),
                Err(e) => return Err(to_error(line, n, e)),
            },
        }
    }
    match head {
        Some(header) => Ok(Trace { header, stmts }),
        None => Err(TraceError {
            line: 1,
            col: 1,
            msg: "expected the header `dmtrace 1 <clone|era>`, found the end of the input".into(),
        }),
    }
}
