//! Pool workers' `log` records and `tracing` events in the parent
//! (`forward_output` with the `log` and `tracing` features), and Python's
//! `log_to_stderr`. Run by `.ci/run` with `--features log,tracing`.
#![cfg(all(feature = "log", feature = "tracing"))]

mod common;

use std::collections::HashMap;
use std::sync::{Mutex, Once};

use multiproc::{ForwardingLogger, Pool, StartMethod};

/// Every `log` record this process's logger got: (level, target, message).
static RECORDS: Mutex<Vec<(log::Level, String, String)>> = Mutex::new(Vec::new());
/// A `tracing` event as captured: its level, fields and message.
type Event = (tracing::Level, HashMap<String, String>, String);
/// Every `tracing` event.
static EVENTS: Mutex<Vec<Event>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        RECORDS.lock().unwrap().push((r.level(), r.target().to_owned(), r.args().to_string()));
    }
    fn flush(&self) {}
}

struct CaptureEvents;

impl tracing::Subscriber for CaptureEvents {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Fields(HashMap<String, String>);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.insert(field.name().to_owned(), format!("{value:?}"));
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.insert(field.name().to_owned(), value.to_owned());
            }
        }
        let mut fields = Fields(HashMap::new());
        event.record(&mut fields);
        let message = fields.0.remove("message").unwrap_or_default();
        EVENTS.lock().unwrap().push((*event.metadata().level(), fields.0, message));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// This test process's logger and subscriber, installed once.
fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        log::set_boxed_logger(Box::new(ForwardingLogger::new(Capture))).unwrap();
        log::set_max_level(log::LevelFilter::Info);
        tracing::subscriber::set_global_default(CaptureEvents).unwrap();
    });
}

/// Logs one record and one event per item; a debug record below the level.
fn chatty((tag, item): (String, u32)) -> u32 {
    log::info!(target: "chatty", "{tag} item {item}");
    log::debug!(target: "chatty", "{tag} not sent {item}");
    tracing::warn!(item, "{tag} traced {item}");
    std::process::id()
}

per_method! {
    fn worker_records_reach_the_parent_as_records(method: StartMethod) {
        install();
        let tag = format!("{method:?}");
        let pool = Pool::builder().processes(4).start_method(method).forward_output().build().unwrap();
        let n = 1000u32;
        let pids = pool.chunksize(25).map(chatty, (0..n).map(|i| (tag.clone(), i))).unwrap();
        let names: HashMap<u32, String> = pool.stats().workers.iter().map(|w| (w.pid, w.name.clone())).collect();
        pool.close();
        pool.join().unwrap();
        // Every log record once, at its level and target, tagged with the
        // worker that ran its item.
        let records = RECORDS.lock().unwrap().clone();
        let mut seen = vec![0u32; n as usize];
        for (level, target, message) in &records {
            let Some((who, rest)) = message.split_once("] ") else { continue };
            let Some(item) = rest.strip_prefix(&format!("{tag} item ")) else {
                assert!(!rest.starts_with(&format!("{tag} not sent")), "a debug record was sent: {message}");
                continue;
            };
            let item: u32 = item.parse().unwrap();
            assert_eq!((*level, target.as_str()), (log::Level::Info, "chatty"));
            let pid = pids[item as usize];
            assert_eq!(who, format!("[{} {pid}", names[&pid]), "{message}");
            seen[item as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c == 1), "each record once: {:?}", seen.iter().enumerate().filter(|(_, c)| **c != 1).take(5).collect::<Vec<_>>());
        // Every tracing event once, at its level, with the worker and its fields.
        let events = EVENTS.lock().unwrap().clone();
        let mut seen = vec![0u32; n as usize];
        for (level, fields, message) in &events {
            let Some(rest) = message.strip_prefix(&format!("{tag} traced ")) else { continue };
            let (item, extra) = rest.split_once(' ').unwrap();
            let item: u32 = item.parse().unwrap();
            assert_eq!(extra, format!("item={item}"), "the event's own fields come with it");
            assert_eq!(*level, tracing::Level::WARN);
            let pid = pids[item as usize];
            assert_eq!(fields["worker"], names[&pid]);
            assert_eq!(fields["pid"], pid.to_string());
            assert_eq!(fields["target"], "forwarded_logs");
            seen[item as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c == 1), "each event once");
    }
}

per_method! {
    fn log_to_stderr_prints_as_python_does(method: StartMethod) {
        let arg = match method {
            StartMethod::Fork => "fork",
            StartMethod::Spawn => "spawn",
            StartMethod::ForkServer => "forkserver",
        };
        let out = std::process::Command::new(common::example("log_to_stderr")).arg(arg).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        let mut lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines[..2], ["[INFO/MainProcess] starting", "[INFO/Process-1] hello from a child"], "{err}");
        let prefix = match method {
            StartMethod::Fork => "ForkPoolWorker",
            StartMethod::Spawn => "SpawnPoolWorker",
            StartMethod::ForkServer => "ForkServerPoolWorker",
        };
        let mut tasks: Vec<String> = lines.split_off(2).iter().map(|l| {
            let rest = l.strip_prefix(&format!("[WARNING/{prefix}-")).unwrap_or_else(|| panic!("{l}"));
            rest.split_once("] ").unwrap().1.to_owned()
        }).collect();
        tasks.sort();
        assert_eq!(tasks, ["task 0", "task 1", "task 2", "task 3"]);
    }
}
