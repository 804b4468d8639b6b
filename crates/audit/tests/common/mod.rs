//! Helpers shared by the integration tests: a writer over a temporary directory,
//! statement-like payloads, reading and rewriting segment files, and a forger
//! that recomputes the chain (and, given a key, re-signs checkpoints) the way
//! an attacker who read the format documentation would.
#![allow(dead_code)]

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::Signer as _;
use maskgate_audit::{
    verify, Problem, PublicKey, Report, Severity, SigningKey, Writer, WriterConfig,
};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

pub struct Trail {
    pub dir: tempfile::TempDir,
    pub pem: String,
    pub public: PublicKey,
}

impl Trail {
    pub fn new() -> Trail {
        let key = SigningKey::generate();
        Trail {
            dir: tempfile::tempdir().unwrap(),
            pem: key.to_pem().to_string(),
            public: key.public_key(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn key(&self) -> SigningKey {
        SigningKey::from_pem(&self.pem).unwrap()
    }

    pub fn config(&self, max_segment_bytes: u64) -> WriterConfig {
        WriterConfig {
            max_segment_bytes,
            max_segment_age: Duration::from_secs(3600),
            signing_key: self.key(),
            keep_last_record: false,
        }
    }

    pub fn open(&self, max_segment_bytes: u64) -> Writer {
        Writer::open(self.path(), self.config(max_segment_bytes)).unwrap()
    }

    pub fn verify(&self) -> Report {
        verify(self.path(), &self.public).unwrap()
    }

    pub fn segment(&self, index: u64) -> PathBuf {
        self.path().join(format!("audit-{index:06}.jsonl"))
    }

    pub fn segments(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(maskgate_audit::segment::parse_segment_name)
                    .is_some()
            })
            .collect();
        v.sort();
        v
    }
}

/// A statement-sized payload (about 400 bytes once written).
pub fn statement(i: u64) -> Value {
    json!({
        "session": format!("s-{:08}", i % 97),
        "account": "clerk.berne",
        "client": "10.1.2.3:51234",
        "application_name": "benefits-ui",
        "statement": "SELECT p.id, p.name, c.amount FROM participants p JOIN contributions c ON c.participant = p.id WHERE p.ahv = $1 AND c.year = $2",
        "class": "select",
        "relations": ["participants", "contributions"],
        "masked": ["participants.name"],
        "decision": "rewritten",
        "rows": i % 13,
        "bytes": 1024 + i,
        "duration_us": 731,
    })
}

/// A trail of `n` statements, a checkpoint every 5, closed cleanly.
pub fn closed_trail(n: u64, max_segment_bytes: u64) -> Trail {
    let t = Trail::new();
    let mut w = t.open(max_segment_bytes);
    for i in 0..n {
        w.append("statement", &statement(i)).unwrap();
        w.commit().unwrap();
        if i % 5 == 4 {
            w.checkpoint().unwrap();
        }
    }
    w.close().unwrap();
    t
}

pub fn read_lines(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap();
    text.lines().map(str::to_owned).collect()
}

pub fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    if !lines.is_empty() {
        text.push('\n');
    }
    fs::write(path, text).unwrap();
}

pub fn parse(line: &str) -> serde_json::Map<String, Value> {
    match serde_json::from_str::<Value>(line).unwrap() {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

pub fn kind(line: &str) -> String {
    parse(line)["kind"].as_str().unwrap().to_owned()
}

pub fn seq(line: &str) -> u64 {
    parse(line)["seq"].as_u64().unwrap()
}

pub fn hash_hex(line: &str) -> String {
    hex::encode(Sha256::digest(line.as_bytes()))
}

/// Index (in `lines`) of the first line of `kind` after position `from`.
pub fn find_kind(lines: &[String], kind_name: &str, from: usize) -> usize {
    (from..lines.len())
        .find(|i| kind(&lines[*i]) == kind_name)
        .unwrap_or_else(|| panic!("no {kind_name} after line {from}"))
}

/// Rewrites every segment from scratch so that seqs are contiguous and every
/// link, segment_start and checkpoint field matches the (edited) content — what
/// a forger does after inserting, deleting or editing records. Checkpoints are
/// re-signed with `forger` when given, otherwise they keep their old signature.
pub fn relink(t: &Trail, forger: Option<&ed25519_dalek::SigningKey>) {
    let mut prev = "0".repeat(64);
    let mut next_seq = 1;
    for path in t.segments() {
        let mut out = Vec::new();
        let mut first = next_seq;
        let raw = fs::read_to_string(&path).unwrap();
        let (complete, torn) = raw.split_at(raw.rfind('\n').map_or(0, |i| i + 1));
        let lines: Vec<String> = complete.lines().map(str::to_owned).collect();
        for (i, line) in lines.iter().enumerate() {
            let original = parse(line);
            let mut m = original.clone();
            m.insert("seq".into(), json!(next_seq));
            m.insert("prev".into(), json!(prev));
            if i == 0 {
                first = next_seq;
            }
            let kind = m["kind"].as_str().unwrap().to_owned();
            match kind.as_str() {
                "segment_start" => {
                    m.insert("prev_hash".into(), json!(prev));
                }
                "checkpoint" => {
                    m.insert("first".into(), json!(first));
                    m.insert("last".into(), json!(next_seq - 1));
                    m.insert("last_hash".into(), json!(prev));
                }
                _ => {}
            }
            // Lines the edit did not reach keep their bytes (and signatures);
            // a forger with a key re-signs every checkpoint.
            let text = if m == original && !(kind == "checkpoint" && forger.is_some()) {
                line.clone()
            } else if kind == "checkpoint" {
                let old_sig = m.remove("signature").unwrap();
                let sig = match forger {
                    Some(k) => {
                        m.insert("signer".into(), json!(fingerprint(&k.verifying_key())));
                        let body = serde_json::to_string(&m).unwrap();
                        let signed = &body[..body.len() - 1];
                        let mut msg = b"maskgate-audit checkpoint v1\n".to_vec();
                        msg.extend_from_slice(signed.as_bytes());
                        hex::encode(k.sign(&msg).to_bytes())
                    }
                    None => old_sig.as_str().unwrap().to_owned(),
                };
                let body = serde_json::to_string(&m).unwrap();
                format!("{},\"signature\":\"{sig}\"}}", &body[..body.len() - 1])
            } else {
                serde_json::to_string(&m).unwrap()
            };
            prev = hash_hex(&text);
            next_seq += 1;
            out.push(text);
        }
        write_lines(&path, &out);
        // A torn tail stays as it was.
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(torn.as_bytes())
            .unwrap();
    }
}

pub fn fingerprint(k: &ed25519_dalek::VerifyingKey) -> String {
    hex::encode(&Sha256::digest(k.as_bytes())[..8])
}

pub fn errors(r: &Report) -> Vec<Problem> {
    r.findings()
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| f.problem.clone())
        .collect()
}

pub fn problems(r: &Report) -> Vec<Problem> {
    r.findings().iter().map(|f| f.problem.clone()).collect()
}

pub fn has(r: &Report, pred: impl Fn(&Problem) -> bool) -> bool {
    r.findings().iter().any(|f| pred(&f.problem))
}

/// Copies every file of `from` into `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}
