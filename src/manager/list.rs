//! [`ListProxy`]: a list that lives in a manager's server (Python's
//! `Manager().list()`).

use std::marker::PhantomData;

use serde::Serialize;

use super::protocol::{self, Slot, decode, encode, object};
use super::proxy::{Link, Proxy};
use crate::error::{Error, ErrorKind, Result};
use crate::target::Message;

mod method {
    pub(super) const CREATE: u32 = 0;
    pub(super) const PUSH: u32 = 1;
    pub(super) const EXTEND: u32 = 2;
    pub(super) const INSERT: u32 = 3;
    pub(super) const POP: u32 = 4;
    pub(super) const GET: u32 = 5;
    pub(super) const SET: u32 = 6;
    pub(super) const LEN: u32 = 7;
    pub(super) const SNAPSHOT: u32 = 8;
    pub(super) const CLEAR: u32 = 9;
    pub(super) const REVERSE: u32 = 10;
    pub(super) const REMOVE_VALUE: u32 = 11;
    pub(super) const INDEX: u32 = 12;
    pub(super) const COUNT: u32 = 13;
}

fn out_of_range(i: usize, len: usize) -> Error {
    Error::new(ErrorKind::InvalidInput, format!("list index {i} out of range for a list of {len} (IndexError)"))
}

/// The server side of every list method.
fn op<T: Message + Clone>(args: &[u8], m: u32, slot: &mut Slot) {
    let reply = (|| -> Result<Vec<u8>> {
        if m == method::CREATE {
            slot.object = Some(Box::new(protocol::decode_items::<T>(args)?));
            return Ok(Vec::new());
        }
        let list = object::<Vec<T>>(slot)?;
        match m {
            method::PUSH => {
                list.push(decode::<T>(args)?);
                encode(&())
            }
            method::EXTEND => {
                list.extend(protocol::decode_items::<T>(args)?);
                encode(&())
            }
            method::INSERT => {
                let (i, v) = decode::<(u64, T)>(args)?;
                list.insert((i as usize).min(list.len()), v);
                encode(&())
            }
            method::POP => {
                let i = decode::<Option<u64>>(args)?;
                match i {
                    None => encode(&list.pop()),
                    Some(i) if (i as usize) < list.len() => encode(&Some(list.remove(i as usize))),
                    Some(_) => encode(&None::<T>),
                }
            }
            method::GET => encode(&list.get(decode::<u64>(args)? as usize).cloned()),
            method::SET => {
                let (i, v) = decode::<(u64, T)>(args)?;
                let len = list.len();
                let slot = list.get_mut(i as usize).ok_or_else(|| out_of_range(i as usize, len))?;
                *slot = v;
                encode(&())
            }
            method::LEN => encode(&(list.len() as u64)),
            method::SNAPSHOT => protocol::encode_items(list.iter()),
            method::CLEAR => {
                list.clear();
                encode(&())
            }
            method::REVERSE => {
                list.reverse();
                encode(&())
            }
            other => Err(Error::new(ErrorKind::Protocol, format!("a list has no method {other}"))),
        }
    })();
    slot.reply = reply;
}

/// The server side of the methods that compare items (`T: PartialEq`).
fn eq_op<T: Message + PartialEq>(args: &[u8], m: u32, slot: &mut Slot) {
    let reply = (|| -> Result<Vec<u8>> {
        let value = decode::<T>(args)?;
        let list = object::<Vec<T>>(slot)?;
        match m {
            method::REMOVE_VALUE => match list.iter().position(|x| *x == value) {
                Some(i) => {
                    list.remove(i);
                    encode(&true)
                }
                None => encode(&false),
            },
            method::INDEX => encode(&list.iter().position(|x| *x == value).map(|i| i as u64)),
            method::COUNT => encode(&(list.iter().filter(|x| **x == value).count() as u64)),
            other => Err(Error::new(ErrorKind::Protocol, format!("a list has no method {other}"))),
        }
    })();
    slot.reply = reply;
}

/// The server side of `sort`, for `T: Ord` only.
fn sort_op<T: Message + Ord>(_: &[u8], _: u32, slot: &mut Slot) {
    slot.reply = object::<Vec<T>>(slot).and_then(|list| {
        list.sort();
        encode(&())
    });
}

/// A list owned by a [`Manager`](crate::Manager)'s server process, shared
/// by every process that holds a proxy to it (Python's
/// `Manager().list()`); each method is one atomic call to the server. Like
/// [`DictProxy`](super::DictProxy), it is `Clone` and a message, and the
/// same list wherever it goes, also inside other managed objects.
///
/// # Examples
///
/// ```
/// use multiproc::Manager;
/// let m = Manager::new()?;
/// let l = m.list::<i32>()?;
/// l.extend([3, 1, 2])?;
/// l.sort()?;
/// assert_eq!(l.snapshot()?, [1, 2, 3]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct ListProxy<T> {
    proxy: Proxy,
    _types: PhantomData<fn() -> T>,
}

super::proxy::typed_proxy!(ListProxy<T>);

impl<T: Message + Clone> ListProxy<T> {
    fn op() -> protocol::OpId {
        protocol::op_id(op::<T>)
    }

    pub(crate) fn create(link: std::sync::Arc<Link>, items: Vec<T>) -> Result<Self> {
        Ok(ListProxy { proxy: Proxy::create(link, Self::op(), protocol::encode_items(&items)?)?, _types: PhantomData })
    }

    fn call<R: serde::de::DeserializeOwned + 'static>(&self, m: u32, args: &(impl Serialize + ?Sized)) -> Result<R> {
        self.proxy.call(Self::op(), m, args)
    }

    /// Appends `value` (Python's `append`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ManagerGone`] if the server is gone (every method).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let l = m.list::<u8>()?;
    /// l.push(1)?;
    /// assert_eq!(l.snapshot()?, [1]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("append"))]
    pub fn push(&self, value: T) -> Result<()> {
        self.call(method::PUSH, &value)
    }

    /// Appends every item, in one call (Python's `extend`).
    ///
    /// # Errors
    ///
    /// As [`push`](ListProxy::push).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let l = m.list::<u32>()?;
    /// l.extend(0..10_000)?;
    /// assert_eq!(l.len()?, 10_000);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn extend(&self, items: impl IntoIterator<Item = T>) -> Result<()> {
        let mut args = protocol::scratch();
        protocol::push_batch(&mut args, items, |enc, item| enc.push_value(&item, "a list's item"))?;
        protocol::decode(&self.proxy.call_bytes(Self::op(), method::EXTEND, args)?)
    }

    /// Inserts `value` before index `i` (at the end past it, as Python).
    ///
    /// # Errors
    ///
    /// As [`push`](ListProxy::push).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let l = m.list_from(vec![1u8, 3])?;
    /// l.insert(1, 2)?;
    /// assert_eq!(l.snapshot()?, [1, 2, 3]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn insert(&self, i: usize, value: T) -> Result<()> {
        self.call(method::INSERT, &(i as u64, value))
    }

    /// Removes and returns the last item (Python's `pop()`); `None` if
    /// empty.
    ///
    /// # Errors
    ///
    /// As [`push`](ListProxy::push).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let l = m.list_from(vec![1u8, 2])?;
    /// assert_eq!(l.pop()?, Some(2));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn pop(&self) -> Result<Option<T>> {
        self.call(method::POP, &None::<u64>)
    }

    /// Removes and returns item `i` (Python's `pop(i)`); `None` past the
    /// end.
    ///
    /// # Errors
    ///
    /// As [`push`](ListProxy::push).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let l = m.list_from(vec![1u8, 2])?;
    /// assert_eq!(l.pop_at(0)?, Some(1));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn pop_at(&self, i: usize) -> Result<Option<T>> {
        self.call(method::POP, &Some(i as u64))
    }

    /// Item `i`; `None` past the end.
    ///
    /// # Errors
    ///
    /// As [`push`](ListProxy::push).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let l = m.list_from(vec!['a', 'b'])?;
    /// assert_eq!((l.get(1)?, l.get(2)?), (Some('b'), None));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("__getitem__"))]
    pub fn get(&self, i: usize) -> Result<Option<T>> {
        self.call(method::GET, &(i as u64))
    }

    /// Sets item `i` (Python's `l[i] = value`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] past the end (`IndexError`); as
    /// [`push`](ListProxy::push).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let l = m.list_from(vec![0u8])?;
    /// l.set(0, 9)?;
    /// assert!(l.set(1, 9).is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("__setitem__"))]
    pub fn set(&self, i: usize, value: T) -> Result<()> {
        self.call(method::SET, &(i as u64, value))
    }

    /// How many items.
    ///
    /// # Errors
    ///
    /// As [`push`](ListProxy::push).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert_eq!(m.list_from(vec![1u8])?.len()?, 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("__len__"))]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> Result<usize> {
        Ok(self.call::<u64>(method::LEN, &())? as usize)
    }

    /// A copy of the whole list, in one call.
    ///
    /// # Errors
    ///
    /// As [`push`](ListProxy::push).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert_eq!(m.list_from(vec![1u8, 2])?.snapshot()?, [1, 2]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("copy", "_getvalue"))]
    pub fn snapshot(&self) -> Result<Vec<T>> {
        protocol::decode_items(&self.proxy.call_bytes(Self::op(), method::SNAPSHOT, protocol::encode(&())?)?)
    }

    /// Removes every item.
    ///
    /// # Errors
    ///
    /// As [`push`](ListProxy::push).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let l = m.list_from(vec![1u8])?;
    /// l.clear()?;
    /// assert_eq!(l.len()?, 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn clear(&self) -> Result<()> {
        self.call(method::CLEAR, &())
    }

    /// Reverses the list in place.
    ///
    /// # Errors
    ///
    /// As [`push`](ListProxy::push).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let l = m.list_from(vec![1u8, 2])?;
    /// l.reverse()?;
    /// assert_eq!(l.snapshot()?, [2, 1]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn reverse(&self) -> Result<()> {
        self.call(method::REVERSE, &())
    }
}

impl<T: Message + Clone + PartialEq> ListProxy<T> {
    fn call_eq<R: serde::de::DeserializeOwned + 'static>(&self, m: u32, value: &T) -> Result<R> {
        self.proxy.call(protocol::op_id(eq_op::<T>), m, value)
    }

    /// Removes the first item equal to `value`; whether there was one
    /// (Python's `remove`, which raises `ValueError` otherwise).
    ///
    /// # Errors
    ///
    /// As [`push`](ListProxy::push).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let l = m.list_from(vec![1u8, 2, 1])?;
    /// assert!(l.remove(&1)?);
    /// assert_eq!(l.snapshot()?, [2, 1]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn remove(&self, value: &T) -> Result<bool> {
        self.call_eq(method::REMOVE_VALUE, value)
    }

    /// The index of the first item equal to `value` (Python's `index`).
    ///
    /// # Errors
    ///
    /// As [`push`](ListProxy::push).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let l = m.list_from(vec!['a', 'b'])?;
    /// assert_eq!((l.index(&'b')?, l.index(&'z')?), (Some(1), None));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn index(&self, value: &T) -> Result<Option<usize>> {
        Ok(self.call_eq::<Option<u64>>(method::INDEX, value)?.map(|i| i as usize))
    }

    /// How many items equal `value` (Python's `count`).
    ///
    /// # Errors
    ///
    /// As [`push`](ListProxy::push).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert_eq!(m.list_from(vec![1u8, 2, 1])?.count(&1)?, 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn count(&self, value: &T) -> Result<usize> {
        Ok(self.call_eq::<u64>(method::COUNT, value)? as usize)
    }
}

impl<T: Message + Clone + Ord> ListProxy<T> {
    /// Sorts the list in place, on the server.
    ///
    /// # Errors
    ///
    /// As [`push`](ListProxy::push).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let l = m.list_from(vec![3u8, 1, 2])?;
    /// l.sort()?;
    /// assert_eq!(l.snapshot()?, [1, 2, 3]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn sort(&self) -> Result<()> {
        self.proxy.call(protocol::op_id(sort_op::<T>), 0, &())
    }
}

/// An array owned by a [`Manager`](crate::Manager)'s server (Python's
/// `manager.Array(typecode, sequence)`): a list of fixed length, read and
/// written by index, shared by every process that holds a proxy. Unlike
/// [`multiproc::Array`](crate::Array) (shared memory, numbers only, this
/// machine) it holds any message type, goes through pool tasks, and works
/// over TCP; each access is a call to the server.
///
/// # Examples
///
/// ```
/// let m = multiproc::Manager::new()?;
/// let a = m.array(vec![0.0f64; 4])?;
/// a.set(2, 1.5)?;
/// assert_eq!(a.get(2)?, 1.5);
/// assert_eq!(a.snapshot()?, [0.0, 0.0, 1.5, 0.0]);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias("Array"))]
pub struct ArrayProxy<T> {
    proxy: Proxy,
    _types: PhantomData<fn() -> T>,
}

super::proxy::typed_proxy!(ArrayProxy<T>);

impl<T: Message + Clone> ArrayProxy<T> {
    pub(crate) fn create(link: std::sync::Arc<Link>, items: Vec<T>) -> Result<Self> {
        let list = ListProxy::create(link, items)?;
        Ok(ArrayProxy { proxy: list.proxy, _types: PhantomData })
    }

    fn call<R: serde::de::DeserializeOwned + 'static>(&self, m: u32, args: &(impl Serialize + ?Sized)) -> Result<R> {
        self.proxy.call(ListProxy::<T>::op(), m, args)
    }

    /// The item at `i` (Python's `a[i]`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] past the end (Python's IndexError);
    /// [`ErrorKind::ManagerGone`] if the server is gone (every method).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let a = m.array(vec![1u8, 2])?;
    /// assert_eq!(a.get(1)?, 2);
    /// assert!(a.get(2).is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("__getitem__"))]
    pub fn get(&self, i: usize) -> Result<T> {
        match self.call::<Option<T>>(method::GET, &(i as u64))? {
            Some(v) => Ok(v),
            None => Err(out_of_range(i, self.len()?)),
        }
    }

    /// Sets the item at `i` (Python's `a[i] = v`).
    ///
    /// # Errors
    ///
    /// As [`get`](ArrayProxy::get).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let a = m.array(vec![1u8, 2])?;
    /// a.set(0, 9)?;
    /// assert_eq!(a.snapshot()?, [9, 2]);
    /// assert!(a.set(5, 0).is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("__setitem__"))]
    pub fn set(&self, i: usize, value: T) -> Result<()> {
        self.call(method::SET, &(i as u64, value))
    }

    /// How many items it has (fixed when it was made).
    ///
    /// # Errors
    ///
    /// As [`get`](ArrayProxy::get).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert_eq!(m.array(vec!['a'; 3])?.len()?, 3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("__len__"))]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> Result<usize> {
        Ok(self.call::<u64>(method::LEN, &())? as usize)
    }

    /// A copy of every item, in one call (Python's `a[:]`).
    ///
    /// # Errors
    ///
    /// As [`get`](ArrayProxy::get).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert_eq!(m.array(vec![3i32, 4])?.snapshot()?, [3, 4]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("tolist"))]
    pub fn snapshot(&self) -> Result<Vec<T>> {
        protocol::decode_items(&self.proxy.call_bytes(
            ListProxy::<T>::op(),
            method::SNAPSHOT,
            protocol::encode(&())?,
        )?)
    }
}
