//! Sockets and files as process arguments (Python's `args=(sock,)`):
//! wrapped in `multiproc::Handle`, under every start method, in processes
//! and in pool initializers.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::OnceLock;

use common::LONG;
use multiproc::{ErrorKind, Handle, Pool, Process, Queue, StartMethod};

/// Accepts two connections and answers each with this process's pid.
fn serve_two(listener: Handle<TcpListener>) -> u32 {
    for _ in 0..2 {
        let (mut conn, _) = listener.accept().expect("a connection");
        writeln!(conn, "{}", std::process::id()).expect("an answer");
    }
    std::process::id()
}

per_method! {
    fn four_children_serve_one_listening_socket(method: StartMethod) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let shared = Handle::new(listener);
        let children: Vec<_> = (0..4)
            .map(|_| Process::new(serve_two, shared.try_clone().unwrap()).start_method(method).start().unwrap())
            .collect();
        // The parent's copy can go: the children hold their own.
        drop(shared);
        let mut served = HashSet::new();
        for _ in 0..8 {
            let mut conn = TcpStream::connect(address).unwrap();
            conn.set_read_timeout(Some(LONG)).unwrap();
            let mut answer = String::new();
            conn.read_to_string(&mut answer).unwrap();
            served.insert(answer.trim().parse::<u32>().unwrap());
        }
        let pids: HashSet<u32> = children.into_iter().map(|c| c.join_timeout(LONG).unwrap()).collect();
        assert!(served.len() > 1, "one process served every connection");
        assert_eq!(served, pids, "each child served two connections");
    }
}

fn append_line((mut file, line): (Handle<std::fs::File>, String)) {
    writeln!(file, "{line}").expect("the child can write to the file");
}

per_method! {
    fn a_child_appends_to_a_file_it_was_passed(method: StartMethod) {
        let path = std::env::temp_dir().join(format!("multiproc-handle-{}-{method}", std::process::id()));
        std::fs::write(&path, "parent\n").unwrap();
        let file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        let child = Process::new(append_line, (Handle::new(file), "child".to_string())).start_method(method).start().unwrap();
        child.join_timeout(LONG).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "parent\nchild\n");
        std::fs::remove_file(&path).unwrap();
    }
}

fn echo_once(mut stream: Handle<UnixStream>) {
    let mut buf = [0u8; 5];
    stream.read_exact(&mut buf).unwrap();
    stream.write_all(&buf).unwrap();
}

static INIT_STREAM: OnceLock<std::sync::Mutex<UnixStream>> = OnceLock::new();

fn keep_stream(stream: Handle<UnixStream>) {
    let _ = INIT_STREAM.set(std::sync::Mutex::new(stream.into_inner()));
}

fn say_pid_on_stream(_: ()) -> u32 {
    let mut s = INIT_STREAM.get().expect("the initializer ran").lock().unwrap();
    writeln!(s, "{}", std::process::id()).unwrap();
    std::process::id()
}

per_method! {
    fn unix_streams_travel_to_children_and_pool_initializers(method: StartMethod) {
        let (mine, theirs) = UnixStream::pair().unwrap();
        mine.set_read_timeout(Some(LONG)).unwrap();
        let child = Process::new(echo_once, Handle::new(theirs)).start_method(method).start().unwrap();
        (&mine).write_all(b"hello").unwrap();
        let mut back = [0u8; 5];
        (&mine).read_exact(&mut back).unwrap();
        assert_eq!(&back, b"hello");
        child.join_timeout(LONG).unwrap();

        let (mine, theirs) = UnixStream::pair().unwrap();
        mine.set_read_timeout(Some(LONG)).unwrap();
        let pool = Pool::builder().processes(1).start_method(method).initializer(keep_stream, Handle::new(theirs)).build().unwrap();
        let pid = pool.apply(say_pid_on_stream, ()).unwrap();
        let mut line = String::new();
        let mut byte = [0u8; 1];
        while (&mine).read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
            line.push(byte[0] as char);
        }
        assert_eq!(line.parse::<u32>().unwrap(), pid);
    }
}

fn put_index_in_each(queues: Vec<Queue<u32>>) -> multiproc::Result<()> {
    for (i, q) in queues.iter().enumerate() {
        q.put(&(i as u32))?;
    }
    Ok(())
}

per_method! {
    /// 300 queues are 600 fds, more than one message carries (the kernel's
    /// SCM_MAX_FD, 253): they travel in batches, in order. (They were
    /// refused before, "at most 253 can travel to one process"; found by
    /// tests/load.rs's 1,000 queues and 1,000 locks.)
    fn a_child_gets_more_handles_than_one_message_carries(method: StartMethod) {
        common::raise_fd_limit(4_096);
        let queues: Vec<Queue<u32>> = (0..300).map(|_| Queue::new().unwrap()).collect();
        let child = Process::new(put_index_in_each, queues.clone()).start_method(method).start().unwrap();
        child.join_timeout(LONG).unwrap().unwrap();
        for (i, q) in queues.iter().enumerate() {
            assert_eq!(q.get_timeout(LONG).unwrap(), i as u32, "queue {i}");
            assert!(q.empty(), "queue {i}");
        }
    }
}

fn takes_a_handle(_: Handle<std::fs::File>) -> u8 {
    1
}

#[test]
fn a_handle_in_a_pool_task_is_a_clear_error() {
    let _w = common::watchdog("handle in a task");
    let pool = Pool::new(1).unwrap();
    let file = Handle::new(std::fs::File::open("/dev/null").unwrap());
    let err = pool.apply(takes_a_handle, file).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Serialize, "{err}");
    assert!(err.to_string().contains("Handle"), "{err}");
}
