//! [`DictProxy`]: a dict that lives in a manager's server (Python's
//! `Manager().dict()`).

use std::collections::HashMap;
use std::hash::Hash;
use std::marker::PhantomData;

use serde::Serialize;

use super::hash::RandomState;
use super::protocol::{self, Slot, decode, encode, object};
use super::proxy::{Link, Proxy};
use crate::codec;
use crate::error::{Error, ErrorKind, Result};
use crate::target::Message;

/// A dict in insertion order, as Python's: the server's object. A removed
/// item leaves a hole (as in Python's dict), so that removing is O(1); the
/// holes are squeezed out when they are half of the entries.
struct Ordered<K, V> {
    entries: Vec<Option<(K, V)>>,
    index: HashMap<K, usize, RandomState>,
}

impl<K: Eq + Hash + Clone, V> Ordered<K, V> {
    fn new() -> Self {
        Ordered { entries: Vec::new(), index: HashMap::default() }
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    fn get(&self, k: &K) -> Option<&V> {
        self.index.get(k).and_then(|&i| self.entries[i].as_ref()).map(|(_, v)| v)
    }

    fn insert(&mut self, k: K, v: V) -> Option<V> {
        // One hash of the key, whether it is new or not.
        match self.index.entry(k) {
            std::collections::hash_map::Entry::Occupied(e) => {
                self.entries[*e.get()].as_mut().map(|(_, old)| std::mem::replace(old, v))
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                let k = e.key().clone();
                e.insert(self.entries.len());
                self.entries.push(Some((k, v)));
                None
            }
        }
    }

    fn remove(&mut self, k: &K) -> Option<V> {
        let i = self.index.remove(k)?;
        let (_, v) = self.entries[i].take()?;
        while matches!(self.entries.last(), Some(None)) {
            self.entries.pop();
        }
        if self.entries.len() > 16 && self.index.len() < self.entries.len() / 2 {
            self.entries.retain(Option::is_some);
            for (at, (k, _)) in self.entries.iter().flatten().enumerate() {
                if let Some(i) = self.index.get_mut(k) {
                    *i = at;
                }
            }
        }
        Some(v)
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.index.clear();
    }

    /// The items, in insertion order.
    fn iter(&self) -> impl DoubleEndedIterator<Item = &(K, V)> {
        self.entries.iter().flatten()
    }

    /// Encodes the items as a batch of pairs ([`push_pairs`]'s form).
    fn encode_items(&self) -> Result<Vec<u8>>
    where
        K: Serialize + 'static,
        V: Serialize + 'static,
    {
        let mut out = Vec::new();
        push_pairs::<K, V, _, _>(&mut out, self.iter().map(|(k, v)| (k, v)))?;
        Ok(out)
    }

    /// Inserts the pairs of a batch ([`push_pairs`]'s form), with room
    /// made once.
    fn extend_from(&mut self, bytes: &[u8]) -> Result<()>
    where
        K: Message,
        V: Message,
    {
        let mut dec = codec::Decoder::new(bytes);
        let (n, room) = protocol::batch_len::<(K, V)>(&mut dec)?;
        self.entries.reserve(room);
        self.index.reserve(room);
        for _ in 0..n {
            let k = dec.next_item::<K>("a dict's key")?;
            let v = dec.next_item::<V>("a dict's value")?;
            self.insert(k, v);
        }
        Ok(())
    }
}

/// Items as they travel in a batch (`update`, `items`, a new dict): each
/// key followed by its value, as [`protocol::push_batch`] writes them.
fn push_pairs<K, V, Ks, Vs>(out: &mut Vec<u8>, items: impl IntoIterator<Item = (Ks, Vs)>) -> Result<()>
where
    K: Serialize + 'static,
    V: Serialize + 'static,
    Ks: std::borrow::Borrow<K>,
    Vs: std::borrow::Borrow<V>,
{
    protocol::push_batch(out, items, |enc, (k, v)| {
        enc.push_value(k.borrow(), "a dict's key")?;
        enc.push_value(v.borrow(), "a dict's value")
    })
}

/// The pairs of a batch ([`push_pairs`]'s form), as a vector.
fn decode_pairs<K: Message, V: Message>(bytes: &[u8]) -> Result<Vec<(K, V)>> {
    let mut dec = codec::Decoder::new(bytes);
    let (n, room) = protocol::batch_len::<(K, V)>(&mut dec)?;
    let mut items = Vec::with_capacity(room);
    for _ in 0..n {
        let k = dec.next_item::<K>("a dict's key")?;
        items.push((k, dec.next_item::<V>("a dict's value")?));
    }
    Ok(items)
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
            let mut map = Ordered::<K, V>::new();
            map.extend_from(args)?;
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
            method::LEN => encode(&(map.len() as u64)),
            method::KEYS => protocol::encode_items(map.iter().map(|(k, _)| k)),
            method::VALUES => protocol::encode_items(map.iter().map(|(_, v)| v)),
            method::ITEMS => map.encode_items(),
            method::UPDATE => {
                map.extend_from(args)?;
                encode(&())
            }
            method::CLEAR => {
                map.clear();
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
                let last = map.iter().next_back().map(|(k, _)| k.clone());
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
        let mut args = Vec::new();
        push_pairs::<K, V, _, _>(&mut args, items)?;
        let proxy = Proxy::create(link, Self::op(), args)?;
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
        let bytes = self.proxy.call_bytes(Self::op(), method::KEYS, protocol::encode(&())?)?;
        protocol::decode_items(&bytes)
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
        let bytes = self.proxy.call_bytes(Self::op(), method::VALUES, protocol::encode(&())?)?;
        protocol::decode_items(&bytes)
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
        let bytes = self.proxy.call_bytes(Self::op(), method::ITEMS, protocol::encode(&())?)?;
        decode_pairs(&bytes)
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
        let mut args = protocol::scratch();
        push_pairs::<K, V, _, _>(&mut args, items)?;
        protocol::decode(&self.proxy.call_bytes(Self::op(), method::UPDATE, args)?)
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
