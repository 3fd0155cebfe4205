//! The authkey handshake of Python's `multiprocessing.connection`: each side
//! proves that it knows the key with an HMAC of a random challenge, and
//! nothing else is read before both proofs succeed.
//!
//! The challenge is `#CHALLENGE#{sha256}` and 40 random bytes (Python 3.12
//! and later); the answer is `{sha256}` and the HMAC-SHA256 of everything
//! after `#CHALLENGE#`. Python 3.11 and older send a bare 20-byte challenge
//! and expect a bare 16-byte HMAC-MD5, and answer any challenge that way.
//! multiproc accepts and gives those legacy answers, as Python 3.12 does,
//! so that it talks to every Python 3; HMAC-MD5 remains a sound MAC. Other
//! digests Python allows (sha384, sha3_*) are refused with a clear error.
//!
//! Every message of the handshake is read with a 256-byte cap, and each
//! waits at most [`HANDSHAKE_TIMEOUT`].

use std::time::Duration;

use hmac::{KeyInit, Mac};

use super::Connection;
use crate::error::{Error, ErrorKind, Result};
use crate::sys;

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
/// Random bytes in a challenge (Python's `MESSAGE_LENGTH`).
const NONCE: usize = 40;
/// The message lengths of the legacy (MD5, no prefix) protocol: a
/// challenge and an answer.
const LEGACY_LENGTHS: [usize; 2] = [20, 16];
/// Longest message of the handshake.
const CAP: usize = 256;
/// How long each step waits for the peer.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

fn fail(why: impl Into<String>) -> Error {
    Error::new(ErrorKind::Authentication, why.into())
}

/// The digests this side computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Digest {
    Md5,
    Sha256,
}

impl Digest {
    fn name(self) -> &'static str {
        match self {
            Digest::Md5 => "md5",
            Digest::Sha256 => "sha256",
        }
    }

    fn mac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        match self {
            Digest::Md5 => {
                let mut m = hmac::Hmac::<md5::Md5>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(message);
                m.finalize().into_bytes().to_vec()
            }
            Digest::Sha256 => {
                let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(message);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    /// Whether `tag` is the MAC of `message`, compared in constant time.
    fn verify(self, key: &[u8], message: &[u8], tag: &[u8]) -> bool {
        match self {
            Digest::Md5 => {
                let mut m = hmac::Hmac::<md5::Md5>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(message);
                m.verify_slice(tag).is_ok()
            }
            Digest::Sha256 => {
                let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(message);
                m.verify_slice(tag).is_ok()
            }
        }
    }
}

/// Splits `{digest}payload`: the digest (`None` for the legacy protocol,
/// recognised by length) and the payload.
fn digest_and_payload(message: &[u8]) -> Result<(Option<Digest>, &[u8])> {
    if LEGACY_LENGTHS.contains(&message.len()) {
        return Ok((None, message));
    }
    // Python looks for '}' among the first 10 bytes ("{sha3_384}").
    if message.first() == Some(&b'{') {
        if let Some(close) = message.iter().take(10).skip(1).position(|&b| b == b'}').map(|p| p + 1) {
            let name = &message[1..close];
            let digest = match name {
                b"md5" => Digest::Md5,
                b"sha256" => Digest::Sha256,
                other => {
                    return Err(fail(format!(
                        "the peer uses the digest {:?}, which multiproc does not implement (it does md5 and sha256)",
                        String::from_utf8_lossy(other)
                    )));
                }
            };
            return Ok((Some(digest), &message[close + 1..]));
        }
    }
    Err(fail(format!(
        "the peer's message of {} bytes has no digest prefix and no legacy length; it does not speak the \
         multiprocessing handshake",
        message.len()
    )))
}

fn recv(conn: &Connection, step: &str) -> Result<Vec<u8>> {
    if !conn.poll(Some(HANDSHAKE_TIMEOUT))? {
        return Err(fail(format!("the peer sent nothing for {HANDSHAKE_TIMEOUT:?} while {step}")));
    }
    conn.recv_bytes_max(CAP).map_err(|e| match e.kind() {
        ErrorKind::FrameTooLarge => fail(format!("the peer sent a message above {CAP} bytes while {step}")),
        ErrorKind::Eof => fail(format!("the peer closed the connection while {step} (wrong authkey on its side?)")),
        _ => e,
    })
}

/// Sends a challenge and checks the answer (Python's `deliver_challenge`).
pub(crate) fn deliver_challenge(conn: &Connection, key: &[u8]) -> Result<()> {
    let mut message = b"{sha256}".to_vec();
    let mut nonce = [0u8; NONCE];
    sys::random_bytes(&mut nonce).map_err(|e| Error::io("drawing a random challenge", e))?;
    message.extend_from_slice(&nonce);
    conn.send_bytes(&[CHALLENGE, &message].concat())?;
    let answer = recv(conn, "waiting for the answer to our challenge")?;
    let verified = match digest_and_payload(&answer) {
        Ok((digest, mac)) => digest.unwrap_or(Digest::Md5).verify(key, &message, mac),
        Err(_) => false,
    };
    if !verified {
        let _ = conn.send_bytes(FAILURE);
        return Err(fail("the peer's answer to our challenge is wrong: it does not have the same authkey"));
    }
    conn.send_bytes(WELCOME)
}

/// Answers the peer's challenge (Python's `answer_challenge`).
pub(crate) fn answer_challenge(conn: &Connection, key: &[u8]) -> Result<()> {
    let challenge = recv(conn, "waiting for the peer's challenge")?;
    let Some(message) = challenge.strip_prefix(CHALLENGE) else {
        return Err(fail(
            "the peer did not send an authentication challenge (is it expecting an authkey? does it speak this \
             protocol?)",
        ));
    };
    if message.len() < LEGACY_LENGTHS[0] {
        return Err(fail(format!("the peer's challenge is too short ({} bytes)", message.len())));
    }
    let answer = match digest_and_payload(message)? {
        (None, _) => Digest::Md5.mac(key, message),
        (Some(d), _) => [format!("{{{}}}", d.name()).as_bytes(), &d.mac(key, message)].concat(),
    };
    conn.send_bytes(&answer)?;
    let verdict = recv(conn, "waiting for the peer's verdict on our answer")?;
    if verdict != WELCOME {
        return Err(fail("the peer rejected our answer: it does not have the same authkey"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn pair() -> (Connection, Connection) {
        super::super::Pipe(true).unwrap()
    }

    #[test]
    fn matching_keys_pass_both_ways() {
        let (a, b) = pair();
        let t = std::thread::spawn(move || answer_challenge(&b, b"key").map(|_| b));
        deliver_challenge(&a, b"key").unwrap();
        let b = t.join().unwrap().unwrap();
        let t = std::thread::spawn(move || deliver_challenge(&b, b"").map(|_| b));
        answer_challenge(&a, b"").unwrap();
        t.join().unwrap().unwrap();
    }

    #[test]
    fn a_wrong_key_fails_on_both_sides() {
        let (a, b) = pair();
        let t = std::thread::spawn(move || answer_challenge(&b, b"theirs"));
        assert_eq!(deliver_challenge(&a, b"ours").unwrap_err().kind(), ErrorKind::Authentication);
        assert_eq!(t.join().unwrap().unwrap_err().kind(), ErrorKind::Authentication);
    }

    #[test]
    fn legacy_md5_challenges_get_legacy_answers() {
        let (a, b) = pair();
        let nonce = [7u8; 20];
        a.send_bytes(&[CHALLENGE, &nonce].concat()).unwrap();
        let t = std::thread::spawn(move || answer_challenge(&b, b"k"));
        let answer = a.recv_bytes().unwrap();
        assert_eq!(answer, Digest::Md5.mac(b"k", &nonce));
        assert_eq!(answer.len(), 16);
        a.send_bytes(WELCOME).unwrap();
        t.join().unwrap().unwrap();
    }

    #[test]
    fn the_known_answer_matches_python() {
        // hmac.new(b"key", b"{sha256}" + b"\x00" * 40, "sha256").hexdigest()
        let message = [&b"{sha256}"[..], &[0u8; 40]].concat();
        let mac = Digest::Sha256.mac(b"key", &message);
        assert_eq!(hex(&mac), "21156a7f747e08a3a4512da2478039425891e6c6c9b383ce5c9151aff97bfbb8");
        // hmac.new(b"k", bytes([7] * 20), "md5").hexdigest()
        assert_eq!(hex(&Digest::Md5.mac(b"k", &[7; 20])), "6d5cca6646793217129b4439afb17dad");
        assert!(Digest::Sha256.verify(b"key", &message, &mac));
        assert!(!Digest::Sha256.verify(b"kez", &message, &mac));
    }

    #[test]
    fn odd_messages_are_refused_not_panicked_on() {
        for m in [&b""[..], b"{", b"{}", b"{sha384}abc", b"no prefix at all, twenty-one", b"{sha256"] {
            assert!(digest_and_payload(m).is_err(), "{m:?}");
        }
        assert_eq!(digest_and_payload(b"{md5}xyz").unwrap(), (Some(Digest::Md5), &b"xyz"[..]));
    }
}
