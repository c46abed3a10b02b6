//! The conformance suite on the embedded SQLite backend (a fresh database file per check), plus
//! what only SQLite has: reopening a file, closing the writer thread, in-memory databases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::future::Future;
use std::sync::Arc;

use rampart_core::{AccountId, DeviceId, MessageId, PhoneNumber, SecretHash, ServerMessageId};
use rampart_store::sqlite::SqliteStore;
use rampart_store::{NewDevice, NewMessage, PendingRegistration, Registered, Store, StoreError};

async fn run<F, Fut>(check: F)
where
    F: FnOnce(Arc<SqliteStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("rampart.db")).unwrap());
    check(Arc::clone(&store)).await;
    store.close().await;
}

rampart_store::conformance_tests!(run);

const NOW: u64 = 1_700_000_000_000;

async fn register(store: &SqliteStore, n: u8) -> Registered {
    let phone = PhoneNumber::parse(&format!("+4915100000{n:02}")).unwrap();
    let code = SecretHash([n; 32]);
    let pending =
        PendingRegistration { phone: phone.clone(), code_hash: code, username: None, expires_at: NOW + 1 };
    store.begin_registration(pending).await.unwrap();
    let device = NewDevice { name: "phone".into(), secret_hash: SecretHash([n ^ 0xff; 32]) };
    store.complete_registration(&phone, code, device, NOW, 5).await.unwrap()
}

fn message(to: AccountId, from: Registered, id: u8) -> NewMessage {
    NewMessage {
        recipient: to,
        only_device: None,
        sender_account: from.account,
        sender_device: from.device,
        message_id: MessageId([id; 16]),
        received_at: NOW,
        expires_at: NOW + 1_000_000,
        body: vec![id; 100],
    }
}

#[tokio::test]
async fn messages_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rampart.db");
    let (bob, queued) = {
        let store = SqliteStore::open(&path).unwrap();
        let bob = register(&store, 1).await;
        let alice = register(&store, 2).await;
        let mut queued = store
            .enqueue(message(bob.account, alice.clone(), 1), rampart_store::QueueLimits::whole(100))
            .await
            .unwrap();
        queued.extend(
            store
                .enqueue(message(bob.account, alice, 2), rampart_store::QueueLimits::whole(100))
                .await
                .unwrap(),
        );
        (bob, queued)
        // Dropped here without close(): the writer thread must still shut down cleanly.
    };

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.fetch_queue(bob.device, None, NOW, 100).await.unwrap(), queued);
    assert!(store.device_auth(bob.device).await.unwrap().is_some());

    // Ids keep increasing across a reopen even when the newest row was acknowledged.
    let newest = queued[1].id;
    assert_eq!(store.ack(bob.device, &[newest]).await.unwrap(), 1);
    store.close().await;
    let store = SqliteStore::open(&path).unwrap();
    let alice = Registered {
        account: queued[0].sender_account,
        device: queued[0].sender_device,
        replaced_existing: false,
        removed_devices: Vec::new(),
    };
    let copies =
        store.enqueue(message(bob.account, alice, 3), rampart_store::QueueLimits::whole(100)).await.unwrap();
    assert!(copies[0].id > newest, "{:?} must be above {newest:?}", copies[0].id);
}

#[tokio::test]
async fn calls_after_close_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("rampart.db")).unwrap();
    register(&store, 1).await;
    store.close().await;
    store.close().await;
    let r = store.total_queued().await;
    assert!(matches!(r, Err(StoreError::Backend(_))), "{r:?}");
}

#[tokio::test]
async fn close_finishes_queued_commands() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rampart.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let bob = register(&store, 1).await;
    let alice = register(&store, 2).await;
    let sends: Vec<_> = (0..100u8)
        .map(|i| {
            let store = Arc::clone(&store);
            let msg = message(bob.account, alice.clone(), i);
            tokio::spawn(async move { store.enqueue(msg, rampart_store::QueueLimits::whole(1000)).await })
        })
        .collect();
    store.close().await;
    // Every send either completed durably or was refused; none was lost after an answer.
    let mut done = 0;
    for s in sends {
        match s.await.unwrap() {
            Ok(copies) => done += copies.len(),
            Err(StoreError::Backend(_)) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.fetch_queue(bob.device, None, NOW, 1000).await.unwrap().len(), done);
}

#[tokio::test]
async fn in_memory_store_passes_a_check() {
    let store = Arc::new(SqliteStore::open_in_memory().unwrap());
    rampart_store::conformance::enqueue_fans_out_to_every_device(Arc::clone(&store)).await;
    assert_eq!(store.backend_name(), "sqlite");
    assert!(store.fetch_queue(DeviceId(1), Some(ServerMessageId(0)), NOW, 1).await.is_ok());
}

/// An acknowledged write must survive a crash or power loss, not only a killed process (whose
/// writes the page cache keeps either way, so a SIGKILL test cannot tell FULL from OFF): the
/// writer runs in WAL mode with synchronous=FULL, which fsyncs the WAL at every commit.
#[tokio::test]
async fn the_writer_fsyncs_every_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("rampart.db")).unwrap();
    let (mode, synchronous) = store.durability().await.unwrap();
    assert_eq!(mode.to_ascii_lowercase(), "wal");
    assert_eq!(synchronous, 2, "synchronous must be FULL (2)");
    store.close().await;
}
