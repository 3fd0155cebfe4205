//! [`NamespaceProxy`] and [`ValueProxy`]: named fields, and one value, that
//! live in a manager's server (Python's `Manager().Namespace()` and
//! `Manager().Value()`).

use std::collections::BTreeMap;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::protocol::{self, Slot, decode, encode, object};
use super::proxy::{Link, Proxy};
use crate::error::{Error, ErrorKind, Result};
use crate::target::Message;

mod method {
    pub(super) const CREATE: u32 = 0;
    pub(super) const GET: u32 = 1;
    pub(super) const SET: u32 = 2;
    pub(super) const REMOVE: u32 = 3;
    pub(super) const NAMES: u32 = 4;
}

/// The server side of a namespace: fields hold their values encoded, and
/// each reader names the type it reads.
fn namespace_op(args: &[u8], m: u32, slot: &mut Slot) {
    let reply = (|| -> Result<Vec<u8>> {
        if m == method::CREATE {
            slot.object = Some(Box::new(BTreeMap::<String, Vec<u8>>::new()));
            return Ok(Vec::new());
        }
        let fields = object::<BTreeMap<String, Vec<u8>>>(slot)?;
        match m {
            method::GET => encode(&fields.get(&decode::<String>(args)?)),
            method::SET => {
                let (name, value) = decode::<(String, Vec<u8>)>(args)?;
                fields.insert(name, value);
                encode(&())
            }
            method::REMOVE => encode(&fields.remove(&decode::<String>(args)?).is_some()),
            method::NAMES => encode(&fields.keys().collect::<Vec<_>>()),
            other => Err(Error::new(ErrorKind::Protocol, format!("a namespace has no method {other}"))),
        }
    })();
    slot.reply = reply;
}

/// Named fields owned by a [`Manager`](crate::Manager)'s server (Python's
/// `manager.Namespace()`, whose attributes are set and read from any
/// process). A field holds any message; its reader names the type.
///
/// # Examples
///
/// ```
/// use multiproc::Manager;
/// let m = Manager::new()?;
/// let ns = m.namespace()?;
/// ns.set("x", &1)?;
/// ns.set("y", &"hello".to_string())?;
/// assert_eq!(ns.get::<i32>("x")?, Some(1));
/// assert_eq!(ns.get::<String>("y")?.as_deref(), Some("hello"));
/// assert_eq!(ns.names()?, ["x", "y"]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct NamespaceProxy {
    proxy: Proxy,
    _types: PhantomData<()>,
}

super::proxy::typed_proxy!(NamespaceProxy);

impl NamespaceProxy {
    fn op() -> protocol::OpId {
        protocol::op_id(namespace_op)
    }

    pub(crate) fn create(link: std::sync::Arc<Link>) -> Result<Self> {
        Ok(NamespaceProxy { proxy: Proxy::create(link, Self::op(), Vec::new())?, _types: PhantomData })
    }

    /// Sets field `name` (Python's `ns.name = value`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ManagerGone`] if the server is gone (every method), or
    /// [`ErrorKind::Serialize`].
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let ns = m.namespace()?;
    /// ns.set("done", &true)?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("__setattr__"))]
    pub fn set<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        self.proxy.call(Self::op(), method::SET, &(name, protocol::encode(value)?))
    }

    /// Field `name` as a `T`; `None` if it was never set (Python raises
    /// `AttributeError`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Deserialize`] if the field does not read as a `T`; as
    /// [`set`](NamespaceProxy::set) otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let ns = m.namespace()?;
    /// assert_eq!(ns.get::<u8>("missing")?, None);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("__getattr__"))]
    pub fn get<T: DeserializeOwned + 'static>(&self, name: &str) -> Result<Option<T>> {
        let bytes: Option<Vec<u8>> = self.proxy.call(Self::op(), method::GET, name)?;
        bytes.map(|b| protocol::decode(&b)).transpose()
    }

    /// Removes field `name`; whether it was there (Python's `del ns.name`).
    ///
    /// # Errors
    ///
    /// As [`set`](NamespaceProxy::set).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let ns = m.namespace()?;
    /// ns.set("x", &1)?;
    /// assert!(ns.remove("x")? && !ns.remove("x")?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("__delattr__"))]
    pub fn remove(&self, name: &str) -> Result<bool> {
        self.proxy.call(Self::op(), method::REMOVE, name)
    }

    /// The names of the fields set, sorted.
    ///
    /// # Errors
    ///
    /// As [`set`](NamespaceProxy::set).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert!(m.namespace()?.names()?.is_empty());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("__dir__"))]
    pub fn names(&self) -> Result<Vec<String>> {
        self.proxy.call(Self::op(), method::NAMES, &())
    }
}

/// The server side of a value.
fn value_op<T: Message + Clone>(args: &[u8], m: u32, slot: &mut Slot) {
    let reply = (|| -> Result<Vec<u8>> {
        if m == method::CREATE {
            slot.object = Some(Box::new(decode::<T>(args)?));
            return Ok(Vec::new());
        }
        let value = object::<T>(slot)?;
        match m {
            method::GET => encode(value),
            method::SET => {
                *value = decode::<T>(args)?;
                encode(&())
            }
            other => Err(Error::new(ErrorKind::Protocol, format!("a value has no method {other}"))),
        }
    })();
    slot.reply = reply;
}

/// One value owned by a [`Manager`](crate::Manager)'s server (Python's
/// `manager.Value(typecode, value)`, of any message type here).
///
/// # Examples
///
/// ```
/// let m = multiproc::Manager::new()?;
/// let v = m.value(String::from("start"))?;
/// v.set("end".into())?;
/// assert_eq!(v.get()?, "end");
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct ValueProxy<T> {
    proxy: Proxy,
    _types: PhantomData<fn() -> T>,
}

super::proxy::typed_proxy!(ValueProxy<T>);

impl<T: Message + Clone> ValueProxy<T> {
    fn op() -> protocol::OpId {
        protocol::op_id(value_op::<T>)
    }

    pub(crate) fn create(link: std::sync::Arc<Link>, value: &T) -> Result<Self> {
        Ok(ValueProxy { proxy: Proxy::create(link, Self::op(), protocol::encode(value)?)?, _types: PhantomData })
    }

    /// The value (Python's `v.value`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ManagerGone`] if the server is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert_eq!(m.value(3u8)?.get()?, 3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get(&self) -> Result<T> {
        self.proxy.call(Self::op(), method::GET, &())
    }

    /// Sets the value (Python's `v.value = x`).
    ///
    /// # Errors
    ///
    /// As [`get`](ValueProxy::get).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let v = m.value(3u8)?;
    /// v.set(4)?;
    /// assert_eq!(v.get()?, 4);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn set(&self, value: T) -> Result<()> {
        self.proxy.call(Self::op(), method::SET, &value)
    }
}
