//! Python's byte framing for `send_bytes`/`recv_bytes`: a 4-byte big-endian
//! signed length, or `-1` followed by an 8-byte big-endian length for
//! messages above `i32::MAX` bytes (`multiprocessing.connection` reads it from
//! Python 3.8 on; 3.7 and older misread it).

use crate::error::{Error, ErrorKind, Result};

/// The largest length the 4-byte form carries.
pub(crate) const SHORT_MAX: u64 = 0x7fff_ffff;

/// The header for a message of `len` bytes: 4 bytes, or 12 above
/// [`SHORT_MAX`] (or always 12 with `long`, which Python also reads).
pub(crate) fn header(len: u64, long: bool) -> ([u8; 12], usize) {
    let mut h = [0u8; 12];
    if len > SHORT_MAX || long {
        h[..4].copy_from_slice(&(-1i32).to_be_bytes());
        h[4..].copy_from_slice(&len.to_be_bytes());
        (h, 12)
    } else {
        h[..4].copy_from_slice(&(len as i32).to_be_bytes());
        (h, 4)
    }
}

/// Parses a header at the front of `bytes`: `Ok(None)` until enough bytes
/// are there, then the header's size and the message length.
pub(crate) fn parse_header(bytes: &[u8]) -> Result<Option<(usize, u64)>> {
    let Some(short) = bytes.first_chunk::<4>() else {
        return Ok(None);
    };
    match i32::from_be_bytes(*short) {
        -1 => Ok(bytes.get(4..12).map(|long| (12, u64::from_be_bytes(long.try_into().expect("8 bytes"))))),
        n if n >= 0 => Ok(Some((4, n as u64))),
        n => Err(Error::new(
            ErrorKind::Protocol,
            format!("a message header declares the length {n}; the peer does not speak the connection protocol"),
        )),
    }
}

/// How many more bytes complete a header of which `have` bytes are there
/// and did not parse yet: the short form's 4, or the long form's 8 more.
pub(crate) fn header_bytes_missing(have: usize) -> usize {
    if have >= 4 { 12 - have } else { 4 - have }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_forms_round_trip() {
        for (len, long) in [(0, false), (5, false), (SHORT_MAX, false), (SHORT_MAX + 1, false), (7, true)] {
            let (h, n) = header(len, long);
            assert_eq!(parse_header(&h[..n]).unwrap(), Some((n, len)));
            assert_eq!(parse_header(&h[..n - 1]).unwrap(), None);
        }
        assert_eq!(header(5, false).0[..4], [0, 0, 0, 5]);
        assert_eq!(header(5, true).0, [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 5]);
    }

    #[test]
    fn other_negative_lengths_are_protocol_errors() {
        assert_eq!(parse_header(&(-2i32).to_be_bytes()).unwrap_err().kind(), ErrorKind::Protocol);
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    fn config() -> ProptestConfig {
        ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() }
    }

    /// Lengths around the edges of the two forms, and anywhere else.
    fn lengths() -> impl Strategy<Value = u64> {
        prop_oneof![
            any::<u64>(),
            0..=64u64,
            SHORT_MAX - 2..=SHORT_MAX + 2,
            (1u64 << 32) - 2..=(1u64 << 32) + 2,
            u64::MAX - 2..=u64::MAX,
        ]
    }

    /// Bytes that often start like a header: a short length, `-1`, or
    /// another negative number.
    fn header_like_bytes() -> impl Strategy<Value = Vec<u8>> {
        let head = prop_oneof![
            any::<i32>().prop_map(|n| n.to_be_bytes().to_vec()),
            Just((-1i32).to_be_bytes().to_vec()),
            (i32::MIN..-1).prop_map(|n| n.to_be_bytes().to_vec()),
            prop::collection::vec(any::<u8>(), 0..4),
        ];
        (head, prop::collection::vec(any::<u8>(), 0..16)).prop_map(|(mut h, tail)| {
            h.extend(tail);
            h
        })
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn parse_header_on_any_bytes_waits_parses_or_refuses_as_the_format_says(bytes in header_like_bytes()) {
            let got = parse_header(&bytes);
            match bytes.first_chunk::<4>().map(|h| i32::from_be_bytes(*h)) {
                None => prop_assert_eq!(got.unwrap(), None),
                Some(-1) if bytes.len() < 12 => prop_assert_eq!(got.unwrap(), None),
                Some(-1) => {
                    let long = u64::from_be_bytes(bytes[4..12].try_into().unwrap());
                    prop_assert_eq!(got.unwrap(), Some((12, long)));
                }
                Some(n) if n >= 0 => prop_assert_eq!(got.unwrap(), Some((4, n as u64))),
                Some(_) => prop_assert_eq!(got.unwrap_err().kind(), ErrorKind::Protocol),
            }
        }

        #[test]
        fn every_header_parses_back_to_its_length_whatever_follows_it(
            len in lengths(),
            long in any::<bool>(),
            tail in prop::collection::vec(any::<u8>(), 0..16),
        ) {
            let (h, n) = header(len, long);
            prop_assert_eq!(n, if long || len > SHORT_MAX { 12 } else { 4 });
            for cut in 0..n {
                prop_assert_eq!(parse_header(&h[..cut]).unwrap(), None);
            }
            let mut bytes = h[..n].to_vec();
            bytes.extend_from_slice(&tail);
            prop_assert_eq!(parse_header(&bytes).unwrap(), Some((n, len)));
        }
    }
}
