//! Child bootstrap: how a re-exec'd process knows it is a multiproc child.
//!
//! A constructor ([`constructor`], through the `ctor` crate) calls
//! [`on_load`] before `main` in every executable that links multiproc. The
//! parent marks a spawned child, or the fork server, with the environment
//! variable [`ENV_ROLE`]; `on_load` removes it, serves, and exits, so the
//! user's `main` never runs in the child. Without the variable it returns
//! at once. This is why spawn and forkserver work in binaries, examples,
//! tests, benches and doctests with no line added to `main`.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::atomic::{AtomicBool, Ordering};

use super::{forkserver, serve};
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, ExecSpec};
use crate::{codec, shared_memory};

/// The variable that turns a re-exec'd process into a multiproc child.
pub(crate) const ENV_ROLE: &str = "MULTIPROC_BOOTSTRAP";

static LINKED: AtomicBool = AtomicBool::new(false);

/// What a re-exec'd process is for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Role {
    /// Serve one task on fd 3, with this frame-size limit.
    Spawn { max_frame: u64 },
    /// Run the fork server on fd 3.
    ForkServer,
    /// Track the shared memory segments of process `creator` (this
    /// process's parent), which talks to it on fd 3.
    ShmTracker { creator: i32 },
}

impl Role {
    fn encode(self) -> String {
        match self {
            Role::Spawn { max_frame } => format!("spawn:{max_frame}"),
            Role::ForkServer => "forkserver".to_owned(),
            Role::ShmTracker { creator } => format!("shmtracker:{creator}"),
        }
    }

    fn parse(s: &str) -> Option<Role> {
        if s == "forkserver" {
            return Some(Role::ForkServer);
        }
        if let Some(creator) = s.strip_prefix("shmtracker:") {
            return Some(Role::ShmTracker { creator: creator.parse().ok()? });
        }
        let max_frame = s.strip_prefix("spawn:")?.parse().ok()?;
        Some(Role::Spawn { max_frame })
    }
}

/// Called by the constructor before `main`.
pub(crate) fn on_load() {
    LINKED.store(true, Ordering::Relaxed);
    let Some(role) = std::env::var_os(ENV_ROLE) else {
        // Not a multiproc child: under mpirun, ranks other than 0 become
        // pool workers here.
        #[cfg(feature = "mpi")]
        crate::mpi::on_load();
        return;
    };
    sys::remove_var(ENV_ROLE);
    let outcome = std::panic::catch_unwind(|| {
        let Some(role) = role.to_str().and_then(Role::parse) else {
            eprintln!(
                "multiproc: unknown {ENV_ROLE} value {role:?}; this process was not started by this build of multiproc"
            );
            sys::exit_now(2);
        };
        let control = sys::take_inherited(sys::CHILD_FD);
        match role {
            Role::Spawn { max_frame } => {
                let _ = codec::set_max_frame_size(max_frame);
                serve::serve(control, None)
            }
            Role::ForkServer => forkserver::serve(control),
            Role::ShmTracker { creator } => shared_memory::serve_tracker(control, creator),
        }
    });
    // Every role ends with `_exit`; getting here means the bootstrap panicked.
    drop(outcome);
    eprintln!("multiproc: the child bootstrap panicked before it could reply");
    sys::exit_now(70)
}

/// The constructor itself. `unsafe_code` is allowed for this module alone:
/// the `ctor` attribute places the function in `.init_array`.
#[allow(unsafe_code)]
mod constructor {
    /// Runs before `main` in every executable that links multiproc. In an
    /// ordinary run it notes that the bootstrap is linked and returns; in a
    /// multiproc child it serves the child and never returns.
    // SAFETY: `ctor` asks us to vouch for code that runs before `main`.
    // The process is single-threaded then, and std on Linux needs no
    // set-up from `main` for what is used here (the environment,
    // allocation, fds, threads, stdio). In an ordinary run the function
    // only stores a flag and reads one environment variable. In a child it
    // serves the role inside `catch_unwind` and ends the process with
    // `_exit` without returning, so no panic unwinds out of the
    // constructor (the few calls outside the guard, an environment read and
    // removal and a last message on stderr, do not panic).
    #[ctor::ctor(unsafe)]
    fn multiproc_bootstrap() {
        super::on_load();
    }
}

/// Fails unless the bootstrap constructor ran in this process: without it,
/// a re-exec'd child would run the user's `main` instead of the task.
pub(crate) fn ensure_linked() -> Result<()> {
    if LINKED.load(Ordering::Relaxed) {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Unsupported,
        "multiproc's bootstrap constructor did not run in this executable, so a re-exec'd child would run main() \
         instead of its task; use StartMethod::Fork, or make sure the linker keeps multiproc's .init_array entry",
    ))
}

/// The `execve` spec that re-runs this executable as a multiproc child in
/// `role`, with `argv` and the current environment plus `extra`.
pub(crate) fn exec_spec(argv: Vec<CString>, role: Role, extra: &[(OsString, OsString)]) -> Result<ExecSpec> {
    ensure_linked()?;
    let path = CString::new("/proc/self/exe").expect("no NUL");
    let mut env: Vec<CString> = Vec::new();
    let overridden = |key: &OsString| key == ENV_ROLE || extra.iter().any(|(k, _)| k == key);
    for (key, value) in std::env::vars_os() {
        if !overridden(&key) {
            env.push(env_entry(&key, &value)?);
        }
    }
    for (key, value) in extra {
        env.push(env_entry(key, value)?);
    }
    env.push(env_entry(&OsString::from(ENV_ROLE), &OsString::from(role.encode()))?);
    Ok(ExecSpec::new(path, argv, env))
}

fn env_entry(key: &OsString, value: &OsString) -> Result<CString> {
    let mut entry = key.clone().into_vec();
    entry.push(b'=');
    entry.extend_from_slice(value.as_bytes());
    CString::new(entry).map_err(|_| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("the environment variable {key:?} contains a NUL byte and cannot be passed to a child"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip() {
        assert!(matches!(Role::parse(&Role::ForkServer.encode()), Some(Role::ForkServer)));
        assert!(matches!(Role::parse(&Role::Spawn { max_frame: 77 }.encode()), Some(Role::Spawn { max_frame: 77 })));
        assert!(matches!(
            Role::parse(&Role::ShmTracker { creator: 42 }.encode()),
            Some(Role::ShmTracker { creator: 42 })
        ));
        assert!(Role::parse("shmtracker:").is_none());
        assert!(Role::parse("spawn:x").is_none());
        assert!(Role::parse("").is_none());
    }

    #[test]
    fn the_constructor_ran_in_this_test_binary() {
        ensure_linked().unwrap();
    }
}
