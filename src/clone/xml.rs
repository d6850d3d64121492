//! Reading the clone XML of [`crate::clone::dump`] (CLONE.md §11), one element at
//! a time:
//!
//! ```text
//! <superblock uuid="" region_size="64" target_size="131072" nr_regions="2048">
//!   <hydrated begin="0" end="1"/>
//! </superblock>
//! ```
//!
//! Ranges are half-open and must be sorted and disjoint (adjacent ranges are
//! accepted); the geometry must be one the kernel accepts (CLONE.md §10 rule 4).

use crate::clone::superblock::CloneSuperblock;
use crate::pdata::space_map::SmRoot;
use crate::xml_reader::{parse_decimal_bytes, Attrs, Element, RawAttrs, XmlError, XmlIn};

/// The `<superblock>` attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloneHeader {
    /// Region size in sectors.
    pub region_size: u64,
    /// Target size in sectors.
    pub target_size: u64,
    /// `ceil(target_size / region_size)`.
    pub nr_regions: u64,
}

/// Streams the hydrated ranges of a clone XML document.
pub struct CloneXmlReader<'a> {
    x: XmlIn<'a>,
    header: CloneHeader,
    last_end: u64,
    done: bool,
}

impl<'a> CloneXmlReader<'a> {
    /// Reads up to and including `<superblock>` and validates it.
    pub fn open(mut x: XmlIn<'a>) -> Result<Self, XmlError> {
        let empty = x.open_superblock("clone_dump")?;
        let a = Attrs::new(
            "superblock",
            x.attrs(),
            &["uuid", "region_size", "target_size", "nr_regions"],
        )
        .map_err(|m| x.error(m))?;
        let header = parse_header(&a).map_err(|m| x.error(m))?;
        Ok(CloneXmlReader {
            x,
            header,
            last_end: 0,
            done: empty,
        })
    }

    /// The validated geometry.
    pub fn header(&self) -> CloneHeader {
        self.header
    }

    /// Bytes of input consumed.
    pub fn bytes_read(&self) -> u64 {
        self.x.bytes_read()
    }

    /// The next range `[begin, end)`, or `None` after `</superblock>`.
    pub fn next_range(&mut self) -> Result<Option<(u64, u64)>, XmlError> {
        if self.done {
            return match self.x.next_element()? {
                Element::Eof => Ok(None),
                _ => Err(self.x.error("unexpected element after </superblock>")),
            };
        }
        match self.x.next_element()? {
            Element::Start { empty } if self.x.is("hydrated") => {
                if !empty {
                    return Err(self
                        .x
                        .error("<hydrated> must be an empty element (<hydrated .../>)"));
                }
                let n = self.header.nr_regions;
                if let Some((b, e)) = plain_range(self.x.attrs(), n) {
                    if b < e && b >= self.last_end {
                        self.last_end = e;
                        return Ok(Some((b, e)));
                    }
                }
                let r = Attrs::new("hydrated", self.x.attrs(), &["begin", "end"])
                    .and_then(|a| Ok((a.num("begin", n)?, a.num("end", n)?)))
                    .and_then(|(b, e)| {
                        if b >= e {
                            Err(format!("<hydrated begin=\"{b}\" end=\"{e}\">: empty range (end is exclusive and must be above begin)"))
                        } else if b < self.last_end {
                            Err(format!(
                                "<hydrated begin=\"{b}\" end=\"{e}\">: overlaps or comes before the previous range, which ends at {}; ranges must be sorted and disjoint",
                                self.last_end
                            ))
                        } else {
                            Ok((b, e))
                        }
                    })
                    .map_err(|m| self.x.error(m))?;
                self.last_end = r.1;
                Ok(Some(r))
            }
            Element::Start { .. } => Err(self.x.error(format!(
                "unknown element <{}> (expected <hydrated>)",
                self.x.name()
            ))),
            Element::End => {
                self.done = true;
                match self.x.next_element()? {
                    Element::Eof => Ok(None),
                    _ => Err(self.x.error("unexpected element after </superblock>")),
                }
            }
            Element::Eof => Err(self.x.error("the input ends inside <superblock>")),
        }
    }
}

/// `begin` and `end` of a `<hydrated>` holding exactly these two attributes, each a
/// plain decimal no larger than `max`, read in one pass; `None` for anything else,
/// which the general path then reads to say what is wrong.
fn plain_range(attrs: RawAttrs<'_>, max: u64) -> Option<(u64, u64)> {
    let (mut b, mut e) = (None, None);
    for (k, v) in attrs.iter_bytes() {
        let slot = match k {
            b"begin" => &mut b,
            b"end" => &mut e,
            _ => return None,
        };
        *slot = Some(parse_decimal_bytes(v).filter(|&x| x <= max)?);
    }
    Some((b?, e?))
}

fn parse_header(a: &Attrs<'_>) -> Result<CloneHeader, String> {
    if let Some(u) = a.get("uuid").filter(|u| !u.is_empty()) {
        return Err(format!(
            "<superblock> uuid=\"{u}\": dm-clone metadata has no uuid; it must be empty"
        ));
    }
    let region_size = a.num("region_size", u64::MAX)?;
    let target_size = a.num("target_size", u64::MAX)?;
    let nr_regions = a.num("nr_regions", u64::MAX)?;
    let sb = CloneSuperblock {
        flags: 0,
        sm_root: SmRoot::default(),
        region_size,
        target_size,
        bitset_root: 0,
    };
    if let Some(m) = sb.geometry_error() {
        return Err(format!("<superblock>: {m}"));
    }
    if sb.nr_regions() != nr_regions {
        return Err(format!(
            "<superblock>: nr_regions=\"{nr_regions}\", but target_size {target_size} / region_size {region_size} gives {} regions",
            sb.nr_regions()
        ));
    }
    Ok(CloneHeader {
        region_size,
        target_size,
        nr_regions,
    })
}
