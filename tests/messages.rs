//! What the tools say: warnings a user must see, and the text of errors.

use std::path::Path;

use crate::util::{load_zst, repo, run_tool, TestDir};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A restore that leaves no free metadata block warns, with the size needed.
#[test]
fn a_restore_that_fills_the_device_warns_with_the_size_needed() {
    let d = TestDir::new("msg-full");
    let era = d.path("era.img");
    std::fs::write(
        &era,
        load_zst(&repo().join("fixtures/samples/era-b-eras/metadata.img.zst")),
    )
    .unwrap();
    let xml = d.path("e.xml");
    std::fs::write(&xml, run_tool("era_dump", &[s(&era)]).stdout).unwrap();
    let img = d.path("small.img");
    for (blocks, warned) in [(10u64, true), (11, false)] {
        std::fs::write(&img, vec![0u8; (blocks * 4096) as usize]).unwrap();
        for tool in [
            vec!["era_restore", "-i", s(&xml), "-o", s(&img)],
            vec!["era_repair", "-i", s(&era), "-o", s(&img)],
        ] {
            let o = run_tool(tool[0], &tool[1..]);
            assert_eq!(o.status.code(), Some(0), "{tool:?}");
            let e = text(&o.stderr);
            assert_eq!(
                e.contains("fills the device (10/10 blocks used)")
                    && e.contains("more than 10 blocks (45056 bytes)"),
                warned,
                "{blocks} blocks, {tool:?}: {e}"
            );
        }
    }
}
