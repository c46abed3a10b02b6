#![no_main]
//! SRTP/SRTCP receive path and RTP header parsing on arbitrary bytes: unprotecting never
//! panics (and forged input is never accepted under the fixed key), a parsed header lies within
//! the input, and whatever parses as RTP survives protect → unprotect unchanged.

use libfuzzer_sys::fuzz_target;
use rampart_media::{RtpHeader, SrtcpContext, SrtpContext, SrtpKeys};

const SSRC: u32 = 0x5501_a0b2;

fn keys() -> SrtpKeys {
    SrtpKeys { master_key: [0x42; 32], master_salt: [0x24; 12] }
}

fuzz_target!(|data: &[u8]| {
    let keys = keys();
    // Seeds include packets protected under this key, so acceptance is possible; it must
    // then give back exactly the clear packet's length.
    if let Ok(rtp) = SrtpContext::new(&keys, SSRC).unprotect(data) {
        assert_eq!(rtp.len() + 16, data.len());
    }
    if let Ok(rtcp) = SrtcpContext::new(&keys, SSRC).unprotect(data) {
        assert_eq!(rtcp.len() + 20, data.len());
    }
    if let Ok(header) = RtpHeader::parse(data) {
        assert!(header.header_len >= 12 && header.header_len <= data.len());
        let mut sender = SrtpContext::new(&keys, header.ssrc);
        let mut receiver = SrtpContext::new(&keys, header.ssrc);
        let protected = sender.protect(data).expect("a parsed RTP packet can be protected");
        assert_eq!(receiver.unprotect(&protected).expect("own packet authenticates"), data);
        assert!(receiver.unprotect(&protected).is_err(), "replay accepted");
    }
});
