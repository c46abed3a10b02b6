//! `rampart admin sentinel`: what Sentinel did, lifting it, and checking a policy file.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use rampart_client::clock::now_ms;
use rampart_sentinel::Policy;

use crate::serve::{self, StoreArgs};

#[derive(Debug, Subcommand)]
pub enum SentinelCommand {
    /// The latest actions Sentinel took, newest first: whom, what, by which rule, until when,
    /// and whether an operator lifted it.
    Actions(ActionsArgs),
    /// Lift every action in force on an account (`a42`, as the actions list names it) or a
    /// network (`net:203.0.113.0/24`). The policy will not take them again at once: a lift
    /// pardons the subject for as long as the action would have lasted. The server records
    /// the lift in its evidence log.
    Lift(LiftArgs),
    /// Check a policy file as the server would at start, and list its rules; without FILE,
    /// show the built-in policy (a starting point for your own).
    Policy(PolicyArgs),
}

#[derive(Debug, Args)]
pub struct ActionsArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// How many, at most.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
}

#[derive(Debug, Args)]
pub struct LiftArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// `a42` for an account, `net:203.0.113.0/24` for a network.
    pub subject: String,
    /// Who lifts it, for the record (the evidence log keeps it).
    #[arg(long, default_value = "operator", value_name = "NAME")]
    pub by: String,
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// A policy file (TOML with CEL conditions, see docs/sentinel.md).
    pub file: Option<PathBuf>,
}

pub async fn run(command: SentinelCommand, json: bool) -> anyhow::Result<()> {
    match command {
        SentinelCommand::Actions(args) => actions(args, json).await,
        SentinelCommand::Lift(args) => lift(args, json).await,
        SentinelCommand::Policy(args) => policy(args, json),
    }
}

fn action_json(a: &rampart_store::SentinelAction, now: u64) -> serde_json::Value {
    serde_json::json!({
        "id": a.id,
        "subject": a.subject,
        "action": a.action,
        "rule": a.rule,
        "reason": a.reason,
        "created_at_ms": a.created_at,
        "until_ms": a.until,
        "in_force": a.lifted_at.is_none() && a.until > now,
        "lifted_at_ms": a.lifted_at,
        "lifted_by": a.lifted_by,
    })
}

async fn actions(args: ActionsArgs, json: bool) -> anyhow::Result<()> {
    let config = serve::load_config(&args.store)?;
    let store = rampart_server::open_store(&config).await.context("cannot open the server's store")?;
    let list = store.sentinel_actions(args.limit).await?;
    let now = now_ms();
    if json {
        let list: Vec<_> = list.iter().map(|a| action_json(a, now)).collect();
        outln!("{}", serde_json::json!({ "ok": true, "actions": list }));
    } else if list.is_empty() {
        outln!("Sentinel has taken no action.");
    } else {
        for a in list {
            let state = match (&a.lifted_at, &a.lifted_by) {
                (Some(_), by) => format!("lifted by {}", by.as_deref().unwrap_or("operator")),
                (None, _) if a.until > now => {
                    format!("in force, {} min left", (a.until - now).div_ceil(60_000))
                }
                (None, _) => "expired".to_owned(),
            };
            outln!("#{} {} {} (rule {}: {}) — {state}", a.id, a.subject, a.action, a.rule, a.reason);
        }
    }
    Ok(())
}

async fn lift(args: LiftArgs, json: bool) -> anyhow::Result<()> {
    let config = serve::load_config(&args.store)?;
    let store = rampart_server::open_store(&config).await.context("cannot open the server's store")?;
    let lifted = store.lift_sentinel_actions(&args.subject, &args.by, now_ms()).await?;
    let now = now_ms();
    if json {
        let list: Vec<_> = lifted.iter().map(|a| action_json(a, now)).collect();
        outln!("{}", serde_json::json!({ "ok": true, "lifted": list }));
    } else if lifted.is_empty() {
        outln!("Nothing in force on {}: nothing to lift.", args.subject);
    } else {
        for a in &lifted {
            outln!("Lifted #{} {} {} (rule {}).", a.id, a.subject, a.action, a.rule);
        }
        outln!("The server records the lift in its evidence log within a second or so.");
    }
    Ok(())
}

fn policy(args: PolicyArgs, json: bool) -> anyhow::Result<()> {
    let (name, policy) = match &args.file {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            let policy =
                Policy::parse(&text).with_context(|| format!("{} cannot be used", path.display()))?;
            (path.display().to_string(), policy)
        }
        None => {
            if !json {
                outln!("{}", rampart_sentinel::policy::DEFAULT_POLICY.trim_end());
                return Ok(());
            }
            ("the built-in policy".to_owned(), Policy::default_policy())
        }
    };
    if json {
        let rules: Vec<_> = policy
            .rules
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.name, "when": r.when, "action": r.action.as_str(),
                    "duration_ms": r.duration_ms, "reason": r.reason,
                })
            })
            .collect();
        outln!("{}", serde_json::json!({ "ok": true, "policy": name, "rules": rules }));
    } else {
        outln!("{name}: {} rules, all usable.", policy.rules.len());
        for r in &policy.rules {
            outln!("  {}: when {} → {} for {} min", r.name, r.when, r.action, r.duration_ms / 60_000);
        }
    }
    Ok(())
}
