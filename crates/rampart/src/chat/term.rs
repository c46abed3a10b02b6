//! The terminal side: raw mode and the alternate screen (put back on exit and on panic), and
//! the window's loop on its own thread: keys in, frames out, updates from the network side
//! applied as they come.

use std::io::{Stdout, stdout};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Duration;

use crossterm::event::{self, DisableBracketedPaste, EnableBracketedPaste, Event, KeyEventKind};
use crossterm::execute;
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tokio::sync::mpsc::UnboundedSender;

use super::app::{Action, App, Metrics, Update};
use super::ui;
use rampart_client::clock::now_ms;

pub type Term = Terminal<CrosstermBackend<Stdout>>;

/// How often the loop looks for updates from the network side while no key is pressed: the
/// added latency of an incoming message, at a negligible cost in wake-ups.
const TICK: Duration = Duration::from_millis(50);

/// Puts the terminal back as it was when dropped: normal exit, error, or unwinding.
#[derive(Debug)]
pub struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        restore();
    }
}

fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(stdout(), DisableBracketedPaste, LeaveAlternateScreen, crossterm::cursor::Show);
}

/// Raw mode, the alternate screen and bracketed paste (so a pasted newline does not send).
/// A panic anywhere restores the terminal before its message is printed, or the message
/// would be lost on the alternate screen and the shell left in raw mode.
pub fn enter() -> anyhow::Result<(Term, Restore)> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
    enable_raw_mode()?;
    let guard = Restore;
    execute!(stdout(), EnterAlternateScreen, EnableBracketedPaste)?;
    let terminal = Terminal::new(CrosstermBackend::new(stdout()))?;
    Ok((terminal, guard))
}

/// The window's loop. Returns when the user quits, or when the network side has gone.
pub fn ui_loop(
    mut terminal: Term,
    mut app: App,
    actions: UnboundedSender<Action>,
    updates: Receiver<Update>,
) -> anyhow::Result<()> {
    let act = |action: Option<Action>| -> bool {
        match action {
            Some(Action::Quit) => {
                let _ = actions.send(Action::Quit);
                false
            }
            // The network side gone means the command is ending anyway.
            Some(a) => actions.send(a).is_ok(),
            None => true,
        }
    };
    let mut dirty = true;
    let mut shown_second = 0;
    loop {
        loop {
            match updates.try_recv() {
                Ok(update) => {
                    dirty = true;
                    if !act(app.apply(update)) {
                        return Ok(());
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Ok(()),
            }
        }
        let now = now_ms();
        app.tick(now);
        // The offline countdown moves once a second.
        if now / 1000 != shown_second {
            shown_second = now / 1000;
            dirty = true;
        }
        if dirty {
            let mut metrics = Metrics::default();
            terminal.draw(|frame| metrics = ui::draw(frame, &app))?;
            app.set_metrics(metrics);
            dirty = false;
        }
        if !event::poll(TICK)? {
            continue;
        }
        match event::read()? {
            Event::Key(key) if key.kind != KeyEventKind::Release => {
                dirty = true;
                if !act(app.handle_key(key)) {
                    return Ok(());
                }
            }
            Event::Paste(text) => {
                app.paste(&text);
                dirty = true;
            }
            Event::Resize(..) | Event::FocusGained => dirty = true,
            _ => {}
        }
    }
}
