//! `rampart chat`: a terminal messenger on this device's profile. Conversations on the left,
//! the shown conversation's messages on the right, a line to type in below and a status bar.
//!
//! - `app.rs`: the state and what each key does (pure, unit-tested);
//! - `ui.rs`: drawing that state (tested on ratatui's test backend);
//! - `term.rs`: the terminal and the window's loop, on its own thread;
//! - `worker.rs`: the client and its connection, on the command's async task.

mod app;
mod term;
mod ui;
mod worker;

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use rampart_client::Client;

/// Where downloaded attachments go: the user's Downloads folder, else `downloads/` in the
/// profile.
fn download_dir(client: &Client) -> PathBuf {
    directories::UserDirs::new()
        .and_then(|u| u.download_dir().map(std::path::Path::to_path_buf))
        .unwrap_or_else(|| client.profile().dir().join("downloads"))
}

pub async fn run(client: &mut Client, conversation: Option<String>, json: bool) -> anyhow::Result<()> {
    if json {
        anyhow::bail!(
            "`rampart chat` is interactive: for scripts use `send`, `recv --json` and `history --json`"
        );
    }
    // Problems that need no window are reported as usual, before the screen is taken over.
    let me = client.identity()?;
    let wanted = conversation.map(|c| client.resolve_conversation(&c)).transpose()?.map(|g| g.to_hex());
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        anyhow::bail!("`rampart chat` needs a terminal (its input or output is redirected)");
    }
    let mut app = app::App::new(
        format!("{} · device {}", me.label, me.device_id),
        wanted.clone(),
        rampart_client::clock::now_ms(),
    );
    app.home = directories::UserDirs::new().map(|u| u.home_dir().to_path_buf());
    let (action_tx, action_rx) = tokio::sync::mpsc::unbounded_channel();
    let (update_tx, update_rx) = std::sync::mpsc::channel();
    let (terminal, restore) = term::enter().context("cannot set up the terminal")?;
    let window = std::thread::Builder::new()
        .name("chat-window".into())
        .spawn(move || {
            // The terminal is given back as soon as the window closes, while the network side
            // is still saying goodbye to the server.
            let _restore = restore;
            term::ui_loop(terminal, app, action_tx, update_rx)
        })
        .context("cannot start the chat window")?;
    let downloads = download_dir(client);
    worker::run(client, action_rx, update_tx, wanted, downloads).await;
    match window.join() {
        Ok(r) => r,
        Err(_) => anyhow::bail!("the chat window stopped unexpectedly"),
    }
}
