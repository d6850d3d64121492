//! `--emit-logwrites`: the dm-log-writes logs a capture of the model's devices
//! would hold (REPLAY.md §2.8), so the log verifier can be run on buggy
//! variants without a kernel. Data sectors are rendered from their stamps, one
//! distinct 512-byte pattern per stamp; the source (dm-clone) or origin (dm-era)
//! image is rendered the same way.

use std::io::{self, Cursor};

use super::{Model, Runner};
use crate::logwrites::{LogWriter, FUA, METADATA};
use crate::model::clone::CloneModel;
use crate::model::era::EraModel;
use crate::sim::{DataVal, LogEvent, LogRec, MetaVal, Origin, SimDisk, Unit};
use crate::trace::{CloneMsg, Event, Init};

/// Sector size of the emitted logs.
const SECTOR: u32 = 512;

/// The bytes of a data sector holding `v`.
pub fn render(v: DataVal) -> [u8; 512] {
    let mut b = [0u8; 512];
    let mut stamp = |tag: &[u8; 9], n: u32| {
        b[..9].copy_from_slice(tag);
        b[12..16].copy_from_slice(&n.to_le_bytes());
        b[16..24].copy_from_slice(&v.sector.to_le_bytes());
    };
    match v.origin {
        Origin::Zero | Origin::Discarded => {}
        Origin::Byte(x) => b.fill(x),
        Origin::Init(d) => stamp(b"dmce-init", d as u32),
        Origin::User(n) => stamp(b"dmce-user", n),
    }
    b
}

/// The log of `events` on a device whose units are `per` sectors long; `unit`
/// appends a unit's bytes, `flags` are added to every write.
fn log_of<V: Unit>(
    events: Vec<LogEvent<V>>,
    per: u64,
    flags: u64,
    unit: impl Fn(&V, &mut Vec<u8>),
) -> io::Result<Vec<u8>> {
    let mut w = LogWriter::new(Cursor::new(Vec::new()), SECTOR)?;
    for ev in events {
        match ev {
            LogEvent::Write {
                start,
                end,
                val,
                fua,
            } => {
                let mut data = Vec::new();
                for u in 0..end - start {
                    unit(&val.offset(u), &mut data);
                }
                w.write(start * per, &data, flags | if fua { FUA } else { 0 })?;
            }
            LogEvent::Discard { start, end } => w.discard(start * per, (end - start) * per)?,
            LogEvent::Flush => w.flush()?,
            LogEvent::Mark(l) => w.mark(&l)?,
        }
    }
    Ok(w.cut()?.into_inner())
}

fn meta_log(events: Vec<LogEvent<MetaVal>>) -> io::Result<Vec<u8>> {
    let per = crate::io::BLOCK_SIZE as u64 / SECTOR as u64;
    log_of(events, per, METADATA, |v, out| {
        out.extend_from_slice(&v.0[..])
    })
}

fn data_log(events: Vec<LogEvent<DataVal>>) -> io::Result<Vec<u8>> {
    log_of(events, 1, 0, |v, out| out.extend_from_slice(&render(*v)))
}

/// A file the emitter produces.
#[derive(Debug, Clone)]
pub enum Emitted {
    /// A log, whole.
    Bytes(Vec<u8>),
    /// A device's initial content: `sectors` sectors of `init` stamps,
    /// rendered as the file is written.
    Image {
        /// Size in sectors.
        sectors: u64,
        /// The stamp of every sector.
        init: Origin,
    },
}

/// Largest stamped image written (a zero image is sparse, of any size).
const MAX_STAMPED_IMAGE: u64 = 4 << 30;

impl Emitted {
    /// Writes the file's content to `f` (an empty regular file).
    pub fn write_to(&self, f: &mut std::fs::File) -> io::Result<()> {
        use std::io::Write;
        match self {
            Emitted::Bytes(b) => f.write_all(b),
            Emitted::Image { sectors, init } => {
                let bytes = sectors.saturating_mul(512);
                if *init == Origin::Zero {
                    return f.set_len(bytes);
                }
                if bytes > MAX_STAMPED_IMAGE {
                    return Err(io::Error::other(format!(
                        "the device's initial image would be {bytes} bytes; stamped images are written up to {MAX_STAMPED_IMAGE}"
                    )));
                }
                let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
                for s in 0..*sectors {
                    w.write_all(&render(DataVal {
                        origin: *init,
                        sector: s,
                    }))?;
                }
                w.flush()
            }
        }
    }
}

fn take<V: Unit>(d: &mut SimDisk<V>, close: bool) -> Vec<LogEvent<V>> {
    d.take_log(close).unwrap_or_default()
}

fn top_log(mut top: LogRec<DataVal>, close: bool) -> io::Result<Vec<u8>> {
    if close {
        top.close();
    }
    data_log(top.logged)
}

/// The logs of a dm-clone model: metadata, destination, user stream, and the
/// source image.
pub fn clone_logs(
    m: &mut CloneModel,
    top: LogRec<DataVal>,
    close: bool,
) -> io::Result<Vec<(String, Emitted)>> {
    let meta = m.meta_dev().lock().take_log(close).unwrap_or_default();
    let dest = take(&mut m.dest, close);
    let src = Emitted::Image {
        sectors: m.size(),
        init: m.read_sector(0, false).origin,
    };
    Ok(vec![
        ("meta.log".into(), Emitted::Bytes(meta_log(meta)?)),
        ("dest.log".into(), Emitted::Bytes(data_log(dest)?)),
        ("top.log".into(), Emitted::Bytes(top_log(top, close)?)),
        ("source.img".into(), src),
    ])
}

/// The logs of a dm-era model: metadata, origin, user stream, and the
/// origin's initial image.
pub fn era_logs(
    m: &mut EraModel,
    top: LogRec<DataVal>,
    close: bool,
) -> io::Result<Vec<(String, Emitted)>> {
    let meta = m.meta_dev().lock().take_log(close).unwrap_or_default();
    let origin = take(&mut m.origin, close);
    let cfg = m.config();
    let init = match cfg.origin_init {
        Init::Stamp => Origin::Init(crate::model::era::ORIGIN),
        Init::Zero => Origin::Zero,
    };
    let img = Emitted::Image {
        sectors: cfg.size,
        init,
    };
    Ok(vec![
        ("meta.log".into(), Emitted::Bytes(meta_log(meta)?)),
        ("origin.log".into(), Emitted::Bytes(data_log(origin)?)),
        ("top.log".into(), Emitted::Bytes(top_log(top, close)?)),
        ("origin.img".into(), img),
    ])
}

impl Runner {
    /// Starts recording every device's log (after `config`), and marks them
    /// `activated` as a capture does.
    pub(super) fn start_logs(&mut self) {
        self.top = Some(LogRec::default());
        match self.model.as_mut() {
            Some(Model::Clone(m)) => {
                m.meta_dev().lock().record_log();
                m.dest.record_log();
            }
            Some(Model::Era(m)) => {
                m.meta_dev().lock().record_log();
                m.origin.record_log();
            }
            None => {}
        }
        self.mark_logs("activated");
    }

    /// A `mark` line: every log gets the mark.
    pub(super) fn mark_logs(&mut self, label: &str) {
        if let Some(t) = &mut self.top {
            t.logged.push(LogEvent::Mark(label.to_string()));
        }
        match self.model.as_mut() {
            Some(Model::Clone(m)) => {
                m.meta_dev().lock().log_mark(label);
                m.dest.log_mark(label);
            }
            Some(Model::Era(m)) => {
                m.meta_dev().lock().log_mark(label);
                m.origin.log_mark(label);
            }
            None => {}
        }
    }
}

impl Runner {
    /// What a log-writes device on top of the target logs of a statement the
    /// model ran: synchronous user I/O (a write with the stamp the model
    /// gave it), and, for target messages, the `msg:` mark a capture sends.
    pub(super) fn top_record(&mut self, ev: &Event) {
        if self.top.is_none() {
            return;
        }
        let msg = match ev {
            Event::Status { .. } => Some("msg:status".to_string()),
            Event::Suspend => Some("msg:suspend".into()),
            Event::Resume => Some("msg:resume".into()),
            Event::Reload => Some("msg:reload".into()),
            Event::Checkpoint => Some("msg:checkpoint".into()),
            Event::SnapTake => Some("msg:take_metadata_snap".into()),
            Event::SnapDrop => Some("msg:drop_metadata_snap".into()),
            Event::Msg(m) => Some(match m {
                CloneMsg::EnableHydration => "msg:enable_hydration".into(),
                CloneMsg::DisableHydration => "msg:disable_hydration".into(),
                CloneMsg::HydrationThreshold(n) => format!("msg:hydration_threshold_{n}"),
                CloneMsg::HydrationBatchSize(n) => format!("msg:hydration_batch_size_{n}"),
            }),
            _ => None,
        };
        if let Some(l) = msg {
            self.mark_logs(&l);
            return;
        }
        let range = |loc| match self.model.as_ref() {
            Some(Model::Clone(m)) => super::io::clone_sectors(m, loc).ok(),
            Some(Model::Era(m)) => super::io::era_sectors(loc, m.block_size()).ok(),
            None => None,
        };
        let landed = |s| match self.model.as_ref() {
            Some(Model::Clone(m)) => m.dest.read(s),
            Some(Model::Era(m)) => m.origin.read(s),
            None => None,
        };
        let rec = match ev {
            Event::Write {
                loc,
                fua,
                preflush,
                is_async: false,
                ..
            } => range(loc).and_then(|(start, end)| {
                let val = landed(start)?;
                Some((
                    LogEvent::Write {
                        start,
                        end,
                        val,
                        fua: *fua,
                    },
                    *preflush,
                ))
            }),
            Event::Discard {
                loc,
                is_async: false,
                ..
            } => range(loc).map(|(start, end)| (LogEvent::Discard { start, end }, false)),
            Event::Flush {
                is_async: false, ..
            } => Some((LogEvent::Flush, false)),
            _ => None,
        };
        let Some((ev, preflush)) = rec else { return };
        // The user stream is logged in statement order (a log-writes device
        // on top would log a write only at the flush covering it; captures
        // flush before every mark, so the order between marks is the same).
        let top = self.top.as_mut().expect("checked");
        if preflush {
            top.logged.push(LogEvent::Flush);
        }
        top.logged.push(ev);
    }
}
