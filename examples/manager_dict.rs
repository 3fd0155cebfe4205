//! The Manager example of Python's `multiprocessing` docs, ported: a child
//! fills a shared dict and reverses a shared list.
//!
//! What differs from the original: Python's dict takes keys of any type
//! (`1`, `'2'`, `0.25`); a Rust dict has one key type, so the keys here are
//! an enum of the three kinds (and a float key is kept as its bits, since
//! floats are not `Eq`). The output is the same.

use std::fmt;

use multiproc::manager::{DictProxy, ListProxy};
use multiproc::{Manager, Process};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
enum Key {
    Int(i64),
    Str(String),
    Float(u64),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Val {
    Str(String),
    Int(i64),
    None,
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Int(i) => write!(f, "{i}"),
            Key::Str(s) => write!(f, "'{s}'"),
            Key::Float(bits) => write!(f, "{}", f64::from_bits(*bits)),
        }
    }
}

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Str(s) => write!(f, "'{s}'"),
            Val::Int(i) => write!(f, "{i}"),
            Val::None => write!(f, "None"),
        }
    }
}

fn f((d, l): (DictProxy<Key, Val>, ListProxy<i64>)) -> multiproc::Result<()> {
    d.insert(Key::Int(1), Val::Str("1".into()))?;
    d.insert(Key::Str("2".into()), Val::Int(2))?;
    d.insert(Key::Float(0.25f64.to_bits()), Val::None)?;
    l.reverse()
}

fn main() -> multiproc::Result<()> {
    let manager = Manager::new()?;
    let d = manager.dict()?;
    let l = manager.list_from((0..10).collect())?;

    let p = Process::new(f, (d.clone(), l.clone())).start()?;
    p.join()??;

    let items: Vec<String> = d.items()?.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    println!("{{{}}}", items.join(", "));
    println!("{:?}", l.snapshot()?);
    Ok(())
}
