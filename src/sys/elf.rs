//! The build fingerprint: the GNU build-id note of the running executable.

use std::ffi::c_void;

const NT_GNU_BUILD_ID: u32 = 3;

/// The main executable's GNU build-id, if the linker wrote one.
#[doc(alias("dl_iterate_phdr", "NT_GNU_BUILD_ID"))]
pub(crate) fn build_id() -> Option<Vec<u8>> {
    let mut found: Option<Vec<u8>> = None;
    // SAFETY: `callback` only reads the program headers and note segments
    // that `dl_iterate_phdr` describes, which stay mapped for the duration
    // of the call; `data` points at `found`, which outlives the call.
    unsafe {
        libc::dl_iterate_phdr(Some(callback), (&mut found as *mut Option<Vec<u8>>).cast());
    }
    found
}

unsafe extern "C" fn callback(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> libc::c_int {
    // SAFETY: `dl_iterate_phdr` passes a valid `info` and our `data`.
    let (info, found) = unsafe { (&*info, &mut *data.cast::<Option<Vec<u8>>>()) };
    // SAFETY: `dlpi_phdr` points at `dlpi_phnum` program headers.
    let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
    for ph in phdrs.iter().filter(|ph| ph.p_type == libc::PT_NOTE) {
        let start = (info.dlpi_addr as usize).wrapping_add(ph.p_vaddr as usize);
        // SAFETY: a PT_NOTE segment of a loaded object is mapped readable
        // for `p_memsz` bytes at `dlpi_addr + p_vaddr`.
        let notes = unsafe { std::slice::from_raw_parts(start as *const u8, ph.p_memsz as usize) };
        if let Some(id) = find_build_id(notes) {
            *found = Some(id.to_vec());
            break;
        }
    }
    // The first object is the main executable: stop after it.
    1
}

fn find_build_id(mut notes: &[u8]) -> Option<&[u8]> {
    let word = |b: &[u8], at: usize| -> Option<u32> { Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?)) };
    let align4 = |n: usize| (n + 3) & !3;
    while notes.len() >= 12 {
        let namesz = word(notes, 0)? as usize;
        let descsz = word(notes, 4)? as usize;
        let kind = word(notes, 8)?;
        let name_end = 12 + align4(namesz);
        let desc_end = name_end.checked_add(align4(descsz))?;
        if desc_end > notes.len() {
            return None;
        }
        if kind == NT_GNU_BUILD_ID && notes.get(12..12 + namesz) == Some(b"GNU\0") {
            return notes.get(name_end..name_end + descsz);
        }
        notes = &notes[desc_end..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_build_id_note() {
        let mut note = Vec::new();
        note.extend_from_slice(&4u32.to_ne_bytes());
        note.extend_from_slice(&3u32.to_ne_bytes());
        note.extend_from_slice(&NT_GNU_BUILD_ID.to_ne_bytes());
        note.extend_from_slice(b"GNU\0");
        note.extend_from_slice(&[1, 2, 3, 0]);
        assert_eq!(find_build_id(&note), Some(&[1u8, 2, 3][..]));
        assert_eq!(find_build_id(&note[..10]), None);
    }

    #[test]
    fn this_test_binary_has_a_build_id() {
        // Debian's linker writes one by default; the fingerprint falls back
        // to hashing the executable when it is missing.
        let id = build_id();
        assert!(id.is_none_or(|id| !id.is_empty()));
    }
}
