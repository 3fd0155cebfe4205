//! What may run in another process, and what may travel there and back:
//! the bounds that [`Process`](crate::Process), [`Pool`](crate::Pool) and
//! pool initializers share, written once.

use serde::Serialize;
use serde::de::DeserializeOwned;

mod sealed {
    /// Keeps [`Target`](super::Target) implemented only by the blanket impl.
    pub trait Sealed<A, R> {}
}

/// A function that can run in another process: a fn item, or a closure that
/// captures nothing, taking one argument (use a tuple for several) and
/// returning one value. Python's `target=` / `func`.
///
/// The function is named to the child by its address in the executable,
/// which means the same function in every process that runs this build; so
/// it must have no state of its own. A closure that captures, or a fn
/// pointer, satisfies the trait bounds but is refused by `cargo build` (not
/// `cargo check`) with one error that says why and what to do, and names
/// the closure's place in your source (see [`Process`](crate::Process)).
/// Implemented for every `Fn(A) -> R + Copy + Send + 'static`; it cannot be
/// implemented by hand.
///
/// # Examples
///
/// ```
/// use multiproc::{Message, Pool, Target};
///
/// fn square(x: u64) -> u64 { x * x }
///
/// /// Runs `f` on every item in a pool of two workers.
/// fn run_all<F: Target<A, R>, A: Message, R: Message>(f: F, items: Vec<A>) -> multiproc::Result<Vec<R>> {
///     Pool::new(2)?.map(f, items)
/// }
///
/// assert_eq!(run_all(square, vec![1, 2, 3])?, [1, 4, 9]);
/// assert_eq!(run_all(|(a, b): (u8, u8)| a + b, vec![(1, 2)])?, [3]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub trait Target<A, R>: Fn(A) -> R + Copy + Send + 'static + sealed::Sealed<A, R> {}

impl<F, A, R> sealed::Sealed<A, R> for F where F: Fn(A) -> R + Copy + Send + 'static {}

impl<F, A, R> Target<A, R> for F where F: Fn(A) -> R + Copy + Send + 'static {}

/// A value that can travel to another process and back: an argument, a
/// return value, a pool initializer's argument. Any type that is
/// `Serialize + DeserializeOwned + Send + 'static` (Python's "picklable");
/// it travels through serde (postcard). Every such type is a `Message`
/// already, through one blanket impl, so it is never implemented by hand.
///
/// Handles ([`Queue`](crate::Queue), [`Connection`](crate::connection::Connection),
/// [`Lock`](crate::Lock), [`Value`](crate::Value),
/// [`SharedMemory`](crate::SharedMemory), ...) are messages too: inside a
/// [`Process`](crate::Process) argument or a pool initializer's argument
/// their file descriptors go along.
///
/// # Examples
///
/// ```
/// use multiproc::{Message, Process};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Job { id: u32, name: String }
///
/// fn describe(job: Job) -> String { format!("{} #{}", job.name, job.id) }
///
/// fn is_message<T: Message>() {}
/// is_message::<Job>();
/// is_message::<(Vec<u64>, Option<String>)>();
///
/// let child = Process::new(describe, Job { id: 7, name: "resize".into() }).start()?;
/// assert_eq!(child.join()?, "resize #7");
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias = "picklable")]
pub trait Message: Serialize + DeserializeOwned + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> Message for T {}
