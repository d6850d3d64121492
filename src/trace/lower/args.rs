//! The arguments of one statement, checked for duplicates and unknown keys, with
//! typed getters that report the wrong kind of value at its column.

use std::collections::HashMap;

use super::super::parse::{column, quote, RawArg, RawStmt, RawValue};
use super::super::{Ranges, TraceError, Value};

type Result<T> = std::result::Result<T, TraceError>;

/// The checked arguments of a statement.
pub(super) struct Args<'s, 'a> {
    stmt: &'s RawStmt<'a>,
    /// What messages call the statement: `` `write` ``, `` `expect read` ``.
    name: String,
    /// The arguments with allowed keys (no `x-` keys), in order.
    args: Vec<&'s RawArg<'a>>,
    /// The `x-` arguments, in order.
    extra: Vec<&'s RawArg<'a>>,
}

impl<'s, 'a> Args<'s, 'a> {
    /// Checks `stmt`'s arguments, except the one at index `skip` (an `expect`
    /// predicate): no key twice, none outside `allowed` but for `x-` keys.
    pub fn new(
        stmt: &'s RawStmt<'a>,
        name: &str,
        allowed: &[&str],
        skip: Option<usize>,
    ) -> Result<Self> {
        let name = format!("`{name}`");
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let (mut args, mut extra) = (Vec::new(), Vec::new());
        for (n, a) in stmt.args.iter().enumerate() {
            if let Some(&first) = seen.get(a.key) {
                let col = column(stmt.text, first);
                return Err(stmt.err(
                    a.key_at,
                    format!(
                        "duplicate key {} (first given at column {col})",
                        quote(a.key)
                    ),
                ));
            }
            seen.insert(a.key, a.key_at);
            if Some(n) == skip {
                continue;
            }
            if a.key.starts_with("x-") {
                extra.push(a);
            } else if allowed.contains(&a.key) {
                args.push(a);
            } else if allowed.is_empty() {
                return Err(stmt.err(
                    a.key_at,
                    format!("{name} takes no arguments, found {}", quote(a.key)),
                ));
            } else {
                let msg = format!(
                    "unknown key {} for {name} (expected one of: {})",
                    quote(a.key),
                    allowed.join(", ")
                );
                return Err(stmt.err(a.key_at, msg));
            }
        }
        Ok(Args {
            stmt,
            name,
            args,
            extra,
        })
    }

    /// An error at byte offset `at` of the line.
    pub fn err(&self, at: usize, msg: impl Into<String>) -> TraceError {
        self.stmt.err(at, msg)
    }

    /// The argument `key`.
    pub fn get(&self, key: &str) -> Option<&'s RawArg<'a>> {
        self.args.iter().copied().find(|a| a.key == key)
    }

    /// The allowed arguments, in order.
    pub fn all(&self) -> &[&'s RawArg<'a>] {
        &self.args
    }

    /// `Some(v)` unwrapped, or an error at the verb saying `key=` is needed.
    pub fn need<T>(&self, v: Option<T>, key: &str, what: &str) -> Result<T> {
        v.ok_or_else(|| self.missing(&format!("`{key}=` ({what})")))
    }

    /// An error at the verb: the statement needs `what`.
    pub fn missing(&self, what: &str) -> TraceError {
        self.stmt
            .err(self.stmt.verb_at, format!("{} needs {what}", self.name))
    }

    /// The value of `key`; a bare `key` is an error naming `what` it needs.
    pub fn value(&self, key: &str, what: &str) -> Result<Option<&'s RawValue<'a>>> {
        match self.get(key) {
            None => Ok(None),
            Some(RawArg { value: Some(v), .. }) => Ok(Some(v)),
            Some(a) => Err(self.err(
                a.key_at,
                format!("expected `{key}=` with {what}, found a bare `{key}`"),
            )),
        }
    }

    /// An error: `v` is not `what`.
    pub fn kind(&self, v: &RawValue<'_>, what: &str) -> TraceError {
        self.err(v.at, format!("expected {what}, found {}", quote(v.text)))
    }

    /// A flag: present (without a value) or not.
    pub fn flag(&self, key: &str) -> Result<bool> {
        match self.get(key) {
            None => Ok(false),
            Some(RawArg { value: None, .. }) => Ok(true),
            Some(RawArg { value: Some(v), .. }) => Err(self.err(
                v.at,
                format!(
                    "`{key}` is a flag and takes no value, found {}",
                    quote(v.text)
                ),
            )),
        }
    }

    /// A number.
    pub fn num(&self, key: &str) -> Result<Option<u64>> {
        let what = "a number";
        self.value(key, what)?
            .map(|v| match v.value {
                Value::Num(n) => Ok(n),
                _ => Err(self.kind(v, what)),
            })
            .transpose()
    }

    /// A word or number, as written (`id=`, `label=`).
    pub fn text(&self, key: &str) -> Result<Option<String>> {
        let what = "a word or number";
        self.value(key, what)?
            .map(|v| match v.value {
                Value::Num(_) | Value::Word(_) => Ok(v.text.to_string()),
                _ => Err(self.kind(v, what)),
            })
            .transpose()
    }

    /// A word, with its value for error positions.
    pub fn word(&self, key: &str, what: &str) -> Result<Option<(&'s str, &'s RawValue<'a>)>> {
        self.value(key, what)?
            .map(|v| match &v.value {
                Value::Word(w) => Ok((w.as_str(), v)),
                _ => Err(self.kind(v, what)),
            })
            .transpose()
    }

    /// One word of `choices`.
    pub fn choice<T: Copy>(&self, key: &str, choices: &[(&str, T)]) -> Result<Option<T>> {
        let names: Vec<String> = choices.iter().map(|(n, _)| format!("`{n}`")).collect();
        let what = names.join(" or ");
        let Some((w, v)) = self.word(key, &what)? else {
            return Ok(None);
        };
        match choices.iter().find(|(n, _)| *n == w) {
            Some(&(_, t)) => Ok(Some(t)),
            None => Err(self.kind(v, &what)),
        }
    }

    /// A non-empty span: `a+n`, `a..b`, or a number `n` for `n..n+1`.
    pub fn span(&self, key: &str, what: &str) -> Result<Option<(u64, u64)>> {
        let Some(v) = self.value(key, what)? else {
            return Ok(None);
        };
        let (a, b) = match v.value {
            Value::Num(n) => (
                n,
                n.checked_add(1)
                    .ok_or_else(|| self.kind(v, "a number below 2^64-1"))?,
            ),
            Value::Range(a, b) => (a, b),
            _ => return Err(self.kind(v, what)),
        };
        if a == b {
            return Err(self.err(
                v.at,
                format!("expected a non-empty range, found {}", quote(v.text)),
            ));
        }
        Ok(Some((a, b)))
    }

    /// A set: a number, a range, a list of numbers and ranges, or `none`.
    pub fn set(&self, key: &str) -> Result<Option<Ranges>> {
        let what = "a number, a range, a list of them, or `none`";
        let Some(v) = self.value(key, what)? else {
            return Ok(None);
        };
        let one = |value: &Value, at: usize, text: &str| match *value {
            Value::Num(n) => match n.checked_add(1) {
                Some(e) => Ok((n, e)),
                None => Err(self.err(
                    at,
                    format!("expected a number below 2^64-1, found {}", quote(text)),
                )),
            },
            Value::Range(a, b) => Ok((a, b)),
            _ => Err(self.err(
                at,
                format!("expected a number or range, found {}", quote(text)),
            )),
        };
        let ranges = match &v.value {
            Value::Word(w) if w == "none" => Vec::new(),
            Value::Word(_) => return Err(self.kind(v, what)),
            Value::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (item, (at, text)) in items.iter().zip(list_items(v)) {
                    out.push(one(item, at, text)?);
                }
                out
            }
            single => vec![one(single, v.at, v.text)?],
        };
        Ok(Some(Ranges(ranges)))
    }

    /// A word or number, or a list of them, as written (stamp lists).
    pub fn words(&self, key: &str) -> Result<Option<Vec<String>>> {
        let what = "a word or a list of words";
        let Some(v) = self.value(key, what)? else {
            return Ok(None);
        };
        match &v.value {
            Value::Word(_) | Value::Num(_) => Ok(Some(vec![v.text.to_string()])),
            Value::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (item, (at, text)) in items.iter().zip(list_items(v)) {
                    if let Value::Range(..) = item {
                        return Err(self.err(at, format!("expected a word, found {}", quote(text))));
                    }
                    out.push(text.to_string());
                }
                Ok(Some(out))
            }
            _ => Err(self.kind(v, what)),
        }
    }

    /// The `x-` arguments as key and value; a bare `x-` key is an error.
    pub fn extra(&self) -> Result<Vec<(String, Value)>> {
        self.extra
            .iter()
            .map(|a| match &a.value {
                Some(v) => Ok((a.key.to_string(), v.value.clone())),
                None => Err(self.err(
                    a.key_at,
                    format!(
                        "expected `{}=` with a value, found a bare `{}`",
                        a.key, a.key
                    ),
                )),
            })
            .collect()
    }
}

/// The byte offset and text of each item of a list value (items hold no `,`).
fn list_items<'v>(v: &'v RawValue<'_>) -> impl Iterator<Item = (usize, &'v str)> {
    let mut at = v.at;
    v.text.split(',').map(move |t| {
        let here = at;
        at += t.len() + 1;
        (here, t)
    })
}
