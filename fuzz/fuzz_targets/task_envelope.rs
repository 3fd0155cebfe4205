//! Any bytes as the task frame a started child reads to learn what to run:
//! the child either accepts a task of this build whose id it was given, or
//! refuses with a typed error, never panics, hangs or allocates beyond the
//! frame-size limit, and never accepts an id that was changed.
//!
//! The first byte picks the frame (the bytes as sent, or the probe's task
//! frame of this build with its id XORed with the next 16 bytes) and how
//! the child gets it (in memory, or from its socket): see
//! `multiproc::fuzzing::task_envelope`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use multiproc::ErrorKind;
use multiproc::fuzzing::task_envelope;

/// The frame-size limit: a header may claim at most this much.
const CAP: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    multiproc::set_max_frame_size(CAP).unwrap();
    let probe = data.first().is_some_and(|how| how & 1 == 1);
    // The probe's frame with its id as made: missing mask bytes are zeros.
    let intact = probe && data[1..].iter().take(16).all(|&b| b == 0);
    match task_envelope(data) {
        Ok(Some(task)) => {
            assert!(task.is_probe, "a task id that names another function was accepted");
            assert!(intact, "a changed task id was accepted");
            assert_eq!(task.argument, data.get(17..).unwrap_or_default());
        }
        Ok(None) => assert!(!probe, "the probe's frame was not read"),
        Err(e) => {
            assert!(
                matches!(
                    e.kind(),
                    ErrorKind::Protocol | ErrorKind::FrameTooLarge | ErrorKind::Deserialize | ErrorKind::BuildMismatch
                ),
                "unexpected error: {e}"
            );
            assert!(!intact, "the probe's own task frame was refused: {e}");
        }
    }
});
