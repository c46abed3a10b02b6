#![no_main]
//! Every decoder a client runs on data from other people or the server: end-to-end content,
//! queued envelopes, device certificates, and MLS messages fed to a device's engine (as
//! Welcome and as group message). None may panic; accepted content and envelopes must survive
//! encode → decode unchanged.

use libfuzzer_sys::fuzz_target;
use rampart_proto::{
    decode_certificate, decode_content, decode_envelope, encode_certificate, encode_content, encode_envelope,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(content) = decode_content(data) {
        assert_eq!(decode_content(&encode_content(&content)).ok(), Some(content));
    }
    if let Ok(envelope) = decode_envelope(data) {
        assert_eq!(decode_envelope(&encode_envelope(&envelope)).ok(), Some(envelope));
    }
    if let Ok(cert) = decode_certificate(data) {
        assert_eq!(decode_certificate(&encode_certificate(&cert)).ok(), Some(cert.clone()));
        let _ = rampart_mls::identity::verify_certificate(&cert);
    }
    let group = rampart_core::GroupId::from_slice(&[7; 16]).expect("a valid id");
    let _ = rampart_mls::ds::check_group_message(data, &group, rampart_mls::ds::Expect::Application);
    let _ = rampart_mls::ds::check_welcome(data);
});
