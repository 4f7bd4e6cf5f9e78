//! The live console (`baton`, `baton console`, and inside `baton demo`): a ratatui screen
//! over the state in [`app`], drawn by [`view`], fed by [`fetch`]. This file owns the
//! terminal and the loop: keys come from a reader thread, statuses from the fetcher,
//! operation results from their own tasks, so nothing here ever waits on a node.
//!
//! The terminal is restored on quit, on error and on panic (ratatui's `init` installs
//! the panic hook).

pub mod app;
pub mod fetch;
pub mod view;

use app::{Action, App, Outcome};
use baton_node::certs::Identity;
use baton_node::client::Client;
use baton_node::frame::{Request, Response};
use ratatui::crossterm::event::{self, Event, KeyEventKind};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Statuses are fetched and the screen redrawn this often (5 Hz).
pub const REFRESH: Duration = Duration::from_millis(200);
/// How long an operation started from the console waits for its result.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(15);

/// What the demo lets the console do to its nodes.
pub trait DemoControl: Send + Sync {
    /// Kills the node (kill -9) now and restarts it a few seconds later.
    fn kill_and_restart(&self, id: &str) -> Result<(), String>;
}

#[derive(Clone)]
pub struct Options {
    pub targets: Vec<crate::status::Target>,
    pub certs: PathBuf,
    pub identity: Identity,
}

enum Input {
    Key(event::KeyEvent),
    Redraw,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Whether to use colour: not when `NO_COLOR` is set to anything non-empty.
pub fn color_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// How long quitting waits for the key reader to stop.
const READER_STOP_WAIT: Duration = Duration::from_millis(300);

pub async fn run(options: Options, demo: Option<Arc<dyn DemoControl>>) -> ExitCode {
    let name = match (demo.is_some(), options.targets.as_slice()) {
        (true, targets) => format!("demo, {} local nodes", targets.len()),
        (false, [first, rest @ ..]) if !rest.is_empty() => format!("{} +{}", first.label, rest.len()),
        (false, targets) => targets.iter().map(|t| t.label.clone()).collect::<Vec<_>>().join(","),
    };
    let mut app = App::new(name, demo.is_some(), color_enabled());
    let mut updates = fetch::spawn(options.targets.clone(), options.certs.clone(), options.identity.clone(), REFRESH);
    let (inputs, mut input_receiver) = mpsc::channel(64);
    let (outcomes, mut outcome_receiver) = mpsc::channel(64);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = spawn_key_reader(inputs, stop.clone());
    let mut terminal = ratatui::init();
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    // A closed terminal (SIGHUP) or a kill (SIGTERM) quits cleanly too, so the demo's
    // nodes and files never outlive the console.
    let signal = |kind| tokio::signal::unix::signal(kind).expect("signal handler");
    let mut hangup = signal(tokio::signal::unix::SignalKind::hangup());
    let mut terminate = signal(tokio::signal::unix::SignalKind::terminate());
    let result = loop {
        if let Err(error) = terminal.draw(|frame| view::render(frame, &app)) {
            break Err(error.to_string());
        }
        tokio::select! {
            update = updates.recv() => match update {
                Some(update) => app.on_status(update.status, &update.history, unix_ms()),
                None => break Err("the status fetcher stopped".into()),
            },
            input = input_receiver.recv() => match input {
                Some(Input::Key(key)) => {
                    app.now_unix_ms = unix_ms();
                    match app.on_key(key) {
                        Action::Quit => break Ok(()),
                        Action::None => {}
                        action => spawn_action(action, &app, &options, demo.clone(), outcomes.clone()),
                    }
                }
                Some(Input::Redraw) => {}
                None => break Err("the terminal closed".into()),
            },
            outcome = outcome_receiver.recv() => {
                if let Some(outcome) = outcome {
                    app.now_unix_ms = unix_ms();
                    app.on_outcome(outcome);
                }
            }
            _ = ticks.tick() => {
                app.now_unix_ms = unix_ms();
                if !terminal_alive() {
                    break Err("the terminal closed".into());
                }
            }
            _ = hangup.recv() => break Ok(()),
            _ = terminate.recv() => break Ok(()),
        }
    };
    stop.store(true, Ordering::Relaxed);
    ratatui::restore();
    // The reader stops within its poll interval; on a hung-up terminal crossterm's read
    // may never return, so it is left behind rather than waited for forever.
    let reader_deadline = std::time::Instant::now() + READER_STOP_WAIT;
    while !reader.is_finished() && std::time::Instant::now() < reader_deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if reader.is_finished() {
        let _ = reader.join();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("baton: console stopped: {error}");
            ExitCode::from(crate::exit::NOT_DONE)
        }
    }
}

/// Whether the controlling terminal is still there. A hung-up terminal can make
/// crossterm's read spin without returning, and a hang-up does not always come with a
/// SIGHUP (the terminal may close under a process that ignores it), so the loop checks.
fn terminal_alive() -> bool {
    std::fs::File::open("/dev/tty").is_ok()
}

/// Reads keys on a thread of its own (crossterm's reads block), until told to stop.
fn spawn_key_reader(inputs: mpsc::Sender<Input>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match event::poll(Duration::from_millis(100)) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(_) => return,
            }
            let input = match event::read() {
                Ok(Event::Key(key)) if key.kind == KeyEventKind::Press => Input::Key(key),
                Ok(Event::Resize(..)) => Input::Redraw,
                Ok(_) => continue,
                Err(_) => return,
            };
            if inputs.blocking_send(input).is_err() {
                return;
            }
        }
    })
}

fn spawn_action(
    action: Action,
    app: &App,
    options: &Options,
    demo: Option<Arc<dyn DemoControl>>,
    outcomes: mpsc::Sender<Outcome>,
) {
    let target_addr = match (&action, app.status.as_ref()) {
        (Action::CheckFailover(id) | Action::Failover(id), Some(status)) => addr_of(status, &options.targets, id),
        _ => None,
    };
    let options = options.clone();
    tokio::spawn(async move {
        let outcome =
            match Client::new(options.targets.iter().map(|t| t.addr).collect(), &options.certs, &options.identity) {
                Ok(mut client) => perform(action, &mut client, target_addr, demo, &outcomes).await,
                Err(error) => Outcome::Finished { ok: false, text: format!("cannot connect: {error}") },
            };
        let _ = outcomes.send(outcome).await;
    });
}

/// The address to reach node `id` at. Its row shows the address as the operator wrote
/// it (`pi2.local:7101`, say): the target with that label holds what it resolved to.
fn addr_of(status: &crate::status::ClusterStatus, targets: &[crate::status::Target], id: &str) -> Option<SocketAddr> {
    let label = &status.nodes.iter().find(|n| n.id.as_deref() == Some(id))?.addr;
    targets.iter().find(|t| t.label == *label).map(|t| t.addr).or_else(|| label.parse().ok())
}

async fn leader_is(client: &mut Client, target: &str) -> bool {
    crate::status::gather(client).await.leader.as_deref() == Some(target)
}

async fn perform(
    action: Action,
    client: &mut Client,
    target_addr: Option<SocketAddr>,
    demo: Option<Arc<dyn DemoControl>>,
    outcomes: &mpsc::Sender<Outcome>,
) -> Outcome {
    let failed = |text: String| Outcome::Finished { ok: false, text };
    match action {
        Action::CheckSwitchover(target) => {
            let reasons = match client.request(Request::Switchover { to: Some(target.clone()), dry_run: true }).await {
                Ok(Response::Switchover { reasons, .. }) => reasons,
                Ok(other) => vec![format!("unexpected answer: {other:?}")],
                Err(error) => vec![error.to_string()],
            };
            Outcome::SwitchoverVerdict { target, reasons }
        }
        Action::Switchover(target) => {
            let started = Instant::now();
            match client.request(Request::Switchover { to: Some(target.clone()), dry_run: false }).await {
                Ok(Response::Switchover { reasons, .. }) if !reasons.is_empty() => {
                    return failed(format!("switchover to {target} refused: {}", reasons.join("; ")));
                }
                Ok(Response::Switchover { .. }) => {}
                Ok(other) => return failed(format!("switchover to {target}: unexpected answer {other:?}")),
                Err(error) => return failed(format!("switchover to {target} failed: {error}")),
            }
            let _ = outcomes.send(Outcome::Progress(format!("switchover to {target}: waiting for it to lead"))).await;
            while started.elapsed() < OPERATION_TIMEOUT {
                if leader_is(client, &target).await {
                    let ms = started.elapsed().as_millis();
                    return Outcome::Finished { ok: true, text: format!("switchover done: {target} leads ({ms} ms)") };
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            failed(format!("switchover to {target} did not complete in {OPERATION_TIMEOUT:?}"))
        }
        Action::CheckFailover(target) => {
            let refusal = match target_addr {
                None => Some(format!("{target} does not answer")),
                Some(addr) => match client.call(addr, &Request::Campaign { dry_run: true }).await {
                    Ok(Response::Campaign { accepted: true, .. }) => None,
                    Ok(Response::Campaign { reason, .. }) => Some(reason.unwrap_or_else(|| "refused".into())),
                    Ok(other) => Some(format!("unexpected answer: {other:?}")),
                    Err(error) => Some(error.to_string()),
                },
            };
            Outcome::FailoverVerdict { target, refusal }
        }
        Action::Failover(target) => {
            let Some(addr) = target_addr else { return failed(format!("{target} does not answer")) };
            let started = Instant::now();
            let mut last_refusal = None;
            while started.elapsed() < OPERATION_TIMEOUT {
                match client.call(addr, &Request::Campaign { dry_run: false }).await {
                    Ok(Response::Campaign { accepted: true, .. }) => {
                        let round = Instant::now();
                        while round.elapsed() < Duration::from_millis(1_500) {
                            if leader_is(client, &target).await {
                                let ms = started.elapsed().as_millis();
                                return Outcome::Finished {
                                    ok: true,
                                    text: format!("failover done: {target} leads ({ms} ms)"),
                                };
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                    Ok(Response::Campaign { reason, .. }) => last_refusal = reason,
                    Ok(other) => last_refusal = Some(format!("unexpected answer: {other:?}")),
                    Err(error) => last_refusal = Some(error.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            failed(format!("failover to {target} failed: {}", last_refusal.unwrap_or_else(|| "no win".into())))
        }
        Action::SetPaused(paused) => match crate::admin::pause_or_resume(client, paused).await {
            Ok(()) => Outcome::Finished {
                ok: true,
                text: if paused { "automatic failover paused" } else { "automatic failover resumed" }.into(),
            },
            Err(error) => failed(format!("{} failed: {error}", if paused { "pause" } else { "resume" })),
        },
        Action::KillAndRestart(target) => match demo.map(|d| d.kill_and_restart(&target)) {
            Some(Ok(())) => {
                Outcome::Finished { ok: true, text: format!("demo: killed {target} (kill -9); it restarts in 5 s") }
            }
            Some(Err(error)) => failed(format!("demo: {error}")),
            None => failed("k works only in the demo".into()),
        },
        Action::None | Action::Quit => Outcome::Progress(String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Target;

    /// Goal (issue 21): the failover key finds a node given by host name (its row shows
    /// `localhost:7102`, which does not parse as a socket address) through the address
    /// the console resolved for it.
    #[test]
    fn a_node_given_by_host_name_is_found_for_a_failover() {
        let status = |id: &str, addr: &str| baton_node::status::NodeStatus {
            id: id.into(),
            addr: addr.into(),
            role: "follower".into(),
            ..Default::default()
        };
        let answers = vec![
            ("pi1.local:7101".to_string(), Some("n1".to_string()), Ok(status("n1", "pi1.local:7101"))),
            ("pi2.local:7102".to_string(), Some("n2".to_string()), Ok(status("n2", "pi2.local:7102"))),
        ];
        let cluster = crate::status::assemble(answers);
        let targets = vec![
            Target { label: "pi1.local:7101".into(), addr: "192.0.2.1:7101".parse().unwrap() },
            Target { label: "pi2.local:7102".into(), addr: "192.0.2.2:7102".parse().unwrap() },
        ];
        assert_eq!(addr_of(&cluster, &targets, "n2"), Some("192.0.2.2:7102".parse().unwrap()));
        assert_eq!(addr_of(&cluster, &targets, "n9"), None);
    }
}
