//! `rampart requests`, `block`, `unblock` and `message-policy`: the user's answers to
//! conversations started by people who are not contacts.

use anyhow::Context;
use rampart_client::Client;
use rampart_client::Event;
use rampart_client::MessageRequest;
use rampart_core::consent::MessagePolicy;
use serde_json::json;

use crate::cli::RequestCommand;
use crate::client_cmds::{print_json, printable};

fn ago(ms: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    rampart_client::human_duration(u32::try_from(now.saturating_sub(ms) / 1000).unwrap_or(u32::MAX))
}

fn request_line(r: &MessageRequest) -> String {
    format!(
        "{}  from {}  ({} waiting, {} ago)",
        r.conversation,
        printable(&r.from),
        r.held,
        ago(r.opened_at_ms)
    )
}

pub async fn requests(client: &mut Client, action: Option<RequestCommand>, json: bool) -> anyhow::Result<()> {
    match action.unwrap_or(RequestCommand::List) {
        RequestCommand::List => {
            let list = client.requests()?;
            let counters = client.profile().consent_counters()?;
            if json {
                print_json(json!({ "ok": true, "requests": list, "counters": counters }));
            } else if list.is_empty() {
                outln!("No requests. Conversations started by people who are not your contacts wait here.");
            } else {
                outln!(
                    "Conversations started by people who are not your contacts (nothing of them is opened yet):"
                );
                for r in &list {
                    outln!("  {}", request_line(r));
                }
                outln!(
                    "\nAnswer with `rampart requests accept|decline|block <id or sender>`. Ask for their safety number before you trust a stranger."
                );
            }
        }
        RequestCommand::Accept { which } => {
            let events = client.accept_request(&which).await?;
            if json {
                print_json(json!({ "ok": true, "events": events }));
            } else {
                for e in &events {
                    match e {
                        Event::Joined { conversation, members } => {
                            outln!("Joined conversation {conversation} ({members} devices).")
                        }
                        Event::Message { from, text, .. } => {
                            outln!("{}: {}", printable(from), printable(text))
                        }
                        Event::Refused { reason } => outln!("refused: {}", printable(reason)),
                        _ => {}
                    }
                }
                outln!("Accepted: they are now a contact.");
            }
        }
        RequestCommand::Decline { which } => {
            let r = client.decline_request(&which)?;
            if json {
                print_json(json!({ "ok": true, "declined": r }));
            } else {
                outln!(
                    "Declined the request from {}; nothing of it was opened, and what follows in it is dropped here. `rampart block` stops them on the server.",
                    printable(&r.from)
                );
            }
        }
        RequestCommand::Block { which } => return block(client, Some(which), json).await,
    }
    Ok(())
}

pub async fn block(client: &mut Client, who: Option<String>, json: bool) -> anyhow::Result<()> {
    let Some(who) = who else {
        let blocked = client.profile().blocked_accounts()?;
        if json {
            let list: Vec<_> =
                blocked.iter().map(|(a, label)| json!({ "account": a.0, "label": label })).collect();
            print_json(json!({ "ok": true, "blocked": list }));
        } else if blocked.is_empty() {
            outln!("You have blocked nobody.");
        } else {
            for (_, label) in blocked {
                outln!("{}", printable(&label));
            }
        }
        return Ok(());
    };
    let label = client.block(&who).await?;
    if json {
        print_json(json!({ "ok": true, "blocked": label }));
    } else {
        outln!(
            "Blocked {}: the server delivers nothing more from them to you. `rampart unblock {}` lifts it.",
            printable(&label),
            printable(&label)
        );
    }
    Ok(())
}

pub async fn unblock(client: &mut Client, who: &str, json: bool) -> anyhow::Result<()> {
    let label = client.unblock(who).await?;
    if json {
        print_json(json!({ "ok": true, "unblocked": label }));
    } else {
        outln!("Unblocked {}.", printable(&label));
    }
    Ok(())
}

pub fn message_policy(client: &Client, policy: Option<String>, json: bool) -> anyhow::Result<()> {
    if let Some(p) = policy {
        let p = MessagePolicy::parse(&p).context("the policy is everyone, requests or contacts")?;
        client.profile().set_message_policy(p)?;
    }
    let p = client.profile().message_policy()?;
    if json {
        print_json(json!({ "ok": true, "message_policy": p.as_str() }));
    } else {
        outln!(
            "{}",
            match p {
                MessagePolicy::Everyone => "Anyone can start a conversation with you; it opens at once.",
                MessagePolicy::Requests =>
                    "Contacts start conversations with you directly; anyone else's waits unopened in `rampart requests`.",
                MessagePolicy::Contacts =>
                    "Only contacts can start a conversation with you; anyone else's is dropped unopened.",
            }
        );
    }
    Ok(())
}
