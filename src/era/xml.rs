//! Reading era XML (ERA.md §12): the format of thin-provisioning-tools' era_dump
//! (0.9.0 and 1.3.3) and of ours, with writesets as `<bit block value/>` or as
//! `<marked block_begin len/>` runs, streamed one element at a time.
//!
//! Everything is checked as it arrives and every complaint names the line and
//! column: bits and runs must be in increasing block order and inside the
//! writeset, writeset eras must be contiguous, unique, not above `current_era`
//! and must end at it, era-array entries must be in increasing block order, below
//! `nr_blocks` and not above `current_era`.

use crate::xml_reader::{Attrs, Element, XmlError, XmlIn};

/// The `<superblock>` attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EraHeader {
    /// Origin block size in sectors.
    pub block_size: u32,
    /// Origin blocks tracked.
    pub nr_blocks: u32,
    /// The current era.
    pub current_era: u32,
}

/// One step of the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EraItem {
    /// `<writeset era nr_bits>`.
    WritesetBegin {
        /// Era.
        era: u32,
        /// Bits in its bitset.
        nr_bits: u32,
    },
    /// Bits `[begin, end)` of the open writeset are set (in increasing order).
    Bits {
        /// First bit.
        begin: u64,
        /// One past the last bit.
        end: u64,
    },
    /// `</writeset>`.
    WritesetEnd,
    /// `<era_array>`.
    EraArrayBegin,
    /// `<era block era>` (increasing blocks; missing blocks are era 0).
    Era {
        /// Origin block.
        block: u64,
        /// Its era.
        era: u32,
    },
    /// `</era_array>`.
    EraArrayEnd,
    /// `</superblock>` and the end of the input.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Top,
    Writeset { nr_bits: u64, next: u64 },
    EraArray { next: u64 },
    AfterArray,
    Done,
}

/// Streams an era XML document.
pub struct EraXmlReader<'a> {
    x: XmlIn<'a>,
    header: EraHeader,
    state: State,
    last_era: Option<u32>,
}

const U32: u64 = u32::MAX as u64;

impl<'a> EraXmlReader<'a> {
    /// Reads up to and including `<superblock>` and validates it.
    pub fn open(mut x: XmlIn<'a>) -> Result<Self, XmlError> {
        let empty = x.open_superblock("era_dump")?;
        let header = Attrs::new(
            "superblock",
            x.attrs(),
            &["uuid", "block_size", "nr_blocks", "current_era"],
        )
        .and_then(|a| parse_header(&a))
        .map_err(|m| x.error(m))?;
        Ok(EraXmlReader {
            x,
            header,
            state: if empty { State::Done } else { State::Top },
            last_era: None,
        })
    }

    /// The validated header.
    pub fn header(&self) -> EraHeader {
        self.header
    }

    /// Bytes of input consumed.
    pub fn bytes_read(&self) -> u64 {
        self.x.bytes_read()
    }

    fn err(&self, m: impl Into<String>) -> XmlError {
        self.x.error(m)
    }

    /// Checks that the writesets end at the current era, or one before it: the
    /// dump of a running or crashed target by thin-provisioning-tools 0.9.0, which
    /// leaves the committed current writeset out (ERA.md §11 rule 9).
    fn check_last_era(&self) -> Result<(), XmlError> {
        match self.last_era {
            Some(e) if e + 1 < self.header.current_era => Err(self.err(format!(
                "the writesets end at era {e}, but current_era is {}: {} missing",
                self.header.current_era,
                if e + 2 == self.header.current_era {
                    format!("the writeset of era {} is", e + 1)
                } else {
                    format!(
                        "the writesets of eras {} to {} are",
                        e + 1,
                        self.header.current_era - 1
                    )
                }
            ))),
            _ => Ok(()),
        }
    }

    /// The era of the last writeset read so far.
    pub fn last_era(&self) -> Option<u32> {
        self.last_era
    }

    /// The next item.
    pub fn next_item(&mut self) -> Result<EraItem, XmlError> {
        // `<bit value="false"/>` elements yield nothing: loop over them rather than
        // recurse, or a long run of them would exhaust the stack.
        loop {
            let mut skipped = false;
            let r = self.next_item_or_skip(&mut skipped);
            if !skipped {
                return r;
            }
        }
    }

    /// One element; sets `skipped` (and returns a placeholder) for an element that
    /// yields no item.
    fn next_item_or_skip(&mut self, skipped: &mut bool) -> Result<EraItem, XmlError> {
        if self.state == State::Done {
            return match self.x.next_element()? {
                Element::Eof => Ok(EraItem::End),
                _ => Err(self.err("unexpected element after </superblock>")),
            };
        }
        let ev = self.x.next_element()?;
        match (self.state, ev) {
            (_, Element::Eof) => Err(self.err("the input ends inside <superblock>")),
            (State::Top, Element::Start { empty }) if self.x.is("writeset") => {
                let cur = self.header.current_era;
                let (era, nr_bits) = Attrs::new("writeset", self.x.attrs(), &["era", "nr_bits"])
                    .and_then(|a| Ok((a.num("era", U32)? as u32, a.num("nr_bits", U32)? as u32)))
                    .map_err(|m| self.err(m))?;
                if era > cur {
                    return Err(
                        self.err(format!("<writeset era=\"{era}\">: above current_era {cur}"))
                    );
                }
                match self.last_era {
                    Some(l) if era == l => {
                        return Err(self.err(format!("<writeset era=\"{era}\">: duplicate era")))
                    }
                    Some(l) if era < l => {
                        return Err(self.err(format!(
                            "<writeset era=\"{era}\">: after era {l}; writesets must be in increasing era order"
                        )))
                    }
                    Some(l) if era > l + 1 => {
                        return Err(self.err(format!(
                            "<writeset era=\"{era}\">: the writeset of era {} is missing (eras must be contiguous)",
                            l + 1
                        )))
                    }
                    _ => {}
                }
                self.last_era = Some(era);
                if !empty {
                    self.state = State::Writeset {
                        nr_bits: nr_bits as u64,
                        next: 0,
                    };
                    Ok(EraItem::WritesetBegin { era, nr_bits })
                } else {
                    // An empty writeset: begin now, end at the next call.
                    self.state = State::Writeset {
                        nr_bits: nr_bits as u64,
                        next: u64::MAX,
                    };
                    Ok(EraItem::WritesetBegin { era, nr_bits })
                }
            }
            (State::Top, Element::Start { empty }) if self.x.is("era_array") => {
                Attrs::new("era_array", self.x.attrs(), &[]).map_err(|m| self.err(m))?;
                self.check_last_era()?;
                self.state = if empty {
                    State::AfterArray
                } else {
                    State::EraArray { next: 0 }
                };
                Ok(EraItem::EraArrayBegin)
            }
            (State::Top | State::AfterArray, Element::End) => {
                self.check_last_era()?;
                self.state = State::Done;
                match self.x.next_element()? {
                    Element::Eof => Ok(EraItem::End),
                    _ => Err(self.err("unexpected element after </superblock>")),
                }
            }
            (State::Writeset { nr_bits, next }, Element::Start { empty })
                if next != u64::MAX && (self.x.is("bit") || self.x.is("marked")) =>
            {
                if !empty {
                    return Err(self.err(format!("<{}> must be an empty element", self.x.name())));
                }
                let limit = nr_bits.max(self.header.nr_blocks as u64);
                let (begin, end) = if self.x.is("bit") {
                    let a = Attrs::new("bit", self.x.attrs(), &["block", "value"])
                        .map_err(|m| self.err(m))?;
                    let b = a.num("block", u64::MAX).map_err(|m| self.err(m))?;
                    let v = a.boolean("value").map_err(|m| self.err(m))?;
                    if b >= limit {
                        return Err(self.err(format!(
                            "<bit block=\"{b}\">: out of range: the writeset has {nr_bits} bits and there are {} blocks",
                            self.header.nr_blocks
                        )));
                    }
                    if b < next {
                        return Err(self.err(format!(
                            "<bit block=\"{b}\">: {}; bits must be in increasing block order",
                            if b + 1 == next {
                                "duplicate block".to_string()
                            } else {
                                format!("after block {}", next - 1)
                            }
                        )));
                    }
                    if v && b >= nr_bits {
                        return Err(self.err(format!(
                            "<bit block=\"{b}\" value=\"true\">: beyond the writeset's {nr_bits} bits"
                        )));
                    }
                    self.state = State::Writeset {
                        nr_bits,
                        next: b + 1,
                    };
                    if !v {
                        *skipped = true;
                        return Ok(EraItem::End);
                    }
                    (b, b + 1)
                } else {
                    let a = Attrs::new("marked", self.x.attrs(), &["block_begin", "len"])
                        .map_err(|m| self.err(m))?;
                    let b = a.num("block_begin", u64::MAX).map_err(|m| self.err(m))?;
                    let len = a.num("len", u64::MAX).map_err(|m| self.err(m))?;
                    if len == 0 {
                        return Err(self.err("<marked>: len is 0"));
                    }
                    let e = b.checked_add(len).filter(|&e| e <= nr_bits).ok_or_else(|| {
                        self.err(format!(
                            "<marked block_begin=\"{b}\" len=\"{len}\">: out of range: the writeset has {nr_bits} bits"
                        ))
                    })?;
                    if b < next {
                        return Err(self.err(format!(
                            "<marked block_begin=\"{b}\" len=\"{len}\">: overlaps or comes before block {}; runs must be sorted and disjoint",
                            next - 1
                        )));
                    }
                    self.state = State::Writeset { nr_bits, next: e };
                    (b, e)
                };
                Ok(EraItem::Bits { begin, end })
            }
            (State::Writeset { next, .. }, Element::End) if next != u64::MAX => {
                self.state = State::Top;
                Ok(EraItem::WritesetEnd)
            }
            (State::EraArray { next }, Element::Start { empty }) if self.x.is("era") => {
                if !empty {
                    return Err(self.err("<era> must be an empty element"));
                }
                let a = Attrs::new("era", self.x.attrs(), &["block", "era"])
                    .map_err(|m| self.err(m))?;
                let b = a.num("block", u64::MAX).map_err(|m| self.err(m))?;
                let era = a.num("era", U32).map_err(|m| self.err(m))? as u32;
                let n = self.header.nr_blocks as u64;
                if b >= n {
                    return Err(self.err(format!(
                        "<era block=\"{b}\">: out of range: there are {n} blocks"
                    )));
                }
                if b < next {
                    return Err(self.err(format!(
                        "<era block=\"{b}\">: {}; entries must be in increasing block order",
                        if b + 1 == next {
                            "duplicate block".to_string()
                        } else {
                            format!("after block {}", next - 1)
                        }
                    )));
                }
                if era > self.header.current_era {
                    return Err(self.err(format!(
                        "<era block=\"{b}\" era=\"{era}\">: above current_era {}",
                        self.header.current_era
                    )));
                }
                self.state = State::EraArray { next: b + 1 };
                Ok(EraItem::Era { block: b, era })
            }
            (State::EraArray { .. }, Element::End) => {
                self.state = State::AfterArray;
                Ok(EraItem::EraArrayEnd)
            }
            (State::Writeset { .. }, Element::Start { .. }) => Err(self.err(format!(
                "unknown element <{}> in <writeset> (expected <bit> or <marked>)",
                self.x.name()
            ))),
            (State::EraArray { .. }, Element::Start { .. }) => Err(self.err(format!(
                "unknown element <{}> in <era_array> (expected <era>)",
                self.x.name()
            ))),
            (State::AfterArray, Element::Start { .. }) => Err(self.err(format!(
                "<{}> after </era_array>: the era array must come last",
                self.x.name()
            ))),
            (_, Element::Start { .. }) => Err(self.err(format!(
                "unknown element <{}> (expected <writeset> or <era_array>)",
                self.x.name()
            ))),
            (State::Writeset { .. }, Element::End) | (State::Done, _) => {
                Err(self.err("unexpected closing tag"))
            }
        }
    }
}

/// Turns the sentinel state of an empty `<writeset/>` into its end.
impl<'a> EraXmlReader<'a> {
    /// Like [`next_item`](Self::next_item), but an empty `<writeset .../>` yields
    /// its begin and then its end.
    pub fn next_step(&mut self) -> Result<EraItem, XmlError> {
        if let State::Writeset { next: u64::MAX, .. } = self.state {
            self.state = State::Top;
            return Ok(EraItem::WritesetEnd);
        }
        self.next_item()
    }
}

fn parse_header(a: &Attrs<'_>) -> Result<EraHeader, String> {
    if let Some(u) = a.get("uuid").filter(|u| !u.is_empty()) {
        return Err(format!(
            "<superblock> uuid=\"{u}\": dm-era metadata keeps no uuid; it must be empty"
        ));
    }
    let block_size = a.num("block_size", U32)? as u32;
    if block_size == 0 || !block_size.is_multiple_of(8) {
        return Err(format!(
            "<superblock> block_size=\"{block_size}\": must be a positive multiple of 8 sectors"
        ));
    }
    let nr_blocks = a.num("nr_blocks", (1 << 31) - 1)? as u32;
    let current_era = a.num("current_era", U32)? as u32;
    Ok(EraHeader {
        block_size,
        nr_blocks,
        current_era,
    })
}
