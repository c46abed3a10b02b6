#![no_main]
//! The trust rules (`rampart_mls::trust::judge`) on an arbitrary server answer: whatever the
//! server says, only asked-about accounts are judged, each once; every trusted device names its
//! account, is certified, and chains to a pinned key or to the one root newly pinned; nothing
//! panics. Certificates come from the input as raw bytes, so forged, truncated and foreign ones
//! are all tried.

use std::collections::BTreeSet;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rampart_core::{AccountId, DeviceId};
use rampart_mls::trust::{Question, judge};
use rampart_proto::AccountDevices;

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.iter().copied();
    let mut next = || bytes.next().unwrap_or(0);
    // A few accounts asked about (small ids, so answers hit them), a few pinned keys.
    let asked: Vec<AccountId> = (0..next() % 4).map(|_| AccountId(u64::from(next() % 8))).collect();
    let lookup = next() % 2 == 0;
    let pinned_key = [next(); 32];
    // Then entries: [account][device count] and per device [device id][length][certificate].
    let mut answer = Vec::new();
    for _ in 0..next() % 6 {
        let account = AccountId(u64::from(next() % 8));
        let mut devices = Vec::new();
        for _ in 0..next() % 5 {
            let device = DeviceId(u64::from(next()));
            let len = usize::from(next());
            let cert: Vec<u8> = (0..len).map(|_| next()).collect();
            devices.push((device, (len > 0).then(|| Bytes::from(cert))));
        }
        answer.push(AccountDevices { account, label: String::new(), devices });
    }
    let question = if lookup { Question::Lookup } else { Question::Keys(&asked) };
    let verdict = judge(question, answer, |_| BTreeSet::from([pinned_key]));
    let mut seen = BTreeSet::new();
    for a in &verdict.accounts {
        assert!(seen.insert(a.account), "an account judged twice");
        if !lookup {
            assert!(asked.contains(&a.account), "an account nobody asked about was judged");
        }
        for c in &a.trusted {
            assert_eq!(c.account, a.account, "a trusted device names another account");
            assert!(rampart_mls::identity::verify_certificate(c).is_ok(), "a trusted device is not certified");
        }
    }
    if lookup {
        assert!(verdict.accounts.len() <= 1, "a lookup judged several accounts");
    }
});
