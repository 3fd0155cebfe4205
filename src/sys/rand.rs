//! Randomness from the kernel.

use std::io;

use rustix::io::Errno;

/// `getrandom(buf, 0)`: fills `buf` with random bytes from the kernel.
#[doc(alias = "getrandom")]
pub(crate) fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_bytes_fill_the_buffer() {
        let mut r = [0u8; 32];
        super::random_bytes(&mut r).unwrap();
        assert_ne!(r, [0u8; 32]);
    }
}
