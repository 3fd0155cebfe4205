//! [`SetProxy`]: a set that lives in a manager's server (Python 3.14's
//! `Manager().set()`).

use std::collections::HashSet;
use std::hash::Hash;
use std::marker::PhantomData;

use serde::Serialize;

use super::hash::RandomState;
use super::protocol::{self, Slot, decode, encode, object};
use super::proxy::{Link, Proxy};
use crate::error::{Error, ErrorKind, Result};
use crate::target::Message;

mod method {
    pub(super) const CREATE: u32 = 0;
    pub(super) const ADD: u32 = 1;
    pub(super) const DISCARD: u32 = 2;
    pub(super) const CONTAINS: u32 = 3;
    pub(super) const LEN: u32 = 4;
    pub(super) const SNAPSHOT: u32 = 5;
    pub(super) const CLEAR: u32 = 6;
    pub(super) const UPDATE: u32 = 7;
    pub(super) const POP: u32 = 8;
}

/// Adds the items of a batch ([`protocol::push_batch`]'s form).
fn add_batch<T: Message + Eq + Hash>(set: &mut HashSet<T, RandomState>, args: &[u8]) -> Result<()> {
    let mut dec = crate::codec::Decoder::new(args);
    let (n, room) = protocol::batch_len::<T>(&mut dec)?;
    set.reserve(room);
    for _ in 0..n {
        set.insert(dec.next_item::<T>("a set's item")?);
    }
    Ok(())
}

/// The server side of every set method.
fn op<T: Message + Eq + Hash + Clone>(args: &[u8], m: u32, slot: &mut Slot) {
    let reply = (|| -> Result<Vec<u8>> {
        if m == method::CREATE {
            let mut set = HashSet::<T, RandomState>::default();
            add_batch(&mut set, args)?;
            slot.object = Some(Box::new(set));
            return Ok(Vec::new());
        }
        let set = object::<HashSet<T, RandomState>>(slot)?;
        match m {
            method::ADD => encode(&set.insert(decode::<T>(args)?)),
            method::DISCARD => encode(&set.remove(&decode::<T>(args)?)),
            method::CONTAINS => encode(&set.contains(&decode::<T>(args)?)),
            method::LEN => encode(&(set.len() as u64)),
            method::SNAPSHOT => protocol::encode_items(set.iter()),
            method::CLEAR => {
                set.clear();
                encode(&())
            }
            method::UPDATE => {
                add_batch(set, args)?;
                encode(&())
            }
            method::POP => {
                let any = set.iter().next().cloned();
                if let Some(v) = &any {
                    set.remove(v);
                }
                encode(&any)
            }
            other => Err(Error::new(ErrorKind::Protocol, format!("a set has no method {other}"))),
        }
    })();
    slot.reply = reply;
}

/// A set owned by a [`Manager`](crate::Manager)'s server process (Python
/// 3.14's `Manager().set()`); each method is one atomic call there. Like
/// every proxy it is `Clone`, a message, and the same set wherever it goes.
///
/// # Examples
///
/// ```
/// let m = multiproc::Manager::new()?;
/// let seen = m.set::<String>()?;
/// assert!(seen.add("a".into())?);
/// assert!(!seen.add("a".into())?, "already there");
/// assert!(seen.contains(&"a".into())?);
/// assert_eq!(seen.len()?, 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct SetProxy<T> {
    proxy: Proxy,
    _types: PhantomData<fn() -> T>,
}

super::proxy::typed_proxy!(SetProxy<T>);

impl<T: Message + Eq + Hash + Clone> SetProxy<T> {
    fn op() -> protocol::OpId {
        protocol::op_id(op::<T>)
    }

    pub(crate) fn create(link: std::sync::Arc<Link>, items: Vec<T>) -> Result<Self> {
        Ok(SetProxy { proxy: Proxy::create(link, Self::op(), protocol::encode_items(&items)?)?, _types: PhantomData })
    }

    fn call<R: serde::de::DeserializeOwned + 'static>(&self, m: u32, args: &(impl Serialize + ?Sized)) -> Result<R> {
        self.proxy.call(Self::op(), m, args)
    }

    /// Adds `value`; whether it was new (Python's `add`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ManagerGone`] if the server is gone (every method).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert!(m.set::<u8>()?.add(1)?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn add(&self, value: T) -> Result<bool> {
        self.call(method::ADD, &value)
    }

    /// Removes `value`; whether it was there (Python's `discard`).
    ///
    /// # Errors
    ///
    /// As [`add`](SetProxy::add).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let s = m.set_from(vec![1u8])?;
    /// assert!(s.discard(&1)? && !s.discard(&1)?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("remove"))]
    pub fn discard(&self, value: &T) -> Result<bool> {
        self.call(method::DISCARD, value)
    }

    /// Whether `value` is there (Python's `value in s`).
    ///
    /// # Errors
    ///
    /// As [`add`](SetProxy::add).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert!(m.set_from(vec![1u8])?.contains(&1)?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("__contains__"))]
    pub fn contains(&self, value: &T) -> Result<bool> {
        self.call(method::CONTAINS, value)
    }

    /// How many items.
    ///
    /// # Errors
    ///
    /// As [`add`](SetProxy::add).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert_eq!(m.set_from(vec![1u8, 1, 2])?.len()?, 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("__len__"))]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> Result<usize> {
        Ok(self.call::<u64>(method::LEN, &())? as usize)
    }

    /// A copy of the items, in no particular order.
    ///
    /// # Errors
    ///
    /// As [`add`](SetProxy::add).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let mut items = m.set_from(vec![2u8, 1])?.snapshot()?;
    /// items.sort();
    /// assert_eq!(items, [1, 2]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("copy"))]
    pub fn snapshot(&self) -> Result<Vec<T>> {
        protocol::decode_items(&self.proxy.call_bytes(Self::op(), method::SNAPSHOT, protocol::encode(&())?)?)
    }

    /// Removes every item.
    ///
    /// # Errors
    ///
    /// As [`add`](SetProxy::add).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let s = m.set_from(vec![1u8])?;
    /// s.clear()?;
    /// assert_eq!(s.len()?, 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn clear(&self) -> Result<()> {
        self.call(method::CLEAR, &())
    }

    /// Adds every item, in one call (Python's `update`).
    ///
    /// # Errors
    ///
    /// As [`add`](SetProxy::add).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let s = m.set::<u32>()?;
    /// s.update(0..100)?;
    /// assert_eq!(s.len()?, 100);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn update(&self, items: impl IntoIterator<Item = T>) -> Result<()> {
        let mut args = protocol::scratch();
        protocol::push_batch(&mut args, items, |enc, item| enc.push_value(&item, "a set's item"))?;
        protocol::decode(&self.proxy.call_bytes(Self::op(), method::UPDATE, args)?)
    }

    /// Removes and returns some item; `None` if empty (Python's `pop`,
    /// which raises `KeyError` then).
    ///
    /// # Errors
    ///
    /// As [`add`](SetProxy::add).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let s = m.set_from(vec![7u8])?;
    /// assert_eq!(s.pop()?, Some(7));
    /// assert_eq!(s.pop()?, None);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn pop(&self) -> Result<Option<T>> {
        self.call(method::POP, &())
    }
}
