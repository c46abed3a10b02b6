#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! Temporary throughput check (removed after measuring).
use std::sync::Arc;
use std::time::Instant;

use rampart_core::{MessageId, PhoneNumber, SecretHash};
use rampart_store::sqlite::SqliteStore;
use rampart_store::{NewDevice, NewMessage, PendingRegistration, Store};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let tasks: usize = std::env::args().nth(1).map_or(512, |s| s.parse().unwrap());
    let per_task: usize = std::env::args().nth(2).map_or(400, |s| s.parse().unwrap());
    let recipients: usize = std::env::args().nth(3).map_or(1, |s| s.parse().unwrap());
    let dir = tempfile::tempdir_in("/work/main/target").unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("bench.db")).unwrap());
    let mut regs = Vec::new();
    for n in 0..=recipients as u8 {
        let phone = PhoneNumber::parse(&format!("+4915100000{n:02}")).unwrap();
        let code = SecretHash([n; 32]);
        store
            .begin_registration(PendingRegistration {
                phone: phone.clone(),
                code_hash: code,
                username: None,
                expires_at: u64::MAX >> 2,
            })
            .await
            .unwrap();
        regs.push(
            store
                .complete_registration(
                    &phone,
                    code,
                    NewDevice { name: "d".into(), secret_hash: SecretHash([9; 32]) },
                    1,
                    5,
                )
                .await
                .unwrap(),
        );
    }
    let alice = regs[0];
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let store = Arc::clone(&store);
            let bob = regs[1 + t % recipients];
            tokio::spawn(async move {
                for i in 0..per_task {
                    let mut id = [0u8; 16];
                    id[..8].copy_from_slice(&(t as u64).to_be_bytes());
                    id[8..].copy_from_slice(&(i as u64).to_be_bytes());
                    let msg = NewMessage {
                        recipient: bob.account,
                        sender_account: alice.account,
                        sender_device: alice.device,
                        sender_label: "@alice".into(),
                        message_id: MessageId(id),
                        received_at: 1,
                        expires_at: 1 << 50,
                        body: vec![7; 256],
                    };
                    let copies = store.enqueue(msg, 1_000_000).await.unwrap();
                    let n = store.ack(bob.device, &[copies[0].id]).await.unwrap();
                    assert_eq!(n, 1);
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let pairs = tasks * per_task;
    println!(
        "{pairs} enqueue+ack pairs, {tasks} tasks, {recipients} recipients: {secs:.2}s = {:.0} pairs/s",
        pairs as f64 / secs
    );
}
