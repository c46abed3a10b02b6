#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! Two server nodes on one PostgreSQL database: a device connected to one node hears, live,
//! about what happens on the other (messages, link approvals, revocations).

mod support;

use std::time::Duration;

use rampart_client::{Client, ClientError};
use rampart_proto::{GoodbyeReason, ServerFrame};
use support::*;

#[tokio::test]
async fn two_nodes_share_one_database() {
    let Some((backend, _database)) = postgres_backend().await else { return };
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let node_a = TestServer::start(dir_a.path(), backend.clone(), "");
    let node_b = TestServer::start(dir_b.path(), backend, "");

    let mut alice = node_a.register(dir_a.path(), "alice", "+14155551201", Some("alice")).await;
    let mut bob = node_b.register(dir_b.path(), "bob", "+14155551202", Some("bob")).await;
    know_each_other(&mut [&mut alice, &mut bob]).await;

    // Bob is connected to node B; Alice sends through node A; Bob gets a live push.
    let mut live = bob.connect().await.unwrap();
    assert_eq!(live.next_frame(Duration::from_secs(5)).await.unwrap(), Some(ServerFrame::QueueDrained));
    alice.send_text("@bob", "across nodes").await.unwrap();
    match live.next_frame(Duration::from_secs(5)).await.unwrap() {
        Some(ServerFrame::Delivery(d)) => {
            assert!(matches!(
                rampart_proto::decode_envelope(&d.body).unwrap(),
                rampart_proto::Envelope::Welcome { .. }
            ));
        }
        other => panic!("expected a live delivery from the other node, got {other:?}"),
    }
    live.close().await;
    assert_eq!(bob.receive(None, |_| {}).await.unwrap().len(), 1);

    // A new device waits on node A; Bob approves it through node B.
    let mut laptop = Client::open(&dir_a.path().join("bob-laptop")).unwrap();
    let pending = laptop.begin_link(&node_a.address(), "laptop", None).await.unwrap();
    let code = pending.shown_code();
    let me = tokio::time::timeout(Duration::from_secs(20), link_both(&mut bob, &mut laptop, pending, &code))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(me.label, "@bob");

    // Revoking through node B cuts off the laptop's connection on node A at once: node B's
    // notice reaches node A through PostgreSQL (LISTEN/NOTIFY), which takes milliseconds; five
    // seconds leave room for a loaded two-core machine. Without the notice node A would not
    // learn of the revocation until the laptop reconnects.
    let mut on_a = laptop.connect().await.unwrap();
    bob.revoke(rampart_core::DeviceId(me.device_id)).await.unwrap();
    let revoked_at = std::time::Instant::now();
    let bound = Duration::from_secs(5);
    let mut cut_off = false;
    while revoked_at.elapsed() < bound {
        match on_a.next_frame(bound.saturating_sub(revoked_at.elapsed())).await {
            Err(ClientError::Closed { reason, .. }) => {
                assert_eq!(reason, GoodbyeReason::DeviceRevoked);
                cut_off = true;
                break;
            }
            Ok(_) => continue,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(cut_off, "the revoked device on the other node was not cut off within {bound:?}");
}

/// A revocation whose notice a node missed (its listening connection was down) is caught when
/// the node reconnects: it looks up every device connected to it again and cuts off the ones
/// that are gone. The device is deleted behind the node's back (plain SQL, no notice at all), so
/// only that re-check can cut it off.
#[tokio::test]
async fn a_node_that_missed_a_revocation_rechecks_after_reconnecting() {
    let Some((backend, _database)) = postgres_backend().await else { return };
    let Backend::Postgres(url) = backend.clone() else { panic!("a PostgreSQL backend") };
    let dir = tempfile::tempdir().unwrap();
    let node = TestServer::start(dir.path(), backend, "");
    let mut alice = node.register(dir.path(), "alice", "+14155551301", Some("alice")).await;
    let device = alice.identity().unwrap().device_id;
    let mut live = alice.connect().await.unwrap();
    assert_eq!(live.next_frame(Duration::from_secs(5)).await.unwrap(), Some(ServerFrame::QueueDrained));

    let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let id = i64::try_from(device).unwrap();
    assert_eq!(db.execute("DELETE FROM devices WHERE id = $1", &[&id]).await.unwrap(), 1);
    // Nothing told the node: the device is still connected.
    match live.next_frame(Duration::from_millis(500)).await {
        Ok(None) => {}
        other => panic!("the node learned of the deletion without a notice: {other:?}"),
    }
    // Drop the node's listening connection; it reconnects and asks for a resync.
    let ended = db
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
            &[],
        )
        .await
        .unwrap();
    assert!(!ended.is_empty(), "the node's listening connection was not found");
    let started = std::time::Instant::now();
    loop {
        match live.next_frame(Duration::from_secs(1)).await {
            Err(ClientError::Closed { reason, .. }) => {
                assert_eq!(reason, GoodbyeReason::DeviceRevoked);
                break;
            }
            Ok(None) if started.elapsed() < Duration::from_secs(20) => {}
            other => panic!("the device is still connected after the node reconnected: {other:?}"),
        }
    }
}
