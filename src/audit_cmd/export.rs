//! `maskgate audit export`: copies finished segments to an archive and appends
//! one receipt per segment to `DIR/export-receipts.jsonl`, which is what retention
//! requires before it removes a segment (`maskgate_audit::export`).

use std::path::PathBuf;

use clap::Args;
use maskgate_audit::{keys, ExportError};
use maskgate_proxy::audit::AuditTool;

use super::{os_user, record_use, ToolUse, OK, TAMPERED};

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The audit directory.
    #[arg(env = "MASKGATE_AUDIT_DIR", default_value = ".")]
    dir: PathBuf,
    /// The archive directory (created 0750 if missing). A copy there is never
    /// overwritten.
    #[arg(long, value_name = "ARCHIVE")]
    to: PathBuf,
    /// The checkpoint public key (audit-public.pem): the trail is verified first.
    #[arg(long, value_name = "FILE")]
    public_key: PathBuf,
    #[command(flatten)]
    tool: ToolUse,
}

pub fn run(args: &ExportArgs) -> anyhow::Result<i32> {
    let key = keys::load_public_key(&args.public_key)?;
    let plan = match maskgate_audit::plan_export(&args.dir, &args.to, &key) {
        Ok(plan) => plan,
        Err(ExportError::Tampered(report)) => {
            print!("{report}");
            eprintln!("maskgate: the trail does not verify, so nothing was exported");
            return Ok(TAMPERED);
        }
        Err(e) => return Err(e.into()),
    };
    let use_ = AuditTool {
        command: "export",
        os_user: os_user(),
        arguments: format!(
            "dir={} to={} public_key={}",
            args.dir.display(),
            args.to.display(),
            key.fingerprint()
        ),
        decrypted: false,
        results: plan.segments().len() as u64,
    };
    // Recorded before anything is copied: an export that cannot be recorded
    // copies nothing.
    record_use(&args.dir, &args.tool, use_)?;
    let status = plan.report().status();
    let receipts = plan.run(&os_user())?;
    for r in &receipts {
        println!("exported {} (sha256 {}) to {}", r.segment, r.sha256, r.to);
    }
    if receipts.is_empty() {
        println!("nothing new to export: every finished segment has a receipt");
    } else {
        println!(
            "{} segment(s) exported; receipts appended to {}",
            receipts.len(),
            args.dir
                .join(maskgate_audit::retention::RECEIPTS_FILE)
                .display()
        );
    }
    if status != maskgate_audit::Status::Clean {
        println!(
            "trail status: {status} (run `maskgate audit verify` for the findings); the segment being written is exported once it is closed"
        );
    }
    Ok(OK)
}
