//! Bad input at the protocol level, against real children: frames and task
//! ids that no public API can produce.

#![cfg(test)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::launch::{exec_child, send_task, server_child};
use super::record::ChildRecord;
use super::registry;
use super::serve::ChildInfo;
use super::task::{Task, TaskId};
use super::trampoline::fingerprint;
use crate::codec::{self, FrameBuf, kind};
use crate::context::StartMethod;
use crate::error::ErrorKind;
use crate::process::Process;
use crate::sys::{self, AsFd};

fn info(method: StartMethod) -> ChildInfo {
    registry::lock().next_child_info(None, None, method, Vec::new())
}

/// A re-exec'd or fork-server child that has not been sent its task.
fn bare_child(method: StartMethod) -> Arc<ChildRecord> {
    match method {
        StartMethod::Spawn => exec_child(&info(method), &[], false).unwrap(),
        StartMethod::ForkServer => server_child(&info(method), None, false).unwrap(),
        StartMethod::Fork => unreachable!("a forked child needs no task frame"),
    }
}

fn outcome_kind(child: &ChildRecord) -> (ErrorKind, String, Option<i32>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = child.wait(Some(deadline)).unwrap().expect("the child ends");
    let err = child.take_outcome().unwrap_err();
    assert_eq!(err.exitcode(), status.exitcode());
    (err.kind(), err.to_string(), err.exitcode())
}

/// The task frame of `Task`, with its header fields tampered by `edit`.
fn frame_with(method: StartMethod, edit: impl FnOnce(&mut TaskIdAndPrint)) -> Vec<u8> {
    fn ident(x: u64) -> u64 {
        x
    }
    let task = Task::of(ident);
    let mut parts = TaskIdAndPrint { id: task.id(), fingerprint: fingerprint().to_vec() };
    edit(&mut parts);
    let mut f = FrameBuf::new();
    // Mirrors serve::TaskHeader field by field.
    f.push(&(super::serve::MAGIC, parts.fingerprint, parts.id, info(method)), "header").unwrap();
    f.extend(&codec::encode(&5u64, "arg").unwrap());
    f.finish(kind::TASK)
}

struct TaskIdAndPrint {
    id: TaskId,
    fingerprint: Vec<u8>,
}

const SERVED: [StartMethod; 2] = [StartMethod::Spawn, StartMethod::ForkServer];

#[test]
fn an_untampered_hand_made_frame_runs() {
    for method in SERVED {
        let child = bare_child(method);
        send_task(&child, &frame_with(method, |_| {}), &[]).unwrap();
        child.wait(None).unwrap();
        let value = child.take_outcome().unwrap();
        assert_eq!(codec::decode::<u64>(&value.0, "v").unwrap(), 5);
    }
}

#[test]
fn a_garbage_task_id_is_refused_by_the_child() {
    for method in SERVED {
        let child = bare_child(method);
        let frame = frame_with(method, |p| p.id = TaskId { offset: 0x1234_5678, tag: 0xdead_beef });
        send_task(&child, &frame, &[]).unwrap();
        let (kind, msg, code) = outcome_kind(&child);
        assert_eq!(kind, ErrorKind::Protocol, "{method}: {msg}");
        assert!(msg.contains("refused task id"), "{msg}");
        assert_eq!(code, Some(1));
    }
}

#[test]
fn another_builds_fingerprint_is_refused_by_the_child() {
    for method in SERVED {
        let child = bare_child(method);
        send_task(&child, &frame_with(method, |p| p.fingerprint = vec![1, 2, 3]), &[]).unwrap();
        let (kind, msg, _) = outcome_kind(&child);
        assert_eq!(kind, ErrorKind::BuildMismatch, "{method}: {msg}");
    }
}

#[test]
fn a_task_frame_of_2_pow_40_declared_bytes_is_refused_by_the_child() {
    for method in SERVED {
        let child = bare_child(method);
        let header = (u64::from(kind::TASK) << 56) | (1u64 << 40);
        send_task(&child, &header.to_le_bytes(), &[]).unwrap();
        let (kind, msg, code) = outcome_kind(&child);
        assert_eq!(kind, ErrorKind::FrameTooLarge, "{method}: {msg}");
        assert_eq!(code, Some(1));
    }
}

#[test]
fn garbage_bytes_instead_of_a_task_are_refused_by_the_child() {
    for method in SERVED {
        let child = bare_child(method);
        let mut junk = FrameBuf::new();
        junk.extend(b"\xff\xfe\xfd definitely not a task header");
        send_task(&child, &junk.finish(kind::TASK), &[]).unwrap();
        let (kind, msg, _) = outcome_kind(&child);
        assert_eq!(kind, ErrorKind::Deserialize, "{method}: {msg}");
        let child = bare_child(method);
        send_task(&child, &FrameBuf::new().finish(kind::VALUE), &[]).unwrap();
        assert_eq!(outcome_kind(&child).0, ErrorKind::Protocol);
    }
}

/// Writes `bytes` to the parent instead of a proper reply, then exits 0.
fn write_raw_and_exit(bytes: &[u8]) -> ! {
    let link = registry::lock().parent_link.clone().expect("in a child");
    sys::send_all(link.as_fd(), bytes).unwrap();
    sys::exit_now(0)
}

/// Runs `target` under every start method; returns each join's error.
fn join_errors<F: Fn(()) -> u64 + Copy + Send + 'static>(target: F) -> Vec<(StartMethod, crate::Error)> {
    [StartMethod::Fork, StartMethod::Spawn, StartMethod::ForkServer]
        .into_iter()
        .map(|method| {
            let child = Process::new(target, ()).start_method(method).start().unwrap();
            (method, child.join_timeout(Duration::from_secs(30)).unwrap_err())
        })
        .collect()
}

/// A reply header that declares 2^40 bytes.
fn lying_reply(_: ()) -> u64 {
    let header = (u64::from(kind::VALUE) << 56) | (1u64 << 40);
    write_raw_and_exit(&header.to_le_bytes())
}

#[test]
fn a_reply_of_2_pow_40_declared_bytes_is_refused_by_the_parent() {
    for (method, err) in join_errors(lying_reply) {
        assert_eq!(err.kind(), ErrorKind::FrameTooLarge, "{method}: {err}");
        assert!(err.to_string().contains("1099511627776"), "{err}");
    }
}

/// Half a reply frame.
fn torn_reply(_: ()) -> u64 {
    let frame = codec::frame_of(kind::VALUE, &vec![1u8; 1000], "v").unwrap();
    write_raw_and_exit(&frame[..500])
}

#[test]
fn a_torn_reply_is_reported_with_the_exit_status() {
    for (method, err) in join_errors(torn_reply) {
        assert_eq!(err.kind(), ErrorKind::Exited, "{method}: {err}");
        assert_eq!(err.exitcode(), Some(0));
    }
}

/// A whole reply, then the header of another frame.
fn reply_then_junk(_: ()) -> u64 {
    let mut bytes = codec::frame_of(kind::VALUE, &7u64, "v").unwrap();
    bytes.extend_from_slice(&((u64::from(kind::VALUE) << 56) | (512u64 << 20)).to_le_bytes());
    write_raw_and_exit(&bytes)
}

#[test]
fn bytes_after_the_reply_are_refused() {
    for (method, err) in join_errors(reply_then_junk) {
        assert_eq!(err.kind(), ErrorKind::Protocol, "{method}: {err}");
        assert!(err.to_string().contains("after its reply"), "{err}");
    }
}

fn terminate_me(_: ()) -> u64 {
    loop {
        std::thread::park();
    }
}

#[test]
fn a_fork_child_does_not_inherit_a_blocked_sigterm() {
    let child = std::thread::spawn(|| {
        sys::block_sigterm_in_this_thread();
        Process::new(terminate_me, ()).start_method(StartMethod::Fork).start().unwrap()
    })
    .join()
    .unwrap();
    child.terminate().unwrap();
    let err = child.join_timeout(Duration::from_secs(30)).unwrap_err();
    assert_eq!(err.exitcode(), Some(-15), "{err}");
}
