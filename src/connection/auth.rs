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
//! Every message of the handshake is read with a 256-byte cap. A client
//! waits at most [`HANDSHAKE_TIMEOUT`] for each; a listener takes its
//! clients through the handshake side by side ([`Handshake`]), each within
//! [`HANDSHAKE_TIMEOUT`] in all.

use std::time::{Duration, Instant};

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

/// What each step waits for, as its errors say it.
const ANSWER_STEP: &str = "waiting for the answer to our challenge";
const CHALLENGE_STEP: &str = "waiting for the peer's challenge";
const VERDICT_STEP: &str = "waiting for the peer's verdict on our answer";

/// A receive error of the handshake, said as one.
fn step_error(e: Error, step: &str) -> Error {
    match e.kind() {
        ErrorKind::FrameTooLarge => fail(format!("the peer sent a message above {CAP} bytes while {step}")),
        ErrorKind::Eof => fail(format!("the peer closed the connection while {step} (wrong authkey on its side?)")),
        ErrorKind::Timeout => fail(format!("the peer sent no whole message within {HANDSHAKE_TIMEOUT:?} while {step}")),
        ErrorKind::Protocol => fail(format!("the peer sent bytes that are not a message while {step}: {e}")),
        _ => e,
    }
}

fn recv(conn: &Connection, step: &str) -> Result<Vec<u8>> {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    conn.recv_until(CAP as u64, Some(deadline)).map_err(|e| step_error(e, step))
}

/// Sends a fresh challenge; returns what the answer must be the MAC of.
fn send_challenge(conn: &Connection) -> Result<Vec<u8>> {
    let mut message = b"{sha256}".to_vec();
    let mut nonce = [0u8; NONCE];
    sys::random_bytes(&mut nonce).map_err(|e| Error::io("drawing a random challenge", e))?;
    message.extend_from_slice(&nonce);
    conn.send_bytes(&[CHALLENGE, &message].concat())?;
    Ok(message)
}

/// Checks the peer's answer to our challenge `message`, and tells it the
/// verdict.
fn judge_answer(conn: &Connection, key: &[u8], message: &[u8], answer: &[u8]) -> Result<()> {
    let verified = match digest_and_payload(answer) {
        Ok((digest, mac)) => digest.unwrap_or(Digest::Md5).verify(key, message, mac),
        Err(_) => false,
    };
    if !verified {
        let _ = conn.send_bytes(FAILURE);
        return Err(fail("the peer's answer to our challenge is wrong: it does not have the same authkey"));
    }
    conn.send_bytes(WELCOME)
}

/// Answers the peer's `challenge` (the whole message, prefix included).
fn send_answer(conn: &Connection, key: &[u8], challenge: &[u8]) -> Result<()> {
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
    conn.send_bytes(&answer)
}

fn judge_verdict(verdict: &[u8]) -> Result<()> {
    if verdict != WELCOME {
        return Err(fail("the peer rejected our answer: it does not have the same authkey"));
    }
    Ok(())
}

/// Sends a challenge and checks the answer (Python's `deliver_challenge`).
pub(crate) fn deliver_challenge(conn: &Connection, key: &[u8]) -> Result<()> {
    let message = send_challenge(conn)?;
    judge_answer(conn, key, &message, &recv(conn, ANSWER_STEP)?)
}

/// Answers the peer's challenge (Python's `answer_challenge`).
pub(crate) fn answer_challenge(conn: &Connection, key: &[u8]) -> Result<()> {
    send_answer(conn, key, &recv(conn, CHALLENGE_STEP)?)?;
    judge_verdict(&recv(conn, VERDICT_STEP)?)
}

/// Where a [`Handshake`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Answer,
    Challenge,
    Verdict,
}

/// A listener's side of the handshake (`deliver_challenge`, then
/// `answer_challenge`) as steps that never wait, so that one thread can
/// take many peers through it at once: [`advance`](Handshake::advance)
/// goes as far as the messages that have arrived allow. The whole
/// handshake must end by its deadline, [`HANDSHAKE_TIMEOUT`] after it
/// started; until then the connection holds at most one message header
/// and [`CAP`] bytes.
#[derive(Debug)]
pub(crate) struct Handshake {
    /// What the peer's answer must be the MAC of.
    challenge: Vec<u8>,
    step: Step,
    deadline: Instant,
}

impl Handshake {
    /// Sends our challenge on a connection just accepted.
    pub(crate) fn start(conn: &Connection) -> Result<Handshake> {
        Ok(Handshake {
            challenge: send_challenge(conn)?,
            step: Step::Answer,
            deadline: Instant::now() + HANDSHAKE_TIMEOUT,
        })
    }

    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    fn step_name(&self) -> &'static str {
        match self.step {
            Step::Answer => ANSWER_STEP,
            Step::Challenge => CHALLENGE_STEP,
            Step::Verdict => VERDICT_STEP,
        }
    }

    /// Takes the peer's messages that have arrived: `Ok(true)` once both
    /// sides are proven, `Ok(false)` while a message is still on its way.
    pub(crate) fn advance(&mut self, conn: &Connection, key: &[u8]) -> Result<bool> {
        loop {
            let Some(message) = conn.try_recv_small(CAP).map_err(|e| step_error(e, self.step_name()))? else {
                return Ok(false);
            };
            match self.step {
                Step::Answer => {
                    judge_answer(conn, key, &self.challenge, &message)?;
                    self.step = Step::Challenge;
                }
                Step::Challenge => {
                    send_answer(conn, key, &message)?;
                    self.step = Step::Verdict;
                }
                Step::Verdict => return judge_verdict(&message).map(|()| true),
            }
        }
    }

    /// The error once the deadline has passed.
    pub(crate) fn timed_out(&self) -> Error {
        fail(format!(
            "the peer did not finish the handshake within {HANDSHAKE_TIMEOUT:?}; it stopped while {}",
            self.step_name()
        ))
    }
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

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;
    use crate::sys::{self, AsFd};

    fn config() -> ProptestConfig {
        ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() }
    }

    fn pair() -> (Connection, Connection) {
        super::super::Pipe(true).unwrap()
    }

    /// Messages that reach every branch of [`digest_and_payload`]: a digest
    /// prefix (known, unknown, unclosed, empty), the legacy lengths, and
    /// anything at all.
    fn messages() -> impl Strategy<Value = Vec<u8>> {
        let prefix = prop_oneof![
            Just(b"{sha256}".to_vec()),
            Just(b"{md5}".to_vec()),
            Just(b"{sha3_384}".to_vec()),
            Just(b"{}".to_vec()),
            Just(b"{".to_vec()),
            Just(Vec::new()),
            prop::collection::vec(any::<u8>(), 0..12).prop_map(|name| [&b"{"[..], &name].concat()),
        ];
        let tail = prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            Just(vec![0; 20]),
            Just(vec![0; 16]),
            Just(vec![0; 40]),
        ];
        prop_oneof![(prefix, tail).prop_map(|(p, t)| [p, t].concat()), prop::collection::vec(any::<u8>(), 0..300)]
    }

    /// What the peer sends as its whole side of a step: a message framed
    /// as it should be, or raw bytes (a lying header, a torn frame).
    fn framed_or_raw() -> impl Strategy<Value = (bool, Vec<u8>)> {
        (any::<bool>(), messages())
    }

    fn frame(bytes: &[u8]) -> Vec<u8> {
        let (h, n) = super::super::framing::header(bytes.len() as u64, false);
        [&h[..n], bytes].concat()
    }

    /// What [`answer_challenge`] must conclude from a challenge and a
    /// verdict that arrive whole.
    fn answer_should_pass(challenge: &[u8], verdict: &[u8]) -> bool {
        let Some(message) = challenge.strip_prefix(CHALLENGE) else {
            return false;
        };
        challenge.len() <= CAP
            && message.len() >= LEGACY_LENGTHS[0]
            && digest_and_payload(message).is_ok()
            && verdict.len() <= CAP
            && verdict == WELCOME
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn digest_and_payload_splits_or_refuses_any_message(message in messages()) {
            match digest_and_payload(&message) {
                Ok((None, payload)) => {
                    prop_assert!(LEGACY_LENGTHS.contains(&message.len()));
                    prop_assert_eq!(payload, &message[..]);
                }
                Ok((Some(digest), payload)) => {
                    let prefix = format!("{{{}}}", digest.name());
                    prop_assert!(message.starts_with(prefix.as_bytes()));
                    prop_assert_eq!(payload, &message[prefix.len()..]);
                }
                Err(e) => prop_assert_eq!(e.kind(), ErrorKind::Authentication),
            }
        }

        #[test]
        fn answer_challenge_passes_only_a_real_challenge_and_a_welcome(
            challenge in prop_oneof![
                messages().prop_map(|m| [CHALLENGE, &m].concat()),
                messages(),
            ],
            verdict in prop_oneof![Just(WELCOME.to_vec()), Just(FAILURE.to_vec()), messages()],
        ) {
            let (peer, us) = pair();
            // Both fit the socket buffer, so the peer's side is written up front.
            sys::send_all(peer.as_fd(), &[frame(&challenge), frame(&verdict)].concat()).unwrap();
            let got = answer_challenge(&us, b"key");
            if answer_should_pass(&challenge, &verdict) {
                prop_assert!(got.is_ok(), "{:?}", got);
                let answer = peer.recv_bytes().unwrap();
                let message = &challenge[CHALLENGE.len()..];
                let (digest, _) = digest_and_payload(message).unwrap();
                let digest = digest.unwrap_or(Digest::Md5);
                let mac = answer.strip_prefix(format!("{{{}}}", digest.name()).as_bytes()).unwrap_or(&answer);
                prop_assert!(digest.verify(b"key", message, mac));
            } else {
                prop_assert_eq!(got.unwrap_err().kind(), ErrorKind::Authentication);
            }
        }

        #[test]
        fn answer_challenge_on_raw_bytes_from_a_peer_that_left_is_a_typed_error(
            parts in prop::collection::vec(framed_or_raw(), 0..4),
        ) {
            let (peer, us) = pair();
            let bytes: Vec<u8> = parts.iter().flat_map(|(framed, m)| if *framed { frame(m) } else { m.clone() }).collect();
            sys::send_all(peer.as_fd(), &bytes).unwrap();
            drop(peer);
            // The peer is gone: even a perfect challenge and welcome cannot
            // pass, as the answer has nowhere to go.
            let kind = answer_challenge(&us, b"key").unwrap_err().kind();
            prop_assert!(
                matches!(kind, ErrorKind::Authentication | ErrorKind::Protocol | ErrorKind::Eof),
                "{:?}",
                kind
            );
        }

        #[test]
        fn deliver_challenge_refuses_any_answer_not_made_with_the_key(
            (framed, answer) in framed_or_raw(),
            peer_leaves in any::<bool>(),
        ) {
            let (peer, us) = pair();
            let bytes = if framed { frame(&answer) } else { answer };
            // Whether an answer arrives whole, within the cap, to be judged.
            let whole = matches!(
                super::super::framing::parse_header(&bytes),
                Ok(Some((head, len))) if len <= CAP as u64 && (bytes.len() - head) as u64 >= len
            );
            sys::send_all(peer.as_fd(), &bytes).unwrap();
            // Raw bytes may be a torn frame: the peer leaves so that the wait
            // ends at once rather than after the handshake timeout.
            if peer_leaves || !framed {
                sys::shutdown_write(peer.as_fd()).unwrap();
            }
            let kind = deliver_challenge(&us, b"key").unwrap_err().kind();
            prop_assert!(matches!(kind, ErrorKind::Authentication | ErrorKind::Protocol), "{:?}", kind);
            prop_assert!(peer.recv_bytes().unwrap().starts_with(CHALLENGE));
            // A whole answer is judged, and a wrong one is told so; anything
            // else ends the handshake with no verdict.
            let verdict = peer.poll(Some(Duration::ZERO)).unwrap().then(|| peer.recv_bytes().unwrap());
            if whole {
                prop_assert_eq!(kind, ErrorKind::Authentication);
                prop_assert_eq!(verdict.as_deref(), Some(FAILURE));
            } else {
                prop_assert_eq!(verdict, None);
            }
        }
    }
}
