//! The user I/O statements (`write`, `discard`, `flush`), which both models take
//! alike, and how a trace's locations become sectors.

use super::*;

/// The user I/O statements, which both models take alike.
pub(super) trait UserIoTarget {
    fn write_req(&mut self, w: WriteReq) -> Result<(), ModelError>;
    fn discard_range(
        &mut self,
        start: u64,
        end: u64,
        id: Option<String>,
        is_async: bool,
    ) -> Result<(), ModelError>;
    fn flush_user(&mut self, id: Option<String>, is_async: bool) -> Result<(), ModelError>;
    /// The sectors `loc` names.
    fn sectors(&self, loc: &Loc) -> Result<(u64, u64), ModelError>;
}

/// Both models take user I/O through methods of the same names; they differ
/// only in how a location becomes sectors.
macro_rules! user_io_target {
    ($model:ty, $sectors:expr) => {
        impl UserIoTarget for $model {
            fn write_req(&mut self, w: WriteReq) -> Result<(), ModelError> {
                self.write(w)
            }
            fn discard_range(
                &mut self,
                start: u64,
                end: u64,
                id: Option<String>,
                is_async: bool,
            ) -> Result<(), ModelError> {
                self.discard(start, end, id, is_async)
            }
            fn flush_user(&mut self, id: Option<String>, is_async: bool) -> Result<(), ModelError> {
                self.flush(id, is_async)
            }
            fn sectors(&self, loc: &Loc) -> Result<(u64, u64), ModelError> {
                let f: fn(&$model, &Loc) -> Result<(u64, u64), ModelError> = $sectors;
                f(self, loc)
            }
        }
    };
}

user_io_target!(CloneModel, clone_sectors);
user_io_target!(EraModel, |m, loc| era_sectors(loc, m.block_size()));

/// `write`, `discard` or `flush` on either model.
pub(super) fn user_io(m: &mut dyn UserIoTarget, ev: &Event) -> Result<(), ModelError> {
    match ev {
        Event::Write {
            loc,
            fua,
            preflush,
            data,
            id,
            is_async,
        } => {
            let (start, end) = m.sectors(loc)?;
            m.write_req(WriteReq {
                start,
                end,
                fua: *fua,
                preflush: *preflush,
                data: data_origin(data),
                id: id.clone(),
                is_async: *is_async,
            })
        }
        Event::Discard { loc, id, is_async } => {
            let (start, end) = m.sectors(loc)?;
            m.discard_range(start, end, id.clone(), *is_async)
        }
        Event::Flush { id, is_async } => m.flush_user(id.clone(), *is_async),
        other => Err(ModelError::internal(format!(
            "`{}` is not user I/O",
            verb_of(other)
        ))),
    }
}

pub(super) fn verb_of(e: &Event) -> String {
    e.to_string()
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

pub(super) fn data_origin(d: &Option<Data>) -> Option<Origin> {
    match d {
        None | Some(Data::Stamp) => None,
        Some(Data::Zero) => Some(Origin::Zero),
        Some(Data::Byte(b)) => Some(Origin::Byte(*b)),
    }
}

pub(super) fn clone_sectors(m: &CloneModel, loc: &Loc) -> Result<(u64, u64), ModelError> {
    match *loc {
        Loc::Sectors(s, e) => Ok((s, e)),
        Loc::Regions(a, b) => {
            let rs = m.region_size();
            Ok((a.saturating_mul(rs), b.saturating_mul(rs).min(m.size())))
        }
        Loc::Blocks(..) => Err(ModelError::Trace("block= is for dm-era traces".into())),
    }
}

pub(super) fn era_sectors(loc: &Loc, bs: u64) -> Result<(u64, u64), ModelError> {
    match *loc {
        Loc::Sectors(s, e) => Ok((s, e)),
        Loc::Blocks(a, b) => Ok((a.saturating_mul(bs), b.saturating_mul(bs))),
        Loc::Regions(..) => Err(ModelError::Trace("region= is for dm-clone traces".into())),
    }
}
