//! A manager served by one program and used by another, over TCP with an
//! authkey (Python's `BaseManager(address=..., authkey=...)` with
//! `get_server().serve_forever()` on one side and `connect()` on the
//! other).
//!
//! In two terminals:
//!
//! ```text
//! cargo run --example remote_manager -- serve     # serves on 127.0.0.1:50000
//! cargo run --example remote_manager -- client    # uses it, then shuts it down
//! ```
//!
//! With no argument it does both: the server runs in a child process (on a
//! free port it reports back), and the client talks to it.

use multiproc::connection::{Connection, Listener};
use multiproc::{Manager, Process};

const ADDRESS: &str = "127.0.0.1:50000";
const AUTHKEY: &[u8] = b"abracadabra";

fn client(address: &str) -> multiproc::Result<()> {
    let manager = Manager::connect(address, AUTHKEY)?;
    let scores = manager.dict::<String, u32>()?;
    scores.update([("ada".to_string(), 3), ("alan".to_string(), 5)])?;
    let total: u32 = scores.values()?.iter().sum();
    println!("client: {} players, {total} points", scores.len()?);
    manager.shutdown()?;
    println!("client: asked the server to shut down");
    Ok(())
}

/// The server in a child process: binds a free port, says which, serves.
fn serve_on_free_port(ready: Connection) {
    let listener = Listener::bind("127.0.0.1:0", Some(AUTHKEY)).expect("a free port");
    ready.send(&listener.address().to_string()).expect("the parent listens");
    Manager::serve_listener(listener)
}

fn main() -> multiproc::Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("serve") => {
            println!("server: serving on {ADDRESS}");
            Manager::serve(ADDRESS, AUTHKEY)?;
            Ok(())
        }
        Some("client") => client(ADDRESS),
        _ => {
            let (mine, theirs) = multiproc::Pipe(true)?;
            let server = Process::new(serve_on_free_port, theirs).start()?;
            let address: String = mine.recv()?;
            println!("server: serving");
            client(&address)?;
            let _ = server.join();
            println!("server: exited with code {}", server.exitcode().unwrap_or(-1));
            Ok(())
        }
    }
}
