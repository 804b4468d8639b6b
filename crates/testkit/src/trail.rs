//! Reading the audit trail a test's proxy writes.

use std::path::Path;

use maskgate_audit::segment::{SEGMENT_PREFIX, SEGMENT_SUFFIX};

/// Every record of the trail in `dir`, segment by segment in order. A line the
/// writer has not finished yet (no newline) is left for the next read; every
/// finished line must be a JSON record.
pub fn audit_records(dir: &Path) -> Vec<serde_json::Value> {
    let mut segments: Vec<_> = std::fs::read_dir(dir)
        .expect("the audit directory")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with(SEGMENT_PREFIX) && name.ends_with(SEGMENT_SUFFIX)
        })
        .collect();
    segments.sort();
    segments
        .iter()
        .flat_map(|path| {
            let text = std::fs::read_to_string(path).expect("a segment");
            let finished = text.rfind('\n').map_or("", |end| &text[..end]);
            finished
                .lines()
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_str(l).expect("a trail line is a JSON record"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The records of one `kind`.
pub fn audit_records_of(dir: &Path, kind: &str) -> Vec<serde_json::Value> {
    audit_records(dir)
        .into_iter()
        .filter(|r| r["kind"] == kind)
        .collect()
}

/// Waits (up to 5 s) until a record matching `pred` is in the trail: the writer
/// commits in groups.
pub async fn wait_for_record(
    dir: &Path,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    for _ in 0..200 {
        if let Some(found) = audit_records(dir).into_iter().find(&pred) {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("no such record in the trail: {:#?}", audit_records(dir));
}
