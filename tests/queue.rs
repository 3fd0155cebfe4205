//! Queue, SimpleQueue and JoinableQueue: Python's semantics, handles passed
//! to children and pool initializers, many producers and consumers,
//! producers killed at random, and a child that exits before its 100 MiB
//! are read. (A producer killed at a chosen point inside a put needs a hook
//! into the ring: that test is in `src/queue/test.rs`.)

mod common;

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::LONG;
use multiproc::{ErrorKind, JoinableQueue, Pool, Process, Queue, SimpleQueue, StartMethod};
use serde::{Deserialize, Serialize};

#[test]
fn puts_and_gets_follow_python() {
    let _w = common::watchdog("puts_and_gets_follow_python");
    let q = Queue::<u32>::with_maxsize(3).unwrap();
    assert_eq!(q.maxsize(), 3);
    assert!(q.empty() && !q.full());
    for i in 0..3 {
        q.put(&i).unwrap();
    }
    assert_eq!(q.qsize(), 3);
    assert!(q.full() && !q.empty());
    assert_eq!(q.try_put(&9).unwrap_err().kind(), ErrorKind::Full);
    let t = Instant::now();
    assert_eq!(q.put_timeout(&9, Duration::ZERO).unwrap_err().kind(), ErrorKind::Timeout);
    let err = q.put_timeout(&9, Duration::from_millis(50)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(t.elapsed() >= Duration::from_millis(50), "put_timeout returned early");
    assert_eq!((q.get().unwrap(), q.get().unwrap(), q.get().unwrap()), (0, 1, 2));
    assert!(q.empty());
    assert_eq!(q.try_get().unwrap_err().kind(), ErrorKind::Empty);
    assert_eq!(q.get_timeout(Duration::ZERO).unwrap_err().kind(), ErrorKind::Timeout);
    let t = Instant::now();
    assert_eq!(q.get_timeout(Duration::from_millis(50)).unwrap_err().kind(), ErrorKind::Timeout);
    assert!(t.elapsed() >= Duration::from_millis(50), "get_timeout returned early");
    q.put(&7).unwrap();
    q.close();
    assert_eq!(q.put(&1).unwrap_err().kind(), ErrorKind::InvalidState);
    assert_eq!(q.get().unwrap_err().kind(), ErrorKind::InvalidState);
    assert!(q.clone().try_get().is_err(), "clones in one process share the closed state");

    let s = SimpleQueue::new().unwrap();
    assert!(s.empty());
    s.put(&"a".to_string()).unwrap();
    assert!(!s.empty());
    assert_eq!(s.get().unwrap(), "a");
    s.close();
    assert!(s.get().is_err());
}

struct Unserializable;
impl Serialize for Unserializable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("no, thanks"))
    }
}
impl<'de> Deserialize<'de> for Unserializable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Ok(Unserializable)
    }
}

#[test]
fn bad_items_are_typed_errors_and_leave_the_queue_usable() {
    let q = Queue::<Unserializable>::new().unwrap();
    let err = q.put(&Unserializable).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Serialize);
    assert!(err.to_string().contains("no, thanks"), "{err}");
    assert!(q.empty());
}

#[test]
fn task_done_too_many_times_is_an_error() {
    let q = JoinableQueue::new().unwrap();
    q.put(&1u8).unwrap();
    assert!(q.join_timeout(Duration::from_millis(10)).unwrap_err().is_timeout());
    q.get().unwrap();
    q.task_done().unwrap();
    assert_eq!(q.task_done().unwrap_err().kind(), ErrorKind::InvalidState);
    q.join_timeout(Duration::ZERO).unwrap();
}

fn double((inbox, outbox): (Queue<u64>, SimpleQueue<u64>)) -> multiproc::Result<()> {
    loop {
        match inbox.get_timeout(LONG)? {
            0 => return Ok(()),
            n => outbox.put(&(n * 2))?,
        }
    }
}

per_method! {
    fn queues_travel_to_children_and_back(method: StartMethod) {
        let inbox = Queue::new().unwrap();
        let outbox = SimpleQueue::new().unwrap();
        let child = Process::new(double, (inbox.clone(), outbox.clone())).start_method(method).start().unwrap();
        for n in 1..=100u64 {
            inbox.put(&n).unwrap();
        }
        inbox.put(&0).unwrap();
        child.join_timeout(LONG).unwrap().unwrap();
        let mut got: Vec<u64> = (0..100).map(|_| outbox.get()).collect::<Result<_, _>>().unwrap();
        got.sort();
        assert_eq!(got, (1..=100).map(|n| n * 2).collect::<Vec<_>>());
        assert!(outbox.empty());
    }
}

const PRODUCERS: u64 = 4;
const PER_PRODUCER: u64 = 25_000;

fn produce((q, id): (Queue<Option<u64>>, u64)) -> multiproc::Result<()> {
    for i in 0..PER_PRODUCER {
        q.put(&Some(id * 1_000_000 + i))?;
    }
    Ok(())
}

fn consume(q: Queue<Option<u64>>) -> multiproc::Result<Vec<u64>> {
    let mut got = Vec::new();
    while let Some(v) = q.get_timeout(LONG)? {
        got.push(v);
    }
    Ok(got)
}

per_method! {
    fn four_producers_and_four_consumers_deliver_every_message_once(method: StartMethod) {
        let q = Queue::new().unwrap();
        let consumers: Vec<_> = (0..4)
            .map(|_| Process::new(consume, q.clone()).start_method(method).start().unwrap())
            .collect();
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|id| Process::new(produce, (q.clone(), id)).start_method(method).start().unwrap())
            .collect();
        for p in producers {
            p.join_timeout(LONG).unwrap().unwrap();
        }
        for _ in 0..4 {
            q.put(&None).unwrap();
        }
        let mut all = Vec::new();
        for c in consumers {
            let got = c.join_timeout(LONG).unwrap().unwrap();
            // Each consumer sees each producer's messages in order.
            for id in 0..PRODUCERS {
                let mine: Vec<u64> = got.iter().copied().filter(|v| v / 1_000_000 == id).collect();
                assert!(mine.windows(2).all(|w| w[0] < w[1]), "producer {id}'s messages out of order");
            }
            all.extend(got);
        }
        assert_eq!(all.len() as u64, PRODUCERS * PER_PRODUCER, "messages lost or duplicated");
        let unique: HashSet<u64> = all.iter().copied().collect();
        assert_eq!(unique.len(), all.len(), "a message was delivered twice");
        assert!(q.empty());
    }
}

fn work_and_mark((q, done): (JoinableQueue<u32>, Queue<u32>)) -> multiproc::Result<()> {
    loop {
        let n = q.get_timeout(LONG)?;
        if n == u32::MAX {
            q.task_done()?;
            return Ok(());
        }
        done.put(&n)?;
        q.task_done()?;
    }
}

per_method! {
    fn join_waits_until_every_item_is_done(method: StartMethod) {
        let q = JoinableQueue::new().unwrap();
        let done = Queue::new().unwrap();
        let workers: Vec<_> = (0..2)
            .map(|_| Process::new(work_and_mark, (q.clone(), done.clone())).start_method(method).start().unwrap())
            .collect();
        for n in 0..200u32 {
            q.put(&n).unwrap();
        }
        q.join_timeout(LONG).unwrap();
        // Every item was marked done after its result went out.
        assert_eq!(done.qsize(), 200);
        for _ in &workers {
            q.put(&u32::MAX).unwrap();
        }
        q.join_timeout(LONG).unwrap();
        for w in workers {
            w.join_timeout(LONG).unwrap().unwrap();
        }
    }
}

static REPORTS: OnceLock<Queue<u32>> = OnceLock::new();

fn keep_queue(q: Queue<u32>) {
    q.put(&std::process::id()).unwrap();
    let _ = REPORTS.set(q);
}

fn report(x: u32) -> u32 {
    REPORTS.get().expect("the initializer ran").put(&x).unwrap();
    x
}

per_method! {
    fn queues_reach_pool_initializers(method: StartMethod) {
        let q = Queue::new().unwrap();
        let pool = Pool::builder().processes(2).start_method(method).initializer(keep_queue, q.clone()).build().unwrap();
        assert_eq!(pool.chunksize(1).map(report, 0..20u32).unwrap().len(), 20);
        let got: Vec<u32> = (0..22).map(|_| q.get_timeout(LONG)).collect::<Result<_, _>>().unwrap();
        let pids: HashSet<u32> = got.iter().copied().filter(|&v| v >= 20).collect();
        assert_eq!(pids.len(), 2, "each worker's initializer put its pid: {got:?}");
        let mut items: Vec<u32> = got.into_iter().filter(|&v| v < 20).collect();
        items.sort();
        assert_eq!(items, (0..20).collect::<Vec<_>>());
    }
}

/// A message whose content proves it whole: its length and every byte
/// follow from its sequence number.
fn message(seq: u32) -> Vec<u8> {
    let len = 64 * 1024 + (seq as usize * 7919) % (192 * 1024);
    let mut m = seq.to_le_bytes().to_vec();
    m.extend((0..len).map(|i| (i as u32 ^ seq) as u8));
    m
}

fn produce_forever((q, from): (Queue<Vec<u8>>, u32)) {
    for seq in from.. {
        q.put(&message(seq)).unwrap();
    }
}

#[test]
fn random_kills_of_producers_never_tear_a_message() {
    let _w = common::watchdog("random_kills_of_producers_never_tear_a_message");
    let q = Queue::<Vec<u8>>::with_maxsize(8).unwrap();
    let mut received = 0;
    for round in 0..12u32 {
        let child = Process::new(produce_forever, (q.clone(), round * 1_000_000))
            .start_method(StartMethod::Fork)
            .start()
            .unwrap();
        // Take a few messages, so that the producer is busy putting (its
        // bounded queue keeps it blocked or copying), then kill it.
        for _ in 0..(3 + round % 5) {
            let m = q.get_timeout(LONG).unwrap();
            let seq = u32::from_le_bytes(m[..4].try_into().unwrap());
            assert_eq!(m, message(seq), "a torn message");
            received += 1;
        }
        child.kill().unwrap();
        child.join_timeout(LONG).unwrap_err();
    }
    while let Ok(m) = q.try_get() {
        let seq = u32::from_le_bytes(m[..4].try_into().unwrap());
        assert_eq!(m, message(seq), "a torn message");
        received += 1;
    }
    assert!(received >= 12 * 3);
    q.put(&message(7)).unwrap();
    assert_eq!(q.get_timeout(LONG).unwrap(), message(7));
}

fn put_100_mib(q: Queue<Vec<u8>>) -> multiproc::Result<()> {
    for i in 0..100u8 {
        q.put(&vec![i; 1 << 20])?;
    }
    Ok(())
}

per_method! {
    fn a_child_can_exit_before_its_100_mib_are_read(method: StartMethod) {
        let q = Queue::new().unwrap();
        let child = Process::new(put_100_mib, q.clone()).start_method(method).start().unwrap();
        // Python's Queue would deadlock here: the child waits for its feeder
        // thread to flush while we wait for the child.
        child.join_timeout(LONG).unwrap().unwrap();
        for i in 0..100u8 {
            let m = q.get_timeout(LONG).unwrap();
            assert!(m.len() == 1 << 20 && m.iter().all(|&b| b == i), "message {i} is wrong");
        }
        assert!(q.empty());
    }
}

#[test]
fn a_put_that_grows_the_ring_past_a_wrapped_or_offset_layout_succeeds() {
    let _w = common::watchdog("a_put_that_grows_the_ring_past_a_wrapped_or_offset_layout_succeeds");
    let q = Queue::<Vec<u8>>::new().unwrap();
    q.put(&vec![1u8; 40_000]).unwrap();
    q.put(&vec![2u8; 20_000]).unwrap();
    assert_eq!(q.get().unwrap()[0], 1);
    q.put(&vec![3u8; 100_000]).unwrap();
    let q2 = Queue::<Vec<u8>>::new().unwrap();
    q2.put(&vec![1u8; 16_000]).unwrap();
    q2.put(&vec![2u8; 16_000]).unwrap();
    q2.get().unwrap();
    q2.put(&vec![3u8; 16_000]).unwrap();
    q2.put(&vec![4u8; 56_000]).unwrap();
    for (q, firsts) in [(&q, vec![2u8, 3]), (&q2, vec![2, 3, 4])] {
        let got: Vec<u8> = (0..firsts.len()).map(|_| q.get_timeout(LONG).unwrap()[0]).collect();
        assert_eq!(got, firsts, "whole and in order");
    }
}

/// An item whose decoding, in a process that was given the signal,
/// announces itself and never ends: a consumer to be killed mid-get.
#[derive(Serialize)]
struct Stuck(u8);

static DECODING: OnceLock<multiproc::Event> = OnceLock::new();

impl<'de> Deserialize<'de> for Stuck {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u8::deserialize(d)?;
        if let Some(e) = DECODING.get() {
            e.set();
            loop {
                std::thread::park();
            }
        }
        Ok(Stuck(v))
    }
}

fn take_and_hang((q, decoding): (Queue<Stuck>, multiproc::Event)) {
    let _ = DECODING.set(decoding);
    let _ = q.get_timeout(LONG);
}

#[test]
fn a_consumer_killed_inside_get_does_not_strand_a_blocked_producer() {
    let _w = common::watchdog("a_consumer_killed_inside_get_does_not_strand_a_blocked_producer");
    let q = Queue::<Stuck>::with_maxsize(1).unwrap();
    q.put(&Stuck(1)).unwrap();
    let decoding = multiproc::Event::new().unwrap();
    let child = Process::new(take_and_hang, (q.clone(), decoding.clone())).start().unwrap();
    let producer = {
        let q = q.clone();
        std::thread::spawn(move || q.put_timeout(&Stuck(2), LONG))
    };
    assert!(decoding.wait(Some(LONG)).unwrap(), "the consumer never took the item");
    child.kill().unwrap();
    let t = Instant::now();
    let _ = child.join_timeout(LONG);
    producer.join().unwrap().unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "the producer woke late: {:?}", t.elapsed());
    assert_eq!(q.get_timeout(LONG).unwrap().0, 2);
}
