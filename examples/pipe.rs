//! Pipes between processes, as Python's `multiprocessing.Pipe`: a two-way
//! pipe to a child that answers typed messages and raw bytes, a one-way
//! pipe from a producer read until end of file, and `connection::wait`
//! over two pipes and a process.
//!
//! ```text
//! cargo run --example pipe
//! ```
//!
//! Python's `send`/`recv` pickle; here they carry any serde type, and the
//! receiver names the type it expects. `send_bytes`/`recv_bytes` are the
//! same bytes in both languages.

use std::time::Duration;

use multiproc::connection::{Connection, Waitable, wait};
use multiproc::{ErrorKind, Pipe, Process};
use serde::{Deserialize, Serialize};

/// Bounds every wait: a bug fails the program instead of hanging it.
const LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Serialize, Deserialize)]
struct Greeting {
    from: String,
    count: u32,
}

/// Python: `hello = conn.recv(); conn.send(...)`, then
/// `conn.send_bytes(conn.recv_bytes()[::-1])`.
fn answer(conn: Connection) -> multiproc::Result<()> {
    let hello: Greeting = conn.recv()?;
    conn.send(&Greeting { from: "child".into(), count: hello.count + 1 })?;
    let bytes = conn.recv_bytes()?;
    conn.send_bytes(&bytes.iter().rev().copied().collect::<Vec<u8>>())
}

/// Sends numbers down a one-way pipe and exits, which closes the pipe.
fn count_down(writer: Connection) -> multiproc::Result<()> {
    (1..=3u32).rev().try_for_each(|n| writer.send(&n))
}

/// Sends the even numbers down one pipe and the odd ones down the other.
fn split((evens, odds): (Connection, Connection)) -> multiproc::Result<()> {
    (0..6u32).try_for_each(|n| if n % 2 == 0 { evens.send(&n) } else { odds.send(&n) })
}

/// The next number, or `None` at end of file (Python raises `EOFError`).
fn recv_number(conn: &Connection) -> multiproc::Result<Option<u32>> {
    match conn.recv() {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == ErrorKind::Eof => Ok(None),
        Err(e) => Err(e),
    }
}

fn main() -> multiproc::Result<()> {
    // Python: here, there = Pipe()
    let (here, there) = Pipe(true)?;
    let child = Process::new(answer, there).start()?;
    // The child only answers what it is sent: nothing comes in 50 ms.
    println!("poll before asking: {}", here.poll(Some(Duration::from_millis(50)))?);
    here.send(&Greeting { from: "parent".into(), count: 1 })?;
    println!("poll after asking: {}", here.poll(Some(LIMIT))?);
    println!("typed reply: {:?}", here.recv::<Greeting>()?);
    here.send_bytes(b"hello")?;
    println!("bytes reply: {}", String::from_utf8_lossy(&here.recv_bytes()?));
    child.join_timeout(LIMIT)??;

    // Python: reader, writer = Pipe(duplex=False). `writer` moves to the
    // child (Python would have to call writer.close() here), so end of
    // file comes when the child is done.
    let (reader, writer) = Pipe(false)?;
    let child = Process::new(count_down, writer).start()?;
    let mut got = Vec::new();
    while let Some(n) = recv_number(&reader)? {
        got.push(n);
    }
    println!("one-way pipe: {got:?}, then end of file");
    child.join_timeout(LIMIT)??;

    // Python: wait([evens, odds, child.sentinel], timeout), until both
    // pipes are at end of file and the child has ended. `wait` returns
    // the indices of the ready objects.
    let (evens, evens_w) = Pipe(false)?;
    let (odds, odds_w) = Pipe(false)?;
    let child = Process::new(split, (evens_w, odds_w)).start()?;
    let objects: [&dyn Waitable; 3] = [&evens, &odds, &child];
    let mut numbers = [Vec::new(), Vec::new()];
    let mut open = vec![0, 1, 2];
    while !open.is_empty() {
        let watched: Vec<&dyn Waitable> = open.iter().map(|&i| objects[i]).collect();
        let ready = wait(&watched, Some(LIMIT))?;
        assert!(!ready.is_empty(), "nothing happened in {LIMIT:?}");
        for j in ready.into_iter().rev() {
            let i = open[j];
            if i == 2 {
                child.join()??; // its sentinel fired: it has ended
                open.remove(j);
            } else if let Some(n) = recv_number([&evens, &odds][i])? {
                numbers[i].push(n);
            } else {
                open.remove(j);
            }
        }
    }
    println!("evens: {:?}, odds: {:?}", numbers[0], numbers[1]);
    println!("both pipes at end of file, child exitcode {:?}", child.exitcode());
    Ok(())
}
