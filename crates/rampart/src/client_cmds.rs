//! Client subcommands: thin wrappers over `rampart-client` that print text or `--json`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use rampart_client::Event;
use rampart_client::clock::now_ms;
use rampart_client::online::{Happening, Link, Online};
use rampart_client::{Client, ReceivedMessage, ServerAddress};
use rampart_core::DeviceId;
use serde_json::json;

use crate::cli::{AccountCommand, Command, DevicesCommand, GroupCommand, ProfileCommand};

fn default_profile() -> PathBuf {
    directories::ProjectDirs::from("org", "rampart", "rampart")
        .map(|d| d.data_dir().join("profile"))
        .unwrap_or_else(|| PathBuf::from("rampart-profile"))
}

/// Text from other people, made safe for a terminal: control characters (escape sequences
/// could rewrite the screen or the title, or hide text) are shown as `\u{..}`; newlines and tabs
/// stay.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) fn print_json(value: serde_json::Value) {
    outln!("{value}");
}

/// A QR code of `text` drawn with Unicode half blocks, for scanning from a phone camera.
fn qr(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    Some(code.render::<qrcode::render::unicode::Dense1x2>().quiet_zone(true).build())
}

pub async fn run(
    command: Command,
    profile: Option<PathBuf>,
    passphrase_file: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    let dir = profile.unwrap_or_else(default_profile);
    let passphrase = if rampart_client::storage::at_rest::is_encrypted(&dir) {
        Some(passphrase(passphrase_file.as_deref(), &dir)?)
    } else {
        None
    };
    let mut client = Client::open_with_passphrase(&dir, passphrase.as_ref().map(|p| p.as_str()))
        .with_context(|| format!("cannot open the profile at {}", dir.display()))?;
    match command {
        Command::Account(cmd) => account(&mut client, cmd, json).await,
        Command::Devices(cmd) => devices(&mut client, cmd, json).await,
        Command::Send { to, text } => {
            let receipt = if to.starts_with('+') || to.starts_with('@') {
                client.send_text(&to, &text).await?
            } else {
                client
                    .send_to_conversation(
                        &to,
                        rampart_proto::ContentBody::Text { text: text.clone(), reply_to: None },
                    )
                    .await?
            };
            if json {
                print_json(json!({ "ok": true, "sent": receipt }));
            } else {
                outln!(
                    "Sent to {to} ({} device{}).",
                    receipt.recipient_devices,
                    if receipt.recipient_devices == 1 { "" } else { "s" }
                );
                if receipt.missed_devices > 0 {
                    eprintln!(
                        "warning: {} device{} had no room for it (too many messages waiting there) and will not get it; try again later",
                        receipt.missed_devices,
                        if receipt.missed_devices == 1 { "" } else { "s" }
                    );
                }
            }
            Ok(())
        }
        Command::SendFile { to, path, caption } => {
            let bar = progress_bar(json, "sending");
            let id = client.send_file(&to, &path, &caption, &mut |done, total| bar.update(done, total)).await;
            bar.finish();
            let id = id?;
            if json {
                print_json(json!({ "ok": true, "message_id": id }));
            } else {
                outln!("Sent {} to {to}.", path.display());
            }
            Ok(())
        }
        Command::Download { seq, to } => {
            let dir = to.unwrap_or_else(|| default_downloads(client.profile().dir()));
            let bar = progress_bar(json, "downloading");
            let saved =
                client.download_attachment(seq, &dir, &mut |done, total| bar.update(done, total)).await;
            bar.finish();
            let saved = saved?;
            if json {
                print_json(json!({ "ok": true, "saved": saved }));
            } else {
                outln!("Saved {}", saved.display());
            }
            Ok(())
        }
        Command::Profile(cmd) => profile_command(&mut client, cmd, json),
        Command::Conversations => {
            let list = client.profile().conversations()?;
            if json {
                print_json(json!({ "ok": true, "conversations": list }));
            } else if list.is_empty() {
                outln!("No conversations yet. Start one with: rampart send @someone 'hello'");
            } else {
                for c in list {
                    outln!(
                        "{}  {:<24} {}{} ({} messages{}{})",
                        // In full: ids begin with the creator's account number, so any fixed
                        // prefix would print the same digits for every conversation.
                        c.id,
                        printable(&c.name),
                        if c.direct { "1:1" } else { "group" },
                        if c.closed { ", left" } else { "" },
                        c.messages,
                        if c.unread > 0 { format!(", {} unread", c.unread) } else { String::new() },
                        if c.timer_secs > 0 {
                            format!(", disappearing after {}", rampart_client::human_duration(c.timer_secs))
                        } else {
                            String::new()
                        }
                    );
                }
            }
            Ok(())
        }
        Command::Group(cmd) => {
            let (what, id) = match cmd {
                GroupCommand::Create { name, members } => {
                    let id = client.create_group(&name, &members).await?;
                    ("created", id)
                }
                GroupCommand::Add { group, members } => {
                    client.group_add(&group, &members).await?;
                    ("updated", group)
                }
                GroupCommand::Remove { group, members } => {
                    client.group_remove(&group, &members).await?;
                    ("updated", group)
                }
                GroupCommand::Leave { group } => {
                    client.group_leave(&group).await?;
                    ("left", group)
                }
            };
            if json {
                print_json(json!({ "ok": true, "group": id, "result": what }));
            } else {
                outln!("Group {what}: {id}");
            }
            Ok(())
        }
        Command::Verify { who, mark_verified, unverify } => {
            if unverify {
                let label = client.unverify(&who).await?;
                if json {
                    print_json(json!({ "ok": true, "unverified": label }));
                } else {
                    outln!("{} is no longer marked verified.", printable(&label));
                }
                return Ok(());
            }
            let check = if mark_verified {
                client.mark_verified(&who).await?
            } else {
                client.check_safety(&who).await?
            };
            if json {
                print_json(json!({ "ok": true, "with": check.with, "safety_number": check.number,
                    "unexpected_devices": check.unexpected_devices, "verified": check.verified }));
            } else {
                outln!(
                    "Safety number with {}:\n\n  {}\n",
                    printable(&check.with),
                    rampart_mls::safety::grouped(&check.number)
                );
                if let Some(qr) = qr(&check.number) {
                    outln!("{qr}");
                }
                for d in &check.unexpected_devices {
                    outln!(
                        "WARNING: your conversation holds {d}, which neither of your identities certified."
                    );
                }
                match check.verified {
                    Some(true) if mark_verified => outln!(
                        "Marked verified: if {}'s identity changes, nothing is sent to them until you compare again.",
                        printable(&check.with)
                    ),
                    Some(true) => outln!("You verified this identity."),
                    Some(false) => outln!(
                        "This is NOT the identity you verified: compare the number again, then --mark-verified (or --unverify)."
                    ),
                    None => outln!(
                        "Compare it with theirs in person; if it matches, run again with --mark-verified. It changes when either of you registers again."
                    ),
                }
            }
            if !check.unexpected_devices.is_empty() {
                anyhow::bail!("devices that neither identity certified are in this conversation");
            }
            Ok(())
        }
        Command::Recv { follow: true, .. } => follow(&mut client, json).await,
        Command::Recv { wait, follow: false } => {
            let mut tally = Tally::default();
            client
                .receive_events(wait.map(Duration::from_secs), |e| print_event(e, json, &mut tally))
                .await?;
            if json {
                print_json(json!({ "ok": true, "received": tally.messages, "requests": tally.requests }));
            } else if tally.messages == 0 && tally.requests == 0 {
                outln!("No new messages.");
            }
            Ok(())
        }
        Command::History { conversation, limit } => {
            let group = conversation.as_deref().map(|c| client.resolve_conversation(c)).transpose()?;
            let messages = client.profile().history(group.as_ref(), limit)?;
            if json {
                print_json(json!({ "ok": true, "messages": messages }));
            } else {
                for m in messages {
                    outln!("{}", history_line(&m));
                }
            }
            Ok(())
        }
        Command::Chat { conversation } => crate::chat::run(&mut client, conversation, json).await,
        Command::Call { to, audio, video, duration } => {
            let media = crate::call_cmds::media(audio, video)?;
            crate::call_cmds::call(&mut client, &to, media, duration, json).await
        }
        Command::Answer { audio, video, wait, duration } => {
            let media = crate::call_cmds::media(audio, video)?;
            crate::call_cmds::answer(&mut client, media, wait, duration, json).await
        }
        Command::Hangup => crate::call_cmds::hangup(&client, json),
        Command::Calls { limit } => crate::call_cmds::calls(&client, limit, json),
        Command::RingPolicy { policy } => crate::call_cmds::ring_policy(&client, policy, json),
        Command::AddContact { who } => crate::call_cmds::add_contact(&mut client, &who, json).await,
        Command::Requests { action } => crate::request_cmds::requests(&mut client, action, json).await,
        Command::Block { who } => crate::request_cmds::block(&mut client, who, json).await,
        Command::Unblock { who } => crate::request_cmds::unblock(&mut client, &who, json).await,
        Command::MessagePolicy { policy } => crate::request_cmds::message_policy(&client, policy, json),
        Command::Serve(_)
        | Command::Admin(_)
        | Command::Bench(_)
        | Command::Sim(_)
        | Command::Relay(_)
        | Command::Audio(_)
        | Command::Video(_) => Ok(()),
    }
}

async fn account(client: &mut Client, cmd: AccountCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        AccountCommand::Register { server, phone, username, trust } => {
            let addr = ServerAddress::parse(&server)?;
            let reg = client.register(&addr, &phone, username.as_deref(), trust).await?;
            if json {
                print_json(json!({ "ok": true, "registration": reg }));
            } else {
                if reg.pinned_now {
                    outln!("First contact with {}: pinned its certificate", reg.server);
                    outln!("  {}", reg.fingerprint);
                    outln!("  (compare it with the fingerprint the server printed at start-up)");
                }
                outln!(
                    "A verification code is on its way to {phone}; it expires in {} minutes.",
                    reg.expires_in_secs / 60
                );
                outln!("Next: rampart account verify CODE");
            }
            Ok(())
        }
        AccountCommand::Verify { code, device } => {
            let me = client.verify(&code, &device.device_name).await?;
            if json {
                print_json(json!({ "ok": true, "account": me }));
            } else {
                outln!("Registered as {} (account {}, device {}).", me.label, me.account_id, me.device_id);
                outln!("Profile: {}", client.profile().dir().display());
                outln!("Next: rampart send +15557654321 \"hello\"   or   rampart recv --wait 60");
            }
            Ok(())
        }
        AccountCommand::Link { server, device, trust } => {
            let addr = ServerAddress::parse(&server)?;
            let pending = client.begin_link(&addr, &device.device_name, trust).await?;
            let shown = pending.shown_code();
            if json {
                print_json(
                    json!({ "ok": true, "link_code": shown, "expires_in_secs": pending.expires_in_secs }),
                );
            } else {
                outln!("On a device that already has your account, run:");
                outln!();
                outln!("    rampart devices approve {shown}");
                outln!();
                if let Some(code) = qr(&format!("rampart-link:{shown}")) {
                    outln!("{code}");
                }
                outln!("Waiting up to {} minutes for the approval...", pending.expires_in_secs / 60);
            }
            let me = client.finish_link(pending).await?;
            if json {
                print_json(json!({ "ok": true, "account": me }));
            } else {
                outln!("Linked: this device is device {} of {}.", me.device_id, me.label);
            }
            Ok(())
        }
        AccountCommand::Whoami => {
            let me = client.identity()?;
            if json {
                print_json(json!({ "ok": true, "account": me }));
            } else {
                outln!(
                    "{} — account {}, device {}, server {}",
                    me.label,
                    me.account_id,
                    me.device_id,
                    me.server
                );
            }
            Ok(())
        }
        AccountCommand::Username { name, clear } => {
            if name.is_none() && !clear {
                anyhow::bail!("give a username, or --clear to remove it");
            }
            client.set_username(name.as_deref()).await?;
            let me = client.identity()?;
            if json {
                print_json(json!({ "ok": true, "account": me }));
            } else {
                outln!("Others now see you as {}.", me.label);
            }
            Ok(())
        }
        AccountCommand::Trust { fingerprint } => {
            client.trust(&fingerprint)?;
            if json {
                print_json(json!({ "ok": true }));
            } else {
                outln!("Pinned the new fingerprint.");
            }
            Ok(())
        }
    }
}

async fn devices(client: &mut Client, cmd: DevicesCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        DevicesCommand::List => {
            let me = client.identity()?;
            let list = client.devices().await?;
            if json {
                let list: Vec<_> = list
                    .iter()
                    .map(|d| {
                        json!({
                            "device_id": d.device.0,
                            "name": d.name,
                            "created_at_ms": d.created_at_ms,
                            "last_seen_at_ms": d.last_seen_at_ms,
                            "this_device": d.device.0 == me.device_id,
                        })
                    })
                    .collect();
                print_json(json!({ "ok": true, "devices": list }));
            } else {
                for d in list {
                    let marker = if d.device.0 == me.device_id { "  (this device)" } else { "" };
                    outln!("{:>6}  {}{marker}", d.device.0, d.name);
                }
            }
            Ok(())
        }
        DevicesCommand::Approve { code } => {
            let device = client.approve_link(&code).await?;
            if json {
                print_json(json!({ "ok": true, "device_id": device.0 }));
            } else {
                outln!("Approved: the new device is device {}.", device.0);
            }
            Ok(())
        }
        DevicesCommand::Revoke { device_id } => {
            client.revoke(DeviceId(device_id)).await?;
            if json {
                print_json(json!({ "ok": true }));
            } else {
                outln!("Device {device_id} is revoked: it is disconnected and its queue deleted.");
            }
            Ok(())
        }
    }
}

/// One history line for the terminal: `alice: hello (edited) ✓✓ 👍1`.
fn history_line(m: &rampart_client::HistoryItem) -> String {
    use rampart_client::{DeliveryStatus, MessageKind};
    if m.kind == MessageKind::Notice {
        return format!("-- {} --", printable(&m.text));
    }
    let who = format!("#{} {}", m.seq, if m.from_me { "me".to_owned() } else { printable(&m.sender_label) });
    let mut line = if m.deleted {
        format!("{who}: (deleted)")
    } else if let Some(a) = &m.attachment {
        let saved = a.saved_path.as_deref().map(|p| format!(" saved at {p}")).unwrap_or_default();
        format!("{who}: [file {} ({} bytes){saved}] {}", printable(&a.name), a.size, printable(&m.text))
    } else {
        format!("{who}: {}", printable(&m.text))
    };
    if m.edited {
        line.push_str(" (edited)");
    }
    if m.from_me {
        line.push_str(match m.status {
            DeliveryStatus::Sent => " ✓",
            DeliveryStatus::Delivered => " ✓✓",
            DeliveryStatus::Read => " ✓✓ read",
        });
    }
    for r in &m.reactions {
        line.push_str(&format!(" {}", printable(&r.emoji)));
    }
    line
}

/// A progress bar on the terminal for transfers (hidden with --json or when not a terminal).
struct Progress(Option<indicatif::ProgressBar>);

fn progress_bar(json: bool, what: &'static str) -> Progress {
    use std::io::IsTerminal;
    if json || !std::io::stderr().is_terminal() {
        return Progress(None);
    }
    let bar = indicatif::ProgressBar::new(0);
    let style = indicatif::ProgressStyle::with_template(
        "{msg:>11} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .map(|s| s.progress_chars("=> "));
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar.set_message(what);
    Progress(Some(bar))
}

impl Progress {
    fn update(&self, done: u64, total: u64) {
        if let Some(bar) = &self.0 {
            bar.set_length(total);
            bar.set_position(done);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// The user's downloads folder, or `downloads/` in the profile.
fn default_downloads(profile: &std::path::Path) -> PathBuf {
    directories::UserDirs::new()
        .and_then(|d| d.download_dir().map(|p| p.to_path_buf()))
        .unwrap_or_else(|| profile.join("downloads"))
}

/// The passphrase of an encrypted profile: from --passphrase-file, RAMPART_PASSPHRASE, or
/// asked on the terminal.
fn passphrase(
    file: Option<&std::path::Path>,
    dir: &std::path::Path,
) -> anyhow::Result<zeroize::Zeroizing<String>> {
    if let Some(file) = file {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?,
        );
        return Ok(zeroize::Zeroizing::new(text.lines().next().unwrap_or("").to_owned()));
    }
    if let Ok(p) = std::env::var("RAMPART_PASSPHRASE") {
        return Ok(zeroize::Zeroizing::new(p));
    }
    use std::io::IsTerminal;
    anyhow::ensure!(
        std::io::stdin().is_terminal(),
        "the profile at {} is encrypted: set RAMPART_PASSPHRASE or pass --passphrase-file \
         (there is no terminal to ask on)",
        dir.display()
    );
    let prompt = format!("Passphrase for the profile at {}: ", dir.display());
    let p = rpassword::prompt_password(prompt).context(
        "this profile is encrypted and no terminal is there to ask for its passphrase; \
         set RAMPART_PASSPHRASE or pass --passphrase-file",
    )?;
    Ok(zeroize::Zeroizing::new(p))
}

fn new_passphrase() -> anyhow::Result<zeroize::Zeroizing<String>> {
    if let Ok(p) = std::env::var("RAMPART_NEW_PASSPHRASE") {
        return Ok(zeroize::Zeroizing::new(p));
    }
    use std::io::IsTerminal;
    anyhow::ensure!(
        std::io::stdin().is_terminal(),
        "no terminal to ask for the new passphrase; set RAMPART_NEW_PASSPHRASE"
    );
    let first = zeroize::Zeroizing::new(
        rpassword::prompt_password("New passphrase: ")
            .context("no terminal to ask for the new passphrase; set RAMPART_NEW_PASSPHRASE")?,
    );
    let again = zeroize::Zeroizing::new(rpassword::prompt_password("Repeat it: ")?);
    anyhow::ensure!(*first == *again, "the two passphrases differ; nothing changed");
    Ok(first)
}

fn profile_command(client: &mut Client, cmd: ProfileCommand, json: bool) -> anyhow::Result<()> {
    let dir = client.profile().dir().display().to_string();
    match cmd {
        ProfileCommand::Status => {
            if json {
                print_json(json!({ "ok": true, "profile": dir, "encrypted": client.is_encrypted() }));
            } else {
                let how = if client.is_encrypted() {
                    "encrypted at rest (Argon2id + SQLCipher)"
                } else {
                    "not encrypted"
                };
                outln!("Profile: {dir}\n  {how}");
            }
        }
        ProfileCommand::Encrypt => {
            let new = new_passphrase()?;
            anyhow::ensure!(new.chars().count() >= 8, "choose a passphrase of at least 8 characters");
            client.set_passphrase(Some(&new))?;
            if json {
                print_json(json!({ "ok": true, "profile": dir, "encrypted": true }));
            } else {
                outln!("The profile at {dir} is now encrypted. Every command will ask for the passphrase.");
                outln!("There is no way to recover it if you forget it.");
            }
        }
        ProfileCommand::Decrypt => {
            client.set_passphrase(None)?;
            if json {
                print_json(json!({ "ok": true, "profile": dir, "encrypted": false }));
            } else {
                outln!("The profile at {dir} is stored in the clear now.");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn escape_sequences_cannot_reach_the_terminal() {
        assert_eq!(printable("hi\x1b]0;pwned\x07 there\nok"), "hi\\u{1b}]0;pwned\\u{7} there\nok");
    }
}

/// What `recv` printed.
#[derive(Default)]
struct Tally {
    messages: usize,
    requests: usize,
}

/// Print what a received delivery turned into, for people or (with `--json`) one object a line.
fn print_event(e: &Event, json: bool, tally: &mut Tally) {
    match e {
        Event::Message { from, from_account, message_id, text, .. } => {
            tally.messages += 1;
            if json {
                let m = ReceivedMessage {
                    from: from.clone(),
                    from_account: *from_account,
                    message_id: message_id.clone(),
                    server_timestamp_ms: now_ms(),
                    text: text.clone(),
                };
                print_json(json!({ "message": m }));
            } else {
                outln!("{}: {}", printable(from), printable(text));
            }
        }
        Event::Request { conversation, from, from_account } => {
            tally.requests += 1;
            if json {
                print_json(json!({ "request": {
                    "conversation": conversation, "from": from, "from_account": from_account
                } }));
            } else {
                outln!(
                    "Message request from {} (not a contact; nothing opened): `rampart requests accept {}` to read it",
                    printable(from),
                    printable(from)
                );
            }
        }
        Event::MessagesMissing { conversation, from, count } => {
            if json {
                print_json(json!({ "missing": {
                    "conversation": conversation, "from": from, "count": count
                } }));
            } else {
                eprintln!(
                    "warning: {count} message(s) from {} never arrived: the server did not deliver them",
                    printable(from)
                );
            }
        }
        Event::ServerNotice { text, at_ms } => {
            if json {
                print_json(json!({ "server_notice": { "text": text, "at_ms": at_ms } }));
            } else {
                outln!("Notice from your server's operators (not from any person):");
                for line in text.lines() {
                    outln!("  {}", printable(line));
                }
            }
        }
        _ => {}
    }
}

/// `rampart recv --follow`: stay online until Ctrl-C, printing what happens as it happens.
async fn follow(client: &mut Client, json: bool) -> anyhow::Result<()> {
    // Without an account there is nothing to stay online as: said once, not retried forever.
    if client.profile().credentials()?.is_none() {
        return Err(rampart_client::ClientError::NotRegistered.into());
    }
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = stop.send(true);
        }
    });
    let mut tally = Tally::default();
    let mut on = |happening: Happening| match happening {
        Happening::Event(e) => print_event(&e, json, &mut tally),
        Happening::Link(link) => print_link(&link, json),
        Happening::Ring { notice, label } => {
            if json {
                print_json(json!({ "ring": { "call": hex::encode(notice.call.0), "from": label } }));
            } else {
                // The ring reached this command's connection: `rampart answer` would wait for the
                // next one. `rampart chat` answers calls.
                outln!("{} is calling (recv does not answer calls; `rampart chat` does)", printable(&label));
            }
        }
        Happening::RingEnded { call } => {
            if json {
                print_json(json!({ "ring_ended": { "call": hex::encode(call.0) } }));
            }
        }
        Happening::Error(text) => {
            if json {
                print_json(json!({ "error": text }));
            } else {
                eprintln!("error: {}", printable(&text));
            }
        }
    };
    // Each turn is short and never cut off half-way, so Ctrl-C ends it after the delivery in
    // hand is stored and acknowledged.
    let mut online = Online::new();
    while !*stopped.borrow() {
        if online.connect_due() {
            // A connection attempt may hang until its timeout: Ctrl-C cuts it short (dropping a
            // half-open connection is harmless).
            tokio::select! {
                () = online.connect(client, &mut on) => {}
                // (An error means no Ctrl-C can come: the branch is then left out.)
                Ok(()) = stopped.changed() => break,
            }
        } else {
            online.turn(client, FOLLOW_TURN, &mut on).await;
        }
    }
    online.close().await;
    Ok(())
}

/// How long one turn of `recv --follow` receives before it looks for Ctrl-C again.
const FOLLOW_TURN: Duration = Duration::from_millis(250);

fn print_link(link: &Link, json: bool) {
    match (link, json) {
        (Link::Connecting, true) => print_json(json!({ "link": "connecting" })),
        (Link::Connected, true) => print_json(json!({ "link": "connected" })),
        (Link::Offline { retry_at_ms, error }, true) => {
            print_json(json!({ "link": "offline", "retry_at_ms": retry_at_ms, "error": error }))
        }
        (Link::Connecting, false) => {}
        (Link::Connected, false) => eprintln!("online; waiting for messages (Ctrl-C stops)"),
        (Link::Offline { retry_at_ms, error }, false) => eprintln!(
            "offline ({}); trying again in {} s",
            printable(error),
            retry_at_ms.saturating_sub(now_ms()).div_ceil(1000)
        ),
    }
}
