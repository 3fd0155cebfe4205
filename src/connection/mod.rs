//! How processes talk: [`Pipe`] and [`Connection`], [`wait`](fn@wait) over many
//! of them, and [`Listener`]/[`Client`] for processes that did not start
//! each other, speaking the wire format of Python's
//! `multiprocessing.connection` (so a Python peer can be on the other end).

mod auth;
mod conn;
mod framing;
mod listener;
mod typed;
pub(crate) mod wait;

pub use conn::Connection;
pub use listener::{Address, Client, Listener, ToAddress};
pub use typed::TypedConnection;
pub use wait::{Waitable, wait};

use crate::error::{Error, Result};
use crate::sys::{self, AsFd};

/// A pair of connected [`Connection`]s (Python's `Pipe`). With `duplex`,
/// both ends send and receive; without, the first end only receives and
/// the second only sends.
///
/// Both kinds are Unix stream sockets (a one-way pipe is one with each
/// direction shut on one side), which move large messages several times
/// faster than an OS pipe.
///
/// # Errors
///
/// [`ErrorKind::Io`](crate::ErrorKind::Io) if the process is out of file
/// descriptors.
///
/// # Examples
///
/// ```
/// use multiproc::Pipe;
/// let (reader, writer) = Pipe(false)?;
/// writer.send(&42u32)?;
/// assert_eq!(reader.recv::<u32>()?, 42);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[allow(non_snake_case)]
pub fn Pipe(duplex: bool) -> Result<(Connection, Connection)> {
    let (a, b) = sys::socketpair_stream().map_err(|e| Error::io("creating a pipe (socketpair)", e))?;
    if duplex {
        return Ok((Connection::new(a, true, true), Connection::new(b, true, true)));
    }
    sys::shutdown_write(a.as_fd()).map_err(|e| Error::io("making a pipe one-way", e))?;
    sys::shutdown_read(b.as_fd()).map_err(|e| Error::io("making a pipe one-way", e))?;
    Ok((Connection::new(a, true, false), Connection::new(b, false, true)))
}
