//! `Value<T>` and `Array<T>`: plain data in shared memory with a robust
//! lock built in, and `AtomicValue<T>` for lock-free integers.

use std::marker::PhantomData;
use std::sync::atomic::Ordering;

use bytemuck::Pod;

use super::block::{Block, Kind, START, block_serde};
use super::lock::{LOCK_SIZE, Lock, LockGuard, RawLock};
use crate::error::{Error, ErrorKind, Result};

/// Where the data starts: after the magic, the size fields and the lock.
const OFF_LEN: usize = 8;
const OFF_ELEM: usize = 16;
const OFF_DATA: usize = START + LOCK_SIZE;

fn block_len(bytes: usize) -> usize {
    (OFF_DATA + bytes).div_ceil(4096) * 4096
}

/// Creates the block of a `Value` or an `Array` of `len` `T`s.
fn new_block<T: Pod>(kind: Kind, init: &[T]) -> Result<Lock> {
    const { assert!(std::mem::align_of::<T>() <= 64, "Value and Array take types aligned to at most 64 bytes") };
    let bytes: &[u8] = bytemuck::cast_slice(init);
    let block = Block::new(kind, block_len(bytes.len()), |m| {
        m.u64_at(OFF_LEN).store(init.len() as u64, Ordering::Relaxed);
        m.u64_at(OFF_ELEM).store(std::mem::size_of::<T>() as u64, Ordering::Relaxed);
        m.write(OFF_DATA, bytes);
        RawLock::init(m, START)
    })?;
    Ok(Lock { raw: RawLock { block, off: START } })
}

/// Checks that a block that arrived holds `T`s.
fn check_block<T>(lock: &Lock, what: &str) -> Result<()> {
    let elem = lock.raw.block.map().u64_at(OFF_ELEM).load(Ordering::Relaxed);
    if elem != std::mem::size_of::<T>() as u64 {
        return Err(Error::new(
            ErrorKind::Protocol,
            format!(
                "{what} of {elem}-byte items arrived where a {}-byte `{}` was expected; both ends must use the same type",
                std::mem::size_of::<T>(),
                std::any::type_name::<T>()
            ),
        ));
    }
    Ok(())
}

/// One `T` in shared memory, with a lock (Python's
/// `multiprocessing.Value`): `Value::new(0i32)` is Python's
/// `Value('i', 0)`. Reads and writes take the lock; `with_lock` does a
/// read-modify-write under it. `T` is plain old data
/// ([`bytemuck::Pod`]): numbers, arrays of them, `#[repr(C)]` structs.
///
/// If a process dies while it holds the lock, a half-done update may be
/// left (every bit pattern is still a valid `T`); the next
/// [`with_lock`](Value::with_lock) still runs, and
/// [`get_lock`](Value::get_lock)`().acquire()` reports
/// [`owner_died`](crate::LockGuard::owner_died).
///
/// # Examples
///
/// ```
/// use multiproc::{Process, Value};
///
/// fn add(v: Value<u64>) -> multiproc::Result<()> {
///     for _ in 0..1000 {
///         v.with_lock(|n| *n += 1)?;
///     }
///     Ok(())
/// }
///
/// let v = Value::new(0u64)?;
/// let children: Vec<_> = (0..2).map(|_| Process::new(add, v.clone()).start()).collect::<Result<_, _>>()?;
/// for c in children {
///     c.join()??;
/// }
/// assert_eq!(v.get()?, 2000);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone)]
#[doc(alias("ctypes"))]
pub struct Value<T> {
    lock: Lock,
    _t: PhantomData<fn() -> T>,
}

impl<T: Pod> Value<T> {
    /// A shared `T`, starting at `value`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the shared memory cannot be created.
    ///
    /// # Examples
    ///
    /// ```
    /// let v = multiproc::Value::new(1.5f64)?;
    /// assert_eq!(v.get()?, 1.5);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new(value: T) -> Result<Value<T>> {
        Ok(Value { lock: new_block(Kind::Value, std::slice::from_ref(&value))?, _t: PhantomData })
    }

    /// The lock that guards the value (Python's `get_lock`).
    ///
    /// # Examples
    ///
    /// ```
    /// let v = multiproc::Value::new(0u8)?;
    /// let guard = v.get_lock().acquire()?;
    /// assert!(!guard.owner_died());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }

    fn read(&self) -> T {
        bytemuck::pod_read_unaligned(self.lock.raw.block.map().bytes(OFF_DATA, std::mem::size_of::<T>()))
    }

    fn write(&self, value: T) {
        self.lock.raw.block.map().write(OFF_DATA, bytemuck::bytes_of(&value));
    }

    /// Reads the value under the lock.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the lock cannot be taken.
    ///
    /// # Examples
    ///
    /// ```
    /// let v = multiproc::Value::new([1u16, 2])?;
    /// assert_eq!(v.get()?, [1, 2]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get(&self) -> Result<T> {
        let _g = self.lock.acquire()?;
        Ok(self.read())
    }

    /// Writes the value under the lock.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the lock cannot be taken.
    ///
    /// # Examples
    ///
    /// ```
    /// let v = multiproc::Value::new(0i32)?;
    /// v.set(-4)?;
    /// assert_eq!(v.get()?, -4);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn set(&self, value: T) -> Result<()> {
        let _g = self.lock.acquire()?;
        self.write(value);
        Ok(())
    }

    /// Runs `f` on the value under the lock and keeps what it leaves
    /// (Python's `with v.get_lock(): v.value += 1`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the lock cannot be taken.
    ///
    /// # Examples
    ///
    /// ```
    /// let v = multiproc::Value::new(10u32)?;
    /// let old = v.with_lock(|n| std::mem::replace(n, 11))?;
    /// assert_eq!((old, v.get()?), (10, 11));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn with_lock<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R> {
        let _g = self.lock.acquire()?;
        Ok(self.update(&_g, f))
    }

    /// Runs `f` on the value while `guard` (from [`get_lock`](Value::get_lock))
    /// is held: several updates under one acquisition.
    ///
    /// # Panics
    ///
    /// If `guard` is not a guard of this value's lock.
    ///
    /// # Examples
    ///
    /// ```
    /// let v = multiproc::Value::new(0u32)?;
    /// let g = v.get_lock().acquire()?;
    /// v.update(&g, |n| *n += 1);
    /// v.update(&g, |n| *n += 1);
    /// drop(g);
    /// assert_eq!(v.get()?, 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn update<R>(&self, guard: &LockGuard<'_>, f: impl FnOnce(&mut T) -> R) -> R {
        assert!(guard.is_of(&self.lock), "Value::update needs a guard of this value's own lock");
        let mut value = self.read();
        let out = f(&mut value);
        self.write(value);
        out
    }
}

block_serde!(
    Value<T: Pod>,
    Kind::Value,
    "a Value",
    |b| {
        let lock = Lock { raw: RawLock { block: b, off: START } };
        check_block::<T>(&lock, "a Value").map_err(serde::de::Error::custom)?;
        Ok(Value { lock, _t: PhantomData })
    },
    |s| &s.lock.raw.block
);

/// A fixed-length array of `T` in shared memory, with a lock (Python's
/// `multiprocessing.Array`): `Array::new(&[0f64; 8])` is Python's
/// `Array('d', 8)`.
///
/// # Examples
///
/// ```
/// use multiproc::{Array, Process};
///
/// fn fill(a: Array<u32>) -> multiproc::Result<()> {
///     a.with_lock(|s| s.iter_mut().enumerate().for_each(|(i, x)| *x = i as u32 * 10))
/// }
///
/// let a = Array::new(&[0u32; 4])?;
/// Process::new(fill, a.clone()).start()?.join()??;
/// assert_eq!(a.to_vec()?, [0, 10, 20, 30]);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone)]
#[doc(alias("ctypes"))]
pub struct Array<T> {
    lock: Lock,
    _t: PhantomData<fn() -> T>,
}

impl<T: Pod> Array<T> {
    /// A shared array holding a copy of `init`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the shared memory cannot be created.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = multiproc::Array::new(&[1i64, 2, 3])?;
    /// assert_eq!(a.len(), 3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new(init: &[T]) -> Result<Array<T>> {
        Ok(Array { lock: new_block(Kind::Array, init)?, _t: PhantomData })
    }

    /// How many items it holds.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(multiproc::Array::<u8>::new(&[])?.is_empty());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.lock.raw.block.map().u64_at(OFF_LEN).load(Ordering::Relaxed) as usize
    }

    /// Whether it holds no items.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!multiproc::Array::new(&[1u8])?.is_empty());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The lock that guards the array (Python's `get_lock`).
    ///
    /// # Examples
    ///
    /// ```
    /// let a = multiproc::Array::new(&[0u8; 2])?;
    /// let _g = a.get_lock().acquire()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }

    /// Runs `f` on the items under the lock.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the lock cannot be taken.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = multiproc::Array::new(&[1u32, 2])?;
    /// let sum: u32 = a.with_lock(|s| s.iter().sum())?;
    /// assert_eq!(sum, 3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn with_lock<R>(&self, f: impl FnOnce(&mut [T]) -> R) -> Result<R> {
        let _g = self.lock.acquire()?;
        let bytes = self.len() * std::mem::size_of::<T>();
        Ok(self.lock.raw.block.map().with_bytes_mut(OFF_DATA, bytes, |b| f(bytemuck::cast_slice_mut(b))))
    }

    /// Item `i`, read under the lock; `None` past the end.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the lock cannot be taken.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = multiproc::Array::new(&[7u8, 8])?;
    /// assert_eq!((a.get(1)?, a.get(2)?), (Some(8), None));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get(&self, i: usize) -> Result<Option<T>> {
        self.with_lock(|s| s.get(i).copied())
    }

    /// Item `i`, read under the lock: Python's `arr[i]`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] past the end (Python's `IndexError`);
    /// [`ErrorKind::Io`] if the lock cannot be taken.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = multiproc::Array::new(&[7u8, 8])?;
    /// assert_eq!(a.at(1)?, 8);
    /// assert!(a.at(2).is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("__getitem__"))]
    pub fn at(&self, i: usize) -> Result<T> {
        let len = self.len();
        self.get(i)?.ok_or_else(|| past_the_end(i, len))
    }

    /// The items as they are now (copied under the lock once): Python's
    /// `for x in arr`, `list(arr)`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the lock cannot be taken.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = multiproc::Array::new(&[1u32, 2, 3])?;
    /// assert_eq!(a.iter()?.map(|x| x * 10).collect::<Vec<_>>(), [10, 20, 30]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("__iter__"))]
    pub fn iter(&self) -> Result<std::vec::IntoIter<T>> {
        Ok(self.to_vec()?.into_iter())
    }

    /// Sets item `i` under the lock.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] past the end; [`ErrorKind::Io`] if the
    /// lock cannot be taken.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = multiproc::Array::new(&[0u8; 2])?;
    /// a.set(1, 5)?;
    /// assert!(a.set(2, 5).is_err());
    /// assert_eq!(a.to_vec()?, [0, 5]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn set(&self, i: usize, value: T) -> Result<()> {
        let len = self.len();
        self.with_lock(|s| s.get_mut(i).map(|x| *x = value))?.ok_or_else(|| past_the_end(i, len))
    }

    /// A copy of all the items, read under the lock.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the lock cannot be taken.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(multiproc::Array::new(&[1u8, 2])?.to_vec()?, [1, 2]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.with_lock(|s| s.to_vec())
    }
}

/// Python's `IndexError`.
fn past_the_end(i: usize, len: usize) -> Error {
    Error::new(ErrorKind::InvalidInput, format!("index {i} is past the end of an Array of {len} items"))
}

block_serde!(
    Array<T: Pod>,
    Kind::Array,
    "an Array",
    |b| {
        let lock = Lock { raw: RawLock { block: b, off: START } };
        check_block::<T>(&lock, "an Array").map_err(serde::de::Error::custom)?;
        Ok(Array { lock, _t: PhantomData })
    },
    |s| &s.lock.raw.block
);

/// An integer that [`AtomicValue`] can hold: `i32`, `u32`, `i64`, `u64`,
/// `isize`, `usize`.
///
/// # Examples
///
/// ```
/// fn shared<T: multiproc::AtomicInt>(v: T) -> multiproc::Result<multiproc::AtomicValue<T>> {
///     multiproc::AtomicValue::new(v)
/// }
/// assert_eq!(shared(7i64)?.load(), 7);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub trait AtomicInt: Copy + sealed::Sealed + 'static {}

mod sealed {
    /// The integer types `AtomicValue` holds, as 32 or 64 bits.
    pub trait Sealed {
        const WIDE: bool;
        fn to_bits(self) -> u64;
        fn from_bits(bits: u64) -> Self;
    }
}

macro_rules! atomic_int {
    ($($t:ty: $wide:expr),*) => {$(
        impl sealed::Sealed for $t {
            const WIDE: bool = $wide;
            fn to_bits(self) -> u64 {
                self as u64
            }
            fn from_bits(bits: u64) -> Self {
                bits as $t
            }
        }
        impl AtomicInt for $t {}
    )*};
}
atomic_int!(u32: false, i32: false, u64: true, i64: true, usize: true, isize: true);

const OFF_ATOMIC: usize = START;

/// A lock-free shared integer (Python's `Value(..., lock=False)`, with
/// atomic operations): every call is one atomic instruction on shared
/// memory, so a process killed at any moment leaves a whole value.
///
/// # Examples
///
/// ```
/// use multiproc::{AtomicValue, Process};
///
/// fn count(n: AtomicValue<u64>) {
///     for _ in 0..1000 {
///         n.fetch_add(1);
///     }
/// }
///
/// let n = AtomicValue::new(0u64)?;
/// let child = Process::new(count, n.clone()).start()?;
/// count(n.clone());
/// child.join()?;
/// assert_eq!(n.load(), 2000);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone)]
#[doc(alias("RawValue"))]
pub struct AtomicValue<T> {
    block: std::sync::Arc<Block>,
    _t: PhantomData<fn() -> T>,
}

impl<T: AtomicInt> AtomicValue<T> {
    /// A shared integer starting at `value`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the shared memory cannot be created.
    ///
    /// # Examples
    ///
    /// ```
    /// let n = multiproc::AtomicValue::new(-3i32)?;
    /// assert_eq!(n.load(), -3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new(value: T) -> Result<AtomicValue<T>> {
        let block = Block::new(Kind::AtomicValue, 4096, |m| {
            m.u64_at(OFF_ELEM).store(std::mem::size_of::<T>() as u64, Ordering::Relaxed);
            Ok(())
        })?;
        let v = AtomicValue { block, _t: PhantomData };
        v.store(value);
        Ok(v)
    }

    fn op(
        &self,
        wide: impl FnOnce(&std::sync::atomic::AtomicU64) -> u64,
        narrow: impl FnOnce(&std::sync::atomic::AtomicU32) -> u32,
    ) -> T {
        let m = self.block.map();
        T::from_bits(if T::WIDE { wide(m.u64_at(OFF_ATOMIC)) } else { u64::from(narrow(m.u32_at(OFF_ATOMIC))) })
    }

    /// The value.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(multiproc::AtomicValue::new(5usize)?.load(), 5);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn load(&self) -> T {
        self.op(|a| a.load(Ordering::SeqCst), |a| a.load(Ordering::SeqCst))
    }

    /// Replaces the value.
    ///
    /// # Examples
    ///
    /// ```
    /// let n = multiproc::AtomicValue::new(1u32)?;
    /// n.store(2);
    /// assert_eq!(n.load(), 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn store(&self, value: T) {
        let bits = value.to_bits();
        self.op(
            |a| {
                a.store(bits, Ordering::SeqCst);
                bits
            },
            |a| {
                a.store(bits as u32, Ordering::SeqCst);
                bits as u32
            },
        );
    }

    /// Adds `delta` (wrapping) and returns the previous value.
    ///
    /// # Examples
    ///
    /// ```
    /// let n = multiproc::AtomicValue::new(1i64)?;
    /// assert_eq!(n.fetch_add(-2), 1);
    /// assert_eq!(n.load(), -1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn fetch_add(&self, delta: T) -> T {
        let bits = delta.to_bits();
        self.op(|a| a.fetch_add(bits, Ordering::SeqCst), |a| a.fetch_add(bits as u32, Ordering::SeqCst))
    }

    /// Subtracts `delta` (wrapping) and returns the previous value.
    ///
    /// # Examples
    ///
    /// ```
    /// let n = multiproc::AtomicValue::new(5u64)?;
    /// assert_eq!(n.fetch_sub(2), 5);
    /// assert_eq!(n.load(), 3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn fetch_sub(&self, delta: T) -> T {
        let bits = delta.to_bits();
        self.op(|a| a.fetch_sub(bits, Ordering::SeqCst), |a| a.fetch_sub(bits as u32, Ordering::SeqCst))
    }

    /// Replaces the value and returns the previous one.
    ///
    /// # Examples
    ///
    /// ```
    /// let n = multiproc::AtomicValue::new(1u32)?;
    /// assert_eq!(n.swap(9), 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn swap(&self, value: T) -> T {
        let bits = value.to_bits();
        self.op(|a| a.swap(bits, Ordering::SeqCst), |a| a.swap(bits as u32, Ordering::SeqCst))
    }

    /// Stores `new` if the value is `current`; returns the previous value
    /// either way (`Ok` if it was stored).
    ///
    /// # Examples
    ///
    /// ```
    /// let n = multiproc::AtomicValue::new(1u32)?;
    /// assert_eq!(n.compare_exchange(1, 2), Ok(1));
    /// assert_eq!(n.compare_exchange(1, 3), Err(2));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn compare_exchange(&self, current: T, new: T) -> std::result::Result<T, T> {
        let (c, n) = (current.to_bits(), new.to_bits());
        let m = self.block.map();
        let r = if T::WIDE {
            m.u64_at(OFF_ATOMIC).compare_exchange(c, n, Ordering::SeqCst, Ordering::SeqCst)
        } else {
            m.u32_at(OFF_ATOMIC)
                .compare_exchange(c as u32, n as u32, Ordering::SeqCst, Ordering::SeqCst)
                .map(u64::from)
                .map_err(u64::from)
        };
        r.map(T::from_bits).map_err(T::from_bits)
    }
}

block_serde!(
    AtomicValue<T: AtomicInt>,
    Kind::AtomicValue,
    "an AtomicValue",
    |b| {
        let elem = b.map().u64_at(OFF_ELEM).load(Ordering::Relaxed);
        if elem != std::mem::size_of::<T>() as u64 {
            return Err(serde::de::Error::custom(format!(
                "an AtomicValue of {elem}-byte integers arrived where a `{}` was expected",
                std::any::type_name::<T>()
            )));
        }
        Ok(AtomicValue { block: b, _t: PhantomData })
    },
    |s| &s.block
);
