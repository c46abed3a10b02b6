//! `rampart admin sentinel`: what Sentinel did, lifting it, checking a policy file, and
//! investigating: clusters, notices to their targets, case exports.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use rampart_client::clock::now_ms;
use rampart_sentinel::Policy;
use rampart_server::case_export;
use rampart_server::investigation::{self, ClusterReport, Scope};
use rampart_store::Store;

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
    /// The clusters behind Sentinel's actions: accounts linked to an account it acted on by a
    /// shared address, a shared client name that is not Rampart's, a shared behaviour
    /// fingerprint (a client's name with something Rampart's client never does), or
    /// registrations from one network close in time (an hour on hosting networks, ten minutes
    /// on others). The people they called or wrote to first are their targets, never members.
    Clusters(ClustersArgs),
    /// One cluster in full: its accounts, infrastructure, targets, actions and timeline.
    Cluster(ClusterArgs),
    /// Send each target of a cluster a notice from the server (shown as the server's, not as
    /// any person's). Prints whom it reached; --dry-run only lists them.
    Notify(NotifyArgs),
    /// Write a cluster as a case file for investigators (`ID.case.json`: signed by the
    /// server's evidence key, with the evidence entries behind its actions) and as a STIX 2.1
    /// bundle of indicators for other defenders (`ID.stix.json`: accounts and infrastructure,
    /// no targets).
    Export(ExportArgs),
    /// Check a case file: its signature and the evidence entries inside it.
    VerifyCase(VerifyCaseArgs),
}

#[derive(Debug, Args)]
pub struct ClustersArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Look this many days back (at most the metadata retention keeps).
    #[arg(long, value_name = "DAYS")]
    pub days: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub clusters: ClustersArgs,
    /// The cluster, as `clusters` names it (`c42`).
    pub id: String,
}

#[derive(Debug, Args)]
pub struct NotifyArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The notice's text (at most 2 KiB; newlines allowed).
    #[arg(long, value_name = "TEXT")]
    pub message: String,
    /// List the targets without sending anything.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The directory to write the two files to.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct VerifyCaseArgs {
    /// The case file (`ID.case.json`).
    pub file: PathBuf,
    /// The server's evidence public key (64 hex digits, from `evidence/key.pub` or the server's
    /// first-run output). Without it the file is checked against the key it names: that shows
    /// it is intact, not whose it is.
    #[arg(long, value_name = "HEX")]
    pub key: Option<String>,
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
        SentinelCommand::Clusters(args) => clusters(args, json).await,
        SentinelCommand::Cluster(args) => cluster(args, json).await,
        SentinelCommand::Notify(args) => notify(args, json).await,
        SentinelCommand::Export(args) => export(args, json).await,
        SentinelCommand::VerifyCase(args) => verify_case(args, json),
    }
}

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// The configuration, the store and the clusters in it.
async fn investigate(
    args: &ClustersArgs,
) -> anyhow::Result<(rampart_server::ServerConfig, Arc<dyn Store>, Vec<ClusterReport>)> {
    let config = serve::load_config(&args.store)?;
    let store = rampart_server::open_store(&config).await.context("cannot open the server's store")?;
    let ranges =
        rampart_server::sentinel_service::hosting_ranges(&config.sentinel).map_err(anyhow::Error::msg)?;
    let days = args.days.unwrap_or(config.sentinel.metadata_retention_days);
    let scope = Scope { since_ms: now_ms().saturating_sub(days.saturating_mul(DAY_MS)), hosting: &ranges };
    let clusters = investigation::investigate(store.as_ref(), scope).await?;
    Ok((config, store, clusters))
}

fn find(clusters: Vec<ClusterReport>, id: &str) -> anyhow::Result<ClusterReport> {
    let known: Vec<String> = clusters.iter().map(|c| c.id.clone()).collect();
    clusters.into_iter().find(|c| c.id == id).with_context(|| {
        if known.is_empty() {
            format!("no cluster {id}: Sentinel has acted on no one in the period looked at")
        } else {
            format!("no cluster {id}; the clusters are {}", known.join(", "))
        }
    })
}

async fn clusters(args: ClustersArgs, json: bool) -> anyhow::Result<()> {
    let (_, _, clusters) = investigate(&args).await?;
    if json {
        let list: Vec<_> = clusters
            .iter()
            .map(|c| {
                serde_json::json!({
                    "id": c.id,
                    "accounts": c.accounts.iter().map(|a| a.account).collect::<Vec<_>>(),
                    "networks": c.infrastructure.iter().filter(|i| i.kind == "network").map(|i| &i.value).collect::<Vec<_>>(),
                    "targets": c.targets.len(),
                    "actions": c.actions.len(),
                    "first_seen_ms": c.first_seen_ms,
                    "last_seen_ms": c.last_seen_ms,
                })
            })
            .collect();
        outln!("{}", serde_json::json!({ "ok": true, "clusters": list }));
    } else if clusters.is_empty() {
        outln!("No clusters: Sentinel has acted on no one in the period looked at.");
    } else {
        for c in &clusters {
            let networks: Vec<&str> =
                c.infrastructure.iter().filter(|i| i.kind == "network").map(|i| i.value.as_str()).collect();
            outln!(
                "{}: {} accounts, {} targets, {} actions; networks {}",
                c.id,
                c.accounts.len(),
                c.targets.len(),
                c.actions.len(),
                if networks.is_empty() { "none seen".to_owned() } else { networks.join(", ") }
            );
        }
        outln!("Next: rampart admin sentinel cluster ID (same --config) for one in full.");
    }
    Ok(())
}

async fn cluster(args: ClusterArgs, json: bool) -> anyhow::Result<()> {
    let (_, _, clusters) = investigate(&args.clusters).await?;
    let c = find(clusters, &args.id)?;
    if json {
        outln!("{}", serde_json::json!({ "ok": true, "cluster": c }));
        return Ok(());
    }
    outln!("Cluster {}: {} accounts, {} targets", c.id, c.accounts.len(), c.targets.len());
    outln!("Accounts:");
    for a in &c.accounts {
        outln!(
            "  a{}{}: {} calls placed, {} answered, {} refused, blocked by {}",
            a.account,
            if a.acted_on { " (acted on)" } else { "" },
            a.calls_placed,
            a.calls_answered,
            a.refused,
            a.blocked_by
        );
    }
    outln!("Infrastructure:");
    for i in &c.infrastructure {
        outln!(
            "  {} {}{}: accounts {}",
            i.kind,
            i.value,
            if i.hosting { " (hosting)" } else { "" },
            i.accounts.iter().map(|a| format!("a{a}")).collect::<Vec<_>>().join(", ")
        );
    }
    outln!("Targets:");
    for t in &c.targets {
        outln!(
            "  a{}: {} calls rang, {} answered, {} set-ups refused on the way, brought into {} conversations",
            t.account,
            t.calls,
            t.answered,
            t.refused,
            t.invited
        );
    }
    outln!("Timeline:");
    for t in &c.timeline {
        outln!("  {} {}", rampart_server::case_export::rfc3339(t.at_ms), t.what);
    }
    Ok(())
}

async fn notify(args: NotifyArgs, json: bool) -> anyhow::Result<()> {
    // Checked before the first one goes, not after half of them did.
    rampart_proto::server_notice(args.message.as_bytes().to_vec()).context("the notice cannot be sent")?;
    let (config, store, clusters) = investigate(&args.cluster.clusters).await?;
    let c = find(clusters, &args.cluster.id)?;
    let mut reached = Vec::new();
    for t in &c.targets {
        let devices = if args.dry_run {
            0
        } else {
            investigation::send_notice(
                store.as_ref(),
                &config,
                rampart_core::AccountId(t.account),
                &args.message,
                now_ms(),
            )
            .await
            .with_context(|| format!("cannot queue the notice for a{}", t.account))?
            .len()
        };
        reached.push((t.account, devices));
    }
    if json {
        let list: Vec<_> =
            reached.iter().map(|(a, d)| serde_json::json!({ "account": a, "devices": d })).collect();
        outln!(
            "{}",
            serde_json::json!({ "ok": true, "cluster": c.id, "dry_run": args.dry_run, "targets": list })
        );
    } else if args.dry_run {
        outln!(
            "{} targets would get the notice: {}",
            reached.len(),
            reached.iter().map(|(a, _)| format!("a{a}")).collect::<Vec<_>>().join(", ")
        );
    } else {
        outln!("Notice queued for {} targets (each device gets it when it next connects):", reached.len());
        for (a, d) in &reached {
            outln!("  a{a}: {d} devices");
        }
    }
    Ok(())
}

async fn export(args: ExportArgs, json: bool) -> anyhow::Result<()> {
    let (config, _, clusters) = investigate(&args.cluster.clusters).await?;
    let c = find(clusters, &args.cluster.id)?;
    let dir = rampart_server::evidence_log::evidence_dir(&config.data_dir);
    let key = rampart_server::evidence_log::read_signing_key(&dir)
        .context("cannot read the server's evidence key (run this where the server keeps its data)")?;
    let subjects = case_export::evidence_subjects(&c);
    let excerpt = rampart_server::evidence_log::read_excerpt(&dir, |r| {
        case_export::names_one_of(&r.subject, &subjects)
    })?;
    let server = case_export::server_name(&hex::encode(key.verifying_key().as_bytes()));
    let now = now_ms();
    let entries = excerpt.lines.len();
    let case = rampart_sentinel::case::sign_case(case_export::case(&c, excerpt, &server, now), &key)?;
    let stix = case_export::stix_bundle(&c, &server, now);
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let case_path = args.out.join(format!("{}.case.json", c.id));
    let stix_path = args.out.join(format!("{}.stix.json", c.id));
    std::fs::write(&case_path, serde_json::to_string_pretty(&case)?)
        .with_context(|| format!("cannot write {}", case_path.display()))?;
    std::fs::write(&stix_path, serde_json::to_string_pretty(&stix)?)
        .with_context(|| format!("cannot write {}", stix_path.display()))?;
    if json {
        outln!(
            "{}",
            serde_json::json!({ "ok": true, "case": case_path, "stix": stix_path, "evidence_entries": entries })
        );
    } else {
        outln!("Wrote {} (signed; {entries} evidence entries)", case_path.display());
        outln!("Wrote {} (STIX 2.1: accounts and infrastructure, no targets)", stix_path.display());
        outln!(
            "Check it anywhere: rampart admin sentinel verify-case {} --key {}",
            case_path.display(),
            hex::encode(key.verifying_key().as_bytes())
        );
    }
    Ok(())
}

fn verify_case(args: VerifyCaseArgs, json: bool) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let expected = args
        .key
        .as_deref()
        .map(rampart_server::evidence_log::parse_public_key)
        .transpose()
        .map_err(|why| anyhow::anyhow!("--key: {why}"))?;
    let verified = rampart_sentinel::case::verify_case(&text, expected.as_ref())
        .with_context(|| format!("{} does not verify", args.file.display()))?;
    let signer = hex::encode(verified.signed_by.as_bytes());
    if json {
        outln!(
            "{}",
            serde_json::json!({
                "ok": true, "signed_by": signer, "key_given": expected.is_some(),
                "evidence_entries": verified.entries.len(),
                "cluster": verified.case.get("cluster").and_then(|c| c.get("id")),
            })
        );
    } else {
        outln!(
            "{}: the signature and {} evidence entries check out.",
            args.file.display(),
            verified.entries.len()
        );
        if expected.is_some() {
            outln!("Signed by the key you gave ({signer}).");
        } else {
            outln!("Signed by {signer}; give --key to check that it is your server's.");
        }
    }
    Ok(())
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
