//! The Manager under every start method: shared dicts and lists updated by
//! many processes, nested proxies, proxies through pool tasks, a remote
//! server over TCP, authkeys, a killed server, a killed client.

mod common;

use std::time::{Duration, Instant};

use common::LONG;
use multiproc::connection::{Connection, Listener};
use multiproc::manager::{DictProxy, ListProxy};
use multiproc::{ErrorKind, Manager, Pool, Process, StartMethod};

fn fill((d, base, n): (DictProxy<u32, u32>, u32, u32)) {
    for i in base..base + n {
        d.insert(i, i * 2).unwrap();
    }
}

per_method! {
    fn four_processes_fill_one_dict_exactly(method: StartMethod) {
        let m = Manager::with_start_method(method).unwrap();
        let d = m.dict::<u32, u32>().unwrap();
        let children: Vec<_> = (0..4)
            .map(|p| Process::new(fill, (d.clone(), p * 1000, 1000)).start_method(method).start().unwrap())
            .collect();
        for c in children {
            c.join_timeout(LONG).unwrap();
        }
        assert_eq!(d.len().unwrap(), 4000);
        let snap = d.snapshot().unwrap();
        assert!((0..4000).all(|i| snap[&i] == i * 2));
    }
}

fn touch_nested(outer: ListProxy<DictProxy<String, i32>>) {
    let inner = outer.get(0).unwrap().expect("the dict is in the list");
    inner.insert("from child".into(), 7).unwrap();
}

per_method! {
    fn a_dict_inside_a_list_is_the_same_dict_everywhere(method: StartMethod) {
        let m = Manager::with_start_method(method).unwrap();
        let inner = m.dict::<String, i32>().unwrap();
        let outer = m.list::<DictProxy<String, i32>>().unwrap();
        outer.push(inner.clone()).unwrap();
        // Read back, it is the same dict, not a copy (Python's nested
        // proxies are copies: cpython#119937).
        let back = outer.get(0).unwrap().unwrap();
        assert!(back == inner);
        back.insert("from parent".into(), 1).unwrap();
        assert_eq!(inner.get(&"from parent".into()).unwrap(), Some(1));
        Process::new(touch_nested, outer.clone()).start_method(method).start().unwrap().join_timeout(LONG).unwrap();
        assert_eq!(inner.get(&"from child".into()).unwrap(), Some(7));
        // The list keeps the dict alive after every other proxy is gone.
        let before = m.object_count().unwrap();
        drop((inner, back));
        assert_eq!(m.object_count().unwrap(), before);
        outer.clear().unwrap();
        assert_eq!(m.object_count().unwrap(), before - 1, "the dict went with its last reference");
    }
}

fn count_in_task((d, k): (DictProxy<u32, u32>, u32)) -> u32 {
    d.insert(k, k + 100).unwrap();
    d.len().unwrap() as u32
}

per_method! {
    fn proxies_travel_through_pool_tasks(method: StartMethod) {
        let m = Manager::with_start_method(method).unwrap();
        let d = m.dict::<u32, u32>().unwrap();
        let pool = Pool::builder().processes(2).start_method(method).build().unwrap();
        let sizes = pool.map(count_in_task, (0..20).map(|k| (d.clone(), k))).unwrap();
        assert_eq!(sizes.len(), 20);
        assert_eq!(d.len().unwrap(), 20);
        assert_eq!(d.get(&7).unwrap(), Some(107));
        drop(pool);
        // Every reference the tasks took was given back.
        assert!(common::wait_until(LONG, || m.object_count().unwrap() == 1), "{}", m.object_count().unwrap());
    }
}

fn serve_remote((ready, key): (Connection, Vec<u8>)) {
    let listener = Listener::bind("127.0.0.1:0", Some(&key)).unwrap();
    ready.send(&listener.address().to_string()).unwrap();
    Manager::serve_listener(listener)
}

#[test]
fn a_remote_manager_over_tcp_and_wrong_keys() {
    let _w = common::watchdog("remote manager");
    let (mine, theirs) = multiproc::Pipe(true).unwrap();
    let server = Process::new(serve_remote, (theirs, b"secret".to_vec())).daemon(true).start().unwrap();
    assert!(mine.poll(Some(LONG)).unwrap());
    let address: String = mine.recv().unwrap();
    let m = Manager::connect(address.as_str(), b"secret").unwrap();
    let d = m.dict::<String, u8>().unwrap();
    d.insert("k".into(), 1).unwrap();
    let again = Manager::connect(address.as_str(), b"secret").unwrap();
    assert_eq!(again.object_count().unwrap(), 1);
    let err = Manager::connect(address.as_str(), b"wrong").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Authentication, "{err}");
    // The server still serves.
    assert_eq!(d.get(&"k".into()).unwrap(), Some(1));
    m.shutdown().unwrap();
    // Serving ends the process when a client shuts the manager down.
    let _ = server.join_timeout(LONG);
    assert_eq!(server.exitcode(), Some(0));
}

fn connect_and_park((address, key, ready): (String, Vec<u8>, Connection)) {
    let m = Manager::connect(address.as_str(), &key).unwrap();
    let held: Vec<_> = (0..5).map(|_| m.dict::<u8, u8>().unwrap()).collect();
    ready.send(&held.len()).unwrap();
    loop {
        std::thread::park();
    }
}

per_method! {
    fn a_killed_client_gives_its_objects_back(method: StartMethod) {
        let m = Manager::with_start_method(method).unwrap();
        let _mine = m.dict::<u8, u8>().unwrap();
        let baseline = m.object_count().unwrap();
        let (ready, theirs) = multiproc::Pipe(true).unwrap();
        let client = Process::new(connect_and_park, (m.address().to_string(), m.authkey().to_vec(), theirs))
            .start_method(method)
            .start()
            .unwrap();
        assert!(ready.poll(Some(LONG)).unwrap());
        assert_eq!(ready.recv::<usize>().unwrap(), 5);
        assert_eq!(m.object_count().unwrap(), baseline + 5);
        client.kill().unwrap();
        let _ = client.join_timeout(LONG);
        assert!(common::wait_until(LONG, || m.object_count().unwrap() == baseline), "objects were not given back");
    }
}

per_method! {
    fn a_killed_server_fails_every_call_with_manager_gone(method: StartMethod) {
        let m = Manager::with_start_method(method).unwrap();
        let d = m.dict::<u8, u8>().unwrap();
        d.insert(1, 1).unwrap();
        let pid = m.pid().unwrap();
        common::sigkill(pid);
        // SIGKILL takes effect a moment after kill() returns: until then
        // the server may still answer.
        assert!(common::wait_until(Duration::from_secs(10), || common::gone(pid)), "the server outlived SIGKILL");
        let t0 = Instant::now();
        let err = d.get(&1).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ManagerGone, "{err}");
        assert!(t0.elapsed() < Duration::from_secs(2), "took {:?}", t0.elapsed());
        assert_eq!(d.len().unwrap_err().kind(), ErrorKind::ManagerGone);
        assert_eq!(m.object_count().unwrap_err().kind(), ErrorKind::ManagerGone);
    }
}

#[test]
fn many_threads_share_a_list() {
    let _w = common::watchdog("threads");
    let m = Manager::new().unwrap();
    let l = m.list::<u32>().unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let l = l.clone();
            s.spawn(move || {
                for i in 0..250 {
                    l.push(t * 1000 + i).unwrap();
                }
            });
        }
    });
    let mut all = l.snapshot().unwrap();
    all.sort();
    let mut want: Vec<u32> = (0..4).flat_map(|t| (0..250).map(move |i| t * 1000 + i)).collect();
    want.sort();
    assert_eq!(all, want);
}

fn use_namespace_and_value((ns, v): (multiproc::manager::NamespaceProxy, multiproc::manager::ValueProxy<u64>)) {
    let x: i32 = ns.get("x").unwrap().expect("x was set");
    ns.set("y", &(x + 1)).unwrap();
    v.set(v.get().unwrap() * 10).unwrap();
}

per_method! {
    fn namespaces_and_values_are_shared(method: StartMethod) {
        let m = Manager::with_start_method(method).unwrap();
        let ns = m.namespace().unwrap();
        let v = m.value(7u64).unwrap();
        ns.set("x", &41i32).unwrap();
        Process::new(use_namespace_and_value, (ns.clone(), v.clone()))
            .start_method(method)
            .start()
            .unwrap()
            .join_timeout(LONG)
            .unwrap();
        assert_eq!(ns.get::<i32>("y").unwrap(), Some(42));
        assert_eq!(v.get().unwrap(), 70);
        // A field read as the wrong type is an error, not a wrong value.
        assert_eq!(ns.get::<String>("x").unwrap_err().kind(), ErrorKind::Deserialize);
    }
}

fn count_up((d, n): (DictProxy<String, u64>, u64)) {
    for _ in 0..n {
        d.modify("count".into(), 0, |v| v + 1).unwrap();
    }
}

fn explode(_: u64) -> u64 {
    panic!("no such thing")
}

per_method! {
    fn four_processes_count_to_forty_thousand_exactly(method: StartMethod) {
        // Python needs a manager Lock around d[k] = d[k] + 1; modify runs
        // the update on the server, in one atomic call.
        let m = Manager::with_start_method(method).unwrap();
        let d = m.dict::<String, u64>().unwrap();
        let children: Vec<_> = (0..4)
            .map(|_| Process::new(count_up, (d.clone(), 10_000)).start_method(method).start().unwrap())
            .collect();
        for c in children {
            c.join_timeout(LONG).unwrap();
        }
        assert_eq!(d.get(&"count".into()).unwrap(), Some(40_000));
        // A panic in the update is that call's error; the server goes on.
        let err = d.modify("count".into(), 0, explode).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Panicked, "{err}");
        assert!(err.to_string().contains("no such thing"), "{err}");
        assert_eq!(d.get(&"count".into()).unwrap(), Some(40_000), "a failed update changes nothing");
    }
}

/// A type of the test's own, which lives only in the server.
struct Account {
    balance: i64,
    history: Vec<i64>,
}

impl Account {
    fn open(initial: i64) -> Account {
        Account { balance: initial, history: vec![initial] }
    }

    fn deposit(&mut self, amount: i64) -> i64 {
        assert!(amount > 0, "deposits are positive, not {amount}");
        self.balance += amount;
        self.history.push(amount);
        self.balance
    }

    fn statement(&mut self, (): ()) -> (i64, Vec<i64>) {
        (self.balance, self.history.clone())
    }
}

fn deposit_in_child(account: multiproc::manager::CustomProxy<Account>) -> i64 {
    account.call(Account::deposit, 5).unwrap()
}

per_method! {
    fn a_custom_type_lives_in_the_server_and_its_methods_run_there(method: StartMethod) {
        let m = Manager::with_start_method(method).unwrap();
        let account = m.create(Account::open, 100).unwrap();
        assert_eq!(account.call(Account::deposit, 10).unwrap(), 110);
        let child = Process::new(deposit_in_child, account.clone()).start_method(method).start().unwrap();
        assert_eq!(child.join_timeout(LONG).unwrap(), 115);
        let pool = Pool::builder().processes(2).start_method(method).build().unwrap();
        let after: Vec<i64> = pool.map(deposit_in_child, (0..4).map(|_| account.clone())).unwrap();
        assert_eq!(after.iter().max(), Some(&135));
        // A panicking method is that call's error; the object is unchanged
        // and the server goes on.
        let err = account.call(Account::deposit, -1).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Panicked, "{err}");
        assert!(err.to_string().contains("deposits are positive, not -1"), "{err}");
        let (balance, history) = account.call(Account::statement, ()).unwrap();
        assert_eq!(balance, 135);
        assert_eq!(history, [100, 10, 5, 5, 5, 5, 5]);
    }
}

/// A type of the test's own, made managed by the attribute.
struct Inventory {
    items: std::collections::BTreeMap<String, u32>,
}

#[multiproc::managed]
impl Inventory {
    fn new() -> Self {
        Inventory { items: Default::default() }
    }

    fn with(name: String, count: u32) -> Inventory {
        let mut items = std::collections::BTreeMap::new();
        items.insert(name, count);
        Inventory { items }
    }

    fn stock(&mut self, name: String, count: u32) -> u32 {
        let n = self.items.entry(name).or_default();
        *n += count;
        *n
    }

    fn take(&mut self, name: String, count: u32) -> u32 {
        let n = self.items.get_mut(&name).unwrap_or_else(|| panic!("no {name} in stock"));
        *n -= count;
        *n
    }

    fn list(&self) -> Vec<(String, u32)> {
        self.items.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

fn stock_apples(inv: multiproc::manager::CustomProxy<Inventory>) -> u32 {
    inv.stock("apple".into(), 3).unwrap()
}

per_method! {
    fn a_type_made_managed_by_the_attribute(method: StartMethod) {
        let m = Manager::with_start_method(method).unwrap();
        let inv = Inventory::with_in(&m, "pear".into(), 1).unwrap();
        let empty = Inventory::new_in(&m).unwrap();
        assert!(empty.list().unwrap().is_empty());
        let child = Process::new(stock_apples, inv.clone()).start_method(method).start().unwrap();
        assert_eq!(child.join_timeout(LONG).unwrap(), 3);
        let pool = Pool::builder().processes(2).start_method(method).build().unwrap();
        pool.map(stock_apples, (0..3).map(|_| inv.clone())).unwrap();
        assert_eq!(inv.take("apple".into(), 2).unwrap(), 10);
        let err = inv.take("plum".into(), 1).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Panicked);
        assert!(err.to_string().contains("no plum in stock"), "{err}");
        assert_eq!(inv.list().unwrap(), [("apple".to_string(), 10), ("pear".to_string(), 1)]);
    }
}

fn add_range((s, from): (multiproc::manager::SetProxy<u32>, u32)) {
    s.update(from..from + 100).unwrap();
}

per_method! {
    fn a_set_gathers_what_several_processes_add(method: StartMethod) {
        let m = Manager::with_start_method(method).unwrap();
        let s = m.set::<u32>().unwrap();
        // Overlapping ranges: 0..100, 50..150, 100..200.
        let children: Vec<_> = [0, 50, 100]
            .into_iter()
            .map(|from| Process::new(add_range, (s.clone(), from)).start_method(method).start().unwrap())
            .collect();
        for c in children {
            c.join_timeout(LONG).unwrap();
        }
        assert_eq!(s.len().unwrap(), 200);
        let mut all = s.snapshot().unwrap();
        all.sort_unstable();
        assert_eq!(all, (0..200).collect::<Vec<_>>());
    }
}

fn produce((q, n): (multiproc::manager::QueueProxy<u64>, u64)) {
    for i in 0..n {
        q.put(i).unwrap();
    }
}

fn consume_and_mark(q: multiproc::manager::QueueProxy<u64>) -> u64 {
    let mut sum = 0;
    loop {
        let x = q.get().unwrap();
        if x == u64::MAX {
            q.task_done().unwrap();
            return sum;
        }
        sum += x;
        q.task_done().unwrap();
    }
}

per_method! {
    fn a_managed_queue_between_processes_threads_and_pool_tasks(method: StartMethod) {
        let m = Manager::with_start_method(method).unwrap();
        // A producer process, the parent consuming in order.
        let q = m.bounded_queue::<u64>(10).unwrap();
        let producer = Process::new(produce, (q.clone(), 500)).start_method(method).start().unwrap();
        let got: Vec<u64> = (0..500).map(|_| q.get_timeout(LONG).unwrap()).collect();
        assert_eq!(got, (0..500).collect::<Vec<_>>());
        producer.join_timeout(LONG).unwrap();
        assert_eq!(q.get_timeout(Duration::ZERO).unwrap_err().kind(), ErrorKind::Empty);
        // A thread waiting in get does not hold up another thread's put.
        let waiter = {
            let q = q.clone();
            std::thread::spawn(move || q.get_timeout(LONG).unwrap())
        };
        q.put(42).unwrap();
        assert_eq!(waiter.join().unwrap(), 42);
        // A joinable queue drained by two consumers: join() returns once
        // every item is marked done.
        let jq = m.queue::<u64>().unwrap();
        let consumers: Vec<_> = (0..2)
            .map(|_| Process::new(consume_and_mark, jq.clone()).start_method(method).start().unwrap())
            .collect();
        for i in 1..=100 {
            jq.put(i).unwrap();
        }
        jq.put(u64::MAX).unwrap();
        jq.put(u64::MAX).unwrap();
        jq.join().unwrap();
        let total: u64 = consumers.into_iter().map(|c| c.join_timeout(LONG).unwrap()).sum();
        assert_eq!(total, 5050);
    }
}

fn locked_increments((lock, d, n): (multiproc::manager::LockProxy, DictProxy<String, u64>, u64)) {
    for _ in 0..n {
        assert!(lock.acquire().unwrap());
        let v = d.get_or(&"n".into(), 0).unwrap();
        d.insert("n".into(), v + 1).unwrap();
        lock.release().unwrap();
    }
}

fn wait_for_event(e: multiproc::manager::EventProxy) -> bool {
    e.wait_timeout(LONG).unwrap()
}

per_method! {
    fn manager_locks_and_events_work_across_processes(method: StartMethod) {
        // Python's pattern: with lock: d['n'] = d['n'] + 1, from 4 processes.
        let m = Manager::with_start_method(method).unwrap();
        let lock = m.lock().unwrap();
        let d = m.dict::<String, u64>().unwrap();
        let children: Vec<_> = (0..4)
            .map(|_| Process::new(locked_increments, (lock.clone(), d.clone(), 250)).start_method(method).start().unwrap())
            .collect();
        for c in children {
            c.join_timeout(LONG).unwrap();
        }
        assert_eq!(d.get(&"n".into()).unwrap(), Some(1000));
        assert_eq!(lock.value().unwrap(), 1, "the lock is free again");
        // An event set by the parent wakes a child waiting on the server.
        let e = m.event().unwrap();
        let child = Process::new(wait_for_event, e.clone()).start_method(method).start().unwrap();
        e.set().unwrap();
        assert!(child.join_timeout(LONG).unwrap());
    }
}

fn hammer((d, ready): (DictProxy<u64, u64>, Connection)) {
    let mine = d.clone();
    let mut i = 0u64;
    loop {
        mine.insert(i % 100, i).unwrap();
        if i == 100 {
            ready.send(&"busy").unwrap();
        }
        i += 1;
    }
}

per_method! {
    fn a_client_killed_in_the_middle_of_calls_leaves_the_server_sound(method: StartMethod) {
        let m = Manager::with_start_method(method).unwrap();
        let d = m.dict::<u64, u64>().unwrap();
        let baseline = m.object_count().unwrap();
        let (ready, theirs) = multiproc::Pipe(true).unwrap();
        let client = Process::new(hammer, (d.clone(), theirs)).start_method(method).start().unwrap();
        assert!(ready.poll(Some(LONG)).unwrap());
        assert_eq!(ready.recv::<String>().unwrap(), "busy");
        // Killed while it sends calls as fast as it can.
        client.kill().unwrap();
        let _ = client.join_timeout(LONG);
        assert!(common::wait_until(LONG, || m.object_count().unwrap() == baseline), "the client's references stayed");
        assert_eq!(d.len().unwrap(), 100);
        d.insert(1000, 1).unwrap();
        assert_eq!(d.get(&1000).unwrap(), Some(1));
    }
}

fn try_rlock(r: multiproc::manager::RLockProxy) -> bool {
    r.acquire_timeout(Duration::ZERO).unwrap()
}

per_method! {
    fn an_rlock_belongs_to_the_thread_that_holds_it(method: StartMethod) {
        let m = Manager::with_start_method(method).unwrap();
        let r = m.rlock().unwrap();
        assert!(r.acquire().unwrap() && r.acquire().unwrap(), "re-entrant");
        // Another process, and another thread of this one, cannot take it
        // or release it.
        let other = Process::new(try_rlock, r.clone()).start_method(method).start().unwrap();
        assert!(!other.join_timeout(LONG).unwrap());
        let r2 = r.clone();
        let stranger = std::thread::spawn(move || (r2.acquire_timeout(Duration::ZERO).unwrap(), r2.release().is_err()));
        assert_eq!(stranger.join().unwrap(), (false, true));
        r.release().unwrap();
        r.release().unwrap();
        let other = Process::new(try_rlock, r.clone()).start_method(method).start().unwrap();
        assert!(other.join_timeout(LONG).unwrap(), "free once released as many times as taken");
    }
}

fn meet(b: multiproc::manager::BarrierProxy) -> u64 {
    b.wait_timeout(LONG).unwrap()
}

per_method! {
    fn a_manager_barrier_lets_three_processes_through_together(method: StartMethod) {
        let m = Manager::with_start_method(method).unwrap();
        let b = m.barrier(3).unwrap();
        let children: Vec<_> =
            (0..2).map(|_| Process::new(meet, b.clone()).start_method(method).start().unwrap()).collect();
        let mine = b.wait_timeout(LONG).unwrap();
        let mut indices: Vec<u64> = children.into_iter().map(|c| c.join_timeout(LONG).unwrap()).collect();
        indices.push(mine);
        indices.sort_unstable();
        assert_eq!(indices, [0, 1, 2]);
        assert!(!b.broken().unwrap());
        // Round two, after which a lone wait times out and breaks it.
        assert_eq!(b.wait_timeout(Duration::ZERO).unwrap_err().kind(), ErrorKind::BrokenBarrier);
        assert!(b.broken().unwrap());
        b.reset().unwrap();
        assert!(!b.broken().unwrap());
    }
}

fn batch_in_child((d, l, s): (DictProxy<String, Vec<u8>>, ListProxy<u64>, multiproc::manager::SetProxy<i16>)) {
    d.update((0..10_000u32).map(|i| (format!("k{i}"), i.to_le_bytes().to_vec()))).unwrap();
    l.extend(0..10_000u64).unwrap();
    s.update((-500..500).chain(0..10)).unwrap();
}

per_method! {
    fn batches_carry_every_item_in_order(method: StartMethod) {
        let m = Manager::with_start_method(method).unwrap();
        let d = m.dict::<String, Vec<u8>>().unwrap();
        let l = m.list_from(vec![7u64]).unwrap();
        let s = m.set::<i16>().unwrap();
        let child = Process::new(batch_in_child, (d.clone(), l.clone(), s.clone())).start_method(method).start().unwrap();
        child.join_timeout(LONG).unwrap();

        let items = d.items().unwrap();
        assert_eq!(items.len(), 10_000);
        assert!(items.iter().enumerate().all(|(i, (k, v))| *k == format!("k{i}") && *v == (i as u32).to_le_bytes()));
        // Remove every odd key (the holes are squeezed out on the way),
        // then put one back: it goes to the end, as in Python.
        for i in (1..10_000).step_by(2) {
            assert!(d.remove(&format!("k{i}")).unwrap().is_some());
        }
        d.insert("k1".into(), vec![1]).unwrap();
        let keys = d.keys().unwrap();
        assert_eq!(keys.len(), 5_001);
        assert!(keys[..5_000].iter().enumerate().all(|(j, k)| *k == format!("k{}", 2 * j)));
        assert_eq!(keys[5_000], "k1");
        assert_eq!(d.values().unwrap()[5_000], [1]);
        assert_eq!(d.popitem().unwrap(), Some(("k1".to_string(), vec![1])));
        assert_eq!(d.get(&"k9998".into()).unwrap(), Some(9998u32.to_le_bytes().to_vec()));

        let all = l.snapshot().unwrap();
        assert_eq!(all.len(), 10_001);
        assert_eq!(all[0], 7);
        assert!(all[1..].iter().copied().eq(0..10_000));

        let mut members = s.snapshot().unwrap();
        members.sort_unstable();
        assert!(members.into_iter().eq(-500..500));
    }
}

fn wait_for_item((c, items): (multiproc::manager::ConditionProxy, ListProxy<u32>)) -> u32 {
    c.acquire().unwrap();
    assert!(c.wait_for_timeout(|| items.len().unwrap() > 0, LONG).unwrap(), "no item within {LONG:?}");
    let first = items.get(0).unwrap().unwrap();
    c.release().unwrap();
    first
}

fn try_acquire_condition(c: multiproc::manager::ConditionProxy) -> bool {
    c.acquire_timeout(Duration::ZERO).unwrap()
}

per_method! {
    fn a_manager_condition_wakes_waiters_in_other_processes(method: StartMethod) {
        let m = Manager::with_start_method(method).unwrap();
        let c = m.condition().unwrap();
        let items = m.list::<u32>().unwrap();
        assert_eq!(c.notify().unwrap_err().kind(), ErrorKind::InvalidState, "notify needs the lock");
        assert_eq!(c.wait().unwrap_err().kind(), ErrorKind::InvalidState, "wait needs the lock");
        let waiters: Vec<_> = (0..2)
            .map(|_| Process::new(wait_for_item, (c.clone(), items.clone())).start_method(method).start().unwrap())
            .collect();
        c.acquire().unwrap();
        items.push(42).unwrap();
        c.notify_all().unwrap();
        c.release().unwrap();
        for w in waiters {
            assert_eq!(w.join_timeout(LONG).unwrap(), 42);
        }
        // A wait that times out says so, and holds the lock again after
        // it: another process cannot take it until it is released.
        c.acquire().unwrap();
        assert!(!c.wait_timeout(Duration::from_millis(20)).unwrap());
        let other = Process::new(try_acquire_condition, c.clone()).start_method(method).start().unwrap();
        assert!(!other.join_timeout(LONG).unwrap());
        c.release().unwrap();
        let other = Process::new(try_acquire_condition, c.clone()).start_method(method).start().unwrap();
        assert!(other.join_timeout(LONG).unwrap());
    }
}

fn write_squares(a: multiproc::manager::ArrayProxy<u64>) {
    for i in 0..a.len().unwrap() {
        a.set(i, (i * i) as u64).unwrap();
    }
}

fn take_permit((s, tried): (multiproc::manager::SemaphoreProxy, multiproc::manager::EventProxy)) -> (bool, bool) {
    let at_once = s.acquire_timeout(Duration::ZERO).unwrap();
    tried.set().unwrap();
    let later = s.acquire_timeout(LONG).unwrap();
    (at_once, later)
}

per_method! {
    fn manager_arrays_and_semaphores_across_processes(method: StartMethod) {
        let m = Manager::with_start_method(method).unwrap();
        let a = m.array(vec![0u64; 16]).unwrap();
        Process::new(write_squares, a.clone()).start_method(method).start().unwrap().join_timeout(LONG).unwrap();
        assert_eq!(a.snapshot().unwrap(), (0..16u64).map(|i| i * i).collect::<Vec<_>>());
        assert_eq!(a.get(16).unwrap_err().kind(), ErrorKind::InvalidInput);
        assert_eq!(a.set(16, 0).unwrap_err().kind(), ErrorKind::InvalidInput);
        assert_eq!(a.len().unwrap(), 16);

        let s = m.bounded_semaphore(2).unwrap();
        assert!(s.acquire().unwrap() && s.acquire().unwrap());
        let tried = m.event().unwrap();
        let child = Process::new(take_permit, (s.clone(), tried.clone())).start_method(method).start().unwrap();
        // The child finds none at once; it waits until a permit comes back.
        assert!(tried.wait_timeout(LONG).unwrap());
        s.release().unwrap();
        assert_eq!(child.join_timeout(LONG).unwrap(), (false, true));
        // The child ended holding its permit, which stays taken (as in
        // Python); releasing twice more brings the count to its bound.
        assert_eq!(s.value().unwrap(), 0);
        s.release().unwrap();
        s.release().unwrap();
        assert_eq!(s.release().unwrap_err().kind(), ErrorKind::InvalidState, "past the bound");
    }
}

per_method! {
    fn a_call_waiting_on_a_server_that_is_killed_fails_with_manager_gone(method: StartMethod) {
        let m = Manager::with_start_method(method).unwrap();
        let q = m.queue::<u8>().unwrap();
        let (started_tx, started) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            started_tx.send(()).unwrap();
            let t0 = Instant::now();
            let err = q.get_timeout(LONG).unwrap_err();
            (err.kind(), t0.elapsed())
        });
        started.recv_timeout(LONG).unwrap();
        // Kill it once the get holds this process's first connection: a
        // call from here then opens a second one, which the server serves
        // in a thread of its own (an accept thread and two client threads).
        let pid = m.pid().unwrap();
        let threads = || {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse::<u32>().ok())
        };
        assert!(common::wait_until(LONG, || m.object_count().is_ok() && threads() == Some(3)));
        common::sigkill(pid);
        let killed = Instant::now();
        let (kind, _) = waiter.join().unwrap();
        assert_eq!(kind, ErrorKind::ManagerGone);
        assert!(killed.elapsed() < Duration::from_secs(2), "the waiting call took {:?} to fail", killed.elapsed());
    }
}

/// In a child whose frame limit is 1 MiB: a call too large to send, and an
/// answer too large to receive, fail alone; the process's objects live on.
fn calls_past_the_frame_limit(
    (address, key, l): (String, Vec<u8>, ListProxy<u64>),
) -> (ErrorKind, ErrorKind, usize, usize) {
    multiproc::set_max_frame_size(1 << 20).unwrap();
    // An object only this process holds: it would go with the process's
    // last connection.
    let m = Manager::connect(address.as_str(), &key).unwrap();
    let mine = m.dict_from(vec![(1u8, 1u8)]).unwrap();
    let too_big = l.extend(0..200_000u64).unwrap_err().kind();
    let too_long = l.snapshot().unwrap_err().kind();
    mine.insert(2, 2).unwrap();
    (too_big, too_long, mine.len().unwrap(), l.len().unwrap())
}

per_method! {
    fn a_call_that_fails_on_the_wire_keeps_the_process_objects(method: StartMethod) {
        let m = Manager::with_start_method(method).unwrap();
        // 200,000 numbers: 1.6 MB, above the child's limit but not ours.
        let l = m.list_from((0..200_000u64).collect()).unwrap();
        let arg = (m.address().to_string(), m.authkey().to_vec(), l.clone());
        let child = Process::new(calls_past_the_frame_limit, arg).start_method(method).start().unwrap();
        let (too_big, too_long, d_len, l_len) = child.join_timeout(LONG).unwrap();
        assert_eq!(too_big, ErrorKind::FrameTooLarge);
        assert_eq!(too_long, ErrorKind::FrameTooLarge);
        assert_eq!((d_len, l_len), (2, 200_000));
    }
}

fn push_from_inside(l: ListProxy<u8>) -> ListProxy<u8> {
    // A method running in the server that calls its own manager: refused
    // at once (it would wait for itself), never a hang.
    assert_eq!(l.push(1).unwrap_err().kind(), ErrorKind::InvalidState);
    l
}

#[test]
fn a_method_that_calls_its_own_manager_is_refused_not_hung() {
    let _w = common::watchdog("a method that calls its own manager");
    let m = Manager::new().unwrap();
    let d = m.dict::<u8, ListProxy<u8>>().unwrap();
    let l = m.list::<u8>().unwrap();
    d.insert(1, l.clone()).unwrap();
    let back = d.modify(1, l.clone(), push_from_inside).unwrap();
    assert!(back == l);
    assert_eq!(l.len().unwrap(), 0);
    // The server goes on.
    l.push(2).unwrap();
    assert_eq!(l.snapshot().unwrap(), [2]);
}

#[test]
fn proxies_of_another_manager_inside_objects_count_right() {
    let _w = common::watchdog("proxies of another manager");
    let (a, b) = (Manager::new().unwrap(), Manager::new().unwrap());
    let outer = a.list::<DictProxy<u8, u8>>().unwrap();
    let inner = b.dict_from(vec![(7u8, 7u8)]).unwrap();
    let (a0, b0) = (a.object_count().unwrap(), b.object_count().unwrap());
    outer.push(inner.clone()).unwrap();
    outer.push(inner.clone()).unwrap();
    assert_eq!(outer.get(0).unwrap().unwrap().get(&7).unwrap(), Some(7));
    outer.clear().unwrap();
    // A's objects were not touched by B's references (ids start at 1 in
    // every server), and B's dict lives while this proxy does.
    assert_eq!(a.object_count().unwrap(), a0);
    assert_eq!(outer.len().unwrap(), 0);
    assert_eq!(b.object_count().unwrap(), b0);
    assert_eq!(inner.get(&7).unwrap(), Some(7));
    drop(inner);
    assert!(common::wait_until(LONG, || b.object_count().unwrap() == b0 - 1));
}

fn get_and_report((q, ready): (multiproc::manager::QueueProxy<u32>, Connection)) {
    ready.send(&"waiting").unwrap();
    let _ = q.get();
}

per_method! {
    fn a_waiter_that_dies_takes_nothing_with_it(method: StartMethod) {
        let m = Manager::with_start_method(method).unwrap();
        let q = m.queue::<u32>().unwrap();
        let (ready, theirs) = multiproc::Pipe(true).unwrap();
        let child = Process::new(get_and_report, (q.clone(), theirs)).start_method(method).start().unwrap();
        assert!(ready.poll(Some(LONG)).unwrap());
        assert_eq!(ready.recv::<String>().unwrap(), "waiting");
        child.kill().unwrap();
        let _ = child.join_timeout(LONG);
        // The dead child's wait must not take this item.
        q.put(5).unwrap();
        assert_eq!(q.get_timeout(LONG).unwrap(), 5);
    }
}

#[test]
fn a_barrier_reset_breaks_the_current_waiters_and_stays_usable() {
    let _w = common::watchdog("barrier reset");
    let m = Manager::new().unwrap();
    let b = m.barrier(2).unwrap();
    let b2 = b.clone();
    let waiter = std::thread::spawn(move || b2.wait_timeout(LONG).map_err(|e| e.kind()));
    assert!(common::wait_until(LONG, || b.n_waiting().unwrap() == 1));
    b.reset().unwrap();
    assert_eq!(waiter.join().unwrap(), Err(ErrorKind::BrokenBarrier), "Python: BrokenBarrierError in the waiters");
    assert!(!b.broken().unwrap());
    let b2 = b.clone();
    let t = std::thread::spawn(move || b2.wait_timeout(LONG).unwrap());
    let mine = b.wait_timeout(LONG).unwrap();
    assert_eq!(mine + t.join().unwrap(), 1);
}
