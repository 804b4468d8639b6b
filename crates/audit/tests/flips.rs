//! Any single-byte change anywhere in a closed trail is detected: the verdict
//! is never clean.

mod common;

use std::fs;
use std::sync::OnceLock;

use common::*;
use maskgate_audit::{verify, Status};
use proptest::prelude::*;

/// One closed trail of several segments, made once and copied for each case.
fn template() -> &'static Trail {
    static T: OnceLock<Trail> = OnceLock::new();
    T.get_or_init(|| {
        let t = closed_trail(20, 4096);
        assert!(t.segments().len() >= 3);
        assert_eq!(t.verify().status(), Status::Clean);
        t
    })
}

/// Copies the template, replaces the byte at `offset` of segment `file` by
/// `byte ^ xor` and verifies.
fn flipped(file: usize, offset: usize, xor: u8) -> Status {
    let t = template();
    let dir = tempfile::tempdir().unwrap();
    copy_dir(t.path(), dir.path());
    let segments = t.segments();
    let name = segments[file % segments.len()]
        .file_name()
        .unwrap()
        .to_owned();
    let path = dir.path().join(name);
    let mut bytes = fs::read(&path).unwrap();
    let at = offset % bytes.len();
    bytes[at] ^= xor;
    fs::write(&path, bytes).unwrap();
    verify(dir.path(), &t.public).unwrap().status()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_random_byte_change_is_always_detected(file in 0usize..16, offset in 0usize..1_000_000, xor in 1u8..=255) {
        prop_assert_ne!(flipped(file, offset, xor), Status::Clean);
    }
}

/// Exhaustively, every single-bit flip of the last line of the trail: the
/// final checkpoint has no successor whose link would catch a change, so only
/// its signature and the strict parsing stand between it and an edit.
#[test]
fn every_bit_flip_of_the_final_checkpoint_is_detected() {
    let t = template();
    let last = t.segments().len() - 1;
    let bytes = fs::read(&t.segments()[last]).unwrap();
    let start = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|b| *b == b'\n')
        .unwrap()
        + 1;
    for offset in start..bytes.len() {
        for bit in 0..8 {
            assert_ne!(
                flipped(last, offset, 1 << bit),
                Status::Clean,
                "byte {offset} bit {bit}"
            );
        }
    }
}
