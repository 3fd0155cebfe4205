//! [`TypedConnection`]: a connection whose two ends check that they agree
//! on the type of its messages.
//!
//! A plain [`Connection`] sends postcard's bytes, which do not say what
//! type they were: a `(u8, &str)` read as a `Vec<String>` can decode
//! without an error. Each end of a typed connection announces the type it
//! sends (its name, in one message, before its first value), and a
//! receiver that expects another type refuses the values with both names.
//! Every value then costs one tag byte.

use std::any::type_name;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Connection;
use super::conn::decode_message;
use crate::codec;
use crate::error::{Error, ErrorKind, Result};

/// The first byte of each message on a typed connection.
const VALUE: u8 = 0;
const ANNOUNCE: u8 = 1;
/// What an announcement starts with after its tag.
const MAGIC: &[u8] = b"multiproc-type:";

/// A [`Connection`] whose messages are all `T`, checked at both ends
/// (made by [`Connection::typed`]). Use it at both ends; a Python peer,
/// or a plain `Connection`, speaks the plain form.
///
/// # Examples
///
/// ```
/// use multiproc::{ErrorKind, Pipe};
/// let (a, b) = Pipe(true)?;
/// let (a, b) = (a.typed::<(u8, String)>(), b.typed::<Vec<String>>());
/// a.send(&(1, "x".to_string()))?;
/// let err = b.recv().unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Deserialize);
/// assert!(err.to_string().contains("(u8, alloc::string::String)"), "{err}");
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct TypedConnection<T> {
    conn: Connection,
    /// Whether `T` was announced on the connection (two threads may both
    /// announce: the peer takes announcements at any point).
    announced: AtomicBool,
    /// Whether the peer announced `T`.
    peer_agrees: AtomicBool,
    _type: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for TypedConnection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedConnection").field("type", &type_name::<T>()).field("conn", &self.conn).finish()
    }
}

impl Connection {
    /// This connection, checked: every message sent is a `T`, and every
    /// message received must have been sent as a `T` by a typed peer. A
    /// mismatch fails with [`ErrorKind::Deserialize`], naming both types,
    /// where a plain [`recv`](Connection::recv) could decode the wrong
    /// type without noticing.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = multiproc::Pipe(true)?;
    /// let (a, b) = (a.typed::<u64>(), b.typed::<u64>());
    /// a.send(&7)?;
    /// assert_eq!(b.recv()?, 7);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn typed<T>(self) -> TypedConnection<T> {
        TypedConnection {
            conn: self,
            announced: AtomicBool::new(false),
            peer_agrees: AtomicBool::new(false),
            _type: PhantomData,
        }
    }
}

impl<T> TypedConnection<T> {
    /// The plain connection underneath.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, _b) = multiproc::Pipe(true)?;
    /// let plain = a.typed::<u8>().into_inner();
    /// assert!(!plain.closed());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn into_inner(self) -> Connection {
        self.conn
    }

    /// Whether data waits to be received, waiting at most `timeout` (as
    /// [`Connection::poll`]).
    ///
    /// # Errors
    ///
    /// As [`Connection::poll`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let (a, b) = multiproc::Pipe(true)?;
    /// let b = b.typed::<u8>();
    /// assert!(!b.poll(Some(Duration::ZERO))?);
    /// # drop(a);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn poll(&self, timeout: Option<std::time::Duration>) -> Result<bool> {
        self.conn.poll(timeout)
    }
}

impl<T: Serialize + DeserializeOwned + 'static> TypedConnection<T> {
    /// Sends `value` (after announcing `T`, the first time).
    ///
    /// # Errors
    ///
    /// As [`Connection::send`].
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = multiproc::Pipe(true)?;
    /// let (a, b) = (a.typed::<String>(), b.typed::<String>());
    /// a.send(&"hi".to_string())?;
    /// assert_eq!(b.recv()?, "hi");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn send(&self, value: &T) -> Result<()> {
        let mut bytes = vec![VALUE];
        codec::Encoder::new(&mut bytes).push_message(value, "a message")?;
        if !self.announced.load(Ordering::Acquire) {
            let mut announcement = vec![ANNOUNCE];
            announcement.extend_from_slice(MAGIC);
            announcement.extend_from_slice(type_name::<T>().as_bytes());
            self.conn.send_bytes(&announcement)?;
            self.announced.store(true, Ordering::Release);
        }
        self.conn.send_bytes(&bytes)
    }

    /// Receives the next value, checking that the peer sends `T`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Deserialize`] if the peer announced another type (the
    /// message names both) or is not a typed connection, and the errors of
    /// [`Connection::recv`].
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = multiproc::Pipe(true)?;
    /// let b = b.typed::<u32>();
    /// a.send(&5u32)?; // a plain sender announces nothing
    /// assert!(b.recv().unwrap_err().to_string().contains("typed"));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn recv(&self) -> Result<T> {
        loop {
            let msg = self.conn.recv_bytes()?;
            match msg.split_first() {
                Some((&ANNOUNCE, rest)) if rest.starts_with(MAGIC) => {
                    let theirs = String::from_utf8_lossy(&rest[MAGIC.len()..]);
                    let ours = type_name::<T>();
                    if theirs != ours {
                        return Err(Error::new(
                            ErrorKind::Deserialize,
                            format!(
                                "the peer sends `{theirs}` on this connection, and `{ours}` was asked for; use the \
                                 same type at both ends"
                            ),
                        ));
                    }
                    self.peer_agrees.store(true, Ordering::Release);
                }
                Some((&VALUE, rest)) if self.peer_agrees.load(Ordering::Acquire) => {
                    return decode_message(rest);
                }
                _ => {
                    return Err(Error::new(
                        ErrorKind::Deserialize,
                        format!(
                            "a message came without a type announced for it: the peer does not use a typed \
                             connection; call .typed::<{}>() on both ends",
                            type_name::<T>()
                        ),
                    ));
                }
            }
        }
    }
}
