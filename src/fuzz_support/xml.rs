//! The XML targets: clone_restore's and era_restore's readers, restoring into a
//! device in memory. What restores must check clean and dump to XML that restores
//! to the same image, byte for byte.

use crate::clone;
use crate::era;
use crate::era::DumpOptions;
use crate::io::MemDevice;

/// Size of the device restored to, in blocks: room for the fixtures' dumps, small
/// enough that hostile sizes are refused early.
const XML_DEVICE_BLOCKS: u64 = 256;

/// clone XML.
pub fn clone(data: &[u8]) {
    let dev = MemDevice::new(XML_DEVICE_BLOCKS);
    if clone::restore::restore(data, &dev, None).is_err() {
        return;
    }
    let c = clone::check(&dev, &Default::default());
    if let Some(f) = c.report.first_error() {
        panic!("restored clone metadata does not check: {f}");
    }
    let mut xml = Vec::new();
    if let Err(e) = clone::dump(&dev, &mut xml, false) {
        panic!("restored clone metadata does not dump: {e}");
    }
    let again = MemDevice::new(XML_DEVICE_BLOCKS);
    if let Err(e) = clone::restore::restore(&xml[..], &again, None) {
        panic!("clone_dump's XML of restored metadata does not restore: {e}");
    }
    assert!(
        again.to_bytes() == dev.to_bytes(),
        "restoring the dump of restored clone metadata gives another image"
    );
}

/// era XML.
pub fn era(data: &[u8]) {
    let dev = MemDevice::new(XML_DEVICE_BLOCKS);
    if era::restore::restore(data, &dev, None).is_err() {
        return;
    }
    let c = era::check(&dev, &Default::default());
    if let Some(f) = c.report.first_error() {
        panic!("restored era metadata does not check: {f}");
    }
    let mut xml = Vec::new();
    if let Err(e) = era::dump(&dev, &mut xml, DumpOptions::default()) {
        panic!("restored era metadata does not dump: {e}");
    }
    let again = MemDevice::new(XML_DEVICE_BLOCKS);
    if let Err(e) = era::restore::restore(&xml[..], &again, None) {
        panic!("era_dump's XML of restored metadata does not restore: {e}");
    }
    // Input ending before the current era (0.9.0's era_dump) gets an empty current
    // writeset, which era_dump prints as the current era's writeset and which
    // restores archived (era::restore): the same metadata in the other shape. Then
    // the two dumps agree; otherwise the two images do, byte for byte.
    let added_current =
        era::superblock::read_at(&dev, 0).is_ok_and(|(sb, _)| sb.current_writeset.root != 0);
    if added_current {
        let mut xml_again = Vec::new();
        if let Err(e) = era::dump(&again, &mut xml_again, DumpOptions::default()) {
            panic!("restored era metadata does not dump: {e}");
        }
        assert!(
            xml_again == xml,
            "the dump of restored era metadata, restored, dumps otherwise"
        );
    } else {
        assert!(
            again.to_bytes() == dev.to_bytes(),
            "restoring the dump of restored era metadata gives another image"
        );
    }
}
