//! The console's state and every decision it makes: which key does what, what a dialog
//! asks, and which events a new status implies. No terminal and no network here, so all
//! of it is tested directly (keys → actions, status diffs → events).

use crate::status::ClusterStatus;
use baton_node::status::{HistoryEntry, LatencyHistogram};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::{BTreeMap, VecDeque};

/// Events kept for the events pane.
pub const EVENTS_MAX: usize = 200;
/// Lag samples kept per node for its sparkline: one per second, three minutes.
pub const LAG_SAMPLES_MAX: usize = 180;
/// Once-a-second samples of each node's write counters kept: the header's write rate and
/// latency cover the seconds between the oldest and the newest.
pub const WRITE_SAMPLES_MAX: usize = 4;

/// One key binding: the help screen and the footer are generated from this table.
pub struct KeyBinding {
    pub keys: &'static str,
    /// One word for the footer.
    pub short: &'static str,
    pub does: &'static str,
    pub demo_only: bool,
}

pub const KEYS: &[KeyBinding] = &[
    KeyBinding { keys: "↑/↓", short: "select", does: "select a node", demo_only: false },
    KeyBinding {
        keys: "s",
        short: "switchover",
        does: "switchover to the selected node (dry run first)",
        demo_only: false,
    },
    KeyBinding {
        keys: "f",
        short: "failover",
        does: "failover to the selected node (shows the loss first)",
        demo_only: false,
    },
    KeyBinding { keys: "p", short: "pause", does: "pause or resume automatic failover", demo_only: false },
    KeyBinding { keys: "k", short: "kill", does: "kill -9 the selected node, restart it 5 s later", demo_only: true },
    KeyBinding { keys: "?", short: "help", does: "this help", demo_only: false },
    KeyBinding { keys: "q", short: "quit", does: "quit", demo_only: false },
];

/// What the console asks the outside world to do after a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
    /// Ask the leader whether a switchover to this node would be accepted, and why not.
    CheckSwitchover(String),
    Switchover(String),
    /// Ask the node whether it would campaign now, and why not.
    CheckFailover(String),
    Failover(String),
    SetPaused(bool),
    /// Demo only: kill -9 the node, then restart it.
    KillAndRestart(String),
}

/// The answer to an action, fed back by the runner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    SwitchoverVerdict {
        target: String,
        reasons: Vec<String>,
    },
    FailoverVerdict {
        target: String,
        refusal: Option<String>,
    },
    /// An operation finished: `ok` and what happened, in words.
    Finished {
        ok: bool,
        text: String,
    },
    /// Progress of a running operation, in words.
    Progress(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Checking,
    Eligible,
    Refused(Vec<String>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dialog {
    None,
    Help,
    /// Switchover: shows the dry-run verdict; `y` confirms when eligible.
    Switchover {
        target: String,
        verdict: Verdict,
    },
    /// Failover: shows the estimated loss; the operator types `yes` and Enter.
    Failover {
        target: String,
        loss_entries: u64,
        loss_ms: u64,
        exact: bool,
        verdict: Verdict,
        typed: String,
    },
}

/// An operation started from the console, shown until the next one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub text: String,
    pub started_ms: u64,
    /// `Some(ok)` once finished.
    pub finished: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventLine {
    pub at_unix_ms: u64,
    pub text: String,
}

pub struct App {
    pub cluster: String,
    pub status: Option<ClusterStatus>,
    pub selected: usize,
    pub dialog: Dialog,
    pub operation: Option<Operation>,
    pub events: VecDeque<EventLine>,
    /// Lag in entries per node id, one sample per second, oldest first.
    pub lag_history: BTreeMap<String, VecDeque<u64>>,
    last_sample_second: u64,
    pub demo: bool,
    pub color: bool,
    /// Terms already reported from the leadership history.
    seen_terms: std::collections::BTreeSet<u64>,
    /// Former leaders not yet seen following a newer term, with the term each led: their
    /// step-down (fencing) is reported once seen, even if it shows up only polls later
    /// (a status can catch the new leader before the old one has heard of it) or after
    /// the old leader restarts.
    awaiting_step_down: BTreeMap<String, u64>,
    pub now_unix_ms: u64,
    /// Per node id: its costs at the last once-a-second sample, and when.
    cost_samples: BTreeMap<String, (u64, baton_node::cost::ProcessCost)>,
    /// Per node id: what it costs per second, between the last two samples.
    pub cost_rates: BTreeMap<String, CostRate>,
    /// Per node id: (when, writes acknowledged, their latency histogram), oldest first.
    write_samples: BTreeMap<String, VecDeque<(u64, u64, LatencyHistogram)>>,
    /// The cluster's write rate and acknowledgement latency over the last seconds.
    pub write_rate: Option<WriteRate>,
}

/// Writes the cluster acknowledged per second and their acknowledgement latency, from
/// the nodes' own counters (so any client's load counts), summed over the nodes (each
/// counts what it acknowledged as leader, so a leadership change loses nothing).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WriteRate {
    pub writes_per_second: f64,
    /// Upper bounds of the latency buckets holding the median and the 99th percentile
    /// (µs; `u64::MAX` above the largest bucket); `None` without writes.
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
}

impl WriteRate {
    /// The rate over each node's samples, oldest to newest; a node whose counters went
    /// back (it restarted) is left out until its samples are all from its new run.
    fn over(samples: &BTreeMap<String, VecDeque<(u64, u64, LatencyHistogram)>>) -> Option<WriteRate> {
        let (mut earlier, mut later) = (LatencyHistogram::default(), LatencyHistogram::default());
        let mut writes_per_second = 0.0;
        let mut any = false;
        for node in samples.values() {
            let (Some((from_ms, from_count, from)), Some((to_ms, to_count, to))) = (node.front(), node.back()) else {
                continue;
            };
            let (Some(writes), true) = (to_count.checked_sub(*from_count), to_ms > from_ms) else { continue };
            if to.count < from.count {
                continue;
            }
            any = true;
            writes_per_second += writes as f64 * 1000.0 / (to_ms - from_ms) as f64;
            for (sum, part) in [(&mut earlier, from), (&mut later, to)] {
                sum.count += part.count;
                for (bucket, value) in sum.buckets.iter_mut().zip(&part.buckets) {
                    *bucket += value;
                }
            }
        }
        any.then(|| WriteRate {
            writes_per_second,
            p50_us: later.quantile_since(&earlier, 0.5),
            p99_us: later.quantile_since(&earlier, 0.99),
        })
    }
}

/// What a node costs per second, from two samples of its process's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CostRate {
    /// Of one core.
    pub cpu_percent: f64,
    pub write_bytes_per_second: f64,
    pub fsyncs_per_second: f64,
}

impl CostRate {
    /// The rate from `earlier` to `later`, `elapsed_ms` apart; `None` when a counter went
    /// back (the node restarted) or a figure is missing.
    pub fn between(
        earlier: &baton_node::cost::ProcessCost,
        later: &baton_node::cost::ProcessCost,
        elapsed_ms: u64,
    ) -> Option<CostRate> {
        let seconds = elapsed_ms as f64 / 1000.0;
        let cpu_us = later.cpu_us?.checked_sub(earlier.cpu_us?)?;
        let write_bytes = later.write_bytes?.checked_sub(earlier.write_bytes?)?;
        let fsyncs = later.fsyncs.checked_sub(earlier.fsyncs)?;
        (seconds > 0.0).then(|| CostRate {
            cpu_percent: cpu_us as f64 / 1e4 / seconds,
            write_bytes_per_second: write_bytes as f64 / seconds,
            fsyncs_per_second: fsyncs as f64 / seconds,
        })
    }
}

impl App {
    pub fn new(cluster: String, demo: bool, color: bool) -> App {
        App {
            cluster,
            status: None,
            selected: 0,
            dialog: Dialog::None,
            operation: None,
            events: VecDeque::new(),
            lag_history: BTreeMap::new(),
            last_sample_second: 0,
            demo,
            color,
            seen_terms: Default::default(),
            awaiting_step_down: BTreeMap::new(),
            now_unix_ms: 0,
            cost_samples: BTreeMap::new(),
            cost_rates: BTreeMap::new(),
            write_samples: BTreeMap::new(),
            write_rate: None,
        }
    }

    fn selected_id(&self) -> Option<String> {
        self.status.as_ref()?.nodes.get(self.selected)?.id.clone()
    }

    /// Records an event in time order: an election read from the leader's history can
    /// arrive after events the console saw later (the history is fetched less often).
    pub fn push_event(&mut self, at_unix_ms: u64, text: String) {
        let after = self.events.iter().rposition(|e| e.at_unix_ms <= at_unix_ms).map_or(0, |i| i + 1);
        self.events.insert(after, EventLine { at_unix_ms, text });
        while self.events.len() > EVENTS_MAX {
            self.events.pop_front();
        }
    }

    /// A key press: changes the state and says what to do outside.
    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        match &mut self.dialog {
            Dialog::Help => {
                self.dialog = Dialog::None;
                return Action::None;
            }
            Dialog::Switchover { target, verdict } => {
                let action = match key.code {
                    KeyCode::Char('y') | KeyCode::Enter if *verdict == Verdict::Eligible => {
                        Action::Switchover(target.clone())
                    }
                    KeyCode::Char('n') | KeyCode::Esc | KeyCode::Char('q') => Action::None,
                    _ => return Action::None,
                };
                if let Action::Switchover(target) = &action {
                    self.start_operation(format!("switchover to {target}: started"));
                }
                self.dialog = Dialog::None;
                return action;
            }
            Dialog::Failover { target, typed, verdict, .. } => {
                match key.code {
                    KeyCode::Esc => self.dialog = Dialog::None,
                    KeyCode::Backspace => {
                        typed.pop();
                    }
                    KeyCode::Enter if typed == "yes" && *verdict == Verdict::Eligible => {
                        let target = target.clone();
                        self.dialog = Dialog::None;
                        self.start_operation(format!("failover to {target}: campaigning"));
                        return Action::Failover(target);
                    }
                    KeyCode::Enter => typed.clear(),
                    KeyCode::Char(c) if typed.len() < 3 => typed.push(c),
                    _ => {}
                }
                return Action::None;
            }
            Dialog::None => {}
        }
        let rows = self.status.as_ref().map_or(0, |s| s.nodes.len());
        match key.code {
            KeyCode::Char('q') => Action::Quit,
            KeyCode::Up => {
                self.selected = self.selected.saturating_sub(1);
                Action::None
            }
            KeyCode::Down => {
                self.selected = (self.selected + 1).min(rows.saturating_sub(1));
                Action::None
            }
            KeyCode::Char('?') => {
                self.dialog = Dialog::Help;
                Action::None
            }
            KeyCode::Char('s') => match self.selected_id() {
                Some(target) => {
                    self.dialog = Dialog::Switchover { target: target.clone(), verdict: Verdict::Checking };
                    Action::CheckSwitchover(target)
                }
                None => Action::None,
            },
            KeyCode::Char('f') => match self.selected_id() {
                Some(target) => {
                    let (loss_entries, loss_ms, exact) = self.estimate_loss(&target);
                    self.dialog = Dialog::Failover {
                        target: target.clone(),
                        loss_entries,
                        loss_ms,
                        exact,
                        verdict: Verdict::Checking,
                        typed: String::new(),
                    };
                    Action::CheckFailover(target)
                }
                None => Action::None,
            },
            KeyCode::Char('p') => match &self.status {
                Some(status) => {
                    let pause = !status.paused;
                    self.start_operation(
                        if pause { "pausing automatic failover" } else { "resuming automatic failover" }.into(),
                    );
                    Action::SetPaused(pause)
                }
                None => Action::None,
            },
            KeyCode::Char('k') if self.demo => match self.selected_id() {
                Some(target) => {
                    self.start_operation(format!("demo: killed {target} (kill -9); restarting it in 5 s"));
                    Action::KillAndRestart(target)
                }
                None => Action::None,
            },
            _ => Action::None,
        }
    }

    fn start_operation(&mut self, text: String) {
        self.operation = Some(Operation { text, started_ms: self.now_unix_ms, finished: None });
    }

    /// What a failover to `target` would lose now: entries behind the most advanced
    /// reachable replica, and how old the oldest of them is (the leader's view).
    pub fn estimate_loss(&self, target: &str) -> (u64, u64, bool) {
        let Some(status) = &self.status else { return (0, 0, false) };
        let position = |n: &crate::status::NodeRow| {
            baton_common::Position::new(n.last_term.unwrap_or(0), n.last_index.unwrap_or(0))
        };
        let Some(me) = status.nodes.iter().find(|n| n.id.as_deref() == Some(target)) else { return (0, 0, false) };
        let others: Vec<_> = status
            .nodes
            .iter()
            .filter(|n| n.reachable && n.id.as_deref() != Some(target))
            .enumerate()
            .map(|(i, n)| (baton_common::NodeId(i as u8 + 1), position(n)))
            .collect();
        let estimate = baton_common::estimate_failover_loss(position(me), &others);
        let exact = estimate.exact && status.nodes.iter().all(|n| n.reachable);
        let loss_ms = if estimate.lost_entries == 0 { 0 } else { me.lag_ms.unwrap_or(0) };
        (estimate.lost_entries, loss_ms, exact)
    }

    pub fn on_outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::SwitchoverVerdict { target, reasons } => {
                if let Dialog::Switchover { target: shown, verdict } = &mut self.dialog {
                    if *shown == target {
                        *verdict = if reasons.is_empty() { Verdict::Eligible } else { Verdict::Refused(reasons) };
                    }
                }
            }
            Outcome::FailoverVerdict { target, refusal } => {
                if let Dialog::Failover { target: shown, verdict, .. } = &mut self.dialog {
                    if *shown == target {
                        *verdict = match refusal {
                            None => Verdict::Eligible,
                            Some(reason) => Verdict::Refused(vec![reason]),
                        };
                    }
                }
            }
            Outcome::Progress(text) => {
                if let Some(operation) = &mut self.operation {
                    operation.text = text;
                }
            }
            Outcome::Finished { ok, text } => {
                let at = self.now_unix_ms;
                self.push_event(at, text.clone());
                self.operation = Some(Operation { text, started_ms: at, finished: Some(ok) });
            }
        }
    }

    /// A new status (and the leader's history): records lag samples and the events it
    /// implies.
    pub fn on_status(&mut self, status: ClusterStatus, history: &[HistoryEntry], now_unix_ms: u64) {
        self.now_unix_ms = now_unix_ms;
        for entry in history {
            if self.seen_terms.insert(entry.term) && self.status.is_some() {
                let cause = entry.cause.as_deref().unwrap_or("election");
                let from = entry.from.as_deref().map(|f| format!(" from {f}")).unwrap_or_default();
                let to = entry.to.as_deref().unwrap_or("?");
                let mut text = format!("term {}: {to} elected{from} ({cause})", entry.term);
                if entry.discarded_entries > 0 {
                    text.push_str(&format!(", {} entries discarded", entry.discarded_entries));
                }
                self.push_event(entry.at_unix_ms, text);
            }
        }
        if let Some(previous) = self.status.take() {
            for text in diff(&previous, &status) {
                self.push_event(now_unix_ms, text);
            }
            if let Some(old) = previous.leader.as_ref().filter(|old| status.leader.as_ref() != Some(*old)) {
                self.awaiting_step_down.insert(old.clone(), previous.term);
            }
        }
        for text in step_downs(&mut self.awaiting_step_down, &status) {
            self.push_event(now_unix_ms, text);
        }
        let second = now_unix_ms / 1000;
        if second != self.last_sample_second {
            self.last_sample_second = second;
            for node in &status.nodes {
                let Some(id) = &node.id else { continue };
                let samples = self.lag_history.entry(id.clone()).or_default();
                samples.push_back(node.lag_entries.unwrap_or(0));
                while samples.len() > LAG_SAMPLES_MAX {
                    samples.pop_front();
                }
                if let Some(cost) = &node.cost {
                    let previous = self.cost_samples.insert(id.clone(), (now_unix_ms, cost.clone()));
                    match previous
                        .and_then(|(at, earlier)| CostRate::between(&earlier, cost, now_unix_ms.saturating_sub(at)))
                    {
                        Some(rate) => self.cost_rates.insert(id.clone(), rate),
                        None => self.cost_rates.remove(id),
                    };
                }
                if let (Some(count), Some(latency)) = (node.writes_acknowledged, &node.write_ack_latency) {
                    let samples = self.write_samples.entry(id.clone()).or_default();
                    samples.push_back((now_unix_ms, count, latency.clone()));
                    while samples.len() > WRITE_SAMPLES_MAX {
                        samples.pop_front();
                    }
                }
            }
            self.write_rate = WriteRate::over(&self.write_samples);
        }
        self.selected = self.selected.min(status.nodes.len().saturating_sub(1));
        self.status = Some(status);
    }
}

/// The step-down confirmations `status` shows: each former leader in `awaiting` (id ->
/// the term it led) that now reports itself a follower in a newer term is fenced, and
/// leaves `awaiting`. One leading again in a newer term leaves it silently.
pub fn step_downs(awaiting: &mut BTreeMap<String, u64>, status: &ClusterStatus) -> Vec<String> {
    let mut events = Vec::new();
    awaiting.retain(|old, led_term| {
        let Some(now) = status.nodes.iter().find(|n| n.id.as_ref() == Some(old)) else { return true };
        let Some(term) = now.term.filter(|term| *term > *led_term) else { return true };
        match now.role.as_deref() {
            Some("leader") => false,
            Some("follower") => {
                let follows = status.leader.as_deref().unwrap_or("nobody yet");
                events.push(format!(
                    "{old} stepped down: a follower in term {term} (follows {follows}); fenced, it acknowledges nothing"
                ));
                false
            }
            _ => true,
        }
    });
    events
}

/// The events one status change implies, in words.
pub fn diff(previous: &ClusterStatus, next: &ClusterStatus) -> Vec<String> {
    let mut events = Vec::new();
    match (&previous.leader, &next.leader) {
        (Some(old), None) => events.push(format!("no leader (was {old} in term {})", previous.term)),
        (old, Some(new)) if old.as_ref() != Some(new) => {
            events.push(format!("{new} leads term {}", next.term));
        }
        _ => {}
    }
    if previous.paused != next.paused {
        events.push(if next.paused { "automatic failover PAUSED" } else { "automatic failover resumed" }.into());
    }
    for node in &next.nodes {
        let Some(id) = &node.id else { continue };
        // A node never heard from before is starting up, not recovering.
        let Some(before) = previous.nodes.iter().find(|n| n.addr == node.addr && n.id.is_some()) else {
            match node.role.as_deref() {
                Some(role @ ("learner" | "witness")) if !previous.nodes.is_empty() => {
                    events.push(format!("{id} joins as a {role}"))
                }
                _ => {}
            }
            continue;
        };
        // Membership changes, as the roles the leader's membership gives show them.
        match (before.role.as_deref(), node.role.as_deref()) {
            (Some(was), Some("removed")) if was != "removed" => {
                events.push(format!("{id} was removed from the cluster"))
            }
            (Some("learner"), Some("follower" | "leader")) => events.push(format!("{id} was promoted to voter")),
            _ => {}
        }
        if before.health != node.health {
            events.push(match node.health.as_str() {
                "unreachable" => format!("{id} unreachable: {}", node.error.as_deref().unwrap_or("no answer")),
                "stalled" => format!("{id} stalled: connected but not catching up"),
                _ => format!("{id} is {} again", node.health),
            });
        }
        if let (Some(was), Some(is)) = (before.in_sync, node.in_sync) {
            if was != is && previous.leader == next.leader {
                events.push(if is {
                    format!("{id} rejoined the in-sync set")
                } else {
                    format!("{id} left the in-sync set")
                });
            }
        }
        if let (Some(was), Some(is)) = (before.discarded_entries, node.discarded_entries) {
            if is > was {
                events.push(format!("{id} discarded {} unreplicated writes (see `baton discarded`)", is - was));
            }
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::NodeRow;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn row(id: &str, role: &str, term: u64) -> NodeRow {
        NodeRow {
            id: Some(id.into()),
            addr: format!("127.0.0.1:71{}", &id[1..]),
            reachable: true,
            health: "up".into(),
            role: Some(role.into()),
            term: Some(term),
            last_index: Some(100),
            last_term: Some(term),
            in_sync: Some(true),
            ..NodeRow::default()
        }
    }

    fn cluster(leader: &str, term: u64) -> ClusterStatus {
        let nodes = ["n1", "n2", "n3"]
            .into_iter()
            .map(|id| row(id, if id == leader { "leader" } else { "follower" }, term))
            .collect();
        ClusterStatus { leader: Some(leader.into()), term, mode: Some("quorum".into()), nodes, ..Default::default() }
    }

    fn app() -> App {
        let mut app = App::new("test".into(), false, true);
        app.on_status(cluster("n1", 2), &[], 1_000);
        app
    }

    /// `count` writes acknowledged so far, all within 1 ms, or all over 1 s.
    fn acknowledged(count: u64, slow: bool) -> (Option<u64>, Option<LatencyHistogram>) {
        let mut latency = LatencyHistogram { count, ..Default::default() };
        for (bucket, bound) in latency.buckets.iter_mut().zip(baton_node::status::LATENCY_BUCKETS_US) {
            *bucket = if !slow && bound >= 1_000 { count } else { 0 };
        }
        (Some(count), Some(latency))
    }

    /// Goal (issue 21): the header's write rate sums what each node acknowledged as
    /// leader over the last seconds, so it keeps counting across a switchover, leaves a
    /// restarted node out instead of going negative, and gives the latency buckets.
    #[test]
    fn the_write_rate_counts_across_a_leader_change_and_a_restart() {
        let mut app = app();
        let at = |app: &mut App, second: u64, counts: [(u64, bool); 3], leader: &str| {
            let mut status = cluster(leader, 2);
            for (node, (count, slow)) in status.nodes.iter_mut().zip(counts) {
                (node.writes_acknowledged, node.write_ack_latency) = acknowledged(count, slow);
            }
            app.on_status(status, &[], 10_000 + second * 1000);
        };
        at(&mut app, 0, [(0, false), (0, false), (0, false)], "n1");
        at(&mut app, 1, [(1_000, false), (0, false), (0, false)], "n1");
        let rate = app.write_rate.expect("two samples");
        assert_eq!(rate.writes_per_second, 1_000.0);
        assert_eq!((rate.p50_us, rate.p99_us), (Some(1_000), Some(1_000)));
        // n1 hands over to n2 and stops acknowledging; n2 takes over at the same rate.
        at(&mut app, 2, [(1_500, false), (500, false), (0, false)], "n2");
        at(&mut app, 3, [(1_500, false), (1_500, false), (0, false)], "n2");
        let rate = app.write_rate.unwrap();
        assert_eq!(rate.writes_per_second, 1_000.0, "{rate:?}");
        // n1 restarts (its counters start over) and n2's writes turn slow.
        at(&mut app, 4, [(0, false), (1_600, true), (0, false)], "n2");
        let rate = app.write_rate.unwrap();
        assert!(rate.writes_per_second > 0.0, "a restarted node never makes the rate negative: {rate:?}");
        for second in 5..9 {
            at(&mut app, second, [(0, false), (1_600 + second * 10, true), (0, false)], "n2");
        }
        let rate = app.write_rate.unwrap();
        assert_eq!(rate.writes_per_second, 10.0, "{rate:?}");
        assert_eq!((rate.p50_us, rate.p99_us), (Some(u64::MAX), Some(u64::MAX)), "over the largest bucket");
    }

    /// Goal: arrows move the selection within the table; q and Ctrl-C quit.
    #[test]
    fn arrows_select_and_q_quits() {
        let mut app = app();
        assert_eq!(app.on_key(key(KeyCode::Up)), Action::None);
        assert_eq!(app.selected, 0);
        app.on_key(key(KeyCode::Down));
        app.on_key(key(KeyCode::Down));
        app.on_key(key(KeyCode::Down));
        assert_eq!(app.selected, 2, "stops at the last row");
        assert_eq!(app.on_key(key(KeyCode::Char('q'))), Action::Quit);
        assert_eq!(app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)), Action::Quit);
    }

    /// Goal: `s` asks for the dry run first; `y` does nothing until the verdict says
    /// eligible, then starts the switchover; a refusal shows its reasons and `y` stays inert.
    #[test]
    fn switchover_needs_an_eligible_verdict_and_a_yes() {
        let mut app = app();
        app.on_key(key(KeyCode::Down));
        assert_eq!(app.on_key(key(KeyCode::Char('s'))), Action::CheckSwitchover("n2".into()));
        assert_eq!(app.on_key(key(KeyCode::Char('y'))), Action::None, "no verdict yet");
        app.on_outcome(Outcome::SwitchoverVerdict { target: "n2".into(), reasons: vec![] });
        assert_eq!(app.on_key(key(KeyCode::Char('y'))), Action::Switchover("n2".into()));
        assert_eq!(app.dialog, Dialog::None);
        assert!(app.operation.as_ref().unwrap().text.contains("switchover to n2"));

        app.on_key(key(KeyCode::Char('s')));
        app.on_outcome(Outcome::SwitchoverVerdict {
            target: "n2".into(),
            reasons: vec!["lagging by 500 entries".into()],
        });
        assert_eq!(app.on_key(key(KeyCode::Char('y'))), Action::None);
        assert!(
            matches!(&app.dialog, Dialog::Switchover { verdict: Verdict::Refused(r), .. } if r[0].contains("lagging"))
        );
        assert_eq!(app.on_key(key(KeyCode::Esc)), Action::None);
        assert_eq!(app.dialog, Dialog::None);
    }

    /// Goal: `f` shows the estimate and needs "yes" typed out and Enter; anything else
    /// does nothing.
    #[test]
    fn failover_needs_typed_yes() {
        let mut app = app();
        let mut status = cluster("n1", 2);
        status.nodes[2].last_index = Some(90);
        status.nodes[2].lag_ms = Some(1_500);
        app.on_status(status, &[], 2_000);
        app.on_key(key(KeyCode::Down));
        app.on_key(key(KeyCode::Down));
        assert_eq!(app.on_key(key(KeyCode::Char('f'))), Action::CheckFailover("n3".into()));
        let Dialog::Failover { loss_entries, loss_ms, .. } = &app.dialog else { panic!("no dialog") };
        assert_eq!((*loss_entries, *loss_ms), (10, 1_500));
        app.on_outcome(Outcome::FailoverVerdict { target: "n3".into(), refusal: None });
        app.on_key(key(KeyCode::Char('y')));
        assert_eq!(app.on_key(key(KeyCode::Enter)), Action::None, "'y' is not 'yes'");
        for c in "yes".chars() {
            app.on_key(key(KeyCode::Char(c)));
        }
        assert_eq!(app.on_key(key(KeyCode::Enter)), Action::Failover("n3".into()));
    }

    /// Goal: `p` pauses a running cluster and resumes a paused one; `k` works only in the
    /// demo; `?` opens help and any key closes it.
    #[test]
    fn pause_kill_and_help() {
        let mut app = app();
        assert_eq!(app.on_key(key(KeyCode::Char('p'))), Action::SetPaused(true));
        let mut paused = cluster("n1", 2);
        paused.paused = true;
        app.on_status(paused, &[], 3_000);
        assert_eq!(app.on_key(key(KeyCode::Char('p'))), Action::SetPaused(false));
        assert_eq!(app.on_key(key(KeyCode::Char('k'))), Action::None, "not a demo");
        app.demo = true;
        assert_eq!(app.on_key(key(KeyCode::Char('k'))), Action::KillAndRestart("n1".into()));
        app.on_key(key(KeyCode::Char('?')));
        assert_eq!(app.dialog, Dialog::Help);
        assert_eq!(app.on_key(key(KeyCode::Char('x'))), Action::None);
        assert_eq!(app.dialog, Dialog::None);
    }

    /// Goal: a leader change, lost contact and a pause each become an event.
    #[test]
    fn status_changes_become_events() {
        let before = cluster("n1", 2);
        let mut after = cluster("n2", 3);
        after.nodes[2].reachable = false;
        after.nodes[2].health = "unreachable".into();
        after.paused = true;
        let events = diff(&before, &after);
        assert!(events.iter().any(|e| e == "n2 leads term 3"), "{events:?}");
        assert!(events.iter().any(|e| e.starts_with("n3 unreachable")), "{events:?}");
        assert!(events.iter().any(|e| e.contains("PAUSED")), "{events:?}");
    }

    /// Goal: membership changes show in the events pane: a node that joins as a
    /// learner, its promotion, a removal.
    #[test]
    fn membership_changes_become_events() {
        let before = cluster("n1", 2);
        let mut after = cluster("n1", 2);
        after.nodes[1].role = Some("removed".into());
        let mut learner = after.nodes[2].clone();
        learner.id = Some("n4".into());
        learner.addr = "127.0.0.1:7104".into();
        learner.role = Some("learner".into());
        after.nodes.push(learner);
        let events = diff(&before, &after);
        assert!(events.iter().any(|e| e == "n4 joins as a learner"), "{events:?}");
        assert!(events.iter().any(|e| e == "n2 was removed from the cluster"), "{events:?}");
        let mut promoted = after.clone();
        promoted.nodes[3].role = Some("follower".into());
        assert_eq!(diff(&after, &promoted), vec!["n4 was promoted to voter".to_string()]);
    }

    /// Goal: events stay in time order (newest shown first) when the leader's history
    /// reports an election after the console already saw later changes.
    #[test]
    fn a_late_history_entry_takes_its_place_in_time() {
        let mut app = app();
        app.on_status(cluster("n2", 3), &[], 5_000);
        let elected = HistoryEntry {
            term: 3,
            at_unix_ms: 4_200,
            from: Some("n1".into()),
            to: Some("n2".into()),
            cause: Some("timeout".into()),
            discarded_entries: 0,
        };
        app.on_status(cluster("n2", 3), &[elected], 5_200);
        let times: Vec<u64> = app.events.iter().map(|e| e.at_unix_ms).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
        let texts: Vec<&str> = app.events.iter().map(|e| e.text.as_str()).collect();
        let elected_at = texts.iter().position(|t| t.starts_with("term 3: n2 elected")).expect("election shown");
        let leads_at = texts.iter().position(|t| *t == "n2 leads term 3").expect("leader change shown");
        assert!(elected_at < leads_at, "{texts:?}");
    }

    /// Goal: the old leader's step-down is confirmed once, when a status shows it
    /// following a newer term, even when the poll that first saw the new leader still saw
    /// the old one leading (a switchover mid-poll), or when it restarts after a kill.
    #[test]
    fn the_old_leaders_step_down_is_confirmed_when_seen() {
        let mut app = app();
        let stepped_down = |app: &App| app.events.iter().filter(|e| e.text.starts_with("n1 stepped down")).count();
        let mut mid_switchover = cluster("n2", 3);
        mid_switchover.nodes[0].role = Some("leader".into());
        mid_switchover.nodes[0].term = Some(2);
        app.on_status(mid_switchover, &[], 2_000);
        assert_eq!(stepped_down(&app), 0, "n1 has not heard of term 3 yet");
        app.on_status(cluster("n2", 3), &[], 2_200);
        assert_eq!(stepped_down(&app), 1);
        assert!(app.events.iter().any(|e| e.text.contains("follows n2") && e.text.contains("fenced")));
        app.on_status(cluster("n2", 3), &[], 2_400);
        assert_eq!(stepped_down(&app), 1, "said once");

        // n2 is killed; n3 takes over; n2 is heard from only after its restart.
        let mut killed = cluster("n3", 4);
        killed.nodes[1] = NodeRow { id: Some("n2".into()), health: "unreachable".into(), ..NodeRow::default() };
        app.on_status(killed.clone(), &[], 3_000);
        app.on_status(killed, &[], 4_000);
        assert!(!app.events.iter().any(|e| e.text.starts_with("n2 stepped down")));
        app.on_status(cluster("n3", 4), &[], 9_000);
        assert!(app.events.iter().any(|e| e.text.starts_with("n2 stepped down: a follower in term 4")));
    }
}
