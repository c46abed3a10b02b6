#![no_main]
//! The relay list a (possibly hostile) server hands out: arbitrary text as `turn:`/`turns:`
//! URIs and as a list for `fallback_order`. No panic; what parses prints back to a URI that
//! parses to the same; the order puts UDP before TCP before TLS.

use libfuzzer_sys::fuzz_target;
use rampart_turn::uri::{MAX_URI_LEN, TurnUri, fallback_order};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(uri) = text.parse::<TurnUri>() {
        assert!(text.len() <= MAX_URI_LEN);
        assert_ne!(uri.port, 0);
        let printed = uri.to_string();
        assert_eq!(printed.parse::<TurnUri>().as_ref(), Ok(&uri), "{printed}");
    }
    let (order, refused) = fallback_order(text.split('\n'));
    assert_eq!(order.len() + refused.len(), text.split('\n').count());
    assert!(order.windows(2).all(|pair| pair[0].transport <= pair[1].transport));
});
