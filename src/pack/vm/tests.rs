use proptest::prelude::*;

use super::*;

fn block_of_words(words: &[u64]) -> Block {
    let mut b = [0u8; BLOCK_SIZE];
    for (c, w) in b.chunks_exact_mut(8).zip(words) {
        c.copy_from_slice(&w.to_le_bytes());
    }
    b
}

fn round_trip(b: &Block) -> usize {
    let mut prog = Vec::new();
    encode_block(b, &mut prog);
    // Trailing data after the program is not taken.
    prog.extend_from_slice(&[0xff, 0xff]);
    let mut out = [0u8; BLOCK_SIZE];
    let used = decode_block(&prog, &mut out).expect("decodes");
    assert_eq!(used, prog.len() - 2, "the program's length");
    assert!(out == *b, "round trip");
    used
}

#[test]
fn blocks_round_trip() {
    round_trip(&[0u8; BLOCK_SIZE]);
    round_trip(&[0xffu8; BLOCK_SIZE]);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let random: Vec<u64> = (0..WORDS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
        .collect();
    round_trip(&block_of_words(&random));
    // A B-tree leaf: header, sorted keys, sequential block numbers, zero tail.
    let mut node = vec![0x1234_5678_0000_0002u64, 77, 126 << 32 | 3, 8];
    node.extend(0..126u64);
    node.extend((1000..1126u64).map(|v| v | 1 << 40));
    node.resize(WORDS, 0);
    let used = round_trip(&block_of_words(&node));
    assert!(used < 64, "a regular node packs small: {used} bytes");
    // Descending, wrapping, and a step above 2^63.
    let wrap: Vec<u64> = (0..WORDS as u64)
        .map(|i| 5u64.wrapping_sub(i * 3))
        .collect();
    round_trip(&block_of_words(&wrap));
    let big: Vec<u64> = (0..WORDS as u64)
        .map(|i| i.wrapping_mul(0x8000_0000_0000_0001))
        .collect();
    round_trip(&block_of_words(&big));
    // A run that continues from the register left by the one before.
    let mut cont: Vec<u64> = (0..10).collect();
    cont.extend([3, 9]);
    cont.extend(10..WORDS as u64 - 2);
    round_trip(&block_of_words(&cont));
}

fn segments() -> impl Strategy<Value = Vec<u64>> {
    let seg = prop_oneof![
        (any::<u64>(), any::<u64>(), 1usize..40).prop_map(|(a, d, n)| {
            (0..n as u64)
                .map(|i| a.wrapping_add(d.wrapping_mul(i)))
                .collect::<Vec<_>>()
        }),
        (any::<u64>(), -20i64..20, 1usize..40).prop_map(|(a, d, n)| {
            (0..n as u64)
                .map(|i| a.wrapping_add((d as u64).wrapping_mul(i)))
                .collect::<Vec<_>>()
        }),
        prop::collection::vec(any::<u64>(), 1..10),
        prop::collection::vec(0u64..4, 1..10),
    ];
    prop::collection::vec(seg, 1..60).prop_map(|v| {
        let mut w: Vec<u64> = v.into_iter().flatten().collect();
        w.resize(WORDS, 0);
        w
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_block_round_trips(words in segments()) {
        round_trip(&block_of_words(&words));
    }

    #[test]
    fn any_bytes_decode_or_fail_cleanly(data in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut out = [0u8; BLOCK_SIZE];
        if let Ok(n) = decode_block(&data, &mut out) {
            prop_assert!(n <= data.len());
        }
    }

    #[test]
    fn cut_programs_are_truncated(words in segments(), cut in 0.0f64..1.0) {
        let mut prog = Vec::new();
        encode_block(&block_of_words(&words), &mut prog);
        let n = (prog.len() as f64 * cut) as usize;
        let mut out = [0u8; BLOCK_SIZE];
        let r = decode_block(&prog[..n], &mut out);
        prop_assert!(matches!(r, Err((_, VmError::Truncated { .. }))), "{:?}", r);
    }
}

/// An instruction byte.
fn op(tag: u8, n: u8) -> u8 {
    tag << 4 | n
}

/// The rest of a block from `words_done` words on, as zeroes (set 0, repeat).
fn zero_tail(words_done: usize) -> Vec<u8> {
    let rest = WORDS - words_done - 1;
    vec![
        op(SET, 1),
        0,
        op(REPEAT_WIDE, (rest >> 8) as u8),
        rest as u8,
    ]
}

#[test]
fn split_words_join_high_and_low_parts_and_share_the_register() {
    // 3 words: high parts 5, 6, 7 (set, count 2, add 1); low parts 0xabcdef three
    // times (set, repeat 2). Then add 1 continues from the low part's register.
    let mut p = vec![op(SPLIT_WORDS, 0), 3];
    p.extend([op(SET, 1), 5, op(COUNT, 2), op(ADD, 1)]);
    p.extend([op(SET, 4), 0xef, 0xcd, 0xab, 0, op(REPEAT, 2)]);
    p.push(op(ADD, 1));
    p.extend(zero_tail(4));
    let mut out = [0u8; BLOCK_SIZE];
    assert_eq!(decode_block(&p, &mut out), Ok(p.len()));
    let mut want = vec![5 << 24 | 0xabcdef, 6 << 24 | 0xabcdef, 7 << 24 | 0xabcdef];
    want.push(0xabcdf0);
    want.resize(WORDS, 0);
    assert!(out == block_of_words(&want));
}

#[test]
fn every_instruction_decodes_as_specified() {
    let mut p = vec![
        op(SET, 2),
        0x34,
        0x12, // 0x1234
        op(ADD_WIDE, 1),
        0x10,       // 0x1244
        op(SUB, 4), // 0x1240
        op(SUB_WIDE, 8),
        1,
        0,
        0,
        0,
        0,
        0,
        0,
        0, // 0x123f
        op(COUNT_WIDE, 0),
        2,
        op(ADD, 0), // 0x123f twice more
        op(BYTES, 8),
    ];
    p.extend(b"literal!");
    p.extend([op(BYTES_WIDE, 2), 16, 0]);
    p.extend([0xaa; 16]);
    p.extend(zero_tail(9));
    let mut out = [0u8; BLOCK_SIZE];
    assert_eq!(decode_block(&p, &mut out), Ok(p.len()));
    let mut want = block_of_words(&[0x1234, 0x1244, 0x1240, 0x123f, 0x123f, 0x123f]);
    want[48..56].copy_from_slice(b"literal!");
    want[56..72].copy_from_slice(&[0xaa; 16]);
    assert!(out == want);
}

#[test]
fn malformed_programs_are_errors_at_their_instruction() {
    let mut out = [0u8; BLOCK_SIZE];
    let dec = |p: &[u8], out: &mut Block| decode_block(p, out);
    for tag in 12..16 {
        assert_eq!(dec(&[op(tag, 0)], &mut out), Err((0, VmError::BadTag(tag))));
    }
    assert_eq!(
        dec(&[op(ADD, 1), op(SET, 3), 1, 2, 3], &mut out),
        Err((1, VmError::BadWidth(3)))
    );
    assert_eq!(
        dec(&[op(BYTES_WIDE, 2), 0x01, 0x10], &mut out),
        Err((0, VmError::Overrun { limit: BLOCK_SIZE }))
    );
    assert_eq!(
        dec(&[op(SET, 1), 0, op(REPEAT_WIDE, 2), 0], &mut out),
        Err((2, VmError::Overrun { limit: BLOCK_SIZE }))
    );
    assert_eq!(
        dec(&[op(COUNT, 2), op(REPEAT, 1)], &mut out),
        Err((
            0,
            VmError::BadCount {
                tag: REPEAT,
                count: 2
            }
        ))
    );
    assert_eq!(
        dec(&[op(SPLIT_WORDS, 0), 1, op(SPLIT_WORDS, 0), 1], &mut out),
        Err((2, VmError::NestedSplit))
    );
    assert_eq!(
        dec(&[op(SPLIT_WORDS, 0x2), 1], &mut out),
        Err((0, VmError::Overrun { limit: BLOCK_SIZE }))
    );
    // A sub-program that emits past its part.
    assert_eq!(
        dec(
            &[
                op(SPLIT_WORDS, 0),
                1,
                op(SET, 1),
                0,
                op(COUNT, 2),
                op(ADD, 1)
            ],
            &mut out
        ),
        Err((4, VmError::Overrun { limit: 8 }))
    );
    assert_eq!(
        dec(&[op(SET, 1), 7], &mut out),
        Err((2, VmError::Truncated { emitted: 8 }))
    );
    assert_eq!(
        dec(&[], &mut out),
        Err((0, VmError::Truncated { emitted: 0 }))
    );
    // Counts of 0 emit nothing and are not errors; a later count replaces an
    // earlier one.
    let mut p = vec![op(COUNT, 0), op(SET, 1), 9, op(COUNT, 5), op(COUNT, 1)];
    p.extend(zero_tail(0));
    assert_eq!(decode_block(&p, &mut out), Ok(p.len()));
    assert!(out == [0u8; BLOCK_SIZE]);
}
