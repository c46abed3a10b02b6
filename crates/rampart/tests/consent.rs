#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! Consent on the message path, through a real server and the real binary: what a stranger
//! sends waits unopened as a request, a block is enforced by the server, and a stranger's
//! flood takes only its share of a queue.

mod support;

use rampart_client::Client;
use rampart_client::Event;
use support::*;

fn messages_from(events: &[Event], account: u64) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message { from_account, text, .. } if *from_account == account => Some(text.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_strangers_invitations_and_messages_wait_unopened_until_the_user_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut victim = server.register(dir.path(), "victim", "+14155556001", Some("victim")).await;
    let mut stranger = server.register(dir.path(), "stranger", "+14155556002", Some("stranger")).await;
    let mut friend = server.register(dir.path(), "friend", "+14155556003", Some("friend")).await;
    let stranger_id = stranger.identity().unwrap().account_id;
    let friend_id = friend.identity().unwrap().account_id;
    victim.add_contact("@friend").await.unwrap();

    // A friend's message opens at once (the positive control for everything below).
    friend.send_text("@victim", "hi, it's me").await.unwrap();
    let events = victim.receive_events(None, |_| {}).await.unwrap();
    assert_eq!(messages_from(&events, friend_id), vec!["hi, it's me".to_owned()]);
    let opened_for_friend = victim.mls_inputs_opened();
    assert!(opened_for_friend >= 2, "the friend's Welcome and message were opened");

    // The 2019 pattern on the message path: groups the victim never asked for, and a direct
    // message, from an account registered minutes ago.
    for i in 1..=3 {
        stranger.create_group(&format!("Free prize {i}"), &["@victim".to_owned()]).await.unwrap();
    }
    stranger.send_text("@victim", "click this").await.unwrap();
    stranger.send_text("@victim", "and this").await.unwrap();
    let events = victim.receive_events(None, |_| {}).await.unwrap();
    assert!(messages_from(&events, stranger_id).is_empty(), "{events:?}");
    let requests: Vec<&Event> = events.iter().filter(|e| matches!(e, Event::Request { .. })).collect();
    assert_eq!(requests.len(), 4, "three groups and one 1:1: {events:?}");
    assert_eq!(
        victim.mls_inputs_opened(),
        opened_for_friend,
        "nothing of the stranger's reached the MLS engine"
    );
    assert_eq!(
        victim.profile().conversations().unwrap().len(),
        1,
        "only the friend's conversation is listed"
    );
    let counters = victim.profile().consent_counters().unwrap();
    assert!(counters.held >= 6, "4 invitations, 2 messages and the group names held: {counters:?}");
    drop(victim);

    // The user looks, through the binary.
    let profile = dir.path().join("victim");
    let (ok, out, err) = cli(&profile, &["requests"]);
    assert!(ok, "{err}");
    assert_eq!(out.matches("from @stranger").count(), 4, "{out}");
    let (ok, out, _) = cli(&profile, &["--json", "requests"]);
    assert!(ok);
    let listed: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let list = listed["requests"].as_array().unwrap();
    assert_eq!(list.len(), 4);
    let ids: Vec<String> = list.iter().map(|r| r["conversation"].as_str().unwrap().to_owned()).collect();
    // The 1:1 is the one holding the two texts (a Welcome and two messages).
    let direct = list.iter().find(|r| r["held"] == 3).unwrap()["conversation"].as_str().unwrap().to_owned();

    // Accept the 1:1: it opens with what it held, in order; the stranger becomes a contact.
    let (ok, out, err) = cli(&profile, &["requests", "accept", &direct]);
    assert!(ok, "{err}");
    let click = out.find("@stranger: click this").unwrap_or_else(|| panic!("{out}"));
    let and = out.find("@stranger: and this").unwrap_or_else(|| panic!("{out}"));
    assert!(click < and, "held messages open in order: {out}");
    // Decline one group, then block the stranger through another request.
    let groups: Vec<&String> = ids.iter().filter(|id| **id != direct).collect();
    let (ok, out, err) = cli(&profile, &["requests", "decline", groups[0]]);
    assert!(ok && out.contains("Declined"), "{out}{err}");
    let (ok, out, err) = cli(&profile, &["requests", "block", groups[1]]);
    assert!(ok && out.contains("Blocked @stranger"), "{out}{err}");
    let (ok, out, _) = cli(&profile, &["requests"]);
    assert!(ok && out.contains("No requests"), "blocking declined the rest: {out}");
    let (_, out, _) = cli(&profile, &["block"]);
    assert!(out.contains("@stranger"), "{out}");

    // After the block the server delivers nothing of the stranger's, in any conversation.
    let mut victim = Client::open(&profile).unwrap();
    let before = victim.profile().consent_counters().unwrap();
    let history_before = victim.profile().history(None, 100).unwrap().len();
    stranger.send_text("@victim", "you can't block me").await.unwrap();
    stranger.create_group("Free prize 4", &["@victim".to_owned()]).await.unwrap_err();
    friend.send_text("@victim", "still here").await.unwrap();
    let events = victim.receive_events(None, |_| {}).await.unwrap();
    assert_eq!(messages_from(&events, friend_id), vec!["still here".to_owned()]);
    assert!(messages_from(&events, stranger_id).is_empty());
    assert_eq!(victim.profile().consent_counters().unwrap(), before, "nothing reached the device to drop");
    assert_eq!(victim.profile().history(None, 100).unwrap().len(), history_before + 1);

    // Unblocking lets them write again (in the accepted 1:1, now a contact's).
    drop(victim);
    let (ok, _, err) = cli(&profile, &["unblock", "@stranger"]);
    assert!(ok, "{err}");
    stranger.send_text("@victim", "sorry").await.unwrap();
    let mut victim = Client::open(&profile).unwrap();
    let events = victim.receive_events(None, |_| {}).await.unwrap();
    assert_eq!(messages_from(&events, stranger_id), vec!["sorry".to_owned()]);
}

#[tokio::test]
async fn writing_to_someone_whose_request_is_open_accepts_it_and_policies_apply() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut alice = server.register(dir.path(), "alice", "+14155556101", Some("alice")).await;
    let mut bob = server.register(dir.path(), "bob", "+14155556102", Some("bob")).await;
    let carol = server.register(dir.path(), "carol", "+14155556103", Some("carol")).await;
    let alice_id = alice.identity().unwrap().account_id;

    alice.send_text("@bob", "hello bob").await.unwrap();
    bob.receive(None, |_| {}).await.unwrap();
    assert_eq!(bob.requests().unwrap().len(), 1);
    // Bob answers by writing back: that is consent; one conversation, with both messages.
    bob.send_text("@alice", "hello alice").await.unwrap();
    assert!(bob.requests().unwrap().is_empty());
    let convs = bob.profile().conversations().unwrap();
    assert_eq!(convs.len(), 1, "{convs:?}");
    let texts: Vec<String> = bob.profile().history(None, 10).unwrap().into_iter().map(|m| m.text).collect();
    assert_eq!(texts, vec!["hello bob".to_owned(), "hello alice".to_owned()]);
    let got = alice.receive(None, |_| {}).await.unwrap();
    assert_eq!(got.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), vec!["hello alice"]);

    // "contacts": a stranger's first message is dropped unseen; "everyone": opened at once.
    let profile = dir.path().join("carol");
    drop(carol);
    let (ok, out, _) = cli(&profile, &["message-policy", "contacts"]);
    assert!(ok && out.contains("Only contacts"), "{out}");
    let mut carol = Client::open(&profile).unwrap();
    alice.send_text("@carol", "are you there?").await.unwrap();
    let events = carol.receive_events(None, |_| {}).await.unwrap();
    assert!(events.is_empty(), "{events:?}");
    assert!(carol.requests().unwrap().is_empty());
    assert!(carol.profile().consent_counters().unwrap().dropped >= 1);
    carol.profile().set_message_policy(rampart_core::consent::MessagePolicy::Everyone).unwrap();
    bob.send_text("@carol", "hi carol").await.unwrap();
    let events = carol.receive_events(None, |_| {}).await.unwrap();
    assert_eq!(messages_from(&events, bob.identity().unwrap().account_id), vec!["hi carol".to_owned()]);
    assert!(messages_from(&events, alice_id).is_empty(), "the dropped conversation stays closed");
}

#[tokio::test]
async fn a_strangers_flood_takes_only_its_share_and_the_sender_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        dir.path(),
        Backend::Sqlite,
        "[limits]\nmax_queue_per_device = 40\nmax_queue_per_sender = 8\n",
    );
    let mut victim = server.register(dir.path(), "victim", "+14155556201", Some("victim")).await;
    let mut stranger = server.register(dir.path(), "stranger", "+14155556202", Some("stranger")).await;
    let mut friend = server.register(dir.path(), "friend", "+14155556203", Some("friend")).await;
    let friend_id = friend.identity().unwrap().account_id;
    victim.add_contact("@friend").await.unwrap();
    // A group the victim is in, made by a friend.
    let group = friend.create_group("Book club", &["@victim".to_owned()]).await.unwrap();
    victim.receive(None, |_| {}).await.unwrap();

    // The victim is offline; the stranger floods.
    let mut missed = 0;
    for i in 0..12 {
        let receipt = stranger.send_text("@victim", &format!("spam {i}")).await.unwrap();
        missed += receipt.missed_devices;
    }
    assert!(missed >= 4, "sends past the share are reported, not silently skipped ({missed})");
    // Through the binary, the sender sees a warning.
    drop(stranger);
    let (ok, _, err) = cli(&dir.path().join("stranger"), &["send", "@victim", "more spam"]);
    assert!(ok, "{err}");
    assert!(err.contains("had no room"), "{err}");

    // The friend's group message still finds room.
    let mut conn = friend.connect().await.unwrap();
    let group_id = friend.resolve_conversation(&group).unwrap();
    let receipt = friend
        .send_to_group_on(
            &mut conn,
            &group_id,
            rampart_proto::ContentBody::Text { text: "meeting at 8".into(), reply_to: None },
        )
        .await
        .unwrap();
    conn.close().await;
    assert_eq!((receipt.recipient_devices, receipt.missed_devices), (1, 0));
    let events = victim.receive_events(None, |_| {}).await.unwrap();
    assert_eq!(messages_from(&events, friend_id), vec!["meeting at 8".to_owned()]);
    let held = victim.requests().unwrap();
    assert_eq!(held.len(), 1);
    assert!(held[0].held <= 8, "the stranger's share: {}", held[0].held);
}

#[tokio::test]
async fn a_linked_device_learns_the_contacts_and_answers_go_to_every_device() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut bob = server.register(dir.path(), "bob", "+14155556301", Some("bob")).await;
    let mut friend = server.register(dir.path(), "friend", "+14155556302", Some("friend")).await;
    let mut stranger = server.register(dir.path(), "stranger", "+14155556303", Some("stranger")).await;
    bob.add_contact("@friend").await.unwrap();

    // Bob links a laptop: it has no contacts of its own, and learns Bob's from his phone.
    let mut laptop = link_device(&server, dir.path(), &mut bob, "bob-laptop").await.unwrap();
    laptop.receive(None, |_| {}).await.unwrap();
    assert!(
        laptop
            .profile()
            .is_contact(friend.identity().map(|i| rampart_core::AccountId(i.account_id)).unwrap())
            .unwrap()
    );

    // The friend's new conversation opens on both devices; the stranger's waits on both.
    friend.send_text("@bob", "hi from a friend").await.unwrap();
    stranger.send_text("@bob", "buy now").await.unwrap();
    for device in [&mut bob, &mut laptop] {
        let got = device.receive(None, |_| {}).await.unwrap();
        assert_eq!(got.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), vec!["hi from a friend"]);
        assert_eq!(device.requests().unwrap().len(), 1);
    }
    // Accepting on the phone opens it on the laptop too.
    let events = bob.accept_request("@stranger").await.unwrap();
    assert!(
        events.iter().any(|e| matches!(e, rampart_client::Event::Message { text, .. } if text == "buy now"))
    );
    // More arrives in that conversation before the laptop hears of the accept: it waits
    // behind what is held there, and all of it opens in order.
    stranger.send_text("@bob", "one more").await.unwrap();
    let events = laptop.receive_events(None, |_| {}).await.unwrap();
    assert!(laptop.requests().unwrap().is_empty(), "{events:?}");
    let texts: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            rampart_client::Event::Message { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, vec!["buy now", "one more"], "{events:?}");
}
