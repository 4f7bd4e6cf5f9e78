//! Drawing the console from an [`App`]: header, replica table with a lag sparkline per
//! row, the selected node's details, events, footer and dialogs. Pure: the same state
//! draws the same screen, which the snapshot tests rely on. Fits 80×24; wider
//! terminals get more columns. With `NO_COLOR` only bold and reverse video are used.

use super::app::{App, Dialog, Verdict, KEYS};
use crate::status::NodeRow;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

/// Below this width the table drops the address, commit, bytes and contact columns
/// (the details line under the table still shows them for the selected node).
const WIDE_COLUMNS: u16 = 140;
const SPARK_GLYPHS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
/// The sparklines' full height is at least this lag: a follower a few entries behind is
/// the replication pipeline at work and draws near the floor, not as a full-height spike.
const SPARK_FULL_HEIGHT_MIN_ENTRIES: u64 = 100;

struct Theme {
    color: bool,
}

impl Theme {
    fn fg(&self, color: Color) -> Style {
        if self.color {
            Style::default().fg(color)
        } else {
            Style::default()
        }
    }

    fn bold(&self) -> Style {
        Style::default().add_modifier(Modifier::BOLD)
    }

    fn alert(&self) -> Style {
        if self.color {
            Style::default().fg(Color::White).bg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        }
    }

    fn selected(&self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }
}

pub fn render(frame: &mut Frame, app: &App) {
    let theme = Theme { color: app.color };
    let rows = app.status.as_ref().map_or(3, |s| s.nodes.len()) as u16;
    let [header, table, details, events, footer] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(rows + 3),
        Constraint::Length(3),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    render_header(frame, app, &theme, header);
    render_table(frame, app, &theme, table);
    render_details(frame, app, &theme, details);
    render_events(frame, app, events);
    render_footer(frame, app, &theme, footer);
    match &app.dialog {
        Dialog::None => {}
        Dialog::Help => render_help(frame, app),
        dialog => render_dialog(frame, app, &theme, dialog),
    }
}

fn render_header(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let mut first = vec![Span::styled("Baton ", theme.bold()), Span::raw(format!("{}  ", app.cluster))];
    match &app.status {
        None => first.push(Span::raw("connecting…")),
        Some(status) => {
            first.push(Span::raw(format!("mode {}  ", status.mode.as_deref().unwrap_or("?"))));
            match &status.leader {
                Some(leader) => first.push(Span::styled(
                    format!("leader {leader}"),
                    theme.fg(Color::Green).add_modifier(Modifier::BOLD),
                )),
                None => first.push(Span::styled("NO LEADER", theme.alert())),
            }
            first.push(Span::raw(format!("  term {}", status.term)));
            if status.paused {
                first.push(Span::raw("  "));
                first.push(Span::styled(" PAUSED: automatic failover off ", theme.alert()));
            }
        }
    }
    let promise = app.status.as_ref().map_or(String::new(), |s| s.durability.clone());
    let promise_style = match app.status.as_ref().and_then(|s| s.failover_safe) {
        Some(false) => theme.fg(Color::Yellow),
        _ => Style::default(),
    };
    // The write path: an operator watching a switchover sees it dip and recover.
    let write_path = app.write_rate.as_ref().map_or_else(|| "writes: measuring…".to_string(), write_rate_text);
    let lines = vec![Line::from(first), Line::styled(promise, promise_style), Line::raw(write_path)];
    frame.render_widget(Paragraph::new(lines), area);
}

/// The cluster's write path in a few words: writes per second, and the latency buckets
/// holding the median and the 99th percentile acknowledgement.
fn write_rate_text(rate: &crate::tui::app::WriteRate) -> String {
    let bound = |us: Option<u64>| match us {
        None => "-".to_string(),
        Some(u64::MAX) => ">1 s".to_string(),
        Some(us) if us >= 1_000_000 => format!("≤{} s", us / 1_000_000),
        Some(us) => format!("≤{} ms", us as f64 / 1000.0),
    };
    format!(
        "writes {:.0}/s  ack p50 {}  p99 {}  (last {} s, all clients)",
        rate.writes_per_second,
        bound(rate.p50_us),
        bound(rate.p99_us),
        crate::tui::app::WRITE_SAMPLES_MAX - 1
    )
}

/// The largest lag any row's sparkline shows: every row is drawn to this one scale, so
/// rows compare at a glance.
fn spark_peak(app: &App, width: usize) -> u64 {
    let shown = app.lag_history.values().flat_map(|samples| samples.iter().rev().take(width));
    shown.copied().max().unwrap_or(0).max(SPARK_FULL_HEIGHT_MIN_ENTRIES)
}

fn sparkline(samples: Option<&std::collections::VecDeque<u64>>, width: usize, peak: u64) -> String {
    debug_assert!(peak > 0);
    let Some(samples) = samples else { return String::new() };
    let shown: Vec<u64> = samples.iter().rev().take(width).rev().copied().collect();
    shown
        .iter()
        .map(|&lag| if lag == 0 { SPARK_GLYPHS[1] } else { SPARK_GLYPHS[(1 + lag * 7 / peak).min(8) as usize] })
        .collect()
}

fn show(value: Option<u64>) -> String {
    value.map_or_else(|| "-".into(), |v| v.to_string())
}

fn bytes(value: Option<u64>) -> String {
    match value {
        None => "-".into(),
        Some(b) if b < 1024 => format!("{b}B"),
        Some(b) if b < 1024 * 1024 => format!("{:.1}K", b as f64 / 1024.0),
        Some(b) if b < 1024 * 1024 * 1024 => format!("{:.1}M", b as f64 / (1024.0 * 1024.0)),
        Some(b) => format!("{:.1}G", b as f64 / (1024.0 * 1024.0 * 1024.0)),
    }
}

fn millis(value: Option<u64>) -> String {
    match value {
        None => "-".into(),
        Some(ms) if ms < 10_000 => format!("{ms}ms"),
        Some(ms) => format!("{}s", ms / 1000),
    }
}

fn state_text(node: &NodeRow) -> String {
    match (node.state.as_deref(), node.snapshot_percent) {
        (Some("snapshot"), Some(percent)) => format!("snapshot {percent}%"),
        (Some("replicate"), _) => "replicating".into(),
        (Some("probe"), _) => "probing".into(),
        (Some(state), _) => state.into(),
        (None, _) => "-".into(),
    }
}

fn render_table(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let wide = area.width >= WIDE_COLUMNS;
    let mut titles = vec!["id", "role", "term", "last", "lag", "lag ms", "sync", "state", "health"];
    let mut widths = vec![4, 9, 4, 7, 5, 6, 4, 12, 11];
    if wide {
        titles.splice(1..1, ["address"]);
        widths.splice(1..1, [21]);
        titles.splice(5..5, ["commit", "applied"]);
        widths.splice(5..5, [7, 7]);
        titles.splice(8..8, ["bytes"]);
        widths.splice(8..8, [7]);
        titles.splice(10..10, ["contact"]);
        widths.splice(10..10, [7]);
    }
    let used: u16 = widths.iter().sum::<u16>() + widths.len() as u16 + 2;
    let spark_width = area.width.saturating_sub(used).max(4);
    titles.push("lag, last minutes");
    widths.push(spark_width);
    let nodes = app.status.as_ref().map(|s| s.nodes.as_slice()).unwrap_or_default();
    let peak = spark_peak(app, spark_width as usize);
    let rows = nodes.iter().enumerate().map(|(i, node)| {
        let id = node.id.clone().unwrap_or_else(|| "?".into());
        let health_style = match node.health.as_str() {
            "up" => theme.fg(Color::Green),
            "stalled" => theme.fg(Color::Yellow).add_modifier(Modifier::BOLD),
            _ => theme.fg(Color::Red).add_modifier(Modifier::BOLD),
        };
        let role_style = match node.role.as_deref() {
            Some("leader") => theme.fg(Color::Green).add_modifier(Modifier::BOLD),
            Some("follower") => Style::default(),
            Some("learner") => theme.fg(Color::Cyan),
            Some("witness") => theme.fg(Color::Magenta),
            Some("removed") => theme.fg(Color::Red),
            _ => theme.fg(Color::Yellow),
        };
        let mut cells = vec![
            Cell::from(id.clone()),
            Cell::from(node.role.clone().unwrap_or_else(|| "-".into())).style(role_style),
            Cell::from(show(node.term)),
            Cell::from(show(node.last_index)),
            Cell::from(show(node.lag_entries)),
            Cell::from(millis(node.lag_ms)),
            Cell::from(node.in_sync.map_or("-", |s| if s { "yes" } else { "NO" })),
            Cell::from(state_text(node)),
            Cell::from(node.health.clone()).style(health_style),
        ];
        if wide {
            cells.insert(1, Cell::from(node.addr.clone()));
            cells.insert(5, Cell::from(show(node.commit_index)));
            cells.insert(6, Cell::from(show(node.applied_index)));
            cells.insert(8, Cell::from(bytes(node.lag_bytes)));
            cells.insert(10, Cell::from(millis(node.last_ack_age_ms)));
        }
        cells.push(
            Cell::from(sparkline(app.lag_history.get(&id), spark_width as usize, peak)).style(theme.fg(Color::Cyan)),
        );
        let row = Row::new(cells);
        if i == app.selected {
            row.style(theme.selected())
        } else {
            row
        }
    });
    let header = Row::new(titles).style(theme.bold());
    let table = Table::new(rows, widths.into_iter().map(Constraint::Length))
        .header(header)
        .block(Block::default().borders(Borders::ALL).title(" replicas "));
    frame.render_widget(table, area);
}

fn render_details(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let node = app.status.as_ref().and_then(|s| s.nodes.get(app.selected));
    let lines = match node {
        None => vec![Line::raw("")],
        Some(node) if !node.reachable => vec![
            Line::styled(
                format!("{} at {}: unreachable", node.id.as_deref().unwrap_or("?"), node.addr),
                theme.fg(Color::Red),
            ),
            Line::raw(node.error.clone().unwrap_or_default()),
        ],
        Some(node) => vec![
            Line::raw(format!(
                "{} at {}{}: commit {}  applied {}  durable {}  snapshot {}  lag {} / {}",
                node.id.as_deref().unwrap_or("?"),
                node.addr,
                node.upstream.as_ref().map_or_else(String::new, |upstream| format!(" (log through {upstream})")),
                show(node.commit_index),
                show(node.applied_index),
                show(node.durable_index),
                show(node.snapshot_index),
                bytes(node.lag_bytes),
                millis(node.lag_ms),
            )),
            Line::from(vec![
                Span::raw(format!(
                    "last contact {}  received {} entries  discarded {}  ",
                    millis(node.last_ack_age_ms),
                    show(node.entries_received),
                    show(node.discarded_entries),
                )),
                match node.disk_low() {
                    true => Span::styled(
                        format!(
                            "disk free {} (needs {})",
                            bytes(node.disk_free_bytes),
                            bytes(node.disk_headroom_bytes)
                        ),
                        theme.fg(Color::Red),
                    ),
                    false => Span::raw(format!("disk free {}", bytes(node.disk_free_bytes))),
                },
                Span::raw(node.version.as_ref().map_or_else(String::new, |version| format!("  v{version}"))),
            ]),
            Line::raw(cost_line(node, node.id.as_ref().and_then(|id| app.cost_rates.get(id)))),
        ],
    };
    frame.render_widget(Paragraph::new(lines), area);
}

/// What the node costs: per second once two samples are in, and what its map holds.
fn cost_line(node: &crate::status::NodeRow, rate: Option<&crate::tui::app::CostRate>) -> String {
    let per_second = match rate {
        Some(rate) => format!(
            "cpu {:.1}%  disk {}/s, {:.0} fsyncs/s",
            rate.cpu_percent,
            bytes(Some(rate.write_bytes_per_second as u64)),
            rate.fsyncs_per_second
        ),
        None => "cpu ?  disk ?".to_string(),
    };
    let resident = node.cost.as_ref().and_then(|cost| cost.rss_bytes);
    format!(
        "{per_second}  rss {}  {} keys, {} data  {} watchers",
        bytes(resident),
        show(node.keys),
        bytes(node.data_bytes),
        show(node.watchers)
    )
}

/// `HH:MM:SS` (UTC) of a Unix time in milliseconds.
pub fn clock(unix_ms: u64) -> String {
    let seconds = unix_ms / 1000;
    format!("{:02}:{:02}:{:02}", seconds / 3600 % 24, seconds / 60 % 60, seconds % 60)
}

fn render_events(frame: &mut Frame, app: &App, area: Rect) {
    let visible = area.height.saturating_sub(2) as usize;
    let lines: Vec<Line> = app
        .events
        .iter()
        .rev()
        .take(visible)
        .map(|event| Line::raw(format!("{} {}", clock(event.at_unix_ms), event.text)))
        .collect();
    let block = Block::default().borders(Borders::ALL).title(" events (newest first, UTC) ");
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn render_footer(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let line = match &app.operation {
        Some(operation) => {
            let style = match operation.finished {
                None => theme.fg(Color::Yellow).add_modifier(Modifier::BOLD),
                Some(true) => theme.fg(Color::Green),
                Some(false) => theme.fg(Color::Red).add_modifier(Modifier::BOLD),
            };
            let elapsed = app.now_unix_ms.saturating_sub(operation.started_ms);
            let suffix = if operation.finished.is_none() {
                format!(" ({:.1} s)", elapsed as f64 / 1000.0)
            } else {
                String::new()
            };
            Line::styled(format!("{}{suffix}   ? help", operation.text), style)
        }
        None => Line::raw(
            KEYS.iter()
                .filter(|k| app.demo || !k.demo_only)
                .map(|k| format!("{} {}", k.keys, k.short))
                .collect::<Vec<_>>()
                .join("  "),
        ),
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect { x: area.x + (area.width - width) / 2, y: area.y + (area.height - height) / 2, width, height }
}

fn render_help(frame: &mut Frame, app: &App) {
    let mut lines: Vec<Line> = KEYS
        .iter()
        .filter(|k| app.demo || !k.demo_only)
        .map(|k| Line::raw(format!(" {:<4} {}", k.keys, k.does)))
        .collect();
    lines.push(Line::raw(""));
    lines.push(Line::raw(" health: up, unreachable, or stalled (behind"));
    lines.push(Line::raw(" and not moving for over 3 s). Any key closes."));
    let area = centered(frame.area(), 60, lines.len() as u16 + 2);
    frame.render_widget(Clear, area);
    frame.render_widget(Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" keys ")), area);
}

fn render_dialog(frame: &mut Frame, app: &App, theme: &Theme, dialog: &Dialog) {
    let (title, mut lines) = match dialog {
        Dialog::Switchover { target, verdict } => {
            let leader = app.status.as_ref().and_then(|s| s.leader.clone()).unwrap_or_else(|| "?".into());
            let question = if leader == *target {
                format!("{target} already leads: pick a follower to hand leadership to.")
            } else {
                format!("Hand leadership from {leader} to {target}?")
            };
            let mut lines = vec![Line::raw(question), Line::raw("")];
            match verdict {
                Verdict::Checking => lines.push(Line::raw("asking the leader (dry run)…")),
                Verdict::Eligible => {
                    lines.push(Line::styled(
                        format!("{target} is eligible: caught up and reachable."),
                        theme.fg(Color::Green),
                    ));
                    lines.push(Line::raw("Writes pause for a few ms; none acknowledged is lost."));
                    lines.push(Line::raw(""));
                    lines.push(Line::styled("y: switch over    n/Esc: cancel", theme.bold()));
                }
                Verdict::Refused(reasons) => {
                    lines.push(Line::styled(format!("refused: {target} is not eligible"), theme.fg(Color::Red)));
                    lines.extend(reasons.iter().map(|r| Line::raw(format!(" - {r}"))));
                    lines.push(Line::raw(""));
                    lines.push(Line::raw("Esc: close"));
                }
            }
            (" switchover ", lines)
        }
        Dialog::Failover { target, loss_entries, loss_ms, exact, verdict, typed } => {
            let bound = if *exact { "" } else { "at least " };
            let mut lines = vec![
                Line::raw(format!("Make {target} leader NOW (manual failover)?")),
                Line::raw(""),
                Line::styled(
                    format!(
                        "It would lose {bound}{loss_entries} entries (about {:.1} s of writes).",
                        *loss_ms as f64 / 1000.0
                    ),
                    if *loss_entries > 0 { theme.alert() } else { theme.bold() },
                ),
            ];
            match verdict {
                Verdict::Checking => lines.push(Line::raw("asking the node (dry run)…")),
                Verdict::Eligible => {
                    lines.push(Line::raw(""));
                    lines.push(Line::styled(format!("Type yes and Enter to confirm: {typed}_"), theme.bold()));
                    lines.push(Line::raw("Esc: cancel"));
                }
                Verdict::Refused(reasons) => {
                    lines.push(Line::styled("refused:", theme.fg(Color::Red)));
                    lines.extend(reasons.iter().map(|r| Line::raw(format!(" - {r}"))));
                    lines.push(Line::raw("Esc: close"));
                }
            }
            (" failover ", lines)
        }
        _ => return,
    };
    lines.insert(0, Line::raw(""));
    let area = centered(frame.area(), 64, lines.len() as u16 + 3);
    frame.render_widget(Clear, area);
    let block = Block::default().borders(Borders::ALL).title(title);
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }).block(block), area);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{ClusterStatus, NodeRow};
    use crate::tui::app::Outcome;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    /// A fixed time (12:00:00 UTC) so snapshots do not depend on the clock.
    const NOON_MS: u64 = 1_800_000_000_000 - 1_800_000_000_000 % 86_400_000 + 43_200_000;

    fn row(id: &str, role: &str) -> NodeRow {
        NodeRow {
            id: Some(id.into()),
            addr: format!("127.0.0.1:710{}", &id[1..]),
            reachable: true,
            health: "up".into(),
            role: Some(role.into()),
            term: Some(3),
            last_index: Some(1_200),
            last_term: Some(3),
            commit_index: Some(1_200),
            applied_index: Some(1_200),
            durable_index: Some(1_200),
            snapshot_index: Some(0),
            lag_entries: Some(0),
            lag_bytes: Some(0),
            lag_ms: Some(0),
            last_ack_age_ms: Some(40),
            in_sync: Some(true),
            state: Some(if role == "leader" { "leader" } else { "replicate" }.into()),
            entries_received: Some(1_200),
            discarded_entries: Some(0),
            disk_free_bytes: Some(7_500_000_000),
            disk_headroom_bytes: Some(64 << 20),
            ..NodeRow::default()
        }
    }

    fn healthy() -> ClusterStatus {
        ClusterStatus {
            leader: Some("n1".into()),
            term: 3,
            mode: Some("quorum".into()),
            durability: "quorum: acknowledged writes survive 1 node loss".into(),
            failover_safe: Some(true),
            nodes: vec![row("n1", "leader"), row("n2", "follower"), row("n3", "follower")],
            ..Default::default()
        }
    }

    /// A node's costs `second` seconds into the fixture: 2.5 % of a core, 40 KiB and 100
    /// fsyncs a second, 12 MiB resident.
    fn cost_at(second: u64) -> baton_node::cost::ProcessCost {
        baton_node::cost::ProcessCost {
            write_bytes: Some(second * 40_960),
            fsyncs: second * 100,
            cpu_us: Some(second * 25_000),
            rss_bytes: Some(12 << 20),
            written: Default::default(),
        }
    }

    fn with_costs(mut status: ClusterStatus, second: u64) -> ClusterStatus {
        for node in status.nodes.iter_mut().filter(|node| node.reachable) {
            node.cost = Some(cost_at(second));
            (node.keys, node.data_bytes, node.watchers) = (Some(1_150), Some(126_500), Some(2));
            // The leader acknowledges 1,200 writes a second: 90 % within 0.5 ms, the
            // rest within 2.5 ms.
            let acknowledged = if node.role.as_deref() == Some("leader") { second * 1_200 } else { 0 };
            let mut latency = baton_node::status::LatencyHistogram { count: acknowledged, ..Default::default() };
            for (bucket, bound) in latency.buckets.iter_mut().zip(baton_node::status::LATENCY_BUCKETS_US) {
                *bucket = match bound {
                    0..=250 => 0,
                    251..=2_499 => acknowledged * 9 / 10,
                    _ => acknowledged,
                };
            }
            (node.writes_acknowledged, node.write_ack_latency) = (Some(acknowledged), Some(latency));
        }
        status
    }

    fn app_with(status: ClusterStatus) -> App {
        let mut app = App::new("127.0.0.1:7101 +2".into(), false, false);
        app.on_status(healthy(), &[], NOON_MS - 60_000);
        let history = [baton_node::status::HistoryEntry {
            term: 3,
            at_unix_ms: NOON_MS - 30_000,
            from: Some("n2".into()),
            to: Some("n1".into()),
            cause: Some("timeout".into()),
            discarded_entries: 0,
        }];
        for second in 0..30u64 {
            let mut sample = status.clone();
            for (i, node) in sample.nodes.iter_mut().enumerate() {
                if node.lag_entries.unwrap_or(0) > 0 {
                    node.lag_entries = Some(node.lag_entries.unwrap() * (second + 1) / 30 + i as u64);
                }
            }
            app.on_status(with_costs(sample, second), &history, NOON_MS - 30_000 + second * 1000);
        }
        app.on_status(with_costs(status, 30), &history, NOON_MS);
        app
    }

    fn draw(app: &App, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|frame| render(frame, app)).unwrap();
        terminal.backend().to_string()
    }

    #[test]
    fn healthy_cluster() {
        insta::assert_snapshot!(draw(&app_with(healthy()), 150, 24));
    }

    #[test]
    fn lagging_follower() {
        let mut status = healthy();
        let n3 = &mut status.nodes[2];
        (n3.lag_entries, n3.lag_bytes, n3.lag_ms, n3.last_index) = (Some(450), Some(46_000), Some(2_300), Some(750));
        n3.in_sync = Some(false);
        insta::assert_snapshot!(draw(&app_with(status), 120, 24));
    }

    /// Goal: the selected node's data disk, nearly full, shows in red with what it needs,
    /// and its version beside it.
    #[test]
    fn data_disk_nearly_full() {
        let mut status = healthy();
        status.nodes[0].disk_free_bytes = Some(3 << 20);
        status.nodes[0].version = Some("0.1.0".into());
        let screen = draw(&app_with(status), 120, 24);
        assert!(screen.contains("disk free 3.0M (needs 64.0M)  v0.1.0"), "{screen}");
        let screen = draw(&app_with(healthy()), 120, 24);
        assert!(screen.contains("disk free 7.0G") && !screen.contains("needs"), "{screen}");
    }

    #[test]
    fn stalled_follower() {
        let mut status = healthy();
        let n2 = &mut status.nodes[1];
        (n2.lag_entries, n2.lag_ms, n2.health) = (Some(80), Some(9_000), "stalled".into());
        insta::assert_snapshot!(draw(&app_with(status), 120, 24));
    }

    #[test]
    fn leader_unreachable() {
        let mut status = healthy();
        status.leader = None;
        status.durability = "no leader: writes wait for an election".into();
        status.nodes[0] = NodeRow {
            id: Some("n1".into()),
            addr: "127.0.0.1:7101".into(),
            health: "unreachable".into(),
            error: Some("127.0.0.1:7101: no answer within 1000 ms".into()),
            ..NodeRow::default()
        };
        for node in &mut status.nodes[1..] {
            (node.state, node.lag_entries, node.in_sync) = (None, None, None);
        }
        insta::assert_snapshot!(draw(&app_with(status), 120, 24));
    }

    #[test]
    fn switchover_in_progress() {
        let mut app = app_with(healthy());
        app.on_key(ratatui::crossterm::event::KeyEvent::from(ratatui::crossterm::event::KeyCode::Down));
        app.on_key(ratatui::crossterm::event::KeyEvent::from(ratatui::crossterm::event::KeyCode::Char('s')));
        app.on_outcome(Outcome::SwitchoverVerdict { target: "n2".into(), reasons: vec![] });
        let dialog = draw(&app, 120, 24);
        app.on_key(ratatui::crossterm::event::KeyEvent::from(ratatui::crossterm::event::KeyCode::Char('y')));
        app.on_outcome(Outcome::Progress("switchover to n2: waiting for it to lead".into()));
        app.now_unix_ms += 400;
        insta::assert_snapshot!(format!("{dialog}\n{}", draw(&app, 120, 24)));
    }

    #[test]
    fn paused() {
        let mut status = healthy();
        status.paused = true;
        insta::assert_snapshot!(draw(&app_with(status), 120, 24));
    }

    #[test]
    fn small_terminal_80x24_with_refused_failover() {
        let mut status = healthy();
        status.nodes[2].last_index = Some(1_150);
        status.nodes[2].lag_entries = Some(50);
        let mut app = app_with(status);
        app.selected = 2;
        app.on_key(ratatui::crossterm::event::KeyEvent::from(ratatui::crossterm::event::KeyCode::Char('f')));
        app.on_outcome(Outcome::FailoverVerdict {
            target: "n3".into(),
            refusal: Some("the leader was heard from 40 ms ago; use a switchover to move a live leader".into()),
        });
        insta::assert_snapshot!(draw(&app, 80, 24));
    }

    /// Goal: all rows share one scale with a floor, so a follower one entry behind (the
    /// pipeline at work) draws at the bottom and a real lag stands out against it.
    #[test]
    fn sparklines_share_one_scale_with_a_floor() {
        let mut app = App::new("test".into(), false, false);
        app.lag_history.insert("n2".into(), [0, 1, 0, 1].into());
        assert_eq!(sparkline(app.lag_history.get("n2"), 4, spark_peak(&app, 4)), "▁▁▁▁");
        app.lag_history.insert("n3".into(), [0, 400, 800, 0].into());
        let peak = spark_peak(&app, 4);
        assert_eq!(peak, 800);
        assert_eq!(sparkline(app.lag_history.get("n3"), 4, peak), "▁▄█▁");
        assert_eq!(sparkline(app.lag_history.get("n2"), 4, peak), "▁▁▁▁");
    }
}
