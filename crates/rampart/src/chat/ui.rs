//! Drawing the chat window: a function of the [`App`] onto a ratatui frame. It returns what it
//! measured of the history pane so that paging scrolls by what is actually on screen.

use rampart_client::{DeliveryStatus, HistoryItem, MessageKind};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, List, ListItem, ListState, Paragraph};

use super::app::{App, Call, Link, Metrics, Mode, VideoPreview, call_duration, is_missed};

/// Columns of the time column ("12:34 "), and so the indent of a message's further lines.
const TIME_WIDTH: usize = 6;

const DIM: Style = Style::new().add_modifier(Modifier::DIM);

pub fn draw(frame: &mut Frame, app: &App) -> Metrics {
    // The call bar is there only during a call.
    let bar_rows = u16::from(app.call.is_some());
    let [main, bar, compose, status] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(bar_rows),
        Constraint::Length(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let list_width = (main.width / 4).clamp(18, 32);
    let [list, history] =
        Layout::horizontal([Constraint::Length(list_width), Constraint::Min(10)]).areas(main);
    conversation_list(frame, list, app);
    let metrics = history_pane(frame, history, app);
    if let Some(call) = &app.call {
        call_bar(frame, bar, app, call);
        if let Some(video) = &call.video {
            video_box(frame, history, &call.peer, video);
        }
    }
    compose_box(frame, compose, app);
    status_bar(frame, status, app);
    match app.mode {
        Mode::Help => help(frame, frame.area()),
        Mode::Calls => call_log(frame, frame.area(), app),
        Mode::Requests => request_list(frame, frame.area(), app),
        _ => {}
    }
    // Over everything else: a ringing call is the one thing that cannot wait.
    ring_banner(frame, history, app);
    metrics
}

/// A rectangle of `width` x `height` centred in `area` horizontally, `top` rows down.
fn popup_at(area: Rect, width: u16, height: u16, top: Option<u16>) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + top.unwrap_or((area.height - height) / 2).min(area.height - height),
        width,
        height,
    }
}

/// The incoming call, over the top of the messages.
fn ring_banner(frame: &mut Frame, area: Rect, app: &App) {
    let Some(ring) = app.rings.first() else { return };
    let from = clean(&ring.from);
    let ringing = call_duration(app.now_ms.saturating_sub(ring.since_ms) / 1000);
    let mut lines = vec![
        Line::styled(
            format!("Incoming call from {from}"),
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ),
        Line::from(vec![
            Span::styled("Ctrl-Y", Style::new().fg(Color::Green).add_modifier(Modifier::BOLD)),
            Span::raw(" accept   "),
            Span::styled("Ctrl-X", Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)),
            Span::raw(" decline"),
            Span::styled(format!("   ringing {ringing}"), DIM),
        ]),
    ];
    if app.rings.len() > 1 {
        lines.push(Line::styled(format!("and {} more calling", app.rings.len() - 1), DIM));
    }
    let width = u16::try_from(lines.iter().map(Line::width).max().unwrap_or(40) + 4).unwrap_or(u16::MAX);
    let height = u16::try_from(lines.len() + 2).unwrap_or(u16::MAX);
    let popup = popup_at(area, width, height, Some(1));
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).centered().block(
            Block::bordered()
                .title(Span::styled(" Call ", Style::new().add_modifier(Modifier::BOLD)))
                .border_style(Style::new().fg(Color::Yellow)),
        ),
        popup,
    );
}

/// One row above the compose box during a call: with whom, how it goes, how long.
fn call_bar(frame: &mut Frame, area: Rect, app: &App, call: &Call) {
    let peer = clean(&call.peer);
    let key = if call.connected_at_ms.is_some() || !call.outgoing { "hang up" } else { "cancel" };
    let mut spans = match call.connected_at_ms {
        Some(since) if !call.hanging_up => {
            let length = call_duration(app.now_ms.saturating_sub(since) / 1000);
            vec![Span::styled(
                format!(" ● In call with {peer}  {length} "),
                Style::new().fg(Color::Black).bg(Color::Green).add_modifier(Modifier::BOLD),
            )]
        }
        _ => {
            let state = clean(&call.state).replace('\n', " ");
            let what = if call.outgoing { format!("Call to {peer}") } else { format!("Call from {peer}") };
            vec![Span::styled(
                format!(" ◌ {what}: {state} "),
                Style::new().fg(Color::Black).bg(Color::Yellow).add_modifier(Modifier::BOLD),
            )]
        }
    };
    if call.muted {
        spans.push(Span::styled(
            " muted ",
            Style::new().fg(Color::Black).bg(Color::Red).add_modifier(Modifier::BOLD),
        ));
    }
    if let Some(video) = &call.video {
        spans.push(Span::styled(format!(" · video {}x{}", video.width, video.height), DIM));
    }
    if !call.hanging_up {
        let mute = if call.muted { "unmute" } else { "mute" };
        spans.push(Span::styled(format!(" · Ctrl-O {mute} · Ctrl-X {key}"), DIM));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The other side's picture, in the top right corner of the messages, drawn with half blocks.
fn video_box(frame: &mut Frame, area: Rect, peer: &str, video: &VideoPreview) {
    let columns = video.cells.first().map_or(0, Vec::len);
    let width = u16::try_from(columns + 2).unwrap_or(u16::MAX);
    let height = u16::try_from(video.cells.len() + 2).unwrap_or(u16::MAX);
    // Only where it fits beside some of the messages.
    if width + 10 > area.width || height + 2 > area.height {
        return;
    }
    let popup = Rect { x: area.x + area.width - width, y: area.y, width, height };
    let rgb = |[r, g, b]: [u8; 3]| Color::Rgb(r, g, b);
    let lines: Vec<Line> = video
        .cells
        .iter()
        .map(|row| {
            Line::from(
                row.iter()
                    .map(|(top, bottom)| Span::styled("▀", Style::new().fg(rgb(*top)).bg(rgb(*bottom))))
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(Span::styled(format!(" {} ", clean(peer)), DIM))),
        popup,
    );
}

/// `/calls`: the latest calls, newest first.
fn call_log(frame: &mut Frame, area: Rect, app: &App) {
    let peer_width = app.call_log.iter().map(|e| width_of(&clean(&e.peer))).max().unwrap_or(0).clamp(8, 24);
    let mut lines: Vec<Line> = app
        .call_log
        .iter()
        .map(|e| {
            let arrow = if e.outgoing { "→" } else { "←" };
            let outcome = match e.outcome.as_str() {
                "request" => "call request".to_owned(),
                other => other.to_owned(),
            };
            let length = match e.duration_secs() {
                0 => String::new(),
                s => format!(" {}", call_duration(s)),
            };
            let style = if is_missed(e) { Style::new().fg(Color::Yellow) } else { Style::new() };
            let peer = fit(&clean(&e.peer), peer_width);
            Line::from(vec![
                Span::styled(format!(" {arrow} "), DIM),
                Span::styled(format!("{peer:<peer_width$}  "), Style::new().add_modifier(Modifier::BOLD)),
                Span::styled(format!("{:<20}", format!("{outcome}{length}")), style),
                Span::styled(
                    format!("{} {} ", day_label(e.started_at_ms, app.now_ms), clock(e.started_at_ms)),
                    DIM,
                ),
            ])
        })
        .collect();
    if lines.is_empty() {
        lines.push(Line::styled(" No calls yet: /call @someone ", DIM));
    }
    let width = lines.iter().map(Line::width).max().unwrap_or(40).max(44) + 2;
    closable_popup(frame, area, lines, width, " Calls (times UTC) ");
}

/// `/requests`: conversations started by people who are not contacts, numbered for
/// `/request accept|decline|block N`.
fn request_list(frame: &mut Frame, area: Rect, app: &App) {
    let mut lines: Vec<Line> = app
        .requests
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let waiting = if r.held == 1 { "1 waiting".to_owned() } else { format!("{} waiting", r.held) };
            Line::from(vec![
                Span::styled(format!(" {:>2}. ", i + 1), DIM),
                Span::styled(fit(&clean(&r.from), 24), Style::new().add_modifier(Modifier::BOLD)),
                Span::styled(format!("  {waiting}, unopened  "), DIM),
                Span::styled(
                    format!("{} {} ", day_label(r.opened_at_ms, app.now_ms), clock(r.opened_at_ms)),
                    DIM,
                ),
            ])
        })
        .collect();
    if lines.is_empty() {
        lines.push(Line::styled(" No requests: people who are not your contacts wait here ", DIM));
    } else {
        lines.push(Line::raw(""));
        lines.push(Line::styled(" /request accept N · /request decline N · /request block N ", DIM));
    }
    let width = lines.iter().map(Line::width).max().unwrap_or(40).max(44) + 2;
    closable_popup(frame, area, lines, width, " Message requests (nothing opened yet) ");
}

/// Text from others made safe and flat for the screen: control characters (which could move
/// the cursor or rewrite the screen) are shown escaped; tabs become spaces.
fn clean(text: &str) -> String {
    crate::client_cmds::printable(text).replace('\t', "    ")
}

fn width_of(s: &str) -> usize {
    Span::raw(s).width()
}

/// `s` cut to `max` columns, with an ellipsis when something was cut.
fn fit(s: &str, max: usize) -> String {
    if width_of(s) <= max {
        return s.to_owned();
    }
    let span = Span::raw(s);
    let mut out = String::new();
    let mut used = 0;
    for g in span.styled_graphemes(Style::default()) {
        let w = width_of(g.symbol);
        if used + w + 1 > max {
            break;
        }
        out.push_str(g.symbol);
        used += w;
    }
    out.push('…');
    out
}

fn conversation_list(frame: &mut Frame, area: Rect, app: &App) {
    let inner = usize::from(area.width.saturating_sub(2));
    let items: Vec<ListItem> = app
        .conversations
        .iter()
        .map(|c| {
            let marker = if c.direct { "@ " } else { "# " };
            let name = clean(if c.direct { c.name.strip_prefix('@').unwrap_or(&c.name) } else { &c.name });
            let badge = if c.unread > 0 { format!(" {}", c.unread) } else { String::new() };
            let left = if c.closed { " (left)" } else { "" };
            let room = inner.saturating_sub(width_of(marker) + width_of(&badge) + width_of(left));
            let name = fit(&name, room);
            let pad = " ".repeat(room.saturating_sub(width_of(&name)));
            let mut style = Style::new();
            if c.unread > 0 {
                style = style.add_modifier(Modifier::BOLD);
            }
            if c.closed {
                style = style.add_modifier(Modifier::DIM);
            }
            ListItem::new(Line::from(vec![
                Span::styled(marker, DIM),
                Span::styled(name, style),
                Span::styled(left, DIM),
                Span::raw(pad),
                Span::styled(badge, Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)),
            ]))
        })
        .collect();
    let selected = app.selected.as_deref().and_then(|s| app.conversations.iter().position(|c| c.id == s));
    let title = match app.requests.len() {
        0 => " Conversations ".to_owned(),
        n => format!(" Conversations · {n} request{} ", if n == 1 { "" } else { "s" }),
    };
    let list = List::new(items)
        .block(Block::bordered().title(title))
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = ListState::default().with_selected(selected);
    frame.render_stateful_widget(list, area, &mut state);
}

/// Break styled text into rows of at most `width` columns, after a space where there is one;
/// rows after the first start with `indent` spaces.
fn wrap(spans: &[Span<'static>], width: usize, indent: usize) -> Vec<Line<'static>> {
    let width = width.max(1);
    let indent = if width > indent + 8 { indent } else { 0 };
    let mut rows: Vec<Vec<(String, Style)>> = Vec::new();
    let mut row: Vec<(String, Style, usize)> = Vec::new();
    let mut used = 0;
    let mut space: Option<usize> = None;
    for span in spans {
        for g in span.styled_graphemes(Style::default()) {
            let w = width_of(g.symbol);
            let limit = if rows.is_empty() { width } else { width - indent };
            if used + w > limit && !row.is_empty() {
                let next_limit = width - indent;
                let fits_after =
                    |at: usize| row.iter().skip(at + 1).map(|(_, _, w)| w).sum::<usize>() + w <= next_limit;
                // Break after the last space, unless the word carried over would not fit
                // the next row either: then cut here.
                let tail = match space {
                    Some(at) if at + 1 < row.len() && fits_after(at) => row.split_off(at + 1),
                    _ => Vec::new(),
                };
                rows.push(row.into_iter().map(|(s, st, _)| (s, st)).collect());
                used = tail.iter().map(|(_, _, w)| w).sum();
                row = tail;
                space = None;
            }
            if g.symbol == " " {
                space = Some(row.len());
            }
            row.push((g.symbol.to_owned(), g.style, w));
            used += w;
        }
    }
    rows.push(row.into_iter().map(|(s, st, _)| (s, st)).collect());
    rows.into_iter()
        .enumerate()
        .map(|(i, graphemes)| {
            let mut line: Vec<Span<'static>> = Vec::new();
            if i > 0 && indent > 0 {
                line.push(Span::raw(" ".repeat(indent)));
            }
            // Runs of one style become one span.
            let mut run = String::new();
            let mut run_style = None;
            for (s, st) in graphemes {
                if run_style.is_some_and(|r| r != st) {
                    line.push(Span::styled(std::mem::take(&mut run), run_style.unwrap_or_default()));
                }
                run_style = Some(st);
                run.push_str(&s);
            }
            if !run.is_empty() {
                line.push(Span::styled(run, run_style.unwrap_or_default()));
            }
            Line::from(line)
        })
        .collect()
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's method).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, u32::try_from(m).unwrap_or(1), u32::try_from(d).unwrap_or(1))
}

fn day_number(ms: u64) -> i64 {
    i64::try_from(ms / 86_400_000).unwrap_or(0)
}

/// "12:34" (UTC: the profile keeps UTC milliseconds and there is no time zone database here).
fn clock(ms: u64) -> String {
    let minutes = (ms / 60_000) % (24 * 60);
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

fn day_label(ms: u64, now_ms: u64) -> String {
    let day = day_number(ms);
    let today = day_number(now_ms);
    if day == today {
        return "Today".to_owned();
    }
    if day + 1 == today {
        return "Yesterday".to_owned();
    }
    let (y, m, d) = civil_from_days(day);
    format!("{y}-{m:02}-{d:02}")
}

pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS.get(unit).copied().unwrap_or("TB"))
}

fn timer_label(seconds: u32) -> String {
    match seconds {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// A steady colour per person, so a group's senders are told apart at a glance.
fn sender_color(account: u64) -> Color {
    const PALETTE: [Color; 6] =
        [Color::Cyan, Color::Green, Color::Magenta, Color::Blue, Color::LightRed, Color::LightYellow];
    PALETTE.get((account % PALETTE.len() as u64) as usize).copied().unwrap_or(Color::Cyan)
}

/// Reactions as "👍 2  ❤️", counted per emoji in the order they first appear.
fn reactions_text(m: &HistoryItem) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for r in &m.reactions {
        let emoji = clean(&r.emoji);
        match counts.iter_mut().find(|(e, _)| *e == emoji) {
            Some((_, n)) => *n += 1,
            None => counts.push((emoji, 1)),
        }
    }
    counts.into_iter().map(|(e, n)| if n > 1 { format!("{e} {n}") } else { e }).collect::<Vec<_>>().join("  ")
}

fn message_lines(app: &App, m: &HistoryItem, width: usize, out: &mut Vec<Line<'static>>) {
    let time = if m.sent_at_ms > 0 { m.sent_at_ms } else { m.received_at_ms };
    let who = if m.from_me { "me".to_owned() } else { clean(&m.sender_label) };
    let who_style = if m.from_me {
        Style::new().fg(Color::Gray).add_modifier(Modifier::BOLD)
    } else {
        Style::new().fg(sender_color(m.sender_account)).add_modifier(Modifier::BOLD)
    };
    if let Some(reply) = &m.reply_to {
        let quoted = app.shown_history().iter().find(|o| &o.message_id == reply).map(|o| {
            let from = if o.from_me { "me".to_owned() } else { clean(&o.sender_label) };
            let text = clean(&o.text).replace('\n', " ");
            format!("↪ {from}: {}", fit(&text, 60))
        });
        let quoted = quoted.unwrap_or_else(|| "↪ (an earlier message)".to_owned());
        let spans =
            [Span::raw(" ".repeat(TIME_WIDTH)), Span::styled(quoted, DIM.add_modifier(Modifier::ITALIC))];
        out.extend(wrap(&spans, width, TIME_WIDTH));
    }

    // The body: one logical line per line of the text, the first after time and sender.
    let mut body: Vec<Vec<Span<'static>>> = Vec::new();
    if m.deleted {
        body.push(vec![Span::styled("(deleted)", DIM.add_modifier(Modifier::ITALIC))]);
    } else {
        if let Some(a) = &m.attachment {
            let mut spans = vec![Span::styled(
                format!("[📎 {} ({})]", clean(&a.name), human_size(a.size)),
                Style::new().fg(Color::Cyan),
            )];
            match &a.saved_path {
                Some(p) => spans.push(Span::styled(format!(" saved at {}", clean(p)), DIM)),
                None => spans.push(Span::styled(" ↑ then d to download", DIM)),
            }
            body.push(spans);
        }
        if !m.text.is_empty() || m.attachment.is_none() {
            for line in clean(&m.text).split('\n') {
                body.push(vec![Span::raw(line.to_owned())]);
            }
        }
    }
    let mut tail: Vec<Span<'static>> = Vec::new();
    if m.edited && !m.deleted {
        tail.push(Span::styled(" (edited)", DIM));
    }
    if m.expires_at_ms.is_some() {
        tail.push(Span::styled(" ⏱", DIM));
    }
    if m.from_me && !m.deleted {
        tail.push(match m.status {
            DeliveryStatus::Sent => Span::styled(" ✓", DIM),
            DeliveryStatus::Delivered => Span::styled(" ✓✓", Style::new().fg(Color::Gray)),
            DeliveryStatus::Read => Span::styled(" ✓✓ read", Style::new().fg(Color::Green)),
        });
    }
    let reactions = reactions_text(m);
    if !reactions.is_empty() {
        tail.push(Span::raw("  "));
        tail.push(Span::styled(reactions, Style::new().fg(Color::Yellow)));
    }
    let last = body.len().saturating_sub(1);
    for (i, mut spans) in body.into_iter().enumerate() {
        let mut line = if i == 0 {
            vec![
                Span::styled(format!("{} ", clock(time)), DIM),
                Span::styled(who.clone(), who_style),
                Span::raw(": "),
            ]
        } else {
            vec![Span::raw(" ".repeat(TIME_WIDTH))]
        };
        line.append(&mut spans);
        if i == last {
            line.append(&mut tail);
        }
        out.extend(wrap(&line, width, TIME_WIDTH));
    }
}

/// Every row of the loaded history at this width, and the rows of the picked message.
fn history_lines(app: &App, width: usize) -> (Vec<Line<'static>>, Option<(usize, usize)>) {
    let mut lines = Vec::new();
    let mut picked = None;
    let mut last_day = None;
    for m in app.shown_history() {
        let time = if m.sent_at_ms > 0 { m.sent_at_ms } else { m.received_at_ms };
        let day = day_number(time);
        if last_day != Some(day) {
            lines.push(Line::styled(format!("── {} ──", day_label(time, app.now_ms)), DIM).centered());
            last_day = Some(day);
        }
        let start = lines.len();
        if m.kind == MessageKind::Notice {
            let spans = [Span::styled(format!("· {} ·", clean(&m.text)), DIM.add_modifier(Modifier::ITALIC))];
            lines.extend(wrap(&spans, width, 0).into_iter().map(Line::centered));
        } else {
            message_lines(app, m, width, &mut lines);
        }
        if app.picked == Some(m.seq) {
            for line in lines.iter_mut().skip(start) {
                *line = std::mem::take(line).patch_style(Style::new().bg(Color::DarkGray));
            }
            picked = Some((start, lines.len()));
        }
    }
    (lines, picked)
}

fn history_pane(frame: &mut Frame, area: Rect, app: &App) -> Metrics {
    let conversation = app.selected_conversation();
    let title = match conversation {
        Some(c) => {
            let mut t = format!(" {}{} ", if c.direct { "" } else { "# " }, clean(&c.name));
            if c.timer_secs > 0 {
                t.push_str(&format!("· disappearing after {} ", timer_label(c.timer_secs)));
            }
            if c.closed {
                t.push_str("· you left ");
            }
            t
        }
        None => " Messages ".to_owned(),
    };
    let mut block = Block::bordered()
        .title(Span::styled(title, Style::new().add_modifier(Modifier::BOLD)))
        .title_top(Line::styled(" times UTC ", DIM).right_aligned());
    let inner = block.inner(area);
    let width = usize::from(inner.width);
    let rows = usize::from(inner.height);

    let placeholder = if app.conversations.is_empty() {
        Some("No conversations yet. Start one with /msg @username hello")
    } else if conversation.is_none() {
        Some("Pick a conversation with Tab")
    } else if app.history_for.is_none() || app.history_for != app.selected {
        Some("Loading…")
    } else if app.history.is_empty() {
        Some("No messages yet: say hello!")
    } else {
        None
    };
    if let Some(text) = placeholder {
        frame.render_widget(Paragraph::new(Line::styled(text, DIM).centered()).block(block), area);
        return Metrics { rows, total: 0, scroll: 0 };
    }

    let (lines, picked) = history_lines(app, width);
    let total = lines.len();
    let top_limit = total.saturating_sub(rows);
    let mut scroll = app.scroll.min(top_limit);
    // Keep the picked message in view.
    if let Some((start, end)) = picked {
        let top = total.saturating_sub(rows + scroll);
        if start < top {
            scroll = total.saturating_sub(rows + start).min(top_limit);
        } else if end > top + rows {
            scroll = total.saturating_sub(end);
        }
    }
    let top = total.saturating_sub(rows + scroll);
    if scroll > 0 {
        block =
            block.title_bottom(Line::styled(format!(" ↓ {scroll} more rows: PgDn "), DIM).right_aligned());
    }
    // Like a messenger, the latest message sits just above the compose box, even when the
    // conversation is short.
    let mut visible: Vec<Line> = vec![Line::raw(""); rows.saturating_sub(total)];
    visible.extend(lines.into_iter().skip(top).take(rows));
    frame.render_widget(Paragraph::new(visible).block(block), area);
    Metrics { rows, total, scroll }
}

fn compose_box(frame: &mut Frame, area: Rect, app: &App) {
    let name = app.selected_conversation().map(|c| clean(&c.name)).unwrap_or_default();
    let title = match app.mode {
        Mode::Select => " ↑/↓ pick · d download · r react · Esc back ".to_owned(),
        _ if app.picked.is_some() && app.compose.text().starts_with("/react") => {
            " React to the picked message: /react EMOJI ".to_owned()
        }
        _ if name.is_empty() => " Message ".to_owned(),
        _ => format!(" Message {name} "),
    };
    let keys = match app.mode {
        Mode::Select => " Enter or d download · r react · type to write ",
        _ => " Enter send · Esc clear · ? help ",
    };
    let block = Block::bordered()
        .title(title)
        .title_bottom(Line::styled(keys, DIM).right_aligned())
        .border_style(if app.mode == Mode::Compose { Style::new().fg(Color::Cyan) } else { Style::new() });
    let inner = block.inner(area);
    let room = usize::from(inner.width).max(1);
    if app.compose.is_empty() {
        let hint = if app.mode == Mode::Select { "" } else { "Type a message; /help for commands" };
        frame.render_widget(Paragraph::new(Line::styled(hint, DIM)).block(block), area);
        if app.mode == Mode::Compose {
            frame.set_cursor_position(Position::new(inner.x, inner.y));
        }
        return;
    }
    // Newlines (from a paste) show as ↵; both are one column, so the cursor arithmetic holds.
    let chars: Vec<String> = app
        .compose
        .text()
        .chars()
        .map(|c| if c == '\n' { "↵".to_owned() } else { clean(&c.to_string()) })
        .collect();
    let cursor = app.compose.cursor().min(chars.len());
    let widths: Vec<usize> = chars.iter().map(|c| width_of(c)).collect();
    // Scroll sideways so the cursor stays in the box.
    let mut start = 0;
    while start < cursor && widths.get(start..cursor).map_or(0, |w| w.iter().sum::<usize>()) >= room {
        start += 1;
    }
    let shown: String = chars.iter().skip(start).map(String::as_str).collect();
    frame.render_widget(Paragraph::new(Line::raw(shown)).block(block), area);
    if app.mode == Mode::Compose {
        let x = widths.get(start..cursor).map_or(0, |w| w.iter().sum::<usize>());
        let x =
            inner.x.saturating_add(u16::try_from(x).unwrap_or(u16::MAX)).min(inner.right().saturating_sub(1));
        frame.set_cursor_position(Position::new(x, inner.y));
    }
}

fn status_bar(frame: &mut Frame, area: Rect, app: &App) {
    let mut spans =
        vec![Span::styled(format!(" {} ", clean(&app.me)), Style::new().add_modifier(Modifier::BOLD))];
    match &app.link {
        Link::Connected => spans.push(Span::styled("● online", Style::new().fg(Color::Green))),
        Link::Connecting => spans.push(Span::styled("◌ connecting…", Style::new().fg(Color::Yellow))),
        Link::Offline { retry_at_ms, error } => {
            let secs = retry_at_ms.saturating_sub(app.now_ms).div_ceil(1000);
            spans.push(Span::styled(
                format!("✕ offline, retrying in {secs}s ({})", clean(error).replace('\n', " ")),
                Style::new().fg(Color::Red),
            ));
        }
    }
    spans.push(Span::styled(" │ ", DIM));
    let missed = app.missed_calls();
    if missed > 0 {
        let s = if missed == 1 { "" } else { "s" };
        spans.push(Span::styled(
            format!("{missed} missed call{s} (/calls)"),
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ));
        spans.push(Span::styled(" │ ", DIM));
    }
    if let Some((what, done, total)) = &app.progress {
        let pct = done.saturating_mul(100).checked_div(*total).unwrap_or(100);
        spans.push(Span::raw(format!("{}: {pct}% of {}", clean(what), human_size(*total))));
    } else if let Some(status) = &app.status {
        let style = if status.error { Style::new().fg(Color::Red) } else { Style::new() };
        spans.push(Span::styled(clean(&status.text).replace('\n', " "), style));
    } else {
        spans.push(Span::styled(
            "Tab next chat · PgUp/PgDn scroll · ↑ pick a message · ? help · Ctrl-C quit",
            DIM,
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

pub const HELP: &[(&str, &str)] = &[
    ("Enter", "send the message"),
    ("Esc", "clear the line"),
    ("Tab / Shift-Tab", "next / previous conversation (also Ctrl-↓/↑, Ctrl-N/P)"),
    ("PgUp / PgDn", "scroll the history"),
    ("↑ on an empty line", "pick a message: ↑/↓ move, d download, r react, Esc back"),
    ("←/→ Home/End", "move in the line; Ctrl-W deletes a word, Ctrl-U the line"),
    ("F1, or ? on an empty line", "this help"),
    ("Ctrl-C, or /quit", "quit (Ctrl-D too, on an empty line); hangs up a call"),
    ("Ctrl-Y", "accept the ringing call"),
    ("Ctrl-X", "decline the ringing call, or hang up"),
    ("Ctrl-O", "mute or unmute the microphone during a call"),
    ("", ""),
    ("/call, /call @name", "voice call the person of this 1:1, or someone"),
    ("/video, /video @name", "video call: your camera, if any, and theirs"),
    ("/calls", "the call log: missed calls, call requests (not ringing)"),
    ("/requests", "conversations strangers started, unopened until you answer"),
    ("/request accept N", "open request N (or decline N, block N)"),
    ("/react EMOJI", "react to the picked message, else to the latest from others"),
    ("/msg @name TEXT", "write to someone (also +15551234567): opens your 1:1"),
    ("/download", "save the picked (or the latest) attachment to Downloads"),
    ("/file PATH", "send a file, encrypted end to end"),
    ("//text", "send a line that starts with /"),
    ("", ""),
    ("✓  ✓✓  ✓✓ read", "sent to the server · delivered · read"),
];

fn help(frame: &mut Frame, area: Rect) {
    let key_width = HELP.iter().map(|(k, _)| width_of(k)).max().unwrap_or(0);
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(k, v)| {
            Line::from(vec![
                Span::styled(format!(" {k:<key_width$}  "), Style::new().fg(Color::Cyan)),
                Span::raw(*v),
            ])
        })
        .collect();
    let width = lines.iter().map(Line::width).max().unwrap_or(40) + 3;
    closable_popup(frame, area, lines, width, " Keys and commands ");
}

/// A bordered popup over the window that any key closes.
fn closable_popup(frame: &mut Frame, area: Rect, lines: Vec<Line>, width: usize, title: &str) {
    let width = u16::try_from(width).unwrap_or(u16::MAX);
    let height = u16::try_from(lines.len() + 2).unwrap_or(u16::MAX);
    let popup = popup_at(area, width, height, None);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .title(title)
                .title_bottom(Line::styled(" any key closes ", DIM).right_aligned()),
        ),
        popup,
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::chat::app::{Action, Update, tests as app_tests};
    use rampart_client::{AttachmentInfo, Reaction};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    /// The screen as text, one string per row.
    fn screen(app: &mut App, width: u16, height: u16) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        let mut metrics = Metrics::default();
        terminal.draw(|f| metrics = draw(f, app)).unwrap();
        app.set_metrics(metrics);
        let buffer = terminal.backend().buffer();
        (0..height)
            .map(|y| {
                let mut row = String::new();
                let mut x = 0;
                while x < width {
                    let symbol = buffer[(x, y)].symbol();
                    row.push_str(symbol);
                    // A wide character covers the next cell too.
                    x += u16::try_from(width_of(symbol).max(1)).unwrap();
                }
                row
            })
            .collect()
    }

    fn contains(screen: &[String], needle: &str) -> bool {
        screen.iter().any(|row| row.contains(needle))
    }

    fn app() -> App {
        let mut app = App::new("@alice".into(), None, 1_700_000_060_000);
        let mut team = app_tests::conversation("bb", "team", 3, 10);
        team.direct = false;
        app.apply(Update::Conversations(vec![team, app_tests::conversation("aa", "@bob", 0, 20)]));
        let mut theirs = app_tests::message(1, false, "hi alice, lunch?");
        theirs.reactions = vec![Reaction { account: 1, emoji: "👍".into() }];
        let mut mine = app_tests::message(2, true, "sure, at noon");
        mine.status = DeliveryStatus::Delivered;
        let mut read = app_tests::message(3, true, "see you");
        read.status = DeliveryStatus::Read;
        read.edited = true;
        let mut notice = app_tests::message(4, false, "bob's safety number changed");
        notice.kind = MessageKind::Notice;
        let mut file = app_tests::message(5, false, "");
        file.kind = MessageKind::Attachment;
        file.attachment = Some(AttachmentInfo {
            name: "menu.pdf".into(),
            mime: "application/pdf".into(),
            size: 2048,
            saved_path: None,
        });
        app.apply(Update::History {
            conversation: "aa".into(),
            items: vec![theirs, mine, read, notice, file],
        });
        app.apply(Update::Link(Link::Connected));
        app
    }

    #[test]
    fn shows_conversations_unread_messages_and_ticks() {
        let mut app = app();
        let rows = screen(&mut app, 100, 20);
        let text = rows.join("\n");
        assert!(contains(&rows, "@ bob"), "{text}");
        assert!(contains(&rows, "# team"), "{text}");
        assert!(rows.iter().any(|r| r.contains("# team") && r.contains(" 3")), "unread count: {text}");
        assert!(contains(&rows, "@bob: hi alice, lunch?  👍"), "{text}");
        assert!(contains(&rows, "me: sure, at noon ✓✓"), "{text}");
        assert!(contains(&rows, "me: see you (edited) ✓✓ read"), "{text}");
        assert!(contains(&rows, "· bob's safety number changed ·"), "{text}");
        assert!(contains(&rows, "[📎 menu.pdf (2.0 KB)]"), "{text}");
        assert!(contains(&rows, "22:13 "), "UTC clock: {text}");
        assert!(contains(&rows, "● online"), "{text}");
        assert!(contains(&rows, "Message @bob"), "{text}");
    }

    #[test]
    fn unread_conversations_are_bold() {
        let mut app = app();
        let mut terminal = Terminal::new(TestBackend::new(100, 20)).unwrap();
        terminal
            .draw(|f| {
                draw(f, &app);
            })
            .unwrap();
        let buffer = terminal.backend().buffer();
        let row = (0..20)
            .find(|y| (0..30).map(|x| buffer[(x, *y)].symbol()).collect::<String>().contains("team"))
            .unwrap();
        let name_cell = (0..30).find(|x| buffer[(*x, row)].symbol() == "t").unwrap();
        assert!(buffer[(name_cell, row)].modifier.contains(Modifier::BOLD));
        app.mode = Mode::Help;
        let rows = screen(&mut app, 100, 24);
        assert!(contains(&rows, "Keys and commands"));
    }

    #[test]
    fn long_messages_wrap_and_scroll() {
        let mut app = app();
        let long = "word ".repeat(60);
        let items: Vec<_> =
            (1..=30).map(|i| app_tests::message(i, i % 2 == 0, &format!("{i} {long}"))).collect();
        app.apply(Update::History { conversation: "aa".into(), items });
        let rows = screen(&mut app, 80, 20);
        assert!(app.metrics.total > app.metrics.rows);
        assert!(contains(&rows, "30 word"), "the latest message is in view");
        app.handle_key(crossterm::event::KeyEvent::from(crossterm::event::KeyCode::PageUp));
        let rows = screen(&mut app, 80, 20);
        assert!(contains(&rows, "more rows: PgDn"), "{}", rows.join("\n"));
        // Every row fits the pane: nothing is cut mid-word beyond the width.
        let lines = history_lines(&app, 40).0;
        assert!(lines.iter().all(|l| l.width() <= 40));
    }

    #[test]
    fn escape_sequences_from_others_are_shown_not_run() {
        let mut app = app();
        let evil = app_tests::message(9, false, "hi\x1b[2J\x1b]0;pwned\x07");
        app.apply(Update::History { conversation: "aa".into(), items: vec![evil] });
        let rows = screen(&mut app, 100, 12);
        assert!(contains(&rows, "hi\\u{1b}[2J"), "{}", rows.join("\n"));
    }

    #[test]
    fn offline_status_counts_down() {
        let mut app = app();
        app.apply(Update::Link(Link::Offline {
            retry_at_ms: app.now_ms + 4_000,
            error: "connection refused".into(),
        }));
        let rows = screen(&mut app, 120, 12);
        assert!(contains(&rows, "offline, retrying in 4s (connection refused)"), "{}", rows.join("\n"));
    }

    #[test]
    fn dates_and_sizes() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_675), (2023, 11, 14));
        assert_eq!(clock(1_700_000_000_000), "22:13");
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(5 * 1024 * 1024 + 1), "5.0 MB");
        assert_eq!(fit("conversation", 6), "conve…");
    }

    #[test]
    fn a_ringing_call_shows_a_banner_with_its_keys() {
        let mut app = app();
        app.apply(Update::Ring { call: "c1".into(), from: "@bob\x1b[2J".into() });
        app.tick(app.now_ms + 7_000);
        let rows = screen(&mut app, 100, 20);
        let text = rows.join("\n");
        assert!(contains(&rows, "Incoming call from @bob\\u{1b}[2J"), "escaped: {text}");
        assert!(contains(&rows, "Ctrl-Y accept   Ctrl-X decline   ringing 00:07"), "{text}");
        // Over the top of the history pane, not hiding the latest messages.
        let row = rows.iter().position(|r| r.contains("Incoming call")).unwrap();
        assert!(row <= 3, "{text}");
        assert!(contains(&rows, "menu.pdf"), "{text}");
        // Shown over the help too.
        app.mode = Mode::Help;
        let rows = screen(&mut app, 100, 30);
        assert!(contains(&rows, "Incoming call from"));
        assert!(contains(&rows, "accept the ringing call"), "the help lists the call keys");
    }

    #[test]
    fn a_call_in_progress_has_a_bar_with_its_duration() {
        let mut app = app();
        app.apply(Update::Ring { call: "c1".into(), from: "@bob".into() });
        app.handle_key(crossterm::event::KeyEvent::new(
            crossterm::event::KeyCode::Char('y'),
            crossterm::event::KeyModifiers::CONTROL,
        ));
        let rows = screen(&mut app, 100, 20);
        let text = rows.join("\n");
        assert!(!contains(&rows, "Incoming call"), "{text}");
        assert!(contains(&rows, "◌ Call from @bob: connecting…"), "{text}");
        app.apply(Update::CallProgress {
            text: "connected with @bob (relay 1.2.3.4:3478)".into(),
            connected: true,
        });
        app.tick(app.now_ms + 83_000);
        let rows = screen(&mut app, 100, 20);
        let text = rows.join("\n");
        assert!(contains(&rows, "● In call with @bob  01:23"), "{text}");
        assert!(contains(&rows, "Ctrl-X hang up"), "{text}");
        // The bar sits just above the compose box.
        let bar = rows.iter().position(|r| r.contains("In call with")).unwrap();
        assert!(rows[bar + 1].contains("Message @bob"), "{text}");
        // The latest message is still in view above it.
        assert!(contains(&rows, "menu.pdf"), "{text}");
    }

    #[test]
    fn a_call_shows_mute_and_the_other_sides_picture() {
        let mut app = app();
        app.apply(Update::Ring { call: "c1".into(), from: "@bob".into() });
        let ctrl = |c| {
            crossterm::event::KeyEvent::new(
                crossterm::event::KeyCode::Char(c),
                crossterm::event::KeyModifiers::CONTROL,
            )
        };
        app.handle_key(ctrl('y'));
        app.apply(Update::CallProgress { text: "connected".into(), connected: true });
        assert_eq!(app.handle_key(ctrl('o')), Some(Action::SetMuted { muted: true }));
        let rows = screen(&mut app, 100, 24);
        assert!(contains(&rows, " muted "), "{}", rows.join("\n"));
        assert!(contains(&rows, "Ctrl-O unmute"), "{}", rows.join("\n"));
        let picture = rampart_media::video::test_pattern(64, 48, 0).unwrap();
        let preview = crate::chat::app::VideoPreview::of(&picture, 16);
        assert_eq!((preview.cells.len(), preview.cells[0].len()), (6, 16), "16 cells wide, 12 pixels tall");
        app.apply(Update::VideoPicture(preview));
        let rows = screen(&mut app, 100, 24);
        let text = rows.join("\n");
        assert!(contains(&rows, "video 64x48"), "{text}");
        assert_eq!(text.matches('▀').count(), 6 * 16, "the picture in half blocks: {text}");
        assert_eq!(app.handle_key(ctrl('o')), Some(Action::SetMuted { muted: false }));
        assert!(!contains(&screen(&mut app, 100, 24), " muted "));
    }

    #[test]
    fn the_call_log_lists_calls_and_missed_ones_are_counted() {
        let mut app = app();
        let now = app.now_ms;
        let mut answered = app_tests::log_entry("c3", "@bob", true, "ended", now - 3_600_000);
        answered.answered_at_ms = Some(now - 3_600_000);
        answered.ended_at_ms = Some(now - 3_600_000 + 95_000);
        app.apply(Update::CallLog {
            entries: vec![
                app_tests::log_entry("c5", "@bob", false, "missed", now - 60_000),
                app_tests::log_entry("c4", "@eve", false, "request", now - 120_000),
                answered,
            ],
            seen_ms: 0,
        });
        let rows = screen(&mut app, 120, 24);
        assert!(contains(&rows, "2 missed calls (/calls)"), "{}", rows.join("\n"));
        app.paste("/calls");
        app.handle_key(crossterm::event::KeyEvent::from(crossterm::event::KeyCode::Enter));
        let rows = screen(&mut app, 120, 24);
        let text = rows.join("\n");
        assert!(contains(&rows, "Calls (times UTC)"), "{text}");
        assert!(
            rows.iter().any(|r| r.contains("← @bob") && r.contains("missed") && r.contains("Today 22:13")),
            "{text}"
        );
        assert!(rows.iter().any(|r| r.contains("← @eve") && r.contains("call request")), "{text}");
        assert!(rows.iter().any(|r| r.contains("→ @bob") && r.contains("ended 01:35")), "{text}");
        assert!(!contains(&rows, "missed calls (/calls)"), "seen now: {text}");
        // Empty, it says how to call.
        app.apply(Update::CallLog { entries: Vec::new(), seen_ms: 0 });
        let rows = screen(&mut app, 120, 24);
        assert!(contains(&rows, "No calls yet: /call @someone"));
    }
}
