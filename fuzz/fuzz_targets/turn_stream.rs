#![no_main]
//! TURN over TCP/TLS as the relay reads it from anyone (and a client from a relay): arbitrary
//! bytes cut into frames by `StreamDecoder`, fed in pieces whose sizes the input chooses. No
//! panic; every frame it hands out has the length its header declares and fits the limits;
//! the same bytes give the same frames however they are split.

use libfuzzer_sys::fuzz_target;
use rampart_turn::stream::{FRAME_PREFIX_LEN, MAX_FRAME_LEN, StreamDecoder, frame_len};
use rampart_turn::{ChannelData, Message, Transport, TurnPacket, channel};

fn frames(data: &[u8], piece: usize) -> (Vec<Vec<u8>>, bool) {
    let mut decoder = StreamDecoder::new();
    let mut frames = Vec::new();
    for chunk in data.chunks(piece.max(1)) {
        decoder.push(chunk);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => frames.push(frame.to_vec()),
                Ok(None) => break,
                Err(_) => return (frames, true),
            }
        }
    }
    (frames, false)
}

fuzz_target!(|input: &[u8]| {
    let Some((&piece, data)) = input.split_first() else { return };
    let (whole, failed) = frames(data, data.len());
    let (pieces, failed_in_pieces) = frames(data, usize::from(piece));
    assert_eq!(whole, pieces, "the frames depend on how the bytes arrived");
    assert_eq!(failed, failed_in_pieces);
    for frame in &whole {
        assert!(frame.len() <= MAX_FRAME_LEN, "a frame of {} bytes", frame.len());
        let prefix: [u8; FRAME_PREFIX_LEN] = frame[..FRAME_PREFIX_LEN].try_into().unwrap();
        assert_eq!(frame_len(prefix), Ok(frame.len()));
        match channel::demultiplex(frame[0]) {
            Some(TurnPacket::Stun) => {
                let _ = Message::decode(frame);
            }
            Some(TurnPacket::ChannelData) => {
                let _ = ChannelData::decode(frame, Transport::Stream);
            }
            None => panic!("a frame that is neither STUN nor ChannelData"),
        }
    }
});
