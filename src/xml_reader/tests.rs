use super::produce::MAX_CONSTRUCT;
use super::*;

/// Every event of `s`, start tags with their name and attributes, read `size`
/// bytes at a time.
fn events_with(s: &str, size: usize) -> Result<Vec<String>, XmlError> {
    list(XmlIn::with_chunk(s.as_bytes(), size))
}

fn list(mut x: XmlIn<'_>) -> Result<Vec<String>, XmlError> {
    let mut out = Vec::new();
    loop {
        let e = x.next_element()?;
        out.push(match e {
            Element::Start { empty } => {
                let attrs: Vec<String> =
                    x.attrs().iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!(
                    "<{} {}{}>",
                    x.name(),
                    attrs.join(" "),
                    if empty { "/" } else { "" }
                )
            }
            Element::End => "end".into(),
            Element::Eof => return Ok(out),
        });
    }
}

fn events(s: &str) -> Result<Vec<String>, XmlError> {
    events_with(s, 1 << 16)
}

#[test]
fn elements_and_positions() {
    let ev = events("<?xml version=\"1.0\"?>\n<a x=\"1\">\n  <b y=\"2\"/>\n</a>\n").unwrap();
    assert_eq!(ev, ["<a x=1>", "<b y=2/>", "end"]);
    let mut x = XmlIn::new("<a>\n  <b/>\n  <c>\n".as_bytes());
    x.next_element().unwrap();
    x.next_element().unwrap();
    assert_eq!(x.error("here").line, 2);
    assert_eq!(x.error("here").column, 3);
    x.next_element().unwrap();
    let e = x.next_element().unwrap_err();
    assert_eq!((e.line, e.column), (4, 1));
    assert!(e.msg.contains("truncated"), "{e}");
}

#[test]
fn every_buffer_size_reads_the_same() {
    let doc = "<?xml version=\"1.0\"?>\n<!-- a comment\n over lines -->\n<a x='1\"q' y=\"it's a&amp;b&#x41;&lt;\">\n  <b y=\"2\" \n z=\"&#65;>\" é=\"ü\"/>\n  <?pi stuff?>\n</a >\n";
    let want = events(doc).unwrap();
    assert_eq!(
        want,
        ["<a x=1\"q y=it's a&bA<>", "<b y=2 z=A> é=ü/>", "end"]
    );
    for size in 1..64 {
        assert_eq!(events_with(doc, size).unwrap(), want, "buffer of {size}");
    }
    let bad = "<a>\n <b/>\n  <c x=\"1\" x=\"2\"/>\n</a>";
    let want = events(bad).unwrap_err();
    for size in 1..40 {
        assert_eq!(
            events_with(bad, size).unwrap_err(),
            want,
            "buffer of {size}"
        );
    }
}

#[test]
fn text_and_mismatched_tags_are_errors() {
    let e = events("<a>\n  hello\n</a>").unwrap_err();
    assert_eq!((e.line, e.column), (2, 3));
    assert!(e.msg.contains("unexpected text \"hello\""), "{e}");
    for bad in [
        "<a></b>",
        "",
        "<a/><b/>",
        "<a x=\"1\" x=\"2\"/>",
        "<a x=1/>",
        "<a x=\"1\"y=\"2\"/>",
        "<a x=\"<\"/>",
        "<a x=\"&bogus;\"/>",
        "<a x=\"&amp\"/>",
        "<a><![CDATA[x]]></a>",
        "<!DOCTYPE a><a/>",
        "<a></a></a>",
        "<a/ >",
        "< a/>",
        "<a x=\"1\"",
        "<!-- open",
        "<a>",
    ] {
        assert!(events(bad).is_err(), "accepted {bad:?}");
        assert!(
            events_with(bad, 3).is_err(),
            "accepted {bad:?} in small reads"
        );
    }
    let e = events("<a>\n</b>").unwrap_err();
    assert!(e.msg.contains("expected </a>, found </b>"), "{e}");
    assert_eq!((e.line, e.column), (2, 1));
}

#[test]
fn a_bad_value_over_lines_is_placed_at_its_quote() {
    let e = events("<a>\n  <b x=\"1\n2 &bogus;\"/>\n</a>").unwrap_err();
    assert_eq!((e.line, e.column), (2, 8), "{e}");
    let mut x = XmlIn::new(&b"<a>\n <b y='\n\xff'/></a>"[..]);
    x.next_element().unwrap();
    let e = x.next_element().unwrap_err();
    assert_eq!((e.line, e.column), (2, 7), "{e}");
}

#[test]
fn a_byte_order_mark_is_skipped() {
    let e = events("\u{feff}<a>\n</a>\n").unwrap();
    assert_eq!(e, ["<a >", "end"]);
    let e = events("\u{feff}<a> x</a>").unwrap_err();
    assert_eq!((e.line, e.column), (1, 5));
}

#[test]
fn invalid_utf8_is_an_error_not_a_panic() {
    let mut x = XmlIn::new(&b"<a x=\"\xff\"/>"[..]);
    assert!(x.next_element().is_err());
    let mut x = XmlIn::new(&b"<\xff/>"[..]);
    assert!(x.next_element().is_err());
}

#[test]
fn a_construct_longer_than_the_limit_is_refused() {
    let mut doc = String::from("<a x=\"");
    doc.extend(std::iter::repeat_n('y', MAX_CONSTRUCT + 10));
    doc.push_str("\"/>");
    let e = events(&doc).unwrap_err();
    assert!(e.msg.contains("longer than"), "{e}");
}

#[test]
fn line_bookkeeping_stays_exact_over_refills() {
    let mut s = String::from("<a>\n");
    for _ in 0..100_000 {
        s += "  <b/>\n";
    }
    s += "</a>\n";
    let mut x = XmlIn::with_chunk(s.as_bytes(), 1000);
    while x.next_element().unwrap() != Element::Eof {}
    assert_eq!(x.error("end").line, 100_003);
    assert!(x.batch.buf.len() <= 1000);
}

#[test]
fn the_parallel_reader_reads_the_same() {
    let mut doc = String::from("<a>\n");
    for i in 0..50_000 {
        doc += &format!("  <b n=\"{i}\"/>\n");
    }
    let good = doc.clone() + "</a>\n";
    let bad = doc + "  <b n=\"1\" n=\"2\"/>\n</a>\n";
    for d in [good, bad] {
        let want = events(&d);
        let got = std::thread::scope(|s| list(XmlIn::parallel(s, d.as_bytes())));
        assert_eq!(got, want);
    }
    // A reader dropped early ends its thread.
    let d = "<a>".to_string() + &"<b/>".repeat(1 << 20) + "</a>";
    std::thread::scope(|s| {
        let mut x = XmlIn::parallel(s, d.as_bytes());
        x.next_element().unwrap();
    });
}

#[test]
fn numbers_are_strict() {
    assert_eq!(parse_decimal("0"), Some(0));
    assert_eq!(parse_decimal("18446744073709551615"), Some(u64::MAX));
    assert_eq!(parse_decimal("18446744073709551616"), None);
    assert_eq!(parse_decimal("+1"), None);
    assert_eq!(parse_decimal(" 1"), None);
    assert_eq!(parse_decimal(""), None);
    // Either side of the nineteen digits read without overflow tests.
    assert_eq!(
        parse_decimal("9999999999999999999"),
        Some(9_999_999_999_999_999_999)
    );
    assert_eq!(parse_decimal("99999999999999999999"), None);
    assert_eq!(parse_decimal("00000000000000000000042"), Some(42));
    assert_eq!(parse_decimal("12345678901234567x9"), None);
    assert_eq!(parse_decimal("1234567890123456789x"), None);
}
