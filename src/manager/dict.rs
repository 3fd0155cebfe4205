//! [`DictProxy`]: a dict that lives in a manager's server (Python's
//! `Manager().dict()`).

use std::collections::HashMap;
use std::hash::Hash;
use std::marker::PhantomData;

use serde::Serialize;

use super::protocol::{self, Slot, decode, encode, object};
use super::proxy::{Link, Proxy};
use crate::error::{Error, ErrorKind, Result};
use crate::target::Message;

/// A dict in insertion order, as Python's: the server's object.
struct Ordered<K, V> {
    entries: Vec<(K, V)>,
    index: HashMap<K, usize>,
}

impl<K: Eq + Hash + Clone, V> Ordered<K, V> {
    fn new() -> Self {
        Ordered { entries: Vec::new(), index: HashMap::new() }
    }

    fn get(&self, k: &K) -> Option<&V> {
        self.index.get(k).map(|&i| &self.entries[i].1)
    }

    fn insert(&mut self, k: K, v: V) -> Option<V> {
        // One hash of the key, whether it is new or not.
        match self.index.entry(k) {
            std::collections::hash_map::Entry::Occupied(e) => Some(std::mem::replace(&mut self.entries[*e.get()].1, v)),
            std::collections::hash_map::Entry::Vacant(e) => {
                let k = e.key().clone();
                e.insert(self.entries.len());
                self.entries.push((k, v));
                None
            }
        }
    }

    fn remove(&mut self, k: &K) -> Option<V> {
        let i = self.index.remove(k)?;
        let (_, v) = self.entries.remove(i);
        for (_, at) in self.index.iter_mut() {
            if *at > i {
                *at -= 1;
            }
        }
        Some(v)
    }
}

/// The methods of a dict, as op method numbers.
mod method {
    pub(super) const CREATE: u32 = 0;
    pub(super) const GET: u32 = 1;
    pub(super) const INSERT: u32 = 2;
    pub(super) const REMOVE: u32 = 3;
    pub(super) const CONTAINS: u32 = 4;
    pub(super) const LEN: u32 = 5;
    pub(super) const KEYS: u32 = 6;
    pub(super) const VALUES: u32 = 7;
    pub(super) const ITEMS: u32 = 8;
    pub(super) const UPDATE: u32 = 9;
    pub(super) const CLEAR: u32 = 10;
    pub(super) const SETDEFAULT: u32 = 11;
    pub(super) const POPITEM: u32 = 12;
}

/// The server side of every dict method.
fn op<K, V>(args: &[u8], m: u32, slot: &mut Slot)
where
    K: Message + Eq + Hash + Clone,
    V: Message + Clone,
{
    let reply = (|| -> Result<Vec<u8>> {
        if m == method::CREATE {
            let mut map = Ordered::new();
            for (k, v) in decode::<Vec<(K, V)>>(args)? {
                map.insert(k, v);
            }
            slot.object = Some(Box::new(map));
            return Ok(Vec::new());
        }
        let map = object::<Ordered<K, V>>(slot)?;
        match m {
            method::GET => encode(&map.get(&decode::<K>(args)?).cloned()),
            method::INSERT => {
                let (k, v) = decode::<(K, V)>(args)?;
                encode(&map.insert(k, v))
            }
            method::REMOVE => encode(&map.remove(&decode::<K>(args)?)),
            method::CONTAINS => encode(&map.index.contains_key(&decode::<K>(args)?)),
            method::LEN => encode(&(map.entries.len() as u64)),
            method::KEYS => encode(&map.entries.iter().map(|(k, _)| k).collect::<Vec<_>>()),
            method::VALUES => encode(&map.entries.iter().map(|(_, v)| v).collect::<Vec<_>>()),
            method::ITEMS => encode(&map.entries),
            method::UPDATE => {
                let items = decode::<Vec<(K, V)>>(args)?;
                map.entries.reserve(items.len());
                map.index.reserve(items.len());
                for (k, v) in items {
                    map.insert(k, v);
                }
                encode(&())
            }
            method::CLEAR => {
                map.entries.clear();
                map.index.clear();
                encode(&())
            }
            method::SETDEFAULT => {
                let (k, v) = decode::<(K, V)>(args)?;
                if let Some(have) = map.get(&k) {
                    return encode(have);
                }
                map.insert(k, v.clone());
                encode(&v)
            }
            method::POPITEM => {
                let last = map.entries.last().map(|(k, _)| k.clone());
                encode(&last.and_then(|k| map.remove(&k).map(|v| (k, v))))
            }
            other => Err(Error::new(ErrorKind::Protocol, format!("a dict has no method {other}"))),
        }
    })();
    slot.reply = reply;
}

/// The server side of `modify`: `f` (a fn item or a closure that captures
/// nothing, named by type) runs on the server, on the value of a key.
fn modify_op<K, V, F>(args: &[u8], _: u32, slot: &mut Slot)
where
    K: Message + Eq + Hash + Clone,
    V: Message + Clone,
    F: Fn(V) -> V + Copy + 'static,
{
    let f: F = crate::runtime::conjure::<F, V, V>();
    let reply = (|| -> Result<Vec<u8>> {
        let map = object::<Ordered<K, V>>(slot)?;
        let (k, default) = decode::<(K, V)>(args)?;
        let new = f(map.get(&k).cloned().unwrap_or(default));
        map.insert(k, new.clone());
        encode(&new)
    })();
    slot.reply = reply;
}

/// A dict owned by a [`Manager`](crate::Manager)'s server process, shared
/// by every process that holds a proxy to it (Python's
/// `Manager().dict()`): each method is one call to the server, atomic
/// there. Keys keep their insertion order, as in Python.
///
/// A proxy is [`Clone`] (another reference to the same dict) and a
/// [`Message`]: it goes into a process's argument, a pool task, a queue,
/// or another managed object, and is the same dict wherever it arrives. A
/// dict stored in a list and read back is that dict, not a copy (Python's
/// proxies get this wrong: cpython#119937).
///
/// # Examples
///
/// ```
/// use multiproc::{Manager, Process};
/// use multiproc::manager::DictProxy;
///
/// fn record((results, n): (DictProxy<u32, u64>, u32)) {
///     results.insert(n, u64::from(n) * u64::from(n)).unwrap();
/// }
///
/// let manager = Manager::new()?;
/// let results = manager.dict::<u32, u64>()?;
/// let children: Vec<_> = (1..=3)
///     .map(|n| Process::new(record, (results.clone(), n)).start())
///     .collect::<multiproc::Result<_>>()?;
/// for child in children {
///     child.join()?;
/// }
/// let mut items = results.items()?;
/// items.sort();
/// assert_eq!(items, [(1, 1), (2, 4), (3, 9)]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct DictProxy<K, V> {
    proxy: Proxy,
    _types: PhantomData<fn() -> (K, V)>,
}

super::proxy::typed_proxy!(DictProxy<K, V>);

impl<K, V> DictProxy<K, V>
where
    K: Message + Eq + Hash + Clone,
    V: Message + Clone,
{
    fn op() -> protocol::OpId {
        protocol::op_id(op::<K, V>)
    }

    pub(crate) fn create(link: std::sync::Arc<Link>, items: Vec<(K, V)>) -> Result<Self> {
        let proxy = Proxy::create(link, Self::op(), protocol::encode(&items)?)?;
        Ok(DictProxy { proxy, _types: PhantomData })
    }

    fn call<R: serde::de::DeserializeOwned + 'static>(&self, m: u32, args: &(impl Serialize + ?Sized)) -> Result<R> {
        self.proxy.call(Self::op(), m, args)
    }

    /// The value of `key` (Python's `d.get(key)`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ManagerGone`] if the server is gone (every method).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let d = m.dict::<String, i32>()?;
    /// d.insert("a".into(), 1)?;
    /// assert_eq!(d.get(&"a".into())?, Some(1));
    /// assert_eq!(d.get(&"b".into())?, None);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("__getitem__"))]
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        self.call(method::GET, key)
    }

    /// The value of `key`, or `default` (Python's `d.get(key, default)`).
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let d = m.dict::<u8, u8>()?;
    /// assert_eq!(d.get_or(&1, 7)?, 7);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get_or(&self, key: &K, default: V) -> Result<V> {
        Ok(self.get(key)?.unwrap_or(default))
    }

    /// Sets `key` to `value` (Python's `d[key] = value`); the old value.
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let d = m.dict::<u8, String>()?;
    /// assert_eq!(d.insert(1, "a".into())?, None);
    /// assert_eq!(d.insert(1, "b".into())?, Some("a".into()));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("__setitem__"))]
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>> {
        self.call(method::INSERT, &(key, value))
    }

    /// Removes `key`; its value (Python's `d.pop(key, None)`).
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let d = m.dict::<u8, u8>()?;
    /// d.insert(1, 2)?;
    /// assert_eq!(d.remove(&1)?, Some(2));
    /// assert_eq!(d.remove(&1)?, None);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("__delitem__", "pop"))]
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        self.call(method::REMOVE, key)
    }

    /// Removes `key` and returns its value; an error if it is missing
    /// (Python's `d.pop(key)`, which raises `KeyError`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] if the key is missing; as
    /// [`get`](DictProxy::get) otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let d = m.dict::<u8, u8>()?;
    /// d.insert(1, 2)?;
    /// assert_eq!(d.pop(&1)?, 2);
    /// assert!(d.pop(&1).is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn pop(&self, key: &K) -> Result<V> {
        self.remove(key)?.ok_or_else(|| Error::new(ErrorKind::InvalidInput, "no such key in the dict (KeyError)"))
    }

    /// Removes and returns the last inserted item (Python's `popitem`).
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let d = m.dict_from(vec![(1u8, 'a'), (2, 'b')])?;
    /// assert_eq!(d.popitem()?, Some((2, 'b')));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn popitem(&self) -> Result<Option<(K, V)>> {
        self.call(method::POPITEM, &())
    }

    /// Whether `key` is there (Python's `key in d`).
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let d = m.dict_from(vec![(1u8, 1u8)])?;
    /// assert!(d.contains_key(&1)? && !d.contains_key(&2)?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("__contains__"))]
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        self.call(method::CONTAINS, key)
    }

    /// How many items (Python's `len(d)`).
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert_eq!(m.dict_from(vec![(1u8, 1u8), (2, 2)])?.len()?, 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("__len__"))]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> Result<usize> {
        Ok(self.call::<u64>(method::LEN, &())? as usize)
    }

    /// The keys, in insertion order.
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert_eq!(m.dict_from(vec![(2u8, 0u8), (1, 0)])?.keys()?, [2, 1]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn keys(&self) -> Result<Vec<K>> {
        self.call(method::KEYS, &())
    }

    /// The values, in insertion order.
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert_eq!(m.dict_from(vec![(2u8, 'x'), (1, 'y')])?.values()?, ['x', 'y']);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn values(&self) -> Result<Vec<V>> {
        self.call(method::VALUES, &())
    }

    /// The items, in insertion order.
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert_eq!(m.dict_from(vec![(2u8, 'x')])?.items()?, [(2, 'x')]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        self.call(method::ITEMS, &())
    }

    /// A copy of the whole dict, in one call.
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let copy = m.dict_from(vec![(1u8, 2u8)])?.snapshot()?;
    /// assert_eq!(copy[&1], 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("copy", "_getvalue"))]
    pub fn snapshot(&self) -> Result<HashMap<K, V>> {
        Ok(self.items()?.into_iter().collect())
    }

    /// Inserts every item, in one call (Python's `d.update(items)`).
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let d = m.dict::<u32, u32>()?;
    /// d.update((0..1000).map(|i| (i, i * 2)))?;
    /// assert_eq!(d.len()?, 1000);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn update(&self, items: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        self.call(method::UPDATE, &items.into_iter().collect::<Vec<_>>())
    }

    /// Removes every item.
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let d = m.dict_from(vec![(1u8, 1u8)])?;
    /// d.clear()?;
    /// assert_eq!(d.len()?, 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn clear(&self) -> Result<()> {
        self.call(method::CLEAR, &())
    }

    /// Sets `key` to `f(value)` on the server, in one atomic call, and
    /// returns the new value (`default` stands for a missing value): what
    /// Python writes as `with lock: d[k] = f(d.get(k, default))`, without
    /// the lock or the two round trips. `f` is a fn item or a closure that
    /// captures nothing (it runs in the server process, named by its type,
    /// as a pool task is).
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get); a panic in `f` is that call's
    /// [`ErrorKind::Panicked`], and the server goes on.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let counts = m.dict::<String, u64>()?;
    /// counts.modify("hits".into(), 0, |n| n + 1)?;
    /// assert_eq!(counts.modify("hits".into(), 0, |n| n + 1)?, 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("atomic", "increment"))]
    pub fn modify<F: Fn(V) -> V + Copy + Send + 'static>(&self, key: K, default: V, f: F) -> Result<V> {
        let _ = f;
        self.proxy.call(protocol::op_id(modify_op::<K, V, F>), 0, &(key, default))
    }

    /// The value of `key`, after setting it to `default` if it was missing
    /// (Python's `setdefault`), in one call.
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let d = m.dict::<u8, u8>()?;
    /// assert_eq!(d.setdefault(1, 5)?, 5);
    /// assert_eq!(d.setdefault(1, 6)?, 5);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn setdefault(&self, key: K, default: V) -> Result<V> {
        self.call(method::SETDEFAULT, &(key, default))
    }
}
