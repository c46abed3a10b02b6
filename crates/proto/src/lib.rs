//! The Rampart wire protocol.
//!
//! This is the only crate that knows how frames are serialised. Everyone else works with the
//! typed frames in [`frames`]: [`decode_client_frame`] and [`decode_server_frame`] turn bytes
//! into them or into a [`DecodeError`], checking the version byte, the frame size and the size
//! and shape of every field ("parse, don't validate"). Schema: `proto/rampart.proto`; prose:
//! `docs/wire.md`.
#![forbid(unsafe_code)]

mod codec;
pub mod frames;

/// Generated protobuf types. Not part of the API: use [`frames`].
#[allow(clippy::all, missing_debug_implementations)]
mod pb {
    include!(concat!(env!("OUT_DIR"), "/rampart.v1.rs"));
}

pub use codec::{
    DecodeError, MAX_ATTACHMENT_BYTES, MAX_ENVELOPE_BYTES, MAX_RECEIPT_TARGETS, PROTOCOL_VERSION,
    decode_certificate, decode_client_frame, decode_content, decode_envelope, decode_server_frame,
    encode_certificate, encode_client_frame, encode_content, encode_envelope, encode_server_frame,
    group_name, server_notice,
};
pub use frames::*;
