//! A minimal process pool: enough for `Pool::new(n)?.map(f, items)`.
//!
//! Each `map` call starts one process per chunk and joins them in order.
//! The full pool (persistent workers, a dispatcher, `imap`, `apply_async`,
//! timeouts, crash recovery) replaces this module.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::{StartMethod, get_start_method};
use crate::error::{Error, ErrorKind, Result};
use crate::process::{Child, Process};
use crate::sys;

/// A group of worker processes that applies one function to many inputs
/// in parallel (Python's `multiprocessing.Pool`).
///
/// # Examples
///
/// ```
/// use multiproc::Pool;
///
/// fn square(n: u64) -> u64 { n * n }
///
/// let pool = Pool::new(4)?;
/// assert_eq!(pool.map(square, [1, 2, 3, 4])?, vec![1, 4, 9, 16]);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug)]
pub struct Pool {
    processes: usize,
    method: StartMethod,
}

impl Pool {
    /// A pool of `processes` workers.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] when `processes` is 0.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(multiproc::Pool::new(0).is_err());
    /// assert!(multiproc::Pool::new(2).is_ok());
    /// ```
    pub fn new(processes: usize) -> Result<Pool> {
        if processes == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "a pool needs at least 1 process; pass 1 or more, or cpu_count()",
            ));
        }
        Ok(Pool {
            processes,
            method: get_start_method(),
        })
    }

    /// Applies `f` to every item, in parallel, and returns the results in
    /// input order, or the error of the first failing item.
    ///
    /// # Errors
    ///
    /// The first error in input order: a panic in `f`, a worker that died,
    /// or a value that could not be serialized.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn double(n: i32) -> i32 { 2 * n }
    /// let pool = Pool::new(2)?;
    /// assert_eq!(pool.map(double, 0..5)?, vec![0, 2, 4, 6, 8]);
    /// assert_eq!(pool.map(double, Vec::new())?, Vec::<i32>::new());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn map<F, A, R, I>(&self, f: F, items: I) -> Result<Vec<R>>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        let items: Vec<A> = items.into_iter().collect();
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let _ = crate::task::Task::of(f);
        let per = items.len().div_ceil(self.processes);
        let mut chunks = Vec::new();
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            chunks.push(items.by_ref().take(per).collect::<Vec<A>>());
        }
        let children: Vec<Child<Vec<R>>> = chunks
            .into_iter()
            .map(|chunk| {
                Process::new(run_chunk::<F, A, R>, chunk)
                    .start_method(self.method)
                    .start()
            })
            .collect::<Result<_>>()?;
        let mut out = Vec::new();
        let mut first_err = None;
        for child in &children {
            match child.join() {
                Ok(part) => out.extend(part),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// The worker side of `map`: the target `F` over one chunk.
fn run_chunk<F, A, R>(chunk: Vec<A>) -> Vec<R>
where
    F: Fn(A) -> R + Copy + Send + 'static,
{
    let f: F = sys::conjure::<F, A, R>();
    chunk.into_iter().map(f).collect()
}
