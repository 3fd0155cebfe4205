//! Any bytes on the pool's wire: a worker reading its task stream, and the
//! dispatcher reading a worker's results, each get a value or a typed
//! error, never a panic, a hang or an allocation beyond the frame-size
//! limit; and a chunk whose task id was changed runs nothing: each of its
//! items comes back refused.
//!
//! The first byte picks the side and the mode: see
//! `multiproc::fuzzing::pool_wire`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use multiproc::ErrorKind;
use multiproc::fuzzing::pool_wire;

/// The frame-size limit: a header may claim at most this much.
const CAP: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    multiproc::set_max_frame_size(CAP).unwrap();
    // A worker given the probe's chunk, made by the dispatcher's encoder:
    // the round trip never breaks a stream.
    let probe = data.first().is_some_and(|how| how & 5 == 4);
    let seen = match pool_wire(data) {
        Ok(seen) => seen,
        Err(e) => {
            assert!(matches!(e.kind(), ErrorKind::Protocol | ErrorKind::FrameTooLarge), "unexpected error: {e}");
            assert!(!probe, "the probe's chunk broke a stream: {e}");
            return;
        }
    };
    let Some((count, intact)) = seen.probe else { return };
    // A chunk comes back whole, or stopped early (and then sent again).
    assert!(seen.items.is_empty() || seen.items.len() == count as usize, "{} of {count} items", seen.items.len());
    if !intact {
        assert_eq!(seen.items.len(), count as usize, "a chunk of a changed id is refused whole");
        for item in &seen.items {
            let e = item.as_ref().expect_err("an item of a changed task id ran");
            assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
            assert!(e.to_string().contains("does not match this build"), "{e}");
        }
    }
});
