#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use super::*;

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

/// RFC 7714 §16/§17 state their vectors with the session key and salt directly (no KDF).
fn rfc_7714_session_keys() -> SessionKeys {
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = i as u8;
    }
    let mut salt = [0u8; 12];
    salt.copy_from_slice(&unhex("517569642070726f2071756f")); // "Quid pro quo"
    SessionKeys { key, salt }
}

/// RFC 7714 §16: header 8040f17b 8041f8d3 5501a0b2, payload "Gallia est omnis divisa in partes
/// tres".
const RTP_PACKET: &str =
    "8040f17b8041f8d35501a0b247616c6c696120657374206f6d6e69732064697669736120696e207061727465732074726573";
/// RFC 7714 §16.2.1, AEAD_AES_256_GCM, ROC 0.
const SRTP_PACKET: &str = "8040f17b8041f8d35501a0b232b1de78a822fe12ef9f78fa332e33aab18012389a58e2f3b50b2a0276ffae0f1ba63799b87b7aa3db36dfffd6b0f9bb7878d7a76c13";
/// RFC 7714 §17 (as the §17.1–§17.4 subsections use it): SSRC "Mars".
const RTCP_PACKET: &str = "81c8000d4d6172734e5450314e545032525450200000042a0000e9304c756e61deadbeefdeadbeefdeadbeefdeadbeefdeadbeef";
/// RFC 7714 §17.2, AEAD_AES_256_GCM, SRTCP index 0x5d4, E set.
const SRTCP_PACKET: &str = "81c8000d4d617273d50ae4d1f5ce5d304ba297e47d470c282c3ece5dbffe0a50a2eaa5c1110555be8415f658c61de0476f1b6fad1d1eb30c4446839f57ff6f6cb26ac3be800005d4";

const RFC_SSRC: u32 = 0x5501_a0b2;
const MARS: u32 = 0x4d61_7273;

#[test]
fn rfc_7714_16_2_iv() {
    let cipher = SessionCipher::new(&rfc_7714_session_keys());
    assert_eq!(cipher.iv(RFC_SSRC, 0xf17b).to_vec(), unhex("51753c6580c2726f20718414"));
}

#[test]
fn rfc_7714_16_2_srtp_protect_and_unprotect() {
    let session = rfc_7714_session_keys();
    let mut sender = SrtpContext::from_session_keys(&session, RFC_SSRC);
    assert_eq!(sender.protect(&unhex(RTP_PACKET)).unwrap(), unhex(SRTP_PACKET));
    let mut receiver = SrtpContext::from_session_keys(&session, RFC_SSRC);
    assert_eq!(receiver.unprotect(&unhex(SRTP_PACKET)).unwrap(), unhex(RTP_PACKET));
}

#[test]
fn rfc_7714_17_2_srtcp_protect_and_unprotect() {
    let session = rfc_7714_session_keys();
    let mut sender = SrtcpContext::from_session_keys(&session, MARS);
    sender.set_next_index(0x5d4);
    assert_eq!(sender.protect(&unhex(RTCP_PACKET)).unwrap(), unhex(SRTCP_PACKET));
    let mut receiver = SrtcpContext::from_session_keys(&session, MARS);
    assert_eq!(receiver.unprotect(&unhex(SRTCP_PACKET)).unwrap(), unhex(RTCP_PACKET));
    assert_eq!(receiver.unprotect(&unhex(SRTCP_PACKET)), Err(SrtpError::Replayed { index: 0x5d4 }));
}

fn master() -> SrtpKeys {
    SrtpKeys::from_exporter_secret(&[0x42; 64], crate::CallDirection::CallerToCallee).unwrap()
}

const SSRC: u32 = 0x1234_5678;

fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![0x80, 0x6f];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&960u32.wrapping_mul(u32::from(seq)).to_be_bytes());
    packet.extend_from_slice(&SSRC.to_be_bytes());
    packet.extend_from_slice(payload);
    packet
}

fn rtcp(payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![0x80, 0xc9, 0, 1];
    packet.extend_from_slice(&SSRC.to_be_bytes());
    packet.extend_from_slice(payload);
    packet
}

#[test]
fn srtp_round_trip_through_the_kdf() {
    let mut sender = SrtpContext::new(&master(), SSRC);
    let mut receiver = SrtpContext::new(&master(), SSRC);
    for seq in [1u16, 2, 3, 100] {
        let packet = rtp(seq, b"opus frame");
        let protected = sender.protect(&packet).unwrap();
        assert_eq!(protected.len(), packet.len() + AUTH_TAG_BYTES);
        assert_ne!(&protected[12..22], b"opus frame");
        assert_eq!(receiver.unprotect(&protected).unwrap(), packet);
    }
}

#[test]
fn srtp_round_trip_with_csrcs_extension_and_empty_payload() {
    let mut packet = vec![0x91, 0x6f, 0, 9, 0, 0, 0, 0];
    packet.extend_from_slice(&SSRC.to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0, 1]);
    packet.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0]);
    let mut sender = SrtpContext::new(&master(), SSRC);
    let mut receiver = SrtpContext::new(&master(), SSRC);
    let protected = sender.protect(&packet).unwrap();
    assert_eq!(&protected[..packet.len()], &packet[..], "header and empty payload stay clear");
    assert_eq!(receiver.unprotect(&protected).unwrap(), packet);
}

#[test]
fn srtp_and_srtcp_keys_differ() {
    let session_srtp = derive_session_keys(&master(), KdfLabel::SrtpEncryption, KdfLabel::SrtpSalt);
    let session_srtcp = derive_session_keys(&master(), KdfLabel::SrtcpEncryption, KdfLabel::SrtcpSalt);
    assert_ne!(session_srtp.key, session_srtcp.key);
    assert_ne!(session_srtp.salt, session_srtcp.salt);
}

#[test]
fn every_flipped_bit_fails_authentication_and_leaves_the_window_alone() {
    let mut sender = SrtpContext::new(&master(), SSRC);
    let protected = sender.protect(&rtp(7, b"hello")).unwrap();
    let mut receiver = SrtpContext::new(&master(), SSRC);
    for bit in 0..protected.len() * 8 {
        let mut tampered = protected.clone();
        tampered[bit / 8] ^= 1 << (bit % 8);
        assert!(receiver.unprotect(&tampered).is_err(), "bit {bit} flipped was accepted");
    }
    // Failed packets moved nothing: the genuine one is still accepted, once.
    assert!(receiver.unprotect(&protected).is_ok());
    assert_eq!(receiver.unprotect(&protected), Err(SrtpError::Replayed { index: 7 }));
}

#[test]
fn every_flipped_srtcp_bit_fails() {
    let mut sender = SrtcpContext::new(&master(), SSRC);
    let protected = sender.protect(&rtcp(b"receiver report")).unwrap();
    let mut receiver = SrtcpContext::new(&master(), SSRC);
    for bit in 0..protected.len() * 8 {
        let mut tampered = protected.clone();
        tampered[bit / 8] ^= 1 << (bit % 8);
        assert!(receiver.unprotect(&tampered).is_err(), "bit {bit} flipped was accepted");
    }
    assert_eq!(receiver.unprotect(&protected).unwrap(), rtcp(b"receiver report"));
}

#[test]
fn wrong_key_fails() {
    let other = SrtpKeys::from_exporter_secret(&[0x42; 64], crate::CallDirection::CalleeToCaller).unwrap();
    let protected = SrtpContext::new(&master(), SSRC).protect(&rtp(1, b"x")).unwrap();
    assert_eq!(SrtpContext::new(&other, SSRC).unprotect(&protected), Err(SrtpError::AuthenticationFailed));
}

#[test]
fn replays_and_too_old_packets_are_refused_reordered_ones_accepted_once() {
    let mut sender = SrtpContext::new(&master(), SSRC);
    let packets: Vec<Vec<u8>> = (0..300u16).map(|seq| sender.protect(&rtp(seq, b"frame")).unwrap()).collect();
    let mut receiver = SrtpContext::new(&master(), SSRC);
    receiver.unprotect(&packets[200]).unwrap();
    // Out of order within the window: each accepted once.
    for seq in [150usize, 199, 73, 180] {
        receiver.unprotect(&packets[seq]).unwrap();
        assert_eq!(receiver.unprotect(&packets[seq]), Err(SrtpError::Replayed { index: seq as u64 }));
    }
    assert_eq!(receiver.unprotect(&packets[200]), Err(SrtpError::Replayed { index: 200 }));
    // Behind the 128-packet window.
    assert_eq!(receiver.unprotect(&packets[72]), Err(SrtpError::TooOld { index: 72 }));
    assert_eq!(receiver.unprotect(&packets[0]), Err(SrtpError::TooOld { index: 0 }));
    receiver.unprotect(&packets[299]).unwrap();
    assert_eq!(receiver.unprotect(&packets[150]), Err(SrtpError::TooOld { index: 150 }));
}

#[test]
fn srtcp_replays_and_too_old_are_refused() {
    let mut sender = SrtcpContext::new(&master(), SSRC);
    let packets: Vec<Vec<u8>> = (0..200).map(|_| sender.protect(&rtcp(b"sr")).unwrap()).collect();
    let mut receiver = SrtcpContext::new(&master(), SSRC);
    receiver.unprotect(&packets[199]).unwrap();
    receiver.unprotect(&packets[100]).unwrap();
    assert_eq!(receiver.unprotect(&packets[100]), Err(SrtpError::Replayed { index: 100 }));
    assert_eq!(receiver.unprotect(&packets[10]), Err(SrtpError::TooOld { index: 10 }));
}

#[test]
fn rollover_across_sequence_65535_to_0() {
    let mut sender = SrtpContext::new(&master(), SSRC);
    let mut receiver = SrtpContext::new(&master(), SSRC);
    let seqs: Vec<u16> = (65500..=65535).chain(0..40).collect();
    let mut protected = Vec::new();
    for &seq in &seqs {
        protected.push(sender.protect(&rtp(seq, b"frame")).unwrap());
    }
    // Received with the last packets before the wrap arriving after the first ones after it.
    let wrap = seqs.iter().position(|&s| s == 0).unwrap();
    for (i, packet) in protected.iter().enumerate().take(wrap - 3) {
        assert_eq!(receiver.unprotect(packet).unwrap(), rtp(seqs[i], b"frame"));
    }
    for i in (wrap..wrap + 5).chain(wrap - 3..wrap).chain(wrap + 5..seqs.len()) {
        assert_eq!(receiver.unprotect(&protected[i]).unwrap(), rtp(seqs[i], b"frame"), "seq {}", seqs[i]);
    }
    assert_eq!(receiver.received.highest(), Some((1 << 16) + 39));
    // A replay of a pre-wrap packet is still recognised as such (ROC 0, not ROC 1).
    assert_eq!(receiver.unprotect(&protected[wrap - 1]), Err(SrtpError::Replayed { index: 65535 }));
    // The stream goes on under ROC 1: authenticated only if the receiver guesses ROC 1 too.
    let late = sender.protect(&rtp(40, b"frame")).unwrap();
    assert!(receiver.unprotect(&late).is_ok());
}

#[test]
fn estimate_index_follows_rfc_3711_appendix_a() {
    assert_eq!(estimate_index(None, 5), Some(5));
    assert_eq!(estimate_index(Some(10), 11), Some(11));
    assert_eq!(estimate_index(Some(10), 5), Some(5));
    // s_l < 2^15 and SEQ far ahead: previous ROC, none before 0.
    assert_eq!(estimate_index(Some(10), 65000), None);
    assert_eq!(estimate_index(Some((3 << 16) | 10), 65000), Some((2 << 16) | 65000));
    // s_l >= 2^15 and SEQ far behind: next ROC.
    assert_eq!(estimate_index(Some(65000), 3), Some((1 << 16) | 3));
    assert_eq!(estimate_index(Some(65000), 64000), Some(64000));
}

#[test]
fn sender_refuses_to_reuse_an_index() {
    let mut sender = SrtpContext::new(&master(), SSRC);
    sender.protect(&rtp(10, b"a")).unwrap();
    assert_eq!(sender.protect(&rtp(10, b"b")), Err(SrtpError::IndexNotIncreasing { index: 10, last: 10 }));
    assert_eq!(sender.protect(&rtp(9, b"b")), Err(SrtpError::IndexNotIncreasing { index: 9, last: 10 }));
    sender.protect(&rtp(11, b"c")).unwrap();
}

#[test]
fn wrong_ssrc_is_refused() {
    let protected = SrtpContext::new(&master(), SSRC).protect(&rtp(1, b"x")).unwrap();
    assert_eq!(
        SrtpContext::new(&master(), 99).unprotect(&protected),
        Err(SrtpError::SsrcMismatch { expected: 99, found: SSRC })
    );
    assert_eq!(
        SrtpContext::new(&master(), 99).protect(&rtp(1, b"x")),
        Err(SrtpError::SsrcMismatch { expected: 99, found: SSRC })
    );
}

#[test]
fn unencrypted_srtcp_is_refused() {
    let mut protected = SrtcpContext::new(&master(), SSRC).protect(&rtcp(b"sr")).unwrap();
    let last = protected.len() - 4;
    protected[last] &= 0x7f;
    assert_eq!(SrtcpContext::new(&master(), SSRC).unprotect(&protected), Err(SrtpError::UnencryptedSrtcp));
}

#[test]
fn truncated_and_garbage_input_gives_errors() {
    let protected = SrtpContext::new(&master(), SSRC).protect(&rtp(1, b"payload")).unwrap();
    let mut receiver = SrtpContext::new(&master(), SSRC);
    for len in 0..protected.len() {
        assert!(receiver.unprotect(&protected[..len]).is_err(), "truncated to {len}");
    }
    assert_eq!(receiver.unprotect(&protected[..12 + 15]), Err(SrtpError::TooShortForTag));
    assert_eq!(
        receiver.unprotect(&[0x80; 5]),
        Err(SrtpError::RtpHeader(RtpHeaderError::TooShortForFixedHeader))
    );
    let srtcp = SrtcpContext::new(&master(), SSRC).protect(&rtcp(b"sr")).unwrap();
    let mut rtcp_receiver = SrtcpContext::new(&master(), SSRC);
    for len in 0..srtcp.len() {
        assert!(rtcp_receiver.unprotect(&srtcp[..len]).is_err(), "truncated to {len}");
    }
    assert_eq!(rtcp_receiver.unprotect(&[0x40; 40]), Err(SrtpError::UnsupportedRtcpVersion(1)));
    // Deterministic pseudo-random garbage, with a valid version half the time.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..2000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = (state % 90) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|i| (state >> (i % 8 * 8)) as u8 ^ i as u8).collect();
        if round % 2 == 0
            && let Some(first) = bytes.first_mut()
        {
            *first = 0x80 | (*first & 0x3f);
        }
        assert!(receiver.unprotect(&bytes).is_err());
        assert!(rtcp_receiver.unprotect(&bytes).is_err());
    }
}

#[test]
fn srtcp_index_exhaustion_is_refused() {
    let mut sender = SrtcpContext::new(&master(), SSRC);
    sender.set_next_index(MAX_SRTCP_INDEX);
    sender.protect(&rtcp(b"last")).unwrap();
    assert_eq!(sender.protect(&rtcp(b"one too many")), Err(SrtpError::KeyExhausted));
}
