//! The checks on what a caller asks for, and the errors that say what
//! went wrong and what to do.

use std::io;

use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, BorrowedFd};

/// The longest name a segment can have (`NAME_MAX`).
const NAME_MAX: usize = 255;

pub(super) fn check_size(size: usize) -> Result<()> {
    if size == 0 {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "a shared memory segment needs a size of at least 1 byte; 0 was given",
        ));
    }
    if size > isize::MAX as usize {
        return Err(Error::new(ErrorKind::InvalidInput, format!("{size} bytes cannot be mapped; ask for less")));
    }
    Ok(())
}

/// Refuses a segment larger than the room left in its file system: its
/// pages are only allocated when written, and a write that finds the file
/// system full kills the writer with SIGBUS.
pub(super) fn check_room(fd: BorrowedFd<'_>, size: usize) -> Result<()> {
    match sys::free_bytes(fd) {
        Ok(Some(free)) if free < size as u64 => Err(Error::new(
            ErrorKind::Io,
            format!(
                "/dev/shm has {free} bytes free, fewer than the {size} asked for, and a write that finds it full \
                 raises SIGBUS; ask for less, unlink segments you no longer need, or give /dev/shm more room \
                 (docker run --shm-size)"
            ),
        )
        .with_source(io::Error::from(io::ErrorKind::StorageFull))),
        _ => Ok(()),
    }
}

/// `name` without leading slashes, if it can name a segment.
pub(super) fn valid_name(name: &str) -> Result<&str> {
    let bare = name.trim_start_matches('/');
    let problem = if bare.is_empty() {
        Some("is empty")
    } else if bare.contains('/') {
        Some("contains '/' after its start")
    } else if bare.contains('\0') {
        Some("contains a NUL byte")
    } else if bare == "." || bare == ".." {
        Some("is a directory name")
    } else if bare.len() > NAME_MAX {
        Some("is longer than 255 bytes")
    } else {
        None
    };
    match problem {
        Some(p) => {
            Err(Error::new(ErrorKind::InvalidInput, format!("the shared memory name {name:?} {p}; pick another")))
        }
        None => Ok(bare),
    }
}

pub(super) fn create_error(name: &str, e: io::Error) -> Error {
    let message = match e.kind() {
        io::ErrorKind::AlreadyExists => format!(
            "a shared memory segment named {name:?} already exists; open it with SharedMemory::open or pick another \
             name"
        ),
        _ => format!("creating shared memory segment {name:?} failed: {e}"),
    };
    Error::new(ErrorKind::Io, message).with_source(e)
}

pub(super) fn open_error(name: &str, e: io::Error) -> Error {
    let message = match e.kind() {
        io::ErrorKind::NotFound => format!(
            "no shared memory segment named {name:?} exists (never created, or unlinked); create it with \
             SharedMemory::create, or check the name"
        ),
        io::ErrorKind::PermissionDenied => {
            format!("shared memory segment {name:?} exists but this user may not read and write it")
        }
        _ => format!("opening shared memory segment {name:?} failed: {e}"),
    };
    Error::new(ErrorKind::Io, message).with_source(e)
}

pub(super) fn unlink_error(name: &str, e: io::Error) -> Error {
    let message = match e.kind() {
        io::ErrorKind::NotFound => {
            format!("no shared memory segment named {name:?} exists any more: it was unlinked already")
        }
        _ => format!("unlinking shared memory segment {name:?} failed: {e}"),
    };
    Error::new(ErrorKind::Io, message).with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_leading_slashes_dropped() {
        assert_eq!(valid_name("psm_1").unwrap(), "psm_1");
        assert_eq!(valid_name("//psm_1").unwrap(), "psm_1");
        for bad in ["", "/", "a/b", "a\0b", ".", "/..", &"x".repeat(256)] {
            let err = valid_name(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
        }
        assert!(valid_name(&"x".repeat(255)).is_ok());
    }
}
