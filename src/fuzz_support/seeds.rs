//! Seed inputs made from the fixtures: each metadata image gives a raw and a sparse
//! whole-image input and, for every structure its superblock names, an input for
//! that structure's block target; each image also gives its XML dump; traces and
//! logs are taken as they are (logs cut to a few entries as well). The seeds are
//! made afresh from the fixtures (`examples/fuzz_seeds.rs`) rather than stored;
//! those over [`MAX_SEED_BYTES`] are left out.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::clone;
use crate::era;
use crate::era::superblock::WritesetDisk;
use crate::era::DumpOptions;
use crate::io::{Block, BlockDevice, MemDevice, BLOCK_SIZE};
use crate::logwrites::Log;
use crate::pdata::btree::NodeHeader;
use crate::pdata::checksum::{kind_of, BlockKind};
use crate::pdata::le64;

use super::{raw_input, sparse_input};

/// Images with more used blocks than this give only block-target seeds.
const MAX_IMAGE_SEED_BLOCKS: usize = 300;

/// Larger seeds are left out: the fuzzer's speed falls with the input's size.
pub const MAX_SEED_BYTES: usize = 1 << 20;

/// B-tree seeds per image: one per tree root, the first this many.
const MAX_TREES: usize = 8;

/// Logs are also cut after this many bytes (at an entry boundary).
const LOG_CUT_BYTES: u64 = 64 << 10;

/// One seed input.
#[derive(Debug, Clone)]
pub struct Seed {
    /// The target it is for.
    pub target: &'static str,
    /// A file name, unique within the target.
    pub name: String,
    /// The input.
    pub data: Vec<u8>,
}

fn seed(target: &'static str, name: String, data: Vec<u8>) -> Seed {
    Seed { target, name, data }
}

fn block_of(img: &[u8], i: usize) -> &Block {
    img[i * BLOCK_SIZE..(i + 1) * BLOCK_SIZE]
        .try_into()
        .expect("a whole block")
}

/// The checksummed blocks of `img` of the given kinds, with their locations.
fn blocks_of<'a>(img: &'a [u8], kinds: &[BlockKind]) -> Vec<(u64, &'a Block)> {
    (0..img.len() / BLOCK_SIZE)
        .map(|i| (i as u64, block_of(img, i)))
        .filter(|(_, b)| kind_of(b).is_some_and(|k| kinds.contains(&k)))
        .collect()
}

/// The roots of `(nr_bits, root)` bitsets held in writeset-tree leaves (value size
/// 12) of `img`.
fn archived_writesets(img: &[u8]) -> Vec<WritesetDisk> {
    let mut out = Vec::new();
    for (_, b) in blocks_of(img, &[BlockKind::BtreeNode]) {
        let h = NodeHeader::decode(b);
        if h.is_leaf() && h.value_size == WritesetDisk::SIZE as u32 && h.fits() {
            for i in 0..h.nr_entries as usize {
                out.push(WritesetDisk::decode(h.value(b, i)));
            }
        }
    }
    out
}

/// B-tree roots of `img`: nodes no internal node points at, with the value size
/// of the leaves below them.
fn tree_roots(img: &[u8]) -> Vec<(u64, u32)> {
    let nodes = blocks_of(img, &[BlockKind::BtreeNode]);
    let mut children = BTreeSet::new();
    for (_, b) in &nodes {
        let h = NodeHeader::decode(b);
        if !h.is_leaf() && h.fits() {
            for i in 0..h.nr_entries as usize {
                children.insert(le64(h.value(b, i), 0));
            }
        }
    }
    let mut out = Vec::new();
    for &(loc, b) in nodes.iter().filter(|(l, _)| !children.contains(l)) {
        // Down the first children to a leaf, for the value size.
        let mut h = NodeHeader::decode(b);
        let mut at = b;
        for _ in 0..8 {
            if h.is_leaf() || !h.fits() || h.nr_entries == 0 {
                break;
            }
            let child = le64(h.value(at, 0), 0) as usize;
            if child >= img.len() / BLOCK_SIZE {
                break;
            }
            at = block_of(img, child);
            h = NodeHeader::decode(at);
        }
        out.push((loc, h.value_size));
    }
    out
}

/// Seeds from the metadata image `img` (whole, as the device holds it).
pub fn from_image(name: &str, img: &[u8]) -> Vec<Seed> {
    let nr_blocks = (img.len() / BLOCK_SIZE) as u64;
    let used = (0..img.len() / BLOCK_SIZE)
        .rev()
        .find(|&i| block_of(img, i).iter().any(|&x| x != 0))
        .map_or(1, |i| i + 1);
    let mut out = Vec::new();
    if used <= MAX_IMAGE_SEED_BLOCKS {
        out.push(seed("image_raw", name.into(), raw_input(img, used)));
        let all: Vec<(u64, &Block)> = (0..used)
            .map(|i| (i as u64, block_of(img, i)))
            .filter(|(_, b)| b.iter().any(|&x| x != 0))
            .collect();
        out.push(seed(
            "image_stamped",
            name.into(),
            sparse_input(nr_blocks, [0; 4], &all),
        ));
    }
    let sb = block_of(img, 0);
    let nodes = [BlockKind::BtreeNode];
    let arrays = [BlockKind::BtreeNode, BlockKind::ArrayBlock];
    let sm = [
        BlockKind::SmIndex,
        BlockKind::SmBitmap,
        BlockKind::BtreeNode,
    ];
    let mut bitsets: Vec<(String, u64, u64)> = Vec::new();
    let mut array_params: Vec<(String, [u64; 4])> = Vec::new();
    let sm_root;
    match kind_of(sb) {
        Some(BlockKind::CloneSuperblock) => {
            let s = clone::CloneSuperblock::decode(sb);
            sm_root = s.sm_root;
            out.push(seed(
                "block_superblock",
                name.into(),
                sparse_input(nr_blocks, [s.region_size, s.target_size, 0, 0], &[(0, sb)]),
            ));
            bitsets.push(("regions".into(), s.bitset_root, s.nr_regions()));
        }
        Some(BlockKind::EraSuperblock) => {
            let s = era::EraSuperblock::decode(sb);
            sm_root = s.sm_root;
            let mut sbs = vec![(0, sb)];
            if s.metadata_snap != 0 && s.metadata_snap < nr_blocks {
                sbs.push((s.metadata_snap, block_of(img, s.metadata_snap as usize)));
            }
            out.push(seed(
                "block_superblock",
                name.into(),
                sparse_input(nr_blocks, [0, 0, s.data_block_size as u64, 0], &sbs),
            ));
            array_params.push((
                "era-array".into(),
                [s.era_array_root, 0, s.nr_blocks as u64, 0],
            ));
            let mut ws = vec![s.current_writeset];
            ws.extend(archived_writesets(img));
            for (i, w) in ws.iter().filter(|w| w.root != 0).enumerate() {
                bitsets.push((format!("writeset{i}"), w.root, w.nr_bits as u64));
            }
        }
        _ => return out,
    }
    for (i, (root, value_size)) in tree_roots(img).into_iter().take(MAX_TREES).enumerate() {
        out.push(seed(
            "block_btree",
            format!("{name}-tree{i}"),
            sparse_input(
                nr_blocks,
                [root, value_size as u64, 0, 0],
                &blocks_of(img, &nodes),
            ),
        ));
    }
    for (what, root, nr_bits) in bitsets {
        out.push(seed(
            "block_bitset",
            format!("{name}-{what}"),
            sparse_input(nr_blocks, [root, 0, nr_bits, 0], &blocks_of(img, &arrays)),
        ));
        array_params.push((what, [root, 1, nr_bits.div_ceil(64), 0]));
    }
    for (what, params) in array_params {
        out.push(seed(
            "block_array",
            format!("{name}-{what}"),
            sparse_input(nr_blocks, params, &blocks_of(img, &arrays)),
        ));
    }
    out.push(seed(
        "block_space_map",
        name.into(),
        sparse_input(
            nr_blocks,
            [
                sm_root.nr_blocks,
                sm_root.nr_allocated,
                sm_root.bitmap_root,
                sm_root.ref_count_root,
            ],
            &blocks_of(img, &sm),
        ),
    ));
    out.extend(dumps(name, img));
    out
}

/// A writer that fails past [`MAX_SEED_BYTES`], so that a large dump stops early.
#[derive(Default)]
struct Capped(Vec<u8>);

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_SEED_BYTES {
            return Err(std::io::Error::other("seed too large"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The image's XML dumps, as restore inputs (those that fit in a seed).
fn dumps(name: &str, img: &[u8]) -> Vec<Seed> {
    let dev = MemDevice::from_bytes(img);
    let mut out = Vec::new();
    let mut xml = Capped::default();
    if dev.nr_blocks() > 0 && clone::dump(&dev, &mut xml, false).is_ok() {
        out.push(seed("clone_xml", format!("{name}.xml"), xml.0));
    }
    for logical in [false, true] {
        let mut xml = Capped::default();
        let opts = DumpOptions {
            logical,
            ..Default::default()
        };
        if dev.nr_blocks() > 0 && era::dump(&dev, &mut xml, opts).is_ok() {
            let what = if logical { "-logical" } else { "" };
            out.push(seed("era_xml", format!("{name}{what}.xml"), xml.0));
        }
    }
    out
}

/// Seeds from an XML document for `target` (`clone_xml` or `era_xml`).
pub fn from_xml(target: &'static str, name: &str, xml: &[u8]) -> Seed {
    seed(target, name.into(), xml.to_vec())
}

/// Seeds from a dmtrace.
pub fn from_trace(name: &str, text: &[u8]) -> Seed {
    seed("dmtrace", name.into(), text.to_vec())
}

/// Seeds from a dm-log-writes log: the log, and when it is long, its first entries
/// up to [`LOG_CUT_BYTES`].
pub fn from_log(name: &str, log: &[u8]) -> Vec<Seed> {
    let mut out = Vec::new();
    if let Ok(l) = Log::open(log.to_vec()) {
        let s = l.sector_size as u64;
        let cut = l
            .entries
            .iter()
            .map(|e| e.pos)
            .take_while(|&p| p <= LOG_CUT_BYTES)
            .last()
            .unwrap_or(s);
        if (cut as usize) < log.len() {
            out.push(seed(
                "logwrites",
                format!("{name}-cut"),
                log[..cut as usize].to_vec(),
            ));
        }
    }
    if log.len() as u64 <= 4 * LOG_CUT_BYTES {
        out.push(seed("logwrites", name.into(), log.to_vec()));
    }
    out
}

/// A few hand-made era XML documents in the forms the reader accepts besides
/// era_dump's: thin-provisioning-tools 1.3.3's `<marked>` runs and an empty
/// writeset.
pub fn era_xml_forms() -> Vec<Seed> {
    let marked = "<superblock uuid=\"\" block_size=\"8\" nr_blocks=\"200\" current_era=\"2\">\n  <writeset era=\"1\" nr_bits=\"200\">\n    <marked block_begin=\"60\" len=\"8\"/>\n    <marked block_begin=\"70\" len=\"130\"/>\n  </writeset>\n  <writeset era=\"2\" nr_bits=\"200\">\n  </writeset>\n  <era_array>\n    <era block=\"0\" era=\"1\"/>\n    <era block=\"199\" era=\"2\"/>\n  </era_array>\n</superblock>\n";
    vec![seed(
        "era_xml",
        "marked.xml".into(),
        marked.as_bytes().to_vec(),
    )]
}

/// Reads a fixture, decompressing `.zst` and `.gz` files with the `zstd` and
/// `gzip` commands.
fn read_fixture(path: &Path) -> std::io::Result<Vec<u8>> {
    let tool = match path.extension().and_then(|e| e.to_str()) {
        Some("zst") => "zstd",
        Some("gz") => "gzip",
        _ => return std::fs::read(path),
    };
    let out = Command::new(tool).arg("-dc").arg(path).output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "{tool} -dc {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

/// The files in `dir` (sorted) whose names end in `suffix`; none when `dir` is
/// missing.
fn files(dir: &Path, suffix: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd {
            let p = e?.path();
            if p.to_str().is_some_and(|s| s.ends_with(suffix)) {
                v.push(p);
            }
        }
    }
    v.sort();
    Ok(v)
}

fn dir_name(p: &Path) -> String {
    p.parent()
        .and_then(|d| d.file_name())
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// Every seed the fixtures of the repository at `repo` give: the kernel images
/// (`fixtures/kernel/`, `fixtures/samples/`) and their dumps, the XML beside them,
/// the traces (`tests/traces/`) and the metadata logs (`fixtures/kernel-logs/`).
pub fn from_fixtures(repo: &Path) -> std::io::Result<Vec<Seed>> {
    let mut out = Vec::new();
    for group in ["fixtures/kernel", "fixtures/samples"] {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(repo.join(group))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("metadata.img.zst").exists())
            .collect();
        dirs.sort();
        for d in dirs {
            let img = read_fixture(&d.join("metadata.img.zst"))?;
            let name = d
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            out.extend(from_image(&name, &img));
            for x in files(&d, ".xml")? {
                let f = x
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
                if f.starts_with("era_dump") {
                    out.push(from_xml(
                        "era_xml",
                        &format!("{name}-{f}"),
                        &read_fixture(&x)?,
                    ));
                }
            }
        }
    }
    out.extend(era_xml_forms());
    for sub in [
        "tests/traces/kernel",
        "tests/traces/clone",
        "tests/traces/era",
    ] {
        for t in files(&repo.join(sub), ".dmtrace")? {
            let f = t
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            let text = read_fixture(&t)?;
            out.push(seed("replay", f.clone(), text.clone()));
            out.push(from_trace(&f, &text));
        }
    }
    let mut logs: Vec<PathBuf> = Vec::new();
    if let Ok(rd) = std::fs::read_dir(repo.join("fixtures/kernel-logs")) {
        for e in rd {
            logs.extend(files(&e?.path(), ".log.gz")?);
        }
    }
    logs.sort();
    for l in logs {
        let f = l
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        if f.starts_with("meta") || f.starts_with("top") {
            let name = format!("{}-{}", dir_name(&l), f.trim_end_matches(".log.gz"));
            out.extend(from_log(&name, &read_fixture(&l)?));
        }
    }
    out.retain(|s| s.data.len() <= MAX_SEED_BYTES);
    Ok(out)
}
