//! [`CustomProxy`]: an object of the caller's own type in a manager's
//! server, whose methods run there (Python's `BaseManager.register`).

use std::marker::PhantomData;

use super::protocol::{self, Slot, decode, encode, object};
use super::proxy::{Link, Proxy};
use crate::error::Result;
use crate::runtime;
use crate::target::Message;

/// The server side of making a `T` with `F` (a constructor such as
/// `Counter::new`).
fn create_op<T, F, A>(args: &[u8], _: u32, slot: &mut Slot)
where
    T: Send + 'static,
    F: Fn(A) -> T + Copy + 'static,
    A: Message,
{
    let new: F = runtime::conjure::<F, A, T>();
    slot.reply = decode::<A>(args).map(|arg| {
        slot.object = Some(Box::new(new(arg)));
        Vec::new()
    });
}

/// The server side of calling method `F` on a `T`.
fn method_op<T, F, A, R>(args: &[u8], _: u32, slot: &mut Slot)
where
    T: Send + 'static,
    F: Fn(&mut T, A) -> R + Copy + 'static,
    A: Message,
    R: Message,
{
    let method: F = runtime::conjure_method::<F, T, A, R>();
    let reply = (|| -> Result<Vec<u8>> {
        let arg = decode::<A>(args)?;
        let this = object::<T>(slot)?;
        encode(&method(this, arg))
    })();
    slot.reply = reply;
}

/// An object of your own type `T` that lives in a
/// [`Manager`](crate::Manager)'s server (Python's `BaseManager.register`
/// and the proxy it makes): made by [`Manager::create`](crate::Manager::create),
/// used with [`call`](CustomProxy::call), which runs one of `T`'s methods
/// on the server, atomically. `T` needs no serde: it never leaves the
/// server; the arguments and results do.
///
/// Like every proxy it is `Clone` and a message, and the same object
/// wherever it goes.
///
/// # Examples
///
/// ```
/// use multiproc::Manager;
///
/// struct Counter { n: i64 }
///
/// impl Counter {
///     fn new(start: i64) -> Counter { Counter { n: start } }
///     fn add(&mut self, by: i64) -> i64 { self.n += by; self.n }
///     fn get(&mut self, (): ()) -> i64 { self.n }
/// }
///
/// let m = Manager::new()?;
/// let counter = m.create(Counter::new, 10)?;
/// assert_eq!(counter.call(Counter::add, 5)?, 15);
/// assert_eq!(counter.call(Counter::get, ())?, 15);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias("register", "BaseProxy", "AutoProxy"))]
pub struct CustomProxy<T> {
    proxy: Proxy,
    _types: PhantomData<fn() -> T>,
}

super::proxy::typed_proxy!(CustomProxy<T>);

impl<T: Send + 'static> CustomProxy<T> {
    pub(crate) fn create<F, A>(link: std::sync::Arc<Link>, new: F, arg: &A) -> Result<Self>
    where
        F: Fn(A) -> T + Copy + Send + 'static,
        A: Message,
    {
        let _ = new;
        let op = protocol::op_id(create_op::<T, F, A>);
        Ok(CustomProxy { proxy: Proxy::create(link, op, protocol::encode(arg)?)?, _types: PhantomData })
    }

    /// Runs `method(&mut object, arg)` on the server, atomically, and
    /// returns its result. `method` is a method of `T` taking one argument
    /// (a tuple for several, `()` for none), or a closure that captures
    /// nothing.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Panicked`](crate::ErrorKind::Panicked) if the method
    /// panicked (the server goes on), and
    /// [`ErrorKind::ManagerGone`](crate::ErrorKind::ManagerGone) if the
    /// server is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ErrorKind, Manager};
    ///
    /// struct Stack(Vec<u32>);
    /// impl Stack {
    ///     fn new((): ()) -> Stack { Stack(Vec::new()) }
    ///     fn push(&mut self, x: u32) { self.0.push(x) }
    ///     fn pop(&mut self, (): ()) -> u32 { self.0.pop().expect("not empty") }
    /// }
    ///
    /// let m = Manager::new()?;
    /// let s = m.create(Stack::new, ())?;
    /// s.call(Stack::push, 7)?;
    /// assert_eq!(s.call(Stack::pop, ())?, 7);
    /// let err = s.call(Stack::pop, ()).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Panicked);
    /// assert!(err.to_string().contains("not empty"));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn call<F, A, R>(&self, method: F, arg: A) -> Result<R>
    where
        F: Fn(&mut T, A) -> R + Copy + Send + 'static,
        A: Message,
        R: Message,
    {
        let _ = method;
        self.proxy.call(protocol::op_id(method_op::<T, F, A, R>), 0, &arg)
    }
}
