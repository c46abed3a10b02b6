#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! The server as an adversary: a man in the middle with the real server's key (what a
//! compromised server can do) rewrites what it tells real clients, and the clients must refuse
//! or surface every lie instead of changing who is in a conversation.

mod support;

use std::sync::Arc;

use rampart_client::e2e::Event;
use rampart_core::AccountId;
use rampart_proto::{ClientRequest, ResponseBody, ServerFrame};
use support::*;

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
    let bob_id = AccountId(bob.identity().unwrap().account_id);
    let bob_device = rampart_core::DeviceId(bob.identity().unwrap().device_id);

    // The server's own key, certifying "Bob's device" as a new root of Bob's account.
    let key = rampart_mls::identity::new_signature_key().unwrap();
    let public = rampart_mls::identity::public_key(&key).unwrap();
    let forged = rampart_mls::identity::certify(&key, bob_id, bob_device, public).unwrap();
    let forged = bytes::Bytes::from(rampart_proto::encode_certificate(&forged));
    let rewrite: lying_server::Rewrite = Arc::new(move |frame| match frame {
        ServerFrame::Response { request_id, result: Ok(ResponseBody::AccountKeys(mut list)) } => {
            for entry in list.iter_mut().filter(|a| a.account == bob_id) {
                entry.devices = vec![(bob_device, Some(forged.clone()))];
            }
            vec![ServerFrame::Response { request_id, result: Ok(ResponseBody::AccountKeys(list)) }]
        }
        other => vec![other],
    });
    let proxy = lying_server::start_with(&server, rewrite).await;
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
