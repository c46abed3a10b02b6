#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! End-to-end encryption through a real server: what the server keeps never holds content.

mod support;

use support::*;

/// The secret, as bytes, in hex (as pg_dump writes bytea) and in base64-free plain text.
fn needles(secret: &str) -> Vec<Vec<u8>> {
    vec![secret.as_bytes().to_vec(), hex::encode(secret.as_bytes()).into_bytes()]
}

async fn secrets_never_reach_the_server(backend: Backend, database: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), backend, "");
    let mut alice = server.register(dir.path(), "alice", "+14155552001", Some("alice")).await;
    let mut bob = server.register(dir.path(), "bob", "+14155552002", Some("bob")).await;
    let mut carol = server.register(dir.path(), "carol", "+14155552003", Some("carol")).await;
    know_each_other(&mut [&mut alice, &mut bob, &mut carol]).await;

    let one_to_one = "SECRET-1to1-7f3a9c";
    let in_group = "SECRET-group-51d0e2";
    let in_file = "SECRET-file-c28e44";
    let file_name = "SECRET-name-90ab17.txt";
    alice.send_text("@bob", one_to_one).await.unwrap();
    let group = alice.create_group("plans", &["@bob".into(), "@carol".into()]).await.unwrap();
    alice
        .send_to_conversation(
            &group,
            rampart_proto::ContentBody::Text { text: in_group.into(), reply_to: None },
        )
        .await
        .unwrap();

    // An attachment (larger than one upload piece) whose name and content hold secrets.
    let file = dir.path().join(file_name);
    let content: Vec<u8> = in_file.as_bytes().iter().copied().cycle().take(1_500_000).collect();
    std::fs::write(&file, &content).unwrap();
    alice.send_file(&group, &file, in_group, &mut |_, _| {}).await.unwrap();

    // The people it was meant for read it.
    let got: Vec<String> = bob.receive(None, |_| {}).await.unwrap().into_iter().map(|m| m.text).collect();
    assert!(got.contains(&one_to_one.to_owned()) && got.contains(&in_group.to_owned()), "{got:?}");
    let got: Vec<String> = carol.receive(None, |_| {}).await.unwrap().into_iter().map(|m| m.text).collect();
    assert!(got.contains(&in_group.to_owned()), "{got:?}");
    let line =
        carol.profile().history(None, 100).unwrap().into_iter().find(|m| m.attachment.is_some()).unwrap();
    let saved = carol
        .download_attachment(line.seq, &dir.path().join("carol-downloads"), &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(saved.file_name().unwrap().to_str().unwrap(), file_name);
    assert_eq!(std::fs::read(&saved).unwrap(), content);

    // Send once more and leave it queued, so it sits in the server's storage right now.
    alice.send_text("@bob", one_to_one).await.unwrap();

    let mut places = files_under(&dir.path().join("server"));
    places.push(("server log".into(), server.log().into_bytes()));
    if let Some(url) = database {
        let dump = std::process::Command::new("pg_dump").args(["--data-only", url]).output().unwrap();
        assert!(dump.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&dump.stderr));
        assert!(dump.stdout.len() > 1000, "the dump holds the queue");
        places.push(("database dump".into(), dump.stdout));
    }
    // The search can find things: what the server does keep (the sender's username) is there.
    assert!(places.iter().any(|(_, b)| contains(b, b"@alice")), "the search found nothing at all");
    // The blob store is among the places searched, and holds the file's ciphertext.
    let blobs: Vec<_> = places.iter().filter(|(n, _)| n.contains("attachments")).collect();
    let names: Vec<&String> = blobs.iter().map(|(n, _)| n).collect();
    assert!(blobs.iter().any(|(_, b)| b.len() > content.len()), "the blob store is searched: {names:?}");
    for secret in [one_to_one, in_group, in_file, file_name] {
        for needle in needles(secret) {
            for (name, bytes) in &places {
                assert!(!contains(bytes, &needle), "{secret} found in {name}");
            }
        }
    }
}

#[tokio::test]
async fn secrets_never_reach_the_server_sqlite() {
    secrets_never_reach_the_server(Backend::Sqlite, None).await;
}

#[tokio::test]
async fn secrets_never_reach_the_server_postgres() {
    let Some((backend, _db)) = postgres_backend().await else { return };
    let Backend::Postgres(url) = &backend else { unreachable!() };
    let url = url.clone();
    secrets_never_reach_the_server(backend, Some(&url)).await;
}

/// A member removed from a group reads nothing sent after; the rest carry on.
#[tokio::test]
async fn a_removed_member_reads_nothing_after_removal() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut alice = server.register(dir.path(), "alice", "+14155552101", Some("alice")).await;
    let mut bob = server.register(dir.path(), "bob", "+14155552102", Some("bob")).await;
    let mut carol = server.register(dir.path(), "carol", "+14155552103", Some("carol")).await;
    know_each_other(&mut [&mut alice, &mut bob, &mut carol]).await;
    let group = alice.create_group("team", &["@bob".into(), "@carol".into()]).await.unwrap();
    let text = |t: &str| rampart_proto::ContentBody::Text { text: t.into(), reply_to: None };
    alice.send_to_conversation(&group, text("before")).await.unwrap();
    assert!(carol.receive(None, |_| {}).await.unwrap().iter().any(|m| m.text == "before"));

    alice.group_remove(&group, &["@carol".into()]).await.unwrap();
    alice.send_to_conversation(&group, text("after")).await.unwrap();
    let carol_got: Vec<String> =
        carol.receive(None, |_| {}).await.unwrap().into_iter().map(|m| m.text).collect();
    assert!(!carol_got.contains(&"after".to_owned()), "{carol_got:?}");
    let bob_got: Vec<String> = bob.receive(None, |_| {}).await.unwrap().into_iter().map(|m| m.text).collect();
    assert!(bob_got.contains(&"before".to_owned()) && bob_got.contains(&"after".to_owned()), "{bob_got:?}");

    // Bob (not the creator) cannot remove Alice: the server refuses it.
    assert!(bob.group_remove(&group, &["@alice".into()]).await.is_err());
}

/// Both sides compute the same safety number; it changes when a device is added.
#[tokio::test]
async fn safety_numbers_come_from_identities_and_membership_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut alice = server.register(dir.path(), "alice", "+14155552201", Some("alice")).await;
    let mut bob = server.register(dir.path(), "bob", "+14155552202", Some("bob")).await;
    know_each_other(&mut [&mut alice, &mut bob]).await;
    alice.send_text("@bob", "hi").await.unwrap();
    bob.receive(None, |_| {}).await.unwrap();
    let (_, from_alice) = alice.safety_number("@bob").await.unwrap();
    let (_, from_bob) = bob.safety_number("@alice").await.unwrap();
    assert_eq!(from_alice, from_bob);
    assert_eq!(from_alice.len(), 60);
    let check = alice.mark_verified("@bob").await.unwrap();
    assert!(check.unexpected_devices.is_empty(), "{check:?}");
    assert_eq!(check.verified, Some(true));

    let mut laptop = link_device(&server, dir.path(), &mut bob, "bob-laptop").await.unwrap();
    // A device Bob's identity certified changes nothing to compare, and nothing is held.
    let check = alice.check_safety("@bob").await.unwrap();
    assert_eq!(check.number, from_alice, "a device the identity certified keeps the number");
    assert_eq!(check.verified, Some(true));
    alice.send_text("@bob", "to both of your devices").await.unwrap();
    let check = alice.check_safety("@bob").await.unwrap();
    assert!(check.unexpected_devices.is_empty(), "the laptop is certified: {check:?}");
    laptop.receive(None, |_| {}).await.unwrap();
    let (_, from_laptop) = laptop.safety_number("@alice").await.unwrap();
    assert_eq!(from_alice, from_laptop);
}

/// A member with a modified client attacks the group through the server: a commit that renews
/// her leaf as the creator's device, and a commit with a byte changed. The server checks
/// commits against the group's public state and refuses both, so its epoch stays where the
/// members are: the group keeps working, and a device linked afterwards joins it. Before, the
/// server took any bytes with a commit header, moved the epoch, and every later commit of the
/// honest members was stale forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_forged_and_garbage_commits_are_refused_and_the_group_lives_on() {
    use rampart_core::{AccountId, DeviceId};
    use rampart_proto::{ClientRequest, ErrorCode};
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut alice = server.register(dir.path(), "alice", "+14155552201", Some("alice")).await;
    let mut bob = server.register(dir.path(), "bob", "+14155552202", Some("bob")).await;
    let mut mallory = server.register(dir.path(), "mallory", "+14155552203", Some("mallory")).await;
    know_each_other(&mut [&mut alice, &mut bob, &mut mallory]).await;
    let group_name = alice.create_group("club", &["@bob".into(), "@mallory".into()]).await.unwrap();
    bob.receive(None, |_| {}).await.unwrap();
    mallory.receive(None, |_| {}).await.unwrap();
    let group = mallory.resolve_conversation(&group_name).unwrap();

    let creator = alice.identity().unwrap();
    let forged = mallory
        .forged_leaf_renewal(&group, AccountId(creator.account_id), DeviceId(creator.device_id))
        .unwrap();
    let me = mallory.identity().unwrap();
    let mut garbage =
        mallory.forged_leaf_renewal(&group, AccountId(me.account_id), DeviceId(me.device_id)).unwrap();
    let mut bytes = garbage.commit.to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    garbage.commit = bytes.into();

    let mut conn = mallory.connect().await.unwrap();
    for (what, commit) in [("credential rewrite", forged), ("garbage", garbage)] {
        match conn.request(ClientRequest::GroupCommit(commit)).await {
            Err(rampart_client::ClientError::Server(e)) => {
                assert!(matches!(e.code, ErrorCode::Forbidden | ErrorCode::BadRequest), "{what}: {e:?}");
            }
            other => panic!("the server took Mallory's {what} commit: {other:?}"),
        }
    }
    conn.close().await;

    // The group works: a message, then a device Bob links afterwards joins it and reads.
    let text = |t: &str| rampart_proto::ContentBody::Text { text: t.into(), reply_to: None };
    alice.send_to_conversation(&group_name, text("still here")).await.unwrap();
    let got = bob.receive(None, |_| {}).await.unwrap();
    assert!(got.iter().any(|m| m.text == "still here"), "{got:?}");
    let mut laptop = link_device(&server, dir.path(), &mut bob, "bob-laptop").await.unwrap();
    laptop.receive(None, |_| {}).await.unwrap();
    alice.send_to_conversation(&group_name, text("hello, laptop")).await.unwrap();
    let got = laptop.receive(None, |_| {}).await.unwrap();
    assert!(got.iter().any(|m| m.text == "hello, laptop"), "the linked device is not in the group: {got:?}");
    let got = mallory.receive(None, |_| {}).await.unwrap();
    assert!(got.iter().any(|m| m.text == "hello, laptop"), "{got:?}");
}
