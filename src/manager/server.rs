//! The manager's server: owns every managed object, answers each client
//! connection in a thread of its own, one request at a time, with every
//! call atomic (one lock over the object table). A client that goes away
//! (its process died, or dropped its last proxy) gives back the references
//! it held, and an object that nobody refers to any more is freed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::protocol::{self, Reply, Request, Slot};
use crate::connection::{Connection, Listener};
use crate::error::{Error, ErrorKind, RemoteError, Result};
use crate::runtime;

struct Entry {
    object: Box<dyn std::any::Any + Send>,
    /// References held by connections, and by proxies in flight.
    refs: u64,
}

#[derive(Default)]
struct Table {
    objects: HashMap<u64, Entry>,
    next: u64,
}

impl Table {
    fn incref(&mut self, id: u64) -> Result<()> {
        match self.objects.get_mut(&id) {
            Some(e) => {
                e.refs += 1;
                Ok(())
            }
            None => Err(no_object(id)),
        }
    }

    /// One reference fewer; the object if that was the last (for the
    /// caller to drop after releasing the lock: it may hold proxies, whose
    /// drop comes back here).
    fn decref(&mut self, id: u64) -> Option<Entry> {
        let e = self.objects.get_mut(&id)?;
        e.refs -= 1;
        if e.refs == 0 { self.objects.remove(&id) } else { None }
    }

    /// Applies the reference changes that proxies made inside an op.
    fn apply(&mut self, changes: Vec<RefChange>, freed: &mut Vec<Entry>) {
        for change in changes {
            match change {
                RefChange::Inc(id) => {
                    let _ = self.incref(id);
                }
                RefChange::Dec(id) => freed.extend(self.decref(id)),
            }
        }
    }
}

/// How long a waiting call sleeps before it looks whether its client is
/// still there.
const WAIT_SLICE: std::time::Duration = std::time::Duration::from_millis(100);

/// A change to an object's references made by a proxy inside the server
/// (stored in, read out of, or dropped from another object).
#[derive(Debug, Clone, Copy)]
pub(crate) enum RefChange {
    Inc(u64),
    Dec(u64),
}

thread_local! {
    /// While an op runs: the reference changes its proxies make, applied
    /// when it ends (the table is locked meanwhile).
    static IN_OP: std::cell::RefCell<Option<Vec<RefChange>>> = const { std::cell::RefCell::new(None) };
}

/// The server of this process, if it is a manager's server.
static CURRENT: std::sync::OnceLock<Arc<Server>> = std::sync::OnceLock::new();

/// Records a reference change made by a proxy in a manager's server
/// process; false if this process is not one (the proxy talks to the
/// server instead).
pub(crate) fn change_refs_here(server_id: u64, change: RefChange) -> bool {
    let Some(server) = CURRENT.get().filter(|s| s.id == server_id) else { return false };
    let recorded = IN_OP.with(|c| match c.borrow_mut().as_mut() {
        Some(changes) => {
            changes.push(change);
            true
        }
        None => false,
    });
    if !recorded {
        let mut freed = Vec::new();
        server.lock().apply(vec![change], &mut freed);
        drop(freed);
    }
    true
}

fn no_object(id: u64) -> Error {
    Error::new(
        ErrorKind::InvalidState,
        format!("the manager holds no object {id}: every proxy to it was dropped before this one arrived"),
    )
}

/// The server's shared state.
pub(crate) struct Server {
    table: Mutex<Table>,
    /// Signalled after every call that may have changed an object, for
    /// the calls that wait.
    changed: std::sync::Condvar,
    /// The references each client process holds, and how many connections
    /// it has open, by its token.
    clients: Mutex<HashMap<u64, Client>>,
    /// Its identity (random), which proxies carry.
    id: u64,
}

#[derive(Default)]
struct Client {
    held: HashMap<u64, u64>,
    connections: usize,
}

/// Whether this process is the server whose identity is `id`.
pub(crate) fn is_this_server(id: u64) -> bool {
    CURRENT.get().is_some_and(|s| s.id == id)
}

/// Whether this thread runs an operation of server `id` (whose table it
/// holds: a call to that server from here would wait for itself).
pub(crate) fn in_op_of(id: u64) -> bool {
    is_this_server(id) && IN_OP.with(|c| c.borrow().is_some())
}

impl Server {
    pub(crate) fn new() -> Arc<Server> {
        let mut id = [0u8; 8];
        let _ = crate::sys::random_bytes(&mut id);
        Arc::new(Server {
            table: Mutex::new(Table::default()),
            changed: std::sync::Condvar::new(),
            clients: Mutex::new(HashMap::new()),
            id: u64::from_le_bytes(id) | 1,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves `listener` until a client asks to shut down: then the
    /// process leaves. One server per process.
    pub(crate) fn run(self: Arc<Self>, listener: Listener) -> ! {
        let _ = CURRENT.set(Arc::clone(&self));
        // Batches of a few MiB come and go: their memory is reused rather
        // than faulted in again for each.
        crate::sys::keep_freed_memory(16 << 20);
        loop {
            match listener.accept() {
                Ok(conn) => {
                    let server = Arc::clone(&self);
                    let spawned = std::thread::Builder::new()
                        .name("multiproc-manager-client".into())
                        .spawn(move || server.serve_client(&conn));
                    if spawned.is_err() {
                        // No thread for this client: it sees its
                        // connection close.
                        continue;
                    }
                }
                // A client that failed the handshake, or a transient error:
                // the next one is served.
                Err(e) if e.kind() == ErrorKind::Authentication || e.kind() == ErrorKind::Eof => {}
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
    }

    /// Answers one connection until it closes; when its process's last
    /// connection closes, gives back what the process held.
    fn serve_client(&self, conn: &Connection) {
        // A method's panic is its caller's error, not the server's output.
        runtime::quiet_panics();
        let token = match conn.recv::<Request>() {
            Ok(Request::Hello(token)) => token,
            _ => return,
        };
        self.clients().entry(token).or_default().connections += 1;
        if conn.send(&Reply::Welcome(self.id)).is_ok() {
            loop {
                protocol::spin_until_readable(conn);
                let Ok(request) = conn.recv::<Request>() else { break };
                let reply = match self.handle(request, token, conn) {
                    Ok(Some(reply)) => reply,
                    Ok(None) => {
                        let _ = conn.send(&Reply::Done);
                        runtime::finish(0);
                    }
                    Err(e) => Reply::Failed(RemoteError::from(&e)),
                };
                match conn.send(&reply) {
                    Ok(()) => {}
                    // Refused before a byte was written (above the frame
                    // limit): the client hears why, and the stream goes on.
                    Err(e) if e.kind() == ErrorKind::FrameTooLarge => {
                        if conn.send(&Reply::Failed(RemoteError::from(&e))).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        }
        let gone = {
            let mut clients = self.clients();
            let client = clients.entry(token).or_default();
            client.connections -= 1;
            if client.connections == 0 { clients.remove(&token) } else { None }
        };
        let Some(client) = gone else { return };
        let mut freed = Vec::new();
        {
            let mut table = self.lock();
            for (id, n) in client.held {
                for _ in 0..n {
                    freed.extend(table.decref(id));
                }
            }
        }
        // Objects that hold proxies drop them here, outside the lock.
        drop(freed);
    }

    fn clients(&self) -> MutexGuard<'_, HashMap<u64, Client>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes one more reference held by client `token`.
    fn hold(&self, token: u64, id: u64) {
        *self.clients().entry(token).or_default().held.entry(id).or_default() += 1;
    }

    /// One request; `None` for a shutdown.
    fn handle(&self, request: Request, token: u64, conn: &Connection) -> Result<Option<Reply>> {
        Ok(Some(match request {
            Request::Create { op, args } => {
                let op = protocol::resolve(op)?;
                let mut slot = Slot { object: None, reply: Ok(Vec::new()), would_block: false };
                let mut freed = Vec::new();
                let mut table = self.lock();
                let ran = run_recording(op, &args, 0, &mut slot, &mut table, &mut freed);
                let made = match (ran, slot.object) {
                    (Ok(()), Some(object)) => {
                        table.next += 1;
                        let id = table.next;
                        table.objects.insert(id, Entry { object, refs: 1 });
                        Ok(id)
                    }
                    (Err(e), _) => Err(e),
                    (Ok(()), None) => Err(slot.reply.err().unwrap_or_else(|| {
                        Error::new(ErrorKind::Protocol, "a manager's create operation made no object")
                    })),
                };
                // Freed objects may hold proxies, whose drop takes the
                // table's lock: they go after it is let go.
                drop(table);
                drop(freed);
                let id = made?;
                self.hold(token, id);
                Reply::Created(id)
            }
            Request::Call { id, op, method, args } => {
                let op = protocol::resolve(op)?;
                let mut table = self.lock();
                let mut freed = Vec::new();
                let (slot, ran) = run_on(&mut table, id, op, &args, method, &mut freed)?;
                drop(table);
                drop(freed);
                self.changed.notify_all();
                ran?;
                Reply::Value(slot.reply?)
            }
            Request::Wait { id, op, method, args, timeout_us } => {
                let op = protocol::resolve(op)?;
                let deadline = timeout_us
                    .and_then(|us| std::time::Instant::now().checked_add(std::time::Duration::from_micros(us)));
                // A client that died right after sending this call left it
                // in the socket: its end is readable (a waiting client sends
                // nothing more), and the call must not take an item or a
                // permit that nobody would receive.
                if conn.poll(Some(std::time::Duration::ZERO)).unwrap_or(true) {
                    return Err(Error::new(ErrorKind::Eof, "the client went away before its call ran"));
                }
                let mut table = self.lock();
                loop {
                    let mut freed = Vec::new();
                    let (slot, ran) = run_on(&mut table, id, op, &args, method, &mut freed)?;
                    if !slot.would_block || ran.is_err() {
                        drop(table);
                        drop(freed);
                        self.changed.notify_all();
                        ran?;
                        break Reply::Value(slot.reply?);
                    }
                    // Nothing changed: wait for another call to change
                    // something (the lock is let go meanwhile), a slice at a
                    // time, so that a client that dies while it waits is
                    // noticed (it sends nothing while it waits: anything
                    // readable is its end), before its wait takes an item
                    // or a permit that nobody would receive.
                    let left = match deadline {
                        None => WAIT_SLICE,
                        Some(d) => d.saturating_duration_since(std::time::Instant::now()),
                    };
                    if left.is_zero() {
                        drop(table);
                        drop(freed);
                        break Reply::Value(slot.reply?);
                    }
                    drop(freed);
                    table = self.changed.wait_timeout(table, left.min(WAIT_SLICE)).unwrap_or_else(|p| p.into_inner()).0;
                    if conn.poll(Some(std::time::Duration::ZERO)).unwrap_or(true) {
                        return Err(Error::new(ErrorKind::Eof, "the client went away while its call waited"));
                    }
                }
            }
            Request::IncRef(id) => {
                self.lock().incref(id)?;
                self.hold(token, id);
                Reply::Done
            }
            Request::Hold(id) => {
                self.lock().incref(id)?;
                Reply::Done
            }
            Request::Adopt(id) => {
                if !self.lock().objects.contains_key(&id) {
                    return Err(no_object(id));
                }
                self.hold(token, id);
                Reply::Done
            }
            Request::DecRef(id) => {
                let was_held = {
                    let mut clients = self.clients();
                    let held = &mut clients.entry(token).or_default().held;
                    match held.get_mut(&id) {
                        Some(n) => {
                            *n -= 1;
                            if *n == 0 {
                                held.remove(&id);
                            }
                            true
                        }
                        None => false,
                    }
                };
                if was_held {
                    let freed = self.lock().decref(id);
                    drop(freed);
                }
                Reply::Done
            }
            Request::Hello(_) => Reply::Done,
            Request::Count => Reply::Count(self.lock().objects.len() as u64),
            Request::Shutdown => return Ok(None),
        }))
    }
}

/// Runs `op` with the table locked, applying the reference changes its
/// proxies made; a panic in it is that call's error.
/// Runs `op` on object `id`: the object leaves the table for the call (so
/// that the op may use the table, as a proxy inside it does) and goes back
/// after it, unless the op dropped the object's last reference meanwhile.
/// The slot (without the object) and how the op ended.
fn run_on(
    table: &mut Table,
    id: u64,
    op: protocol::Op,
    args: &[u8],
    method: u32,
    freed: &mut Vec<Entry>,
) -> Result<(Slot, Result<()>)> {
    let entry = table.objects.get_mut(&id).ok_or_else(|| no_object(id))?;
    let object = std::mem::replace(&mut entry.object, Box::new(()));
    let mut slot = Slot { object: Some(object), reply: Ok(Vec::new()), would_block: false };
    let ran = run_recording(op, args, method, &mut slot, table, freed);
    if let (Some(object), Some(entry)) = (slot.object.take(), table.objects.get_mut(&id)) {
        entry.object = object;
    }
    Ok((slot, ran))
}

fn run_recording(
    op: protocol::Op,
    args: &[u8],
    method: u32,
    slot: &mut Slot,
    table: &mut Table,
    freed: &mut Vec<Entry>,
) -> Result<()> {
    IN_OP.with(|c| *c.borrow_mut() = Some(Vec::new()));
    let ran = runtime::catch_panic(|| op(args, method, slot));
    let changes = IN_OP.with(|c| c.borrow_mut().take()).unwrap_or_default();
    table.apply(changes, freed);
    ran.map_err(|panic| {
        Error::new(ErrorKind::Panicked, format!("a managed object's method {panic}; the manager goes on"))
            .with_panic(panic)
    })
}
