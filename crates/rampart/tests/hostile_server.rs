#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! The server as an adversary: a man in the middle with the real server's key (what a
//! compromised server can do) rewrites what it tells real clients, and the clients must refuse
//! or surface every lie instead of changing who is in a conversation.

mod support;

use std::sync::Arc;

use rampart_client::Event;
use rampart_core::AccountId;
use rampart_proto::{ClientRequest, ResponseBody, ServerFrame};
use support::*;

/// A lying server's rewrite that presents its own key, certifying "Bob's device", as a new
/// identity (root) of Bob's account in every key answer.
fn swapped_identity(bob: &rampart_client::Client) -> lying_server::Rewrite {
    let bob_id = AccountId(bob.identity().unwrap().account_id);
    let bob_device = rampart_core::DeviceId(bob.identity().unwrap().device_id);
    let key = rampart_mls::identity::new_signature_key().unwrap();
    let public = rampart_mls::identity::public_key(&key).unwrap();
    let forged = rampart_mls::identity::certify(&key, bob_id, bob_device, public).unwrap();
    let forged = bytes::Bytes::from(rampart_proto::encode_certificate(&forged));
    Arc::new(move |frame| match frame {
        ServerFrame::Response { request_id, result: Ok(ResponseBody::AccountKeys(mut list)) } => {
            for entry in list.iter_mut().filter(|a| a.account == bob_id) {
                entry.devices = vec![(bob_device, Some(forged.clone()))];
            }
            vec![ServerFrame::Response { request_id, result: Ok(ResponseBody::AccountKeys(list)) }]
        }
        other => vec![other],
    })
}

/// The server answers every key request about other accounts with one more account: its own
/// accomplice. Before, the client added the accomplice's device to the 1:1 conversation it was
/// setting up; now the extra answer is ignored, and the accomplice receives nothing.
#[tokio::test]
async fn the_server_cannot_slip_an_extra_account_into_a_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut alice = server.register(dir.path(), "alice", "+14155558001", Some("alice")).await;
    let mut bob = server.register(dir.path(), "bob", "+14155558002", Some("bob")).await;
    let mut ghost = server.register(dir.path(), "ghost", "+14155558003", Some("ghost")).await;
    know_each_other(&mut [&mut alice, &mut bob]).await;
    // The accomplice's real, certified device list, as the server would hand it out.
    let ghost_id = AccountId(ghost.identity().unwrap().account_id);
    let mut conn = ghost.connect().await.unwrap();
    let ResponseBody::AccountKeys(mut list) =
        conn.request(ClientRequest::FetchKeys { accounts: vec![ghost_id] }).await.unwrap()
    else {
        panic!("keys")
    };
    conn.close().await;
    let ghost_entry = list.remove(0);
    assert!(ghost_entry.devices.iter().all(|(_, c)| c.is_some()), "the ghost's device is certified");

    let rewrite: lying_server::Rewrite = Arc::new(move |frame| match frame {
        ServerFrame::Response { request_id, result: Ok(ResponseBody::AccountKeys(mut list)) }
            if !list.iter().any(|a| a.account == ghost_entry.account) =>
        {
            list.push(ghost_entry.clone());
            vec![ServerFrame::Response { request_id, result: Ok(ResponseBody::AccountKeys(list)) }]
        }
        other => vec![other],
    });
    let proxy = lying_server::start_with(&server, rewrite).await;
    lying_server::point_at(alice.profile(), proxy, &server.fingerprint);

    alice.send_text("@bob", "the plans, for Bob only").await.unwrap();
    let got = bob.receive(None, |_| {}).await.unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    // The ghost was never added: no invitation, no message.
    let events = ghost.receive_events(None, |_| {}).await.unwrap();
    assert!(
        !events.iter().any(|e| matches!(e, Event::Joined { .. } | Event::Message { .. })),
        "the server's extra account got into the conversation: {events:?}"
    );
    // And Alice's side of the conversation still works both ways.
    bob.send_text("@alice", "got it").await.unwrap();
    let got = alice.receive(None, |_| {}).await.unwrap();
    assert_eq!(got.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["got it"]);
}

/// The server presents a new identity for an account Alice already knows (its own root key,
/// certifying a device under Bob's account). It is never silent: Alice's conversation with Bob
/// says Bob's identity key changed, and the safety number she would compare is a new one.
#[tokio::test]
async fn a_swapped_identity_is_shown_and_changes_the_safety_number() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut alice = server.register(dir.path(), "alice", "+14155558011", Some("alice")).await;
    let mut bob = server.register(dir.path(), "bob", "+14155558012", Some("bob")).await;
    alice.send_text("@bob", "hello").await.unwrap();
    bob.receive(None, |_| {}).await.unwrap();
    let (_, before) = alice.safety_number("@bob").await.unwrap();
    let proxy = lying_server::start_with(&server, swapped_identity(&bob)).await;
    lying_server::point_at(alice.profile(), proxy, &server.fingerprint);

    let (_, after) = alice.safety_number("@bob").await.unwrap();
    assert_ne!(before, after, "a new identity must give a new safety number");
    let group = alice.resolve_conversation("@bob").unwrap();
    let history = alice.profile().history(Some(&group), 50).unwrap();
    assert!(
        history.iter().any(|m| m.text.contains("@bob's identity key changed")),
        "the conversation says nothing: {history:?}"
    );
}

/// Once Alice has compared the safety number with Bob and marked him verified, a new identity
/// for Bob (here the server's own key, as above) holds what she sends to him until she
/// decides: nothing goes out, the CLI says why, and `verify` says the identity is not the one
/// she verified.
// Multi-threaded: the lying server keeps serving while the test waits on the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_contacts_new_identity_holds_sending() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut alice = server.register(dir.path(), "alice", "+14155558031", Some("alice")).await;
    let mut bob = server.register(dir.path(), "bob", "+14155558032", Some("bob")).await;
    know_each_other(&mut [&mut alice, &mut bob]).await;
    alice.send_text("@bob", "hello").await.unwrap();
    assert_eq!(bob.receive(None, |_| {}).await.unwrap().len(), 1);
    alice.mark_verified("@bob").await.unwrap();
    let proxy = lying_server::start_with(&server, swapped_identity(&bob)).await;
    lying_server::point_at(alice.profile(), proxy, &server.fingerprint);

    let held = alice.send_text("@bob", "the plans").await.unwrap_err();
    assert_eq!(held.kind(), "identity_changed", "{held}");
    drop(alice);
    let profile = dir.path().join("alice");
    let (ok, out, _) = cli(&profile, &["--json", "send", "@bob", "the plans, again"]);
    assert!(!ok);
    assert!(out.contains("identity_changed"), "{out}");
    // `verify` says so, and that the conversation's members no longer match what the server
    // presents as Bob (his real device is not certified by the new identity): it exits 1.
    let (ok, out, err) = cli(&profile, &["verify", "@bob"]);
    assert!(!ok && err.contains("neither identity certified"), "{err}");
    assert!(out.contains("NOT the identity you verified"), "{out}");
    assert!(out.contains("WARNING: your conversation holds device"), "{out}");
    // Nothing of it reached Bob.
    assert!(bob.receive(None, |_| {}).await.unwrap().is_empty());
}

/// The server learns the link code (the approving device sends it) and the new device's id,
/// and can send a key request of its own under that id. The code the new device shows also
/// checks the new device's key, a part the server never sees: the approving device certifies
/// only the key with that check, so the server's key is ignored and the real device is linked.
/// A code typed without the check is refused with a clear error.
#[tokio::test]
async fn the_server_cannot_get_its_own_key_certified_when_a_device_is_linked() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut bob = server.register(dir.path(), "bob", "+14155558021", Some("bob")).await;
    let bob_id = AccountId(bob.identity().unwrap().account_id);

    let injected = Arc::new(AtomicU64::new(0));
    let counter = injected.clone();
    let rewrite: lying_server::Rewrite = Arc::new(move |frame| match frame {
        ServerFrame::Response { request_id, result: Ok(ResponseBody::LinkApproved { device }) } => {
            // The server's own key, in a self-signed request that names the new device.
            let key = rampart_mls::identity::new_signature_key().unwrap();
            let public = rampart_mls::identity::public_key(&key).unwrap();
            let request = rampart_mls::identity::certify(&key, bob_id, device, public).unwrap();
            let envelope =
                rampart_proto::Envelope::Direct(rampart_proto::encode_certificate(&request).into());
            counter.fetch_add(1, Ordering::SeqCst);
            vec![
                ServerFrame::Response { request_id, result: Ok(ResponseBody::LinkApproved { device }) },
                ServerFrame::Delivery(rampart_proto::Delivery {
                    server_id: rampart_core::ServerMessageId(rand::random::<u32>().into()),
                    message_id: rampart_core::MessageId::random(&mut rand::rng()),
                    sender_account: bob_id,
                    sender_device: device,
                    sender_label: "@bob".into(),
                    server_timestamp_ms: 0,
                    body: rampart_proto::encode_envelope(&envelope).into(),
                }),
            ]
        }
        other => vec![other],
    });
    let proxy = lying_server::start_with(&server, rewrite).await;
    lying_server::point_at(bob.profile(), proxy, &server.fingerprint);

    let mut laptop = rampart_client::Client::open(&dir.path().join("bob-laptop")).unwrap();
    let pending = laptop.begin_link(&server.address(), "laptop", None).await.unwrap();
    let shown = pending.shown_code();
    // Only the server's part: refused before anything is sent.
    match bob.approve_link(&pending.code.display()).await {
        Err(rampart_client::ClientError::Input(why)) => assert!(why.contains("check"), "{why}"),
        other => panic!("a code without its key check must be refused: {other:?}"),
    }
    let me = link_both(&mut bob, &mut laptop, pending, &shown).await.expect("the real device is linked");
    assert_eq!(injected.load(Ordering::SeqCst), 1, "the lying server sent its key request");
    assert_eq!(me.label, "@bob");
    // Both devices see each other; the safety numbers agree.
    let (_, from_bob) = bob.safety_number("@bob").await.unwrap();
    let (_, from_laptop) = laptop.safety_number("@bob").await.unwrap();
    assert_eq!(from_bob, from_laptop);
}

/// The server vouches for who sent a delivery, and consent decides on that word before
/// anything is opened. A server that relabels a stranger's invitation as a friend's gets it
/// opened once — and refused: the Welcome's signed sender must be the device the delivery
/// names, so the stranger's conversation is not joined and nothing in it is shown.
#[tokio::test]
async fn a_strangers_invitation_relabelled_as_a_friends_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut victim = server.register(dir.path(), "victim", "+14155558041", Some("victim")).await;
    let mut friend = server.register(dir.path(), "friend", "+14155558042", Some("friend")).await;
    let mut stranger = server.register(dir.path(), "stranger", "+14155558043", Some("stranger")).await;
    know_each_other(&mut [&mut victim, &mut friend]).await;
    let friend_id = AccountId(friend.identity().unwrap().account_id);
    let friend_device = rampart_core::DeviceId(friend.identity().unwrap().device_id);
    let stranger_id = AccountId(stranger.identity().unwrap().account_id);

    let rewrite: lying_server::Rewrite = Arc::new(move |frame| match frame {
        ServerFrame::Delivery(mut d) if d.sender_account == stranger_id => {
            d.sender_account = friend_id;
            d.sender_device = friend_device;
            d.sender_label = "@friend".into();
            vec![ServerFrame::Delivery(d)]
        }
        other => vec![other],
    });
    let proxy = lying_server::start_with(&server, rewrite).await;
    lying_server::point_at(victim.profile(), proxy, &server.fingerprint);

    stranger.send_text("@victim", "open me").await.unwrap();
    let events = victim.receive_events(None, |_| {}).await.unwrap();
    assert!(
        events.iter().any(|e| matches!(e, Event::Refused { reason } if reason.contains("made by"))),
        "{events:?}"
    );
    assert!(!events.iter().any(|e| matches!(e, Event::Joined { .. } | Event::Message { .. })), "{events:?}");
    assert!(victim.profile().conversations().unwrap().is_empty());
    assert!(!victim.profile().is_contact(stranger_id).unwrap());
}

/// A server that silently drops a message: the next one from the same device carries the next
/// count, so the receiver sees the jump and the conversation says a message did not arrive
/// (before, a dropped message was just silence). The dropped message never comes; the one after
/// it, which the server also replays under a second server id, shows once.
#[tokio::test]
async fn a_message_the_server_drops_is_noticed() {
    use std::sync::Mutex;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut alice = server.register(dir.path(), "alice", "+14155558101", Some("alice")).await;
    let mut bob = server.register(dir.path(), "bob", "+14155558102", Some("bob")).await;
    know_each_other(&mut [&mut alice, &mut bob]).await;
    alice.send_text("@bob", "one").await.unwrap();
    assert_eq!(bob.receive(None, |_| {}).await.unwrap().len(), 1);

    // The first message body the lying server sees after this point is dropped, every time
    // the real server delivers it again.
    let victim: Arc<Mutex<Option<bytes::Bytes>>> = Arc::new(Mutex::new(None));
    let chosen = victim.clone();
    let rewrite: lying_server::Rewrite = Arc::new(move |frame| match frame {
        ServerFrame::Delivery(d)
            if matches!(
                rampart_proto::decode_envelope(&d.body),
                Ok(rampart_proto::Envelope::Application { .. })
            ) =>
        {
            let mut chosen = chosen.lock().unwrap();
            let victim = chosen.get_or_insert_with(|| d.body.clone());
            if *victim == d.body {
                return vec![];
            }
            let mut replay = d.clone();
            replay.server_id = rampart_core::ServerMessageId(d.server_id.0 + 1_000_000);
            vec![ServerFrame::Delivery(d), ServerFrame::Delivery(replay)]
        }
        other => vec![other],
    });
    let proxy = lying_server::start_with(&server, rewrite).await;
    lying_server::point_at(bob.profile(), proxy, &server.fingerprint);

    alice.send_text("@bob", "two").await.unwrap();
    alice.send_text("@bob", "three").await.unwrap();
    let events = bob.receive_events(None, |_| {}).await.unwrap();
    assert!(victim.lock().unwrap().is_some(), "the lying server dropped nothing");
    let texts: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::Message { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["three"], "{events:?}");
    assert!(
        events.iter().any(|e| matches!(e, Event::MessagesMissing { count: 1, from, .. } if from == "@alice")),
        "the dropped message went unnoticed: {events:?}"
    );
    let history = bob.profile().messages(10).unwrap();
    assert!(
        history.iter().any(|m| m.text.contains("1 message from @alice did not arrive")),
        "the conversation does not say so: {history:?}"
    );
    // Nothing more: the dropped message stays dropped, and no second notice.
    let again = bob.receive_events(None, |_| {}).await.unwrap();
    assert!(
        !again.iter().any(|e| matches!(e, Event::Message { .. } | Event::MessagesMissing { .. })),
        "{again:?}"
    );
}
