//! `rampart admin evidence`: check the server's evidence log.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use rampart_server::evidence_log;

use crate::serve::{self, StoreArgs};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// TOML configuration file (see docs/configuration.md): its data directory holds the log.
    #[arg(long, env = "RAMPART_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The server's data directory; the log is in its `evidence/` directory.
    #[arg(long, env = "RAMPART_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// An evidence directory of its own (a copy handed to an investigator), instead of the
    /// data directory's.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["config", "data_dir"])]
    pub dir: Option<PathBuf>,
    /// The server's public key (64 hex digits, as `rampart serve` printed it on first start).
    /// Without it the key beside the log is used, which proves nothing against someone who
    /// could change the log and the key together.
    #[arg(long, value_name = "HEX")]
    pub key: Option<String>,
    /// Print every entry too.
    #[arg(long)]
    pub entries: bool,
}

/// Check every entry's hash and signature, the order, the links, and that the log ends where
/// its signed head says. Fails (exit status 1) with the first line that does not verify.
pub async fn verify(args: VerifyArgs, json: bool) -> anyhow::Result<()> {
    let dir = match args.dir {
        Some(dir) => dir,
        None => {
            let store = StoreArgs { config: args.config, data_dir: args.data_dir, database_url: None };
            evidence_log::evidence_dir(&serve::load_config(&store)?.data_dir)
        }
    };
    let (key, key_source) = match &args.key {
        Some(hex) => {
            (evidence_log::parse_public_key(hex).map_err(|why| anyhow::anyhow!("--key: {why}"))?, "given")
        }
        None => (evidence_log::read_public_key(&dir)?, "beside the log"),
    };
    let (_, head_path) = evidence_log::files(&dir);
    if !head_path.exists() {
        anyhow::bail!("cannot read {} (is this an evidence directory?)", head_path.display());
    }
    // A running server may be appending: read what it wrote whole.
    let verified = evidence_log::read_live(&dir, |log, head| rampart_sentinel::verify(log, head, &key))
        .with_context(|| format!("the evidence log in {} does NOT verify", dir.display()))?;
    let key_hex = hex::encode(key.as_bytes());
    if json {
        let mut out = serde_json::json!({
            "ok": true,
            "dir": dir.display().to_string(),
            "key": key_hex,
            "key_source": key_source,
            "entries": verified.entries.len(),
            "first_seq": verified.head.first_seq,
            "next_seq": verified.head.next_seq,
            "last_hash": hex::encode(verified.head.last_hash),
        });
        if args.entries
            && let Some(fields) = out.as_object_mut()
        {
            let records: Vec<serde_json::Value> = verified
                .entries
                .iter()
                .map(|e| serde_json::json!({ "seq": e.seq, "at_ms": e.at_ms, "record": e.record, "hash": hex::encode(e.hash) }))
                .collect();
            fields.insert("records".into(), records.into());
        }
        outln!("{out}");
    } else {
        outln!(
            "The evidence log in {} verifies: {} entries (numbers {} to {}), signed by {key_hex} ({key_source}).",
            dir.display(),
            verified.entries.len(),
            verified.head.first_seq,
            verified.head.next_seq.saturating_sub(1),
        );
        if args.key.is_none() {
            outln!("Give the key you noted at first start with --key to rule out a replaced key.");
        }
        if args.entries {
            for e in &verified.entries {
                let r = &e.record;
                outln!(
                    "#{} at {} ms: {} {} by {}: {} {:?}",
                    e.seq,
                    e.at_ms,
                    r.decision,
                    r.subject,
                    r.by,
                    r.reason,
                    r.signals
                );
            }
        }
    }
    Ok(())
}
