//! CPython's `Doc/includes/mp_webserver.py`, ported: a pool of HTTP
//! servers share one listening socket, each in its own process.
//!
//! What differs from the original, and why:
//! - The socket goes to each child wrapped in [`Handle`] (Python pickles
//!   the server object, socket included); the child serves on its own
//!   descriptor for the same socket, under every start method.
//! - The server answers each request with a short page naming the process
//!   that served it (the original serves the files of a directory with
//!   `SimpleHTTPRequestHandler`), and logs the request line on stderr, as
//!   `log_message` does.
//! - It listens on `localhost:0` (a free port) instead of port 8000, makes
//!   eight requests itself, prints who answered each, and stops the
//!   servers, instead of serving until Ctrl-C: the tests run this example.
//!   With `--serve` it serves until interrupted, as the original does.
//! - The main process does not serve: it is the client (the original's
//!   main process also acts as a worker).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use multiproc::{Handle, Process, current_process};

/// One line on stderr, in one write, so that lines from the four servers
/// do not mix.
fn note(message: &str) {
    let line = format!("[{}]\t{message}\n", current_process().name());
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Answers one HTTP request on `stream`.
fn handle(mut stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // The headers, up to the blank line.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    note(&format!("\"{}\" 200 -", request_line.trim_end()));
    let body = format!("served by {}\n", current_process().name());
    write!(stream, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}", body.len())
}

fn serve_forever(server: Handle<TcpListener>) {
    note("starting server");
    for stream in server.incoming() {
        match stream {
            Ok(stream) => {
                if let Err(e) = handle(stream) {
                    note(&format!("error: {e}"));
                }
            }
            Err(e) => note(&format!("accept failed: {e}")),
        }
    }
}

/// One GET of `/` on `port`: the response body.
fn get(port: u16) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("localhost", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(stream, "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response.split("\r\n\r\n").nth(1).unwrap_or_default().trim_end().to_string())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const NUMBER_OF_PROCESSES: usize = 4;
    let serve = std::env::args().any(|a| a == "--serve");
    let listener = TcpListener::bind(("localhost", if serve { 8000 } else { 0 }))?;
    let port = listener.local_addr()?.port();
    println!("Serving at http://localhost:{port} using {NUMBER_OF_PROCESSES} worker processes");

    // One listening socket; each child gets its own descriptor for it.
    let server = Handle::new(listener);
    let children = (0..NUMBER_OF_PROCESSES)
        .map(|_| Process::new(serve_forever, server.try_clone()?).daemon(true).start())
        .collect::<multiproc::Result<Vec<_>>>()?;
    drop(server);

    if serve {
        println!("To exit press Ctrl-C");
        for child in children {
            child.join()?;
        }
        return Ok(());
    }
    for _ in 0..8 {
        let body = get(port)?;
        assert!(body.starts_with("served by Process-"), "{body}");
        println!("GET / -> {body}");
    }
    for child in children {
        child.terminate()?;
    }
    Ok(())
}
