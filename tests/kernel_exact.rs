//! Byte-exact oracle: the kernel's own operation sequences replayed through our
//! write path on an in-memory device must leave the same bytes in every block as
//! the kernel-made images of `fixtures/kernel/` (Linux 6.1).

use dmce::clone::CloneSuperblock;
use dmce::era::superblock::{EraSuperblock, WritesetDisk};
use dmce::io::MemDevice;
use dmce::pdata::array_write::Array;
use dmce::pdata::bitset_write::Bitset;
use dmce::pdata::btree::ops::{self, RefValues};
use dmce::pdata::tm::TransactionManager;

use crate::util::{load_zst, repo};

const BLOCK: usize = 4096;

fn kernel_image(case: &str) -> Vec<u8> {
    load_zst(&repo().join(format!("fixtures/kernel/{case}/metadata.img.zst")))
}

/// Every block that differs, as (block, first differing byte offset).
fn diff_blocks(got: &[u8], want: &[u8]) -> Vec<(usize, usize)> {
    assert_eq!(got.len(), want.len(), "image sizes");
    (0..want.len() / BLOCK)
        .filter_map(|b| {
            let g = &got[b * BLOCK..(b + 1) * BLOCK];
            let w = &want[b * BLOCK..(b + 1) * BLOCK];
            g.iter().zip(w).position(|(x, y)| x != y).map(|o| (b, o))
        })
        .collect()
}

fn used_blocks(img: &[u8]) -> usize {
    img.chunks(BLOCK)
        .filter(|c| c.iter().any(|&x| x != 0))
        .count()
}

fn assert_identical(case: &str, got: &[u8]) {
    let want = kernel_image(case);
    let d = diff_blocks(got, &want);
    assert!(
        d.is_empty(),
        "{case}: {} of {} used blocks differ (block, first byte): {d:?}",
        d.len(),
        used_blocks(&want)
    );
}

/// dm-clone `__format_metadata` for 2048 regions of 64 sectors.
#[test]
fn clone_fresh_format_is_byte_identical() {
    let dev = MemDevice::new(2048);
    let mut tm = TransactionManager::format(&dev).unwrap();
    let bitset = Bitset::new(&mut tm, 2048).unwrap();
    let sm_root = tm.pre_commit().unwrap();
    let sb = CloneSuperblock {
        flags: 0,
        sm_root,
        region_size: 64,
        target_size: 131072,
        bitset_root: bitset.root(),
    };
    tm.commit(&sb.encode()).unwrap();
    assert_identical("clone-fresh", &dev.to_bytes());
}

/// clone_restore of a dump of an empty clone writes the kernel's image.
#[test]
fn clone_restore_of_nothing_hydrated_is_byte_identical() {
    let xml = "<superblock uuid=\"\" region_size=\"64\" target_size=\"131072\" nr_regions=\"2048\">\n</superblock>\n";
    let dev = MemDevice::new(2048);
    dmce::clone::restore::restore(xml.as_bytes(), &dev, None).unwrap();
    assert_identical("clone-fresh", &dev.to_bytes());
}

/// The era superblock the kernel's `prepare_superblock` writes.
struct EraState {
    nr_blocks: u32,
    current_era: u32,
    current: WritesetDisk,
    writeset_tree: u64,
    era_array: Array,
}

impl EraState {
    fn superblock(&self, sm_root: dmce::pdata::space_map::SmRoot) -> [u8; BLOCK] {
        EraSuperblock {
            flags: 0,
            sm_root,
            data_block_size: 128,
            metadata_block_size: 8,
            nr_blocks: self.nr_blocks,
            current_era: self.current_era,
            current_writeset: self.current,
            writeset_tree_root: self.writeset_tree,
            era_array_root: self.era_array.root,
            metadata_snap: 0,
        }
        .encode(0)
    }

    /// `metadata_commit` (no bitset word is cached: nothing was written).
    fn commit(&self, tm: &mut TransactionManager<&MemDevice>) {
        let sm_root = tm.pre_commit().unwrap();
        tm.commit(&self.superblock(sm_root)).unwrap();
    }
}

/// dm-era created on 1024 blocks of 128 sectors, then removed: format, preresume
/// (resize 0 → 1024 and commit, then the rollover rpc and its commit), and on
/// remove the postsuspend (archive rpc and its commit, then one more commit).
#[test]
fn era_fresh_lifecycle_is_byte_identical() {
    let dev = MemDevice::new(2048);
    let mut tm = TransactionManager::format(&dev).unwrap();
    // create_fresh_metadata + write_superblock (no pre-commit).
    let writeset_tree = ops::empty(&mut tm, 12).unwrap();
    let era_array = Array::empty(&mut tm, 4).unwrap();
    let mut st = EraState {
        nr_blocks: 0,
        current_era: 0,
        current: WritesetDisk::default(),
        writeset_tree,
        era_array,
    };
    let sb = st.superblock(tm.sm_root());
    tm.commit_without_sm(&sb).unwrap();
    // preresume: metadata_resize + metadata_commit.
    st.era_array
        .resize(&mut tm, 1024, &0u32.to_le_bytes())
        .unwrap();
    st.nr_blocks = 1024;
    st.commit(&mut tm);
    // rollover rpc: metadata_new_era (writeset_init), then metadata_commit.
    let ws = Bitset::new(&mut tm, 1024).unwrap();
    st.current = WritesetDisk {
        nr_bits: 1024,
        root: ws.root(),
    };
    st.current_era += 1;
    st.commit(&mut tm);
    // postsuspend: metadata_era_archive in the worker, its commit, then one more.
    let mut v = [0u8; 12];
    st.current.encode(&mut v);
    st.writeset_tree = ops::insert(
        &mut tm,
        st.writeset_tree,
        12,
        st.current_era as u64,
        &v,
        &RefValues::BitsetRoots,
    )
    .unwrap();
    st.current.root = 0;
    st.commit(&mut tm);
    st.commit(&mut tm);
    assert_identical("era-fresh", &dev.to_bytes());
}
