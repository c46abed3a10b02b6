//! The conformance suite every [`Store`] backend must pass.
//!
//! Each check is a public async function that takes a fresh, empty store and panics when the
//! backend misbehaves. [`conformance_tests!`](crate::conformance_tests) expands to one
//! `#[tokio::test]` per check, so a failure names the rule that broke. A backend's test file
//! needs only a runner that builds a store, hands it to the check and cleans up:
//!
//! ```ignore
//! async fn run<F, Fut>(check: F)
//! where
//!     F: FnOnce(Arc<SqliteStore>) -> Fut,
//!     Fut: Future<Output = ()> + Send + 'static,
//! {
//!     let dir = tempfile::tempdir().unwrap();
//!     check(Arc::new(SqliteStore::open(&dir.path().join("db")).unwrap())).await;
//! }
//! rampart_store::conformance_tests!(run);
//! ```
//!
//! The crate using the macro needs `tokio` (with `macros` and `rt-multi-thread`) as a
//! dependency. The checks live outside `#[cfg(test)]` so other crates and future backends can
//! run them; nothing but tests should call them.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test-support code: a failed check is meant to panic with a readable message"
)]

use std::collections::BTreeSet;
use std::sync::Arc;

use rampart_core::call::CallId;
use rampart_core::{
    AccountId, DeviceId, GroupId, MessageId, PhoneNumber, SecretHash, ServerMessageId, Username,
};

use crate::{
    CALL_KEEP_AFTER_EXPIRY_MS, CallMisfit, CallRecord, GroupCommitRecord, GroupMessage, GroupState,
    NewDevice, NewMessage, OutboxEntry, PendingLink, PendingRegistration, Purged, QueueLimits, Registered,
    Store, StoreError, StoredMessage, UnixMillis,
};

/// Expands to one `#[tokio::test]` per conformance check. `$runner` is a path to an async
/// function (or a macro-free equivalent) called as `$runner(|store| check(store)).await`: it
/// builds a fresh store, awaits the check with it and cleans up.
#[macro_export]
macro_rules! conformance_tests {
    // The internal arm comes first so the `path` fragment never has to reject `@`.
    (@each $runner:path; $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                $runner(|store| $crate::conformance::$check(store)).await;
            }
        )+
    };
    ($runner:path) => {
        $crate::conformance_tests!(@each $runner;
            registration_creates_account_and_device,
            registration_code_is_single_use,
            registration_wrong_code_burns_code,
            registration_restart_resets_attempts,
            registration_expired_code,
            reregistration_replaces_devices_and_queues,
            registration_username_taken,
            usernames_and_labels,
            device_auth_touch_and_list,
            revoke_device_deletes_its_queue,
            link_respects_device_cap,
            link_code_is_single_use,
            link_needs_an_existing_approving_device,
            link_code_expiry_and_replacement,
            enqueue_fans_out_to_every_device,
            enqueue_to_one_device_of_the_account,
            enqueue_is_idempotent,
            enqueue_unknown_or_deviceless_recipient,
            queue_full_inserts_nothing,
            a_sender_fills_only_its_share,
            expiry_frees_queue_space,
            copies_carry_the_senders_current_label,
            fetch_after_limit_and_expiry,
            ack_only_deletes_own_messages,
            queue_counts,
            purge_removes_expired_rows,
            outbox_lists_oldest_first,
            concurrent_enqueues_get_distinct_ids,
            concurrent_retries_queue_once,
            concurrent_sends_respect_queue_limit,
            concurrent_links_race_for_last_slot,
            concurrent_use_of_one_link_code,
            concurrent_registrations,
            certificates_are_set_once,
            key_packages_are_handed_out_once,
            account_keys_list_devices_and_certificates,
            first_commit_creates_the_group,
            one_commit_per_epoch,
            commit_rules_for_members_and_creators,
            group_messages_reach_other_members_only,
            group_messages_skip_full_queues,
            blocked_senders_reach_nothing,
            leaving_and_revoking_drop_membership,
            concurrent_commits_one_wins,
            calls_are_created_once,
            a_call_is_answered_by_one_device,
            concurrent_answers_one_wins,
            expired_calls_cannot_be_answered,
            ended_calls_drop_the_offer,
            misfits_are_counted_per_reason,
            top_misfits_highest_first,
            calls_placed_since_counts_the_callers_calls,
            purge_removes_only_old_calls,
            sentinel_actions_are_in_force_until_they_expire_or_are_lifted,
            sentinel_lifts_are_noted_once,
            sentinel_sightings_are_found_by_account_and_network,
        );
    };
}

// --- fixtures -------------------------------------------------------------------------------

const T0: UnixMillis = 1_700_000_000_000;
const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;
const MAX_ATTEMPTS: u32 = 5;
const MAX_DEVICES: u32 = 5;
const MAX_QUEUE: u32 = 1_000;
const FETCH_ALL: u32 = 10_000;

fn phone(n: u32) -> PhoneNumber {
    PhoneNumber::parse(&format!("+1415555{n:04}")).expect("test phone number")
}

fn user(name: &str) -> Username {
    Username::parse(name).expect("test username")
}

/// Distinct hashes per (kind, n), so codes and secrets never collide by accident.
fn hash(kind: u8, n: u32) -> SecretHash {
    let mut b = [kind; 32];
    b[..4].copy_from_slice(&n.to_be_bytes());
    SecretHash(b)
}

fn code(n: u32) -> SecretHash {
    hash(0xc0, n)
}

fn new_device(name: &str, n: u32) -> NewDevice {
    NewDevice { name: name.to_owned(), secret_hash: hash(0xd0, n) }
}

fn message_id(n: u32) -> MessageId {
    let mut b = [0x5a; 16];
    b[12..].copy_from_slice(&n.to_be_bytes());
    MessageId(b)
}

fn pending(
    n: u32,
    code_hash: SecretHash,
    username: Option<&str>,
    expires_at: UnixMillis,
) -> PendingRegistration {
    PendingRegistration { phone: phone(n), code_hash, username: username.map(user), expires_at }
}

/// Register phone number `n` (first device secret `n`), asserting success.
async fn register<S: Store>(store: &S, n: u32, username: Option<&str>) -> Registered {
    store.begin_registration(pending(n, code(n), username, T0 + HOUR)).await.expect("begin_registration");
    store
        .complete_registration(&phone(n), code(n), new_device("phone", n), T0, MAX_ATTEMPTS)
        .await
        .expect("complete_registration")
}

fn link_code(n: u32) -> SecretHash {
    hash(0x1c, n)
}

async fn begin_link<S: Store>(store: &S, n: u32, expires_at: UnixMillis) {
    let device = new_device(&format!("device {n}"), 10_000 + n);
    store.begin_link(PendingLink { code_hash: link_code(n), device, expires_at }).await.expect("begin_link");
}

/// Link a new device (link code `n`) to `account`, asserting success.
async fn link<S: Store>(store: &S, account: AccountId, n: u32) -> DeviceId {
    begin_link(store, n, T0 + HOUR).await;
    let approver = store.list_devices(account).await.expect("devices")[0].id;
    store.complete_link(link_code(n), approver, account, T0, MAX_DEVICES).await.expect("complete_link")
}

fn message(to: AccountId, from: &Registered, id: u32, body: &[u8]) -> NewMessage {
    NewMessage {
        recipient: to,
        only_device: None,
        sender_account: from.account,
        sender_device: from.device,
        message_id: message_id(id),
        received_at: T0,
        expires_at: T0 + DAY,
        body: body.to_vec(),
    }
}

async fn send<S: Store>(store: &S, msg: NewMessage) -> Vec<StoredMessage> {
    store.enqueue(msg, QueueLimits::whole(MAX_QUEUE)).await.expect("enqueue")
}

async fn fetch_all<S: Store>(store: &S, device: DeviceId) -> Vec<StoredMessage> {
    store.fetch_queue(device, None, T0, FETCH_ALL).await.expect("fetch_queue")
}

async fn depth<S: Store>(store: &S, device: DeviceId) -> u64 {
    store.queue_depth(device).await.expect("queue_depth")
}

fn ids(messages: &[StoredMessage]) -> Vec<ServerMessageId> {
    messages.iter().map(|m| m.id).collect()
}

// --- registration ---------------------------------------------------------------------------

/// A verified code creates the account with its first device; the device authenticates with
/// the stored secret hash.
pub async fn registration_creates_account_and_device<S: Store>(store: Arc<S>) {
    let reg = register(&*store, 1, Some("alice")).await;
    assert!(!reg.replaced_existing);
    assert_eq!(store.account_by_phone(&phone(1)).await.unwrap(), Some(reg.account));
    assert_eq!(store.account_by_username(&user("alice")).await.unwrap(), Some(reg.account));
    assert_eq!(store.account_by_phone(&phone(2)).await.unwrap(), None);
    assert_eq!(store.account_label(reg.account).await.unwrap().as_deref(), Some("@alice"));

    let auth = store.device_auth(reg.device).await.unwrap().expect("device exists");
    assert_eq!(auth.account, reg.account);
    assert_eq!(auth.device, reg.device);
    assert!(auth.secret_hash.matches(&new_device("phone", 1).secret_hash));
    assert_eq!(auth.account_created_at, T0);
    assert_eq!(auth.device_created_at, T0);

    let devices = store.list_devices(reg.account).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].id, reg.device);
    assert_eq!(devices[0].name, "phone");
    assert_eq!(devices[0].created_at, T0);
    assert_eq!(devices[0].last_seen_at, T0);

    let other = register(&*store, 2, None).await;
    assert_ne!(other.account, reg.account);
    assert_ne!(other.device, reg.device);
}

/// A code is consumed by a successful registration; replaying it, or completing a number
/// that never asked for a code, is `NoPendingCode`.
pub async fn registration_code_is_single_use<S: Store>(store: Arc<S>) {
    let r = store.complete_registration(&phone(1), code(1), new_device("phone", 1), T0, MAX_ATTEMPTS).await;
    assert!(matches!(r, Err(StoreError::NoPendingCode)), "no code was requested: {r:?}");

    let reg = register(&*store, 1, None).await;
    let r = store.complete_registration(&phone(1), code(1), new_device("again", 2), T0, MAX_ATTEMPTS).await;
    assert!(matches!(r, Err(StoreError::NoPendingCode)), "replayed code: {r:?}");
    assert_eq!(store.list_devices(reg.account).await.unwrap().len(), 1, "replay must not add a device");
}

/// Each wrong guess counts; the last allowed one burns the code, after which even the right
/// code is refused.
pub async fn registration_wrong_code_burns_code<S: Store>(store: Arc<S>) {
    store.begin_registration(pending(1, code(1), None, T0 + HOUR)).await.unwrap();
    for left in (0..MAX_ATTEMPTS).rev() {
        let r =
            store.complete_registration(&phone(1), code(99), new_device("phone", 1), T0, MAX_ATTEMPTS).await;
        assert!(
            matches!(r, Err(StoreError::WrongCode { attempts_left }) if attempts_left == left),
            "expected {left} attempts left: {r:?}"
        );
    }
    let r = store.complete_registration(&phone(1), code(1), new_device("phone", 1), T0, MAX_ATTEMPTS).await;
    assert!(matches!(r, Err(StoreError::NoPendingCode)), "burnt code must be gone: {r:?}");
    assert_eq!(store.account_by_phone(&phone(1)).await.unwrap(), None);
}

/// Asking for a new code replaces the old one and resets the attempt counter.
pub async fn registration_restart_resets_attempts<S: Store>(store: Arc<S>) {
    store.begin_registration(pending(1, code(1), None, T0 + HOUR)).await.unwrap();
    for _ in 1..MAX_ATTEMPTS {
        let r =
            store.complete_registration(&phone(1), code(99), new_device("phone", 1), T0, MAX_ATTEMPTS).await;
        assert!(matches!(r, Err(StoreError::WrongCode { .. })), "{r:?}");
    }
    store.begin_registration(pending(1, code(2), None, T0 + HOUR)).await.unwrap();
    let r = store.complete_registration(&phone(1), code(1), new_device("phone", 1), T0, MAX_ATTEMPTS).await;
    assert!(
        matches!(r, Err(StoreError::WrongCode { attempts_left }) if attempts_left == MAX_ATTEMPTS - 1),
        "old code replaced, counter reset: {r:?}"
    );
    let reg = store.complete_registration(&phone(1), code(2), new_device("phone", 1), T0, MAX_ATTEMPTS).await;
    assert!(reg.is_ok(), "new code works: {reg:?}");
}

/// A code is valid while `now < expires_at`; an expired code is deleted.
pub async fn registration_expired_code<S: Store>(store: Arc<S>) {
    store.begin_registration(pending(1, code(1), None, T0)).await.unwrap();
    let r = store.complete_registration(&phone(1), code(1), new_device("phone", 1), T0, MAX_ATTEMPTS).await;
    assert!(matches!(r, Err(StoreError::CodeExpired)), "expires_at == now is expired: {r:?}");
    let r =
        store.complete_registration(&phone(1), code(1), new_device("phone", 1), T0 - 1, MAX_ATTEMPTS).await;
    assert!(matches!(r, Err(StoreError::NoPendingCode)), "expired code was deleted: {r:?}");

    store.begin_registration(pending(1, code(1), None, T0)).await.unwrap();
    let r =
        store.complete_registration(&phone(1), code(1), new_device("phone", 1), T0 - 1, MAX_ATTEMPTS).await;
    assert!(r.is_ok(), "one millisecond before expiry: {r:?}");
}

/// Registering a number that has an account takes that account over: same account id, old
/// devices and their queues gone (and reported), username replaced by the one asked for or
/// cleared: a recycled number must not inherit the previous owner's name.
pub async fn reregistration_replaces_devices_and_queues<S: Store>(store: Arc<S>) {
    let first = register(&*store, 1, Some("carol")).await;
    let second_device = link(&*store, first.account, 1).await;
    let sender = register(&*store, 2, None).await;
    assert_eq!(send(&*store, message(first.account, &sender, 1, b"hi")).await.len(), 2);
    assert_eq!(store.total_queued().await.unwrap(), 2);

    let again = register(&*store, 1, None).await;
    assert!(again.replaced_existing);
    let mut removed = again.removed_devices.clone();
    removed.sort();
    assert_eq!(removed, vec![first.device, second_device]);
    assert_eq!(again.account, first.account);
    assert!(again.device != first.device && again.device != second_device);
    assert!(store.device_auth(first.device).await.unwrap().is_none());
    assert!(store.device_auth(second_device).await.unwrap().is_none());
    assert_eq!(depth(&*store, first.device).await, 0);
    assert_eq!(depth(&*store, second_device).await, 0);
    assert_eq!(store.total_queued().await.unwrap(), 0, "old queues deleted");
    let devices = store.list_devices(first.account).await.unwrap();
    assert_eq!(devices.iter().map(|d| d.id).collect::<Vec<_>>(), vec![again.device]);
    assert_eq!(
        store.account_label(first.account).await.unwrap().as_deref(),
        Some(phone(1).as_e164()),
        "the username did not pass to the new holder of the number"
    );
    assert_eq!(store.account_by_username(&user("carol")).await.unwrap(), None);

    let renamed = register(&*store, 1, Some("carol2")).await;
    assert!(renamed.replaced_existing);
    assert_eq!(store.account_label(first.account).await.unwrap().as_deref(), Some("@carol2"));
    assert_eq!(store.account_by_username(&user("carol")).await.unwrap(), None);
    // The sender's account is untouched.
    assert!(store.device_auth(sender.device).await.unwrap().is_some());
}

/// A registration asking for a taken username fails as a whole: no account, no removed
/// devices, and the code still pending so the user can retry.
pub async fn registration_username_taken<S: Store>(store: Arc<S>) {
    let dave = register(&*store, 1, Some("dave")).await;

    store.begin_registration(pending(2, code(2), Some("dave"), T0 + HOUR)).await.unwrap();
    let r = store.complete_registration(&phone(2), code(2), new_device("phone", 2), T0, MAX_ATTEMPTS).await;
    assert!(matches!(r, Err(StoreError::UsernameTaken)), "{r:?}");
    assert_eq!(store.account_by_phone(&phone(2)).await.unwrap(), None, "nothing half-done");
    assert_eq!(store.account_by_username(&user("dave")).await.unwrap(), Some(dave.account));

    // An existing account re-registering with a taken name keeps its devices.
    let erin = register(&*store, 3, None).await;
    store.begin_registration(pending(3, code(3), Some("dave"), T0 + HOUR)).await.unwrap();
    let r = store.complete_registration(&phone(3), code(3), new_device("new", 33), T0, MAX_ATTEMPTS).await;
    assert!(matches!(r, Err(StoreError::UsernameTaken)), "{r:?}");
    assert!(store.device_auth(erin.device).await.unwrap().is_some(), "old device kept");

    // Once the name is free the same code works.
    store.set_username(dave.account, None).await.unwrap();
    let reg = store
        .complete_registration(&phone(2), code(2), new_device("phone", 2), T0, MAX_ATTEMPTS)
        .await
        .expect("retry after the name was freed");
    assert_eq!(store.account_label(reg.account).await.unwrap().as_deref(), Some("@dave"));
}

// --- accounts -------------------------------------------------------------------------------

/// Labels are `@username` or the E.164 number; usernames are unique and can be cleared.
pub async fn usernames_and_labels<S: Store>(store: Arc<S>) {
    let a = register(&*store, 1, None).await;
    let b = register(&*store, 2, None).await;
    assert_eq!(store.account_label(a.account).await.unwrap().as_deref(), Some(phone(1).as_e164()));
    assert_eq!(store.account_label(AccountId(u64::MAX)).await.unwrap(), None);
    assert_eq!(store.account_label(AccountId(987_654_321)).await.unwrap(), None);

    store.set_username(a.account, Some(&user("erin"))).await.unwrap();
    store.set_username(a.account, Some(&user("erin"))).await.expect("setting one's own name again");
    assert_eq!(store.account_label(a.account).await.unwrap().as_deref(), Some("@erin"));
    assert_eq!(store.account_by_username(&user("erin")).await.unwrap(), Some(a.account));

    let r = store.set_username(b.account, Some(&user("@Erin"))).await;
    assert!(matches!(r, Err(StoreError::UsernameTaken)), "{r:?}");
    assert_eq!(store.account_label(b.account).await.unwrap().as_deref(), Some(phone(2).as_e164()));

    store.set_username(a.account, Some(&user("frank"))).await.unwrap();
    assert_eq!(store.account_by_username(&user("erin")).await.unwrap(), None, "old name released");
    store.set_username(b.account, Some(&user("erin"))).await.expect("released name is free");

    store.set_username(a.account, None).await.unwrap();
    assert_eq!(store.account_label(a.account).await.unwrap().as_deref(), Some(phone(1).as_e164()));
    assert_eq!(store.account_by_username(&user("frank")).await.unwrap(), None);
    // Two accounts without a username do not collide.
    store.set_username(b.account, None).await.unwrap();

    let r = store.set_username(AccountId(987_654_321), Some(&user("ghost"))).await;
    assert!(matches!(r, Err(StoreError::NoSuchAccount)), "{r:?}");
}

// --- devices --------------------------------------------------------------------------------

/// Unknown devices have no credentials; `touch_device` moves `last_seen_at` forward only;
/// devices are listed by id.
pub async fn device_auth_touch_and_list<S: Store>(store: Arc<S>) {
    assert!(store.device_auth(DeviceId(987_654_321)).await.unwrap().is_none());
    assert!(store.device_auth(DeviceId(u64::MAX)).await.unwrap().is_none());

    let reg = register(&*store, 1, None).await;
    let d2 = link(&*store, reg.account, 2).await;
    let d3 = link(&*store, reg.account, 3).await;
    let auth = store.device_auth(d2).await.unwrap().expect("linked device");
    assert_eq!(auth.account, reg.account);
    assert!(auth.secret_hash.matches(&new_device("", 10_002).secret_hash));

    store.touch_device(d2, T0 + 5_000).await.unwrap();
    store.touch_device(d2, T0 + 1_000).await.unwrap();
    store.touch_device(DeviceId(987_654_321), T0).await.expect("touching an unknown device is harmless");
    let devices = store.list_devices(reg.account).await.unwrap();
    assert_eq!(devices.iter().map(|d| d.id).collect::<Vec<_>>(), vec![reg.device, d2, d3]);
    assert!(devices.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(devices[1].name, "device 2");
    assert_eq!(devices[1].created_at, T0);
    assert_eq!(devices[1].last_seen_at, T0 + 5_000);
    assert_eq!(devices[0].last_seen_at, T0);

    assert!(store.list_devices(AccountId(987_654_321)).await.unwrap().is_empty());
}

/// Revoking a device deletes it and its queue; a device of another account, or one already
/// revoked, is `NoSuchDevice`.
pub async fn revoke_device_deletes_its_queue<S: Store>(store: Arc<S>) {
    let owner = register(&*store, 1, None).await;
    let tablet = link(&*store, owner.account, 1).await;
    let other = register(&*store, 2, None).await;
    send(&*store, message(owner.account, &other, 1, b"one")).await;
    send(&*store, message(owner.account, &other, 2, b"two")).await;
    assert_eq!(depth(&*store, tablet).await, 2);

    let r = store.revoke_device(other.account, tablet).await;
    assert!(matches!(r, Err(StoreError::NoSuchDevice)), "not the caller's device: {r:?}");
    assert!(store.device_auth(tablet).await.unwrap().is_some());

    store.revoke_device(owner.account, tablet).await.expect("revoke");
    assert!(store.device_auth(tablet).await.unwrap().is_none());
    assert_eq!(depth(&*store, tablet).await, 0);
    assert!(fetch_all(&*store, tablet).await.is_empty());
    assert_eq!(depth(&*store, owner.device).await, 2, "other devices keep their queues");
    assert_eq!(store.total_queued().await.unwrap(), 2);

    let r = store.revoke_device(owner.account, tablet).await;
    assert!(matches!(r, Err(StoreError::NoSuchDevice)), "already revoked: {r:?}");
    let r = store.revoke_device(owner.account, DeviceId(u64::MAX)).await;
    assert!(matches!(r, Err(StoreError::NoSuchDevice)), "{r:?}");
}

// --- linking --------------------------------------------------------------------------------

/// At most `max_devices` devices; hitting the cap does not consume the link code.
pub async fn link_respects_device_cap<S: Store>(store: Arc<S>) {
    let reg = register(&*store, 1, None).await;
    for n in 1..MAX_DEVICES {
        link(&*store, reg.account, n).await;
    }
    assert_eq!(store.list_devices(reg.account).await.unwrap().len(), MAX_DEVICES as usize);

    begin_link(&*store, 99, T0 + HOUR).await;
    let r = store.complete_link(link_code(99), reg.device, reg.account, T0, MAX_DEVICES).await;
    assert!(matches!(r, Err(StoreError::TooManyDevices { max: MAX_DEVICES })), "{r:?}");
    assert_eq!(store.list_devices(reg.account).await.unwrap().len(), MAX_DEVICES as usize);

    let victim = store.list_devices(reg.account).await.unwrap()[1].id;
    store.revoke_device(reg.account, victim).await.unwrap();
    let added = store
        .complete_link(link_code(99), reg.device, reg.account, T0, MAX_DEVICES)
        .await
        .expect("the same code works once a slot is free");
    assert_eq!(store.device_auth(added).await.unwrap().map(|a| a.account), Some(reg.account));
    assert_eq!(store.list_devices(reg.account).await.unwrap().len(), MAX_DEVICES as usize);

    let r = store.complete_link(link_code(99), reg.device, AccountId(987_654_321), T0, MAX_DEVICES).await;
    assert!(matches!(r, Err(StoreError::NoSuchLink)), "{r:?}");
}

/// A device revoked while it approves a link adds nothing, and the code stays valid for a
/// device that still exists.
pub async fn link_needs_an_existing_approving_device<S: Store>(store: Arc<S>) {
    let reg = register(&*store, 1, None).await;
    let laptop = link(&*store, reg.account, 4).await;
    store.revoke_device(reg.account, laptop).await.unwrap();
    begin_link(&*store, 5, T0 + HOUR).await;
    let r = store.complete_link(link_code(5), laptop, reg.account, T0, MAX_DEVICES).await;
    assert!(matches!(r, Err(StoreError::NoSuchDevice)), "a revoked approver: {r:?}");
    let other = register(&*store, 2, None).await;
    let r = store.complete_link(link_code(5), other.device, reg.account, T0, MAX_DEVICES).await;
    assert!(matches!(r, Err(StoreError::NoSuchDevice)), "another account's device: {r:?}");
    assert_eq!(store.list_devices(reg.account).await.unwrap().len(), 1);
    store
        .complete_link(link_code(5), reg.device, reg.account, T0, MAX_DEVICES)
        .await
        .expect("the code is still valid");
}

/// A link code adds exactly one device.
pub async fn link_code_is_single_use<S: Store>(store: Arc<S>) {
    let reg = register(&*store, 1, None).await;
    let r = store.complete_link(link_code(7), reg.device, reg.account, T0, MAX_DEVICES).await;
    assert!(matches!(r, Err(StoreError::NoSuchLink)), "unknown code: {r:?}");

    link(&*store, reg.account, 7).await;
    let r = store.complete_link(link_code(7), reg.device, reg.account, T0, MAX_DEVICES).await;
    assert!(matches!(r, Err(StoreError::NoSuchLink)), "used code: {r:?}");
    assert_eq!(store.list_devices(reg.account).await.unwrap().len(), 2);
}

/// A link code is valid while `now < expires_at`; beginning a link with a code hash that is
/// already pending replaces the pending device.
pub async fn link_code_expiry_and_replacement<S: Store>(store: Arc<S>) {
    let reg = register(&*store, 1, None).await;
    begin_link(&*store, 1, T0).await;
    let r = store.complete_link(link_code(1), reg.device, reg.account, T0, MAX_DEVICES).await;
    assert!(matches!(r, Err(StoreError::NoSuchLink)), "expires_at == now is expired: {r:?}");
    let r = store.complete_link(link_code(1), reg.device, reg.account, T0 - 1, MAX_DEVICES).await;
    assert!(matches!(r, Err(StoreError::NoSuchLink)), "expired code was deleted: {r:?}");

    begin_link(&*store, 2, T0 + HOUR).await;
    let replacement = NewDevice { name: "laptop".to_owned(), secret_hash: hash(0xee, 1) };
    store
        .begin_link(PendingLink { code_hash: link_code(2), device: replacement, expires_at: T0 + HOUR })
        .await
        .unwrap();
    let device = store.complete_link(link_code(2), reg.device, reg.account, T0, MAX_DEVICES).await.unwrap();
    let record = store.list_devices(reg.account).await.unwrap().into_iter().find(|d| d.id == device);
    assert_eq!(record.map(|d| d.name).as_deref(), Some("laptop"));
    let auth = store.device_auth(device).await.unwrap().expect("device");
    assert!(auth.secret_hash.matches(&hash(0xee, 1)));
}

// --- queues ---------------------------------------------------------------------------------

/// One copy per recipient device, with distinct ids, nothing for the sender's devices.
pub async fn enqueue_fans_out_to_every_device<S: Store>(store: Arc<S>) {
    let bob = register(&*store, 1, None).await;
    let d2 = link(&*store, bob.account, 1).await;
    let d3 = link(&*store, bob.account, 2).await;
    let alice = register(&*store, 2, None).await;

    let msg = message(bob.account, &alice, 1, b"\x00opaque\xffbody");
    let copies = send(&*store, msg.clone()).await;
    assert_eq!(copies.iter().map(|c| c.device).collect::<Vec<_>>(), vec![bob.device, d2, d3]);
    assert_eq!(ids(&copies).into_iter().collect::<BTreeSet<_>>().len(), 3, "distinct ids");
    for copy in &copies {
        assert_eq!(copy.sender_account, alice.account);
        assert_eq!(copy.sender_device, alice.device);
        assert_eq!(Some(copy.sender_label.clone()), store.account_label(alice.account).await.unwrap());
        assert_eq!(copy.message_id, msg.message_id);
        assert_eq!(copy.received_at, msg.received_at);
        assert_eq!(copy.expires_at, msg.expires_at);
        assert_eq!(copy.body, msg.body);
        assert_eq!(fetch_all(&*store, copy.device).await, vec![copy.clone()]);
    }
    assert_eq!(depth(&*store, alice.device).await, 0);
    assert_eq!(store.total_queued().await.unwrap(), 3);
}

/// A message for one device of the account (a call's signal once a device answered) reaches
/// that device alone; one for a device that is not the account's reaches nobody.
pub async fn enqueue_to_one_device_of_the_account<S: Store>(store: Arc<S>) {
    let bob = register(&*store, 1, None).await;
    let d2 = link(&*store, bob.account, 1).await;
    let alice = register(&*store, 2, None).await;
    let mut msg = message(bob.account, &alice, 1, b"for the second device");
    msg.only_device = Some(d2);
    let copies = send(&*store, msg).await;
    assert_eq!(copies.iter().map(|c| c.device).collect::<Vec<_>>(), vec![d2]);
    assert_eq!(depth(&*store, bob.device).await, 0);
    let mut elsewhere = message(bob.account, &alice, 2, b"for someone else's device");
    elsewhere.only_device = Some(alice.device);
    assert!(send(&*store, elsewhere).await.is_empty());
    assert_eq!(depth(&*store, alice.device).await, 0);
    assert_eq!(store.total_queued().await.unwrap(), 1);
}

/// Retrying a send returns the copies already queued; the key is (device, sender account,
/// message id), so a device added in between gets a fresh copy.
pub async fn enqueue_is_idempotent<S: Store>(store: Arc<S>) {
    let bob = register(&*store, 1, None).await;
    let d2 = link(&*store, bob.account, 1).await;
    let alice = register(&*store, 2, None).await;
    let carol = register(&*store, 3, None).await;

    let first = send(&*store, message(bob.account, &alice, 1, b"hello")).await;
    let mut retry = message(bob.account, &alice, 1, b"hello");
    retry.received_at = T0 + 10;
    assert_eq!(send(&*store, retry.clone()).await, first, "retry returns the stored copies");
    assert_eq!(store.total_queued().await.unwrap(), 2);

    let other_id = send(&*store, message(bob.account, &alice, 2, b"hello")).await;
    assert_eq!(other_id.len(), 2);
    let other_sender = send(&*store, message(bob.account, &carol, 1, b"hello")).await;
    assert_eq!(other_sender.len(), 2, "same message id from another sender is another message");
    assert_eq!(store.total_queued().await.unwrap(), 6);

    let d3 = link(&*store, bob.account, 2).await;
    let again = send(&*store, retry).await;
    assert_eq!(again.len(), 3);
    assert_eq!(&again[..2], &first[..]);
    assert_eq!(again[2].device, d3);
    assert!(again[2].id > first[1].id);
    assert_eq!(depth(&*store, bob.device).await, 3);
    assert_eq!(depth(&*store, d2).await, 3);
    assert_eq!(depth(&*store, d3).await, 1);
}

/// Unknown recipient: `NoSuchAccount`. An account without devices queues nothing.
pub async fn enqueue_unknown_or_deviceless_recipient<S: Store>(store: Arc<S>) {
    let alice = register(&*store, 1, None).await;
    let r =
        store.enqueue(message(AccountId(987_654_321), &alice, 1, b"x"), QueueLimits::whole(MAX_QUEUE)).await;
    assert!(matches!(r, Err(StoreError::NoSuchAccount)), "{r:?}");
    let r = store.enqueue(message(AccountId(u64::MAX), &alice, 1, b"x"), QueueLimits::whole(MAX_QUEUE)).await;
    assert!(matches!(r, Err(StoreError::NoSuchAccount)), "{r:?}");

    let bob = register(&*store, 2, None).await;
    store.revoke_device(bob.account, bob.device).await.unwrap();
    let copies = send(&*store, message(bob.account, &alice, 1, b"x")).await;
    assert!(copies.is_empty());
    assert_eq!(store.total_queued().await.unwrap(), 0);
}

/// If any device's queue is full the whole send fails and no device gets a copy.
/// The label on a copy is the sender's at the time of sending, read by the store.
pub async fn copies_carry_the_senders_current_label<S: Store>(store: Arc<S>) {
    let bob = register(&*store, 1, None).await;
    let alice = register(&*store, 2, Some("alice")).await;
    let first = send(&*store, message(bob.account, &alice, 1, b"x")).await;
    assert_eq!(first[0].sender_label, "@alice");
    store.set_username(alice.account, None).await.unwrap();
    let second = send(&*store, message(bob.account, &alice, 2, b"x")).await;
    assert_eq!(second[0].sender_label, phone(2).as_e164(), "no stale @alice");
}

/// The queue limit counts what is queued now: expired and purged messages free their slots.
pub async fn expiry_frees_queue_space<S: Store>(store: Arc<S>) {
    const MAX: u32 = 2;
    let bob = register(&*store, 1, None).await;
    let alice = register(&*store, 2, None).await;
    for id in 0..MAX {
        let mut msg = message(bob.account, &alice, id, b"x");
        msg.expires_at = T0 + 1;
        store.enqueue(msg, QueueLimits::whole(MAX)).await.unwrap();
    }
    let full = store.enqueue(message(bob.account, &alice, 10, b"x"), QueueLimits::whole(MAX)).await;
    assert!(matches!(full, Err(StoreError::QueueFull { .. })), "{full:?}");
    let purged = store.purge_expired(T0 + 2, HOUR).await.unwrap();
    assert_eq!(purged.messages, u64::from(MAX));
    assert_eq!(depth(&*store, bob.device).await, 0);
    let copies =
        store.enqueue(message(bob.account, &alice, 10, b"x"), QueueLimits::whole(MAX)).await.unwrap();
    assert_eq!(copies.len(), 1, "purging made room again");
}

pub async fn queue_full_inserts_nothing<S: Store>(store: Arc<S>) {
    const MAX: u32 = 3;
    let bob = register(&*store, 1, None).await;
    let tablet = link(&*store, bob.account, 1).await;
    let alice = register(&*store, 2, None).await;
    for id in 0..MAX {
        store.enqueue(message(bob.account, &alice, id, b"x"), QueueLimits::whole(MAX)).await.unwrap();
    }
    // Empty the first device's queue so only the later one is full.
    let acked = store.ack(bob.device, &ids(&fetch_all(&*store, bob.device).await)).await.unwrap();
    assert_eq!(acked, u64::from(MAX));

    let r = store.enqueue(message(bob.account, &alice, 100, b"x"), QueueLimits::whole(MAX)).await;
    assert!(matches!(r, Err(StoreError::QueueFull { max: MAX })), "{r:?}");
    assert_eq!(depth(&*store, bob.device).await, 0, "nothing inserted for the other device");
    assert_eq!(depth(&*store, tablet).await, u64::from(MAX));
    assert_eq!(store.total_queued().await.unwrap(), u64::from(MAX));

    // A retry of a message the full device already holds is not refused for that device.
    let retry = store.enqueue(message(bob.account, &alice, 0, b"x"), QueueLimits::whole(MAX)).await.unwrap();
    assert_eq!(retry.len(), 2);

    let oldest = fetch_all(&*store, tablet).await[0].id;
    store.ack(tablet, &[oldest]).await.unwrap();
    let copies =
        store.enqueue(message(bob.account, &alice, 100, b"x"), QueueLimits::whole(MAX)).await.unwrap();
    assert_eq!(copies.len(), 2);
}

/// One sender fills at most its share of a device's queue: a stranger's flood leaves room for
/// everyone else, and the device's own account is not limited by the share.
pub async fn a_sender_fills_only_its_share<S: Store>(store: Arc<S>) {
    let limits = QueueLimits { per_device: 10, per_sender: 3 };
    let bob = register(&*store, 1, None).await;
    let stranger = register(&*store, 2, None).await;
    let friend = register(&*store, 3, None).await;
    for id in 0..3 {
        store.enqueue(message(bob.account, &stranger, id, b"spam"), limits).await.unwrap();
    }
    let r = store.enqueue(message(bob.account, &stranger, 3, b"spam"), limits).await;
    assert!(matches!(r, Err(StoreError::SenderShareFull { max: 3 })), "{r:?}");
    assert_eq!(depth(&*store, bob.device).await, 3, "the refused one was not queued");
    // A retry of a message already queued is not refused.
    assert_eq!(store.enqueue(message(bob.account, &stranger, 0, b"spam"), limits).await.unwrap().len(), 1);
    // A friend still gets through, and a group message from the stranger is skipped and
    // counted, not lost silently.
    assert_eq!(store.enqueue(message(bob.account, &friend, 1, b"hi"), limits).await.unwrap().len(), 1);
    let g = group_of(&stranger, 1);
    store.commit_group(commit(&g, &stranger, 0, &[friend.device], &[], 1)).await.unwrap();
    // Invitations count against the share too: adding Bob is refused, and changes nothing.
    let mut invite = commit(&g, &stranger, 1, &[bob.device], &[], 2);
    invite.max_per_sender = limits.per_sender;
    let r = store.commit_group(invite).await;
    assert!(matches!(r, Err(StoreError::SenderShareFull { max: 3 })), "{r:?}");
    assert_eq!(store.group_state(&g).await.unwrap().unwrap().epoch, 1, "the refused commit moved nothing");
    assert_eq!(depth(&*store, bob.device).await, 4);
    // An invitation with room in the share goes through (the friend's share is empty).
    let fg = group_of(&friend, 2);
    let mut friendly = commit(&fg, &friend, 0, &[bob.device], &[], 3);
    friendly.max_per_sender = limits.per_sender;
    store.commit_group(friendly).await.unwrap();
    // A group message from the stranger to a full share is skipped and counted.
    store.commit_group(commit(&g, &stranger, 1, &[bob.device], &[], 4)).await.unwrap();
    let sent = store.send_group(group_message(&g, &stranger, 9, b"more"), limits).await.unwrap();
    assert_eq!((sent.copies.len(), sent.skipped), (1, 1));
    // The device's own account has no share (a note to self, another device of the user):
    // four of its own, past the share of three, fill the queue to its ten.
    for id in 0..4 {
        store.enqueue(message(bob.account, &bob, 100 + id, b"mine"), limits).await.unwrap();
    }
    // Acknowledged messages free the share.
    let from_stranger: Vec<ServerMessageId> = fetch_all(&*store, bob.device)
        .await
        .iter()
        .filter(|m| m.sender_account == stranger.account)
        .map(|m| m.id)
        .collect();
    store.ack(bob.device, &from_stranger).await.unwrap();
    assert_eq!(store.enqueue(message(bob.account, &stranger, 50, b"again"), limits).await.unwrap().len(), 1);
}

/// Fetch returns unexpired messages with id > after, ascending, at most `limit`.
pub async fn fetch_after_limit_and_expiry<S: Store>(store: Arc<S>) {
    let bob = register(&*store, 1, None).await;
    let alice = register(&*store, 2, None).await;
    let mut sent = Vec::new();
    for n in 0..5u32 {
        let mut msg = message(bob.account, &alice, n, &n.to_be_bytes());
        if n == 2 {
            msg.expires_at = T0 + 1;
        }
        sent.push(send(&*store, msg).await[0].clone());
    }
    assert!(sent.windows(2).all(|w| w[0].id < w[1].id), "ids increase");

    let d = bob.device;
    assert_eq!(store.fetch_queue(d, None, T0, FETCH_ALL).await.unwrap(), sent);
    assert_eq!(store.fetch_queue(d, None, T0, 2).await.unwrap(), sent[..2].to_vec());
    assert_eq!(store.fetch_queue(d, Some(sent[1].id), T0, 2).await.unwrap(), sent[2..4].to_vec());
    assert_eq!(store.fetch_queue(d, Some(sent[4].id), T0, FETCH_ALL).await.unwrap(), vec![]);
    assert_eq!(store.fetch_queue(d, None, T0, 0).await.unwrap(), vec![]);
    assert_eq!(store.fetch_queue(d, Some(ServerMessageId(u64::MAX)), T0, 10).await.unwrap(), vec![]);

    let later = store.fetch_queue(d, None, T0 + 1, FETCH_ALL).await.unwrap();
    assert_eq!(ids(&later), ids(&[sent[0].clone(), sent[1].clone(), sent[3].clone(), sent[4].clone()]));
    let later = store.fetch_queue(d, Some(sent[1].id), T0 + 1, 1).await.unwrap();
    assert_eq!(later, vec![sent[3].clone()], "limit counts unexpired messages only");
    assert!(store.fetch_queue(d, None, T0 + DAY, FETCH_ALL).await.unwrap().is_empty());
    assert!(store.fetch_queue(alice.device, None, T0, FETCH_ALL).await.unwrap().is_empty());
    assert!(store.fetch_queue(DeviceId(u64::MAX), None, T0, FETCH_ALL).await.unwrap().is_empty());
}

/// Ack deletes only the calling device's messages and reports how many; repeating it is fine.
pub async fn ack_only_deletes_own_messages<S: Store>(store: Arc<S>) {
    let bob = register(&*store, 1, None).await;
    let tablet = link(&*store, bob.account, 1).await;
    let alice = register(&*store, 2, None).await;
    send(&*store, message(bob.account, &alice, 1, b"1")).await;
    send(&*store, message(bob.account, &alice, 2, b"2")).await;
    let phone_ids = ids(&fetch_all(&*store, bob.device).await);
    let tablet_ids = ids(&fetch_all(&*store, tablet).await);

    assert_eq!(store.ack(bob.device, &tablet_ids).await.unwrap(), 0, "another device's ids");
    assert_eq!(depth(&*store, tablet).await, 2);
    assert_eq!(store.ack(bob.device, &[]).await.unwrap(), 0);

    let mut with_junk = phone_ids.clone();
    with_junk.push(ServerMessageId(u64::MAX));
    with_junk.push(ServerMessageId(987_654_321));
    assert_eq!(store.ack(bob.device, &with_junk).await.unwrap(), 2);
    assert_eq!(store.ack(bob.device, &phone_ids).await.unwrap(), 0, "second ack");
    assert_eq!(depth(&*store, bob.device).await, 0);
    assert_eq!(depth(&*store, tablet).await, 2);
    assert_eq!(store.ack(tablet, &tablet_ids[..1]).await.unwrap(), 1);
    assert_eq!(fetch_all(&*store, tablet).await[0].id, tablet_ids[1]);
}

/// Depth per device and in total.
pub async fn queue_counts<S: Store>(store: Arc<S>) {
    assert_eq!(store.total_queued().await.unwrap(), 0);
    let bob = register(&*store, 1, None).await;
    let tablet = link(&*store, bob.account, 1).await;
    let carol = register(&*store, 3, None).await;
    let alice = register(&*store, 2, None).await;
    for n in 0..4 {
        send(&*store, message(bob.account, &alice, n, b"x")).await;
    }
    send(&*store, message(carol.account, &alice, 0, b"x")).await;
    assert_eq!(depth(&*store, bob.device).await, 4);
    assert_eq!(depth(&*store, tablet).await, 4);
    assert_eq!(depth(&*store, carol.device).await, 1);
    assert_eq!(depth(&*store, alice.device).await, 0);
    assert_eq!(depth(&*store, DeviceId(987_654_321)).await, 0);
    assert_eq!(depth(&*store, DeviceId(u64::MAX)).await, 0);
    assert_eq!(store.total_queued().await.unwrap(), 9);
}

/// Purge removes what expired at or before `now`, and outbox entries older than the TTL.
pub async fn purge_removes_expired_rows<S: Store>(store: Arc<S>) {
    let bob = register(&*store, 1, None).await;
    let alice = register(&*store, 2, None).await;
    let mut short = message(bob.account, &alice, 1, b"short");
    short.expires_at = T0 + 10;
    send(&*store, short).await;
    send(&*store, message(bob.account, &alice, 2, b"long")).await;

    store.begin_registration(pending(10, code(10), None, T0 + 10)).await.unwrap();
    store.begin_registration(pending(11, code(11), None, T0 + HOUR)).await.unwrap();
    begin_link(&*store, 10, T0 + 10).await;
    begin_link(&*store, 11, T0 + HOUR).await;
    let entry =
        |created_at| OutboxEntry { phone: phone(10).as_e164().to_owned(), text: "code".into(), created_at };
    store.outbox_push(entry(T0 - 200)).await.unwrap();
    store.outbox_push(entry(T0)).await.unwrap();

    let purged = store.purge_expired(T0 + 10, 100).await.unwrap();
    assert_eq!(purged, Purged { messages: 1, registrations: 1, links: 1, outbox: 1, calls: 0 });
    assert_eq!(store.purge_expired(T0 + 10, 100).await.unwrap(), Purged::default());
    // A TTL longer than the epoch offset removes nothing instead of overflowing.
    assert_eq!(store.purge_expired(T0 + 10, u64::MAX).await.unwrap(), Purged::default());

    let left = fetch_all(&*store, bob.device).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].body, b"long");
    assert_eq!(store.outbox_list().await.unwrap(), vec![entry(T0)]);
    let r = store.complete_registration(&phone(10), code(10), new_device("p", 10), T0, MAX_ATTEMPTS).await;
    assert!(matches!(r, Err(StoreError::NoPendingCode)), "{r:?}");
    store.complete_registration(&phone(11), code(11), new_device("p", 11), T0, MAX_ATTEMPTS).await.unwrap();
    let r = store.complete_link(link_code(10), bob.device, bob.account, T0, MAX_DEVICES).await;
    assert!(matches!(r, Err(StoreError::NoSuchLink)), "{r:?}");
    store.complete_link(link_code(11), bob.device, bob.account, T0, MAX_DEVICES).await.unwrap();

    let purged = store.purge_expired(T0 + 2 * DAY, 0).await.unwrap();
    assert_eq!(purged, Purged { messages: 1, registrations: 0, links: 0, outbox: 1, calls: 0 });
    assert_eq!(store.total_queued().await.unwrap(), 0);
}

/// The outbox lists entries oldest first, ties in insertion order.
pub async fn outbox_lists_oldest_first<S: Store>(store: Arc<S>) {
    assert!(store.outbox_list().await.unwrap().is_empty());
    let entry = |n: u32, created_at| OutboxEntry {
        phone: phone(n).as_e164().to_owned(),
        text: format!("Your Rampart code is {n:06}"),
        created_at,
    };
    let pushed = [entry(1, T0 + 2), entry(2, T0), entry(3, T0 + 1), entry(4, T0)];
    for e in &pushed {
        store.outbox_push(e.clone()).await.unwrap();
    }
    let expected = vec![pushed[1].clone(), pushed[3].clone(), pushed[2].clone(), pushed[0].clone()];
    assert_eq!(store.outbox_list().await.unwrap(), expected);
}

// --- concurrency ----------------------------------------------------------------------------

/// Run `racers` copies of `op` as simultaneously as possible. A warm-up round of concurrent
/// reads first makes a pooled backend open enough connections, so the racers do not end up
/// serialised behind connection set-up.
async fn race<S, T, F, Fut>(store: &Arc<S>, racers: usize, op: F) -> Vec<T>
where
    S: Store,
    T: Send + 'static,
    F: Fn(Arc<S>, usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let warm_up: Vec<_> = (0..racers)
        .map(|_| {
            let store = Arc::clone(store);
            tokio::spawn(async move { store.total_queued().await })
        })
        .collect();
    for task in warm_up {
        task.await.expect("task").expect("total_queued");
    }
    let start = Arc::new(tokio::sync::Barrier::new(racers));
    let tasks: Vec<_> = (0..racers)
        .map(|i| {
            let start = Arc::clone(&start);
            let fut = op(Arc::clone(store), i);
            tokio::spawn(async move {
                start.wait().await;
                fut.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(racers);
    for task in tasks {
        out.push(task.await.expect("task"));
    }
    out
}

/// Many tasks sending at once: every copy gets its own id and every one is delivered.
pub async fn concurrent_enqueues_get_distinct_ids<S: Store>(store: Arc<S>) {
    const SENDS: u32 = 50;
    let bob = register(&*store, 1, None).await;
    let tablet = link(&*store, bob.account, 1).await;
    let mut senders = Vec::new();
    for n in 0..5 {
        senders.push(register(&*store, 100 + n, None).await);
    }

    let results = race(&store, SENDS as usize, |store, n| {
        let msg = message(bob.account, &senders[n % senders.len()], n as u32, b"race");
        async move { store.enqueue(msg, QueueLimits::whole(MAX_QUEUE)).await }
    })
    .await;
    let mut all = BTreeSet::new();
    for copies in results {
        let copies = copies.expect("enqueue");
        assert_eq!(copies.len(), 2);
        for c in copies {
            assert!(all.insert((c.device, c.id)), "duplicate id {:?}", c.id);
        }
    }
    let distinct: BTreeSet<_> = all.iter().map(|(_, id)| *id).collect();
    assert_eq!(distinct.len(), 2 * SENDS as usize, "ids unique across devices");

    for device in [bob.device, tablet] {
        let fetched = fetch_all(&*store, device).await;
        assert_eq!(fetched.len(), SENDS as usize);
        assert!(fetched.windows(2).all(|w| w[0].id < w[1].id), "ascending");
        let expected: Vec<_> = all.iter().filter(|(d, _)| *d == device).map(|(_, id)| *id).collect();
        assert_eq!(ids(&fetched), expected);
    }
}

/// The same send retried from many tasks at once is queued once, and every retry is answered
/// with that one copy per device.
pub async fn concurrent_retries_queue_once<S: Store>(store: Arc<S>) {
    const RETRIES: usize = 10;
    let bob = register(&*store, 1, None).await;
    let tablet = link(&*store, bob.account, 1).await;
    let alice = register(&*store, 2, None).await;
    let answers = race(&store, RETRIES, |store, _| {
        let msg = message(bob.account, &alice, 7, b"once");
        async move { store.enqueue(msg, QueueLimits::whole(MAX_QUEUE)).await.expect("enqueue") }
    })
    .await;
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "every retry sees the same copies");
    assert_eq!(depth(&*store, bob.device).await, 1);
    assert_eq!(depth(&*store, tablet).await, 1);
}

/// Concurrent sends to one recipient never push a queue past its limit.
pub async fn concurrent_sends_respect_queue_limit<S: Store>(store: Arc<S>) {
    const MAX: u32 = 10;
    const SENDS: u32 = 30;
    let bob = register(&*store, 1, None).await;
    let tablet = link(&*store, bob.account, 1).await;
    let alice = register(&*store, 2, None).await;
    let results = race(&store, SENDS as usize, |store, n| {
        let msg = message(bob.account, &alice, n as u32, b"x");
        async move { store.enqueue(msg, QueueLimits::whole(MAX)).await }
    })
    .await;
    let (mut queued, mut full) = (0, 0);
    for result in results {
        match result {
            Ok(copies) => {
                assert_eq!(copies.len(), 2);
                queued += 1;
            }
            Err(StoreError::QueueFull { max: MAX }) => full += 1,
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!((queued, full), (MAX, SENDS - MAX));
    assert_eq!(depth(&*store, bob.device).await, u64::from(MAX));
    assert_eq!(depth(&*store, tablet).await, u64::from(MAX));
}

/// Several links racing for the last free device slot: exactly one wins.
pub async fn concurrent_links_race_for_last_slot<S: Store>(store: Arc<S>) {
    const RACERS: u32 = 6;
    let reg = register(&*store, 1, None).await;
    for n in 1..MAX_DEVICES - 1 {
        link(&*store, reg.account, n).await;
    }
    for n in 0..RACERS {
        begin_link(&*store, 100 + n, T0 + HOUR).await;
    }
    let results = race(&store, RACERS as usize, |store, n| async move {
        store.complete_link(link_code(100 + n as u32), reg.device, reg.account, T0, MAX_DEVICES).await
    })
    .await;
    let (mut won, mut refused) = (0, 0);
    for result in results {
        match result {
            Ok(_) => won += 1,
            Err(StoreError::TooManyDevices { max: MAX_DEVICES }) => refused += 1,
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!((won, refused), (1, RACERS - 1));
    assert_eq!(store.list_devices(reg.account).await.unwrap().len(), MAX_DEVICES as usize);
}

/// Several devices completing the same link code at once: exactly one is added.
pub async fn concurrent_use_of_one_link_code<S: Store>(store: Arc<S>) {
    const RACERS: u32 = 6;
    let reg = register(&*store, 1, None).await;
    begin_link(&*store, 1, T0 + HOUR).await;
    let results = race(&store, RACERS as usize, |store, _| async move {
        store.complete_link(link_code(1), reg.device, reg.account, T0, MAX_DEVICES).await
    })
    .await;
    let (mut won, mut refused) = (0, 0);
    for result in results {
        match result {
            Ok(_) => won += 1,
            Err(StoreError::NoSuchLink) => refused += 1,
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!((won, refused), (1, RACERS - 1));
    assert_eq!(store.list_devices(reg.account).await.unwrap().len(), 2);
}

/// Registrations of different numbers at once all succeed with distinct ids.
pub async fn concurrent_registrations<S: Store>(store: Arc<S>) {
    const N: u32 = 20;
    let results = race(&store, N as usize, |store, n| async move {
        let n = n as u32;
        register(&*store, n, Some(&format!("user{n}"))).await
    })
    .await;
    let mut accounts = BTreeSet::new();
    let mut devices = BTreeSet::new();
    for reg in results {
        assert!(accounts.insert(reg.account));
        assert!(devices.insert(reg.device));
    }
    for n in 0..N {
        let account = store.account_by_phone(&phone(n)).await.unwrap().expect("account");
        assert_eq!(store.account_by_username(&user(&format!("user{n}"))).await.unwrap(), Some(account));
    }
}

// --- end-to-end keys and groups -------------------------------------------------------------

/// A device's certificate is set once; the same bytes again are fine, different ones are not.
pub async fn certificates_are_set_once<S: Store>(store: Arc<S>) {
    let a = register(&*store, 1, None).await;
    assert_eq!(store.device_certificate(a.device).await.unwrap(), None);
    store.set_certificate(a.device, b"cert-1".to_vec()).await.unwrap();
    store.set_certificate(a.device, b"cert-1".to_vec()).await.unwrap();
    let r = store.set_certificate(a.device, b"cert-2".to_vec()).await;
    assert!(matches!(r, Err(StoreError::Forbidden(_))), "{r:?}");
    assert_eq!(store.device_certificate(a.device).await.unwrap(), Some(b"cert-1".to_vec()));
    let r = store.set_certificate(DeviceId(987_654), b"x".to_vec()).await;
    assert!(matches!(r, Err(StoreError::NoSuchDevice)), "{r:?}");
}

/// One-time packages go out once each, oldest first, then the last-resort one (repeatedly);
/// the stock is capped; a device with nothing left fails the whole claim.
pub async fn key_packages_are_handed_out_once<S: Store>(store: Arc<S>) {
    let a = register(&*store, 1, None).await;
    let b = register(&*store, 2, None).await;
    let stock = store
        .publish_key_packages(
            a.device,
            vec![b"kp1".to_vec(), b"kp2".to_vec(), b"kp3".to_vec()],
            Some(b"last".to_vec()),
            2,
        )
        .await
        .unwrap();
    assert_eq!(stock, 2, "the stock is capped");
    let first = store.claim_key_packages(&[a.device]).await.unwrap();
    assert_eq!(first, vec![(a.device, b"kp1".to_vec())]);
    let second = store.claim_key_packages(&[a.device]).await.unwrap();
    assert_eq!(second, vec![(a.device, b"kp2".to_vec())]);
    for _ in 0..2 {
        let last = store.claim_key_packages(&[a.device]).await.unwrap();
        assert_eq!(last, vec![(a.device, b"last".to_vec())]);
    }
    // A new last-resort package replaces the old one.
    assert_eq!(store.publish_key_packages(a.device, vec![], Some(b"last2".to_vec()), 10).await.unwrap(), 0);
    assert_eq!(store.claim_key_packages(&[a.device]).await.unwrap(), vec![(a.device, b"last2".to_vec())]);
    // B has none at all: claiming A's and B's together fails and takes nothing.
    store.publish_key_packages(a.device, vec![b"kp4".to_vec()], None, 10).await.unwrap();
    let r = store.claim_key_packages(&[a.device, b.device]).await;
    assert!(matches!(r, Err(StoreError::NoKeyPackage(d)) if d == b.device), "{r:?}");
    assert_eq!(store.claim_key_packages(&[a.device]).await.unwrap(), vec![(a.device, b"kp4".to_vec())]);
    // Revoking a device deletes its packages.
    store.revoke_device(a.account, a.device).await.unwrap();
    let r = store.claim_key_packages(&[a.device]).await;
    assert!(matches!(r, Err(StoreError::NoKeyPackage(_))), "{r:?}");
}

/// Account keys list every device with its certificate, and skip unknown accounts.
pub async fn account_keys_list_devices_and_certificates<S: Store>(store: Arc<S>) {
    let a = register(&*store, 1, Some("alice")).await;
    let second = link(&*store, a.account, 1).await;
    store.set_certificate(a.device, b"c1".to_vec()).await.unwrap();
    let keys = store.account_keys(&[a.account, AccountId(987_654)]).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].label, "@alice");
    assert_eq!(keys[0].devices, vec![(a.device, Some(b"c1".to_vec())), (second, None)]);
}

fn group_of(creator: &Registered, n: u8) -> GroupId {
    let mut bytes = creator.account.0.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[n; 16]);
    GroupId::from_slice(&bytes).unwrap()
}

fn commit(
    group: &GroupId,
    from: &Registered,
    epoch: u64,
    added: &[DeviceId],
    removed: &[DeviceId],
    id: u32,
) -> GroupCommitRecord {
    GroupCommitRecord {
        group: group.clone(),
        sender_account: from.account,
        sender_device: from.device,
        epoch,
        added: added.to_vec(),
        removed: removed.to_vec(),
        message_id: message_id(id),
        commit_body: format!("commit {id}").into_bytes(),
        welcome_body: (!added.is_empty()).then(|| format!("welcome {id}").into_bytes()),
        received_at: T0,
        expires_at: T0 + DAY,
        max_members: 10,
        public_state: Some(format!("state after {id}").into_bytes()),
        max_per_sender: MAX_QUEUE,
    }
}

fn group_message(group: &GroupId, from: &Registered, id: u32, body: &[u8]) -> GroupMessage {
    GroupMessage {
        group: group.clone(),
        sender_account: from.account,
        sender_device: from.device,
        message_id: message_id(id),
        body: body.to_vec(),
        received_at: T0,
        expires_at: T0 + DAY,
    }
}

fn members(state: &GroupState) -> Vec<DeviceId> {
    state.members.iter().map(|(d, _)| *d).collect()
}

/// The creator's first commit, in epoch 0, creates the group with its public state; the
/// Welcome goes to the added devices only; nobody else can create a group under the creator's id.
pub async fn first_commit_creates_the_group<S: Store>(store: Arc<S>) {
    let a = register(&*store, 1, None).await;
    let b = register(&*store, 2, None).await;
    let g = group_of(&a, 1);
    assert_eq!(store.group_state(&g).await.unwrap(), None);
    let r = store.commit_group(commit(&g, &b, 0, &[a.device], &[], 1)).await;
    assert!(matches!(r, Err(StoreError::Forbidden(_))), "{r:?}");
    let r = store.commit_group(commit(&g, &a, 3, &[b.device], &[], 1)).await;
    assert!(matches!(r, Err(StoreError::NoSuchGroup)), "{r:?}");
    let mut stateless = commit(&g, &a, 0, &[b.device], &[], 1);
    stateless.public_state = None;
    let r = store.commit_group(stateless).await;
    assert!(matches!(r, Err(StoreError::Forbidden(_))), "a group without public state: {r:?}");
    assert_eq!(store.group_state(&g).await.unwrap(), None);

    let (epoch, copies) = store.commit_group(commit(&g, &a, 0, &[b.device], &[], 1)).await.unwrap();
    assert_eq!(epoch, 1);
    assert_eq!(copies.len(), 1);
    assert_eq!((copies[0].device, copies[0].body.as_slice()), (b.device, &b"welcome 1"[..]));
    let state = store.group_state(&g).await.unwrap().unwrap();
    assert_eq!(state.epoch, 1);
    assert_eq!(members(&state), vec![a.device, b.device]);
    assert_eq!(state.public_state.as_deref(), Some(&b"state after 1"[..]));
    assert_eq!(fetch_all(&*store, b.device).await.len(), 1);
    assert!(fetch_all(&*store, a.device).await.is_empty());
}

/// Exactly one commit per epoch: the second commit made in the same epoch is stale.
pub async fn one_commit_per_epoch<S: Store>(store: Arc<S>) {
    let a = register(&*store, 1, None).await;
    let b = register(&*store, 2, None).await;
    let c = register(&*store, 3, None).await;
    let g = group_of(&a, 1);
    store.commit_group(commit(&g, &a, 0, &[b.device], &[], 1)).await.unwrap();
    let (epoch, copies) = store.commit_group(commit(&g, &b, 1, &[], &[], 2)).await.unwrap();
    assert_eq!(epoch, 2);
    assert_eq!(copies.iter().map(|c| c.device).collect::<Vec<_>>(), vec![a.device]);
    let r = store.commit_group(commit(&g, &a, 1, &[c.device], &[], 3)).await;
    assert!(matches!(r, Err(StoreError::StaleEpoch { current: 2 })), "{r:?}");
    let state = store.group_state(&g).await.unwrap().unwrap();
    assert_eq!(members(&state), vec![a.device, b.device]);
    // The public state is the winner's, the one that belongs to the stored epoch.
    assert_eq!(state.public_state.as_deref(), Some(&b"state after 2"[..]));
    let mut stateless = commit(&g, &b, 2, &[], &[], 5);
    stateless.public_state = None;
    let r = store.commit_group(stateless).await;
    assert!(matches!(r, Err(StoreError::Forbidden(_))), "a commit that drops the public state: {r:?}");
    assert!(fetch_all(&*store, c.device).await.is_empty(), "a refused commit's Welcome was queued");
    let r = store.commit_group(commit(&g, &c, 2, &[], &[], 4)).await;
    assert!(matches!(r, Err(StoreError::NotMember)), "{r:?}");
}

/// Members add their own new devices; only the creator adds new people or removes others.
pub async fn commit_rules_for_members_and_creators<S: Store>(store: Arc<S>) {
    let a = register(&*store, 1, None).await;
    let b = register(&*store, 2, None).await;
    let c = register(&*store, 3, None).await;
    let b2 = link(&*store, b.account, 1).await;
    let g = group_of(&a, 1);
    store.commit_group(commit(&g, &a, 0, &[b.device], &[], 1)).await.unwrap();
    let r = store.commit_group(commit(&g, &b, 1, &[c.device], &[], 2)).await;
    assert!(matches!(r, Err(StoreError::Forbidden(_))), "{r:?}");
    let r = store.commit_group(commit(&g, &b, 1, &[], &[a.device], 2)).await;
    assert!(matches!(r, Err(StoreError::Forbidden(_))), "{r:?}");
    let r = store.commit_group(commit(&g, &b, 1, &[DeviceId(987_654)], &[], 2)).await;
    assert!(matches!(r, Err(StoreError::NoSuchDevice)), "{r:?}");
    let r = store.commit_group(commit(&g, &b, 1, &[a.device], &[], 2)).await;
    assert!(matches!(r, Err(StoreError::Forbidden(_))), "{r:?}");
    let r = store.commit_group(commit(&g, &b, 1, &[], &[b.device], 2)).await;
    assert!(matches!(r, Err(StoreError::Forbidden(_))), "{r:?}");
    let mut no_welcome = commit(&g, &b, 1, &[b2], &[], 2);
    no_welcome.welcome_body = None;
    assert!(matches!(store.commit_group(no_welcome).await, Err(StoreError::Forbidden(_))));
    store.commit_group(commit(&g, &b, 1, &[b2], &[], 2)).await.unwrap();
    store.commit_group(commit(&g, &a, 2, &[c.device], &[b2], 3)).await.unwrap();
    let state = store.group_state(&g).await.unwrap().unwrap();
    assert_eq!((state.epoch, members(&state)), (3, vec![a.device, b.device, c.device]));
    let mut big = commit(&g, &a, 3, &[b2], &[], 4);
    big.max_members = 3;
    let r = store.commit_group(big).await;
    assert!(matches!(r, Err(StoreError::TooManyMembers { max: 3 })), "{r:?}");
}

/// Application messages reach every member device but the sender's; non-members cannot send;
/// a retry is queued once.
pub async fn group_messages_reach_other_members_only<S: Store>(store: Arc<S>) {
    let a = register(&*store, 1, None).await;
    let b = register(&*store, 2, None).await;
    let c = register(&*store, 3, None).await;
    let a2 = link(&*store, a.account, 1).await;
    let g = group_of(&a, 1);
    store.commit_group(commit(&g, &a, 0, &[b.device, a2], &[], 1)).await.unwrap();
    let copies = store
        .send_group(group_message(&g, &a, 5, b"ciphertext"), QueueLimits::whole(MAX_QUEUE))
        .await
        .unwrap()
        .copies;
    let mut to: Vec<DeviceId> = copies.iter().map(|c| c.device).collect();
    to.sort();
    assert_eq!(to, vec![b.device, a2]);
    let again = store
        .send_group(group_message(&g, &a, 5, b"ciphertext"), QueueLimits::whole(MAX_QUEUE))
        .await
        .unwrap()
        .copies;
    assert_eq!(ids(&again).len(), 2);
    assert_eq!(fetch_all(&*store, b.device).await.len(), 2, "welcome + one copy");
    let r = store.send_group(group_message(&g, &c, 6, b"x"), QueueLimits::whole(MAX_QUEUE)).await;
    assert!(matches!(r, Err(StoreError::NotMember)), "{r:?}");
    let r =
        store.send_group(group_message(&group_of(&a, 9), &a, 7, b"x"), QueueLimits::whole(MAX_QUEUE)).await;
    assert!(matches!(r, Err(StoreError::NoSuchGroup)), "{r:?}");
}

/// One full queue does not stop a group message for everyone else.
pub async fn group_messages_skip_full_queues<S: Store>(store: Arc<S>) {
    let a = register(&*store, 1, None).await;
    let b = register(&*store, 2, None).await;
    let c = register(&*store, 3, None).await;
    let g = group_of(&a, 1);
    store.commit_group(commit(&g, &a, 0, &[b.device, c.device], &[], 1)).await.unwrap();
    for i in 0..2 {
        store.enqueue(message(c.account, &a, 100 + i, b"fill"), QueueLimits::whole(3)).await.unwrap();
    }
    assert_eq!(depth(&*store, c.device).await, 3);
    let sent = store.send_group(group_message(&g, &a, 5, b"x"), QueueLimits::whole(3)).await.unwrap();
    assert_eq!(sent.copies.iter().map(|c| c.device).collect::<Vec<_>>(), vec![b.device]);
    assert_eq!(sent.skipped, 1, "the sender is told one device missed it");
}

/// A block stops direct messages, group messages and invitations from the blocked account to
/// the blocker (and only to the blocker); commits of a group both share still pass; lifting
/// the block lets messages through again.
pub async fn blocked_senders_reach_nothing<S: Store>(store: Arc<S>) {
    let bob = register(&*store, 1, None).await;
    let spammer = register(&*store, 2, None).await;
    let carol = register(&*store, 3, None).await;
    // A group all three share, made before the block.
    let shared = group_of(&carol, 1);
    store.commit_group(commit(&shared, &carol, 0, &[bob.device, spammer.device], &[], 1)).await.unwrap();
    store.set_block(bob.account, spammer.account, true, T0).await.unwrap();
    store.set_block(bob.account, spammer.account, true, T0).await.unwrap();
    assert_eq!(store.blocked_accounts(bob.account).await.unwrap(), vec![spammer.account]);
    assert!(store.blocked_accounts(spammer.account).await.unwrap().is_empty(), "a block is one-way");
    let before = depth(&*store, bob.device).await;

    let copies =
        store.enqueue(message(bob.account, &spammer, 1, b"hi"), QueueLimits::whole(MAX_QUEUE)).await.unwrap();
    assert!(copies.is_empty());
    let sent = store
        .send_group(group_message(&shared, &spammer, 2, b"hi all"), QueueLimits::whole(MAX_QUEUE))
        .await
        .unwrap();
    assert_eq!(sent.copies.iter().map(|c| c.device).collect::<Vec<_>>(), vec![carol.device]);
    assert_eq!(sent.skipped, 0, "a block is not reported as a full queue");
    let own = group_of(&spammer, 2);
    let r = store.commit_group(commit(&own, &spammer, 0, &[bob.device], &[], 3)).await;
    assert!(matches!(r, Err(StoreError::Forbidden(_))), "{r:?}");
    assert_eq!(depth(&*store, bob.device).await, before, "nothing from the blocked account was queued");
    // Others still reach bob, and the blocked account still reaches others.
    assert_eq!(
        store
            .enqueue(message(bob.account, &carol, 4, b"ok"), QueueLimits::whole(MAX_QUEUE))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .enqueue(message(carol.account, &spammer, 5, b"ok"), QueueLimits::whole(MAX_QUEUE))
            .await
            .unwrap()
            .len(),
        1
    );

    store.set_block(bob.account, spammer.account, false, T0).await.unwrap();
    store.set_block(bob.account, spammer.account, false, T0).await.unwrap();
    assert!(store.blocked_accounts(bob.account).await.unwrap().is_empty());
    let copies = store
        .enqueue(message(bob.account, &spammer, 6, b"sorry"), QueueLimits::whole(MAX_QUEUE))
        .await
        .unwrap();
    assert_eq!(copies.len(), 1);
}

/// Leaving drops the devices and tells the rest; a revoked device leaves every group.
pub async fn leaving_and_revoking_drop_membership<S: Store>(store: Arc<S>) {
    let a = register(&*store, 1, None).await;
    let b = register(&*store, 2, None).await;
    let c = register(&*store, 3, None).await;
    let g = group_of(&a, 1);
    store.commit_group(commit(&g, &a, 0, &[b.device, c.device], &[], 1)).await.unwrap();
    let copies = store.leave_group(&[c.device], group_message(&g, &c, 9, b"left")).await.unwrap();
    let mut to: Vec<DeviceId> = copies.iter().map(|c| c.device).collect();
    to.sort();
    assert_eq!(to, vec![a.device, b.device]);
    assert_eq!(members(&store.group_state(&g).await.unwrap().unwrap()), vec![a.device, b.device]);
    let r = store.leave_group(&[c.device], group_message(&g, &c, 10, b"left")).await;
    assert!(matches!(r, Err(StoreError::NotMember)), "{r:?}");
    // The departed device may be removed by anyone; the epoch moves on.
    let (epoch, _) = store.commit_group(commit(&g, &b, 1, &[], &[c.device], 2)).await.unwrap();
    assert_eq!(epoch, 2);
    store.revoke_device(b.account, b.device).await.unwrap();
    assert_eq!(members(&store.group_state(&g).await.unwrap().unwrap()), vec![a.device]);
}

/// Many members commit in the same epoch at once: exactly one wins.
pub async fn concurrent_commits_one_wins<S: Store>(store: Arc<S>) {
    let a = register(&*store, 1, None).await;
    let mut others = Vec::new();
    for n in 2..8 {
        others.push(register(&*store, n, None).await);
    }
    let g = group_of(&a, 1);
    let mut first = commit(&g, &a, 0, &others.iter().map(|o| o.device).collect::<Vec<_>>(), &[], 1);
    first.max_members = 100;
    store.commit_group(first).await.unwrap();
    let mut tasks = Vec::new();
    for (i, o) in others.into_iter().enumerate() {
        let store = store.clone();
        let g = g.clone();
        tasks.push(tokio::spawn(async move {
            store.commit_group(commit(&g, &o, 1, &[], &[], 10 + i as u32)).await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok((2, _)) => won += 1,
            Err(StoreError::StaleEpoch { current: 2 }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(store.group_state(&g).await.unwrap().unwrap().epoch, 2);
}

// --- calls ----------------------------------------------------------------------------------

const RING: u64 = 60_000;

fn call_id(n: u32) -> CallId {
    let mut b = [0xca; 16];
    b[12..].copy_from_slice(&n.to_be_bytes());
    CallId(b)
}

/// Call `n` from `caller` to `callee`, placed at T0 and ringing for a minute.
fn call_record(n: u32, caller: &Registered, callee: &Registered) -> CallRecord {
    CallRecord {
        call: call_id(n),
        caller: caller.account,
        caller_device: caller.device,
        callee: callee.account,
        group: group_of(caller, 0x77),
        offer: format!("offer {n}").into_bytes(),
        created_at: T0,
        expires_at: T0 + RING,
        answered_by: None,
        ended: false,
    }
}

async fn place<S: Store>(store: &S, call: CallRecord) {
    assert!(store.create_call(call).await.unwrap(), "the call id was free");
}

/// A call id is taken once: a second record with the same id changes nothing. Unknown ids
/// find nothing; unknown accounts cannot place or receive calls.
pub async fn calls_are_created_once<S: Store>(store: Arc<S>) {
    let a = register(&*store, 1, None).await;
    let b = register(&*store, 2, None).await;
    assert_eq!(store.call(&call_id(1)).await.unwrap(), None);
    let first = call_record(1, &a, &b);
    assert!(store.create_call(first.clone()).await.unwrap());
    assert_eq!(store.call(&call_id(1)).await.unwrap(), Some(first.clone()));

    let mut other = call_record(1, &b, &a);
    other.offer = b"another offer".to_vec();
    other.created_at = T0 + 5;
    assert!(!store.create_call(other).await.unwrap());
    assert_eq!(store.call(&call_id(1)).await.unwrap(), Some(first));
    assert_eq!(store.call(&call_id(2)).await.unwrap(), None);

    let mut ghost = call_record(3, &a, &b);
    ghost.callee = AccountId(987_654_321);
    let r = store.create_call(ghost).await;
    assert!(matches!(r, Err(StoreError::NoSuchAccount)), "{r:?}");
    let mut ghost = call_record(4, &a, &b);
    ghost.caller = AccountId(u64::MAX);
    let r = store.create_call(ghost).await;
    assert!(matches!(r, Err(StoreError::NoSuchAccount)), "{r:?}");
    assert_eq!(store.call(&call_id(3)).await.unwrap(), None);
    assert_eq!(store.call(&call_id(4)).await.unwrap(), None);
}

/// The first callee device to answer gets the call (with the offer); another device then gets
/// nothing, while the answering device may ask again (a retry) and still gets it.
pub async fn a_call_is_answered_by_one_device<S: Store>(store: Arc<S>) {
    let a = register(&*store, 1, None).await;
    let b = register(&*store, 2, None).await;
    let tablet = link(&*store, b.account, 1).await;
    let placed = call_record(1, &a, &b);
    place(&*store, placed.clone()).await;

    let answered = store.answer_call(&call_id(1), tablet, T0 + 1).await.unwrap();
    let expected = CallRecord { answered_by: Some(tablet), ..placed };
    assert_eq!(answered, Some(expected.clone()));
    assert_eq!(store.answer_call(&call_id(1), b.device, T0 + 2).await.unwrap(), None);
    assert_eq!(store.answer_call(&call_id(1), tablet, T0 + 3).await.unwrap(), Some(expected.clone()));
    assert_eq!(store.call(&call_id(1)).await.unwrap(), Some(expected));

    assert_eq!(store.answer_call(&call_id(2), b.device, T0).await.unwrap(), None);
    assert_eq!(store.answer_call(&call_id(1), DeviceId(u64::MAX), T0).await.unwrap(), None);
}

/// Every device of the callee answering at once: exactly one gets the call.
pub async fn concurrent_answers_one_wins<S: Store>(store: Arc<S>) {
    let a = register(&*store, 1, None).await;
    let b = register(&*store, 2, None).await;
    let mut devices = vec![b.device];
    for n in 1..MAX_DEVICES {
        devices.push(link(&*store, b.account, n).await);
    }
    for round in 0..4u32 {
        place(&*store, call_record(round, &a, &b)).await;
        let devices = devices.clone();
        let results = race(&store, devices.len(), move |store, i| {
            let device = devices[i];
            async move { (device, store.answer_call(&call_id(round), device, T0 + 1).await.unwrap()) }
        })
        .await;
        let winners: Vec<DeviceId> = results
            .iter()
            .filter_map(|(d, r)| r.as_ref().map(|r| (*d, r)))
            .map(|(d, r)| {
                assert_eq!(r.answered_by, Some(d));
                d
            })
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let stored = store.call(&call_id(round)).await.unwrap().unwrap();
        assert_eq!(stored.answered_by, Some(winners[0]));
    }
}

/// A call stops ringing at `expires_at`: answering then (or later) gets nothing.
pub async fn expired_calls_cannot_be_answered<S: Store>(store: Arc<S>) {
    let a = register(&*store, 1, None).await;
    let b = register(&*store, 2, None).await;
    place(&*store, call_record(1, &a, &b)).await;
    place(&*store, call_record(2, &a, &b)).await;
    assert_eq!(store.answer_call(&call_id(1), b.device, T0 + RING).await.unwrap(), None);
    assert_eq!(store.answer_call(&call_id(1), b.device, T0 + RING + HOUR).await.unwrap(), None);
    assert_eq!(store.call(&call_id(1)).await.unwrap().unwrap().answered_by, None);
    let answered = store.answer_call(&call_id(2), b.device, T0 + RING - 1).await.unwrap().unwrap();
    assert_eq!(answered.answered_by, Some(b.device));
    // Once the ring time is over, even the device that answered gets nothing more.
    assert_eq!(store.answer_call(&call_id(2), b.device, T0 + RING).await.unwrap(), None);
}

/// Ending a call empties the held offer; an ended call cannot be answered, not even by the
/// device that answered it. Ending is idempotent and unknown ids are fine.
pub async fn ended_calls_drop_the_offer<S: Store>(store: Arc<S>) {
    let a = register(&*store, 1, None).await;
    let b = register(&*store, 2, None).await;
    let placed = call_record(1, &a, &b);
    place(&*store, placed.clone()).await;
    store.end_call(&call_id(1)).await.unwrap();
    let ended = CallRecord { offer: Vec::new(), ended: true, ..placed };
    assert_eq!(store.call(&call_id(1)).await.unwrap(), Some(ended.clone()));
    assert_eq!(store.answer_call(&call_id(1), b.device, T0 + 1).await.unwrap(), None);
    store.end_call(&call_id(1)).await.unwrap();
    assert_eq!(store.call(&call_id(1)).await.unwrap(), Some(ended));
    store.end_call(&call_id(99)).await.unwrap();
    assert_eq!(store.call(&call_id(99)).await.unwrap(), None);

    place(&*store, call_record(2, &a, &b)).await;
    assert!(store.answer_call(&call_id(2), b.device, T0 + 1).await.unwrap().is_some());
    store.end_call(&call_id(2)).await.unwrap();
    assert_eq!(store.answer_call(&call_id(2), b.device, T0 + 2).await.unwrap(), None);
    let stored = store.call(&call_id(2)).await.unwrap().unwrap();
    assert_eq!((stored.answered_by, stored.ended, stored.offer), (Some(b.device), true, Vec::new()));
    // A new call with an ended one's id is still refused.
    assert!(!store.create_call(call_record(2, &a, &b)).await.unwrap());
}

/// Misfits count per account and reason, listed by reason; `last_at` keeps the latest time.
pub async fn misfits_are_counted_per_reason<S: Store>(store: Arc<S>) {
    let a = register(&*store, 1, None).await;
    let b = register(&*store, 2, None).await;
    assert!(store.call_misfits(a.account).await.unwrap().is_empty());
    assert_eq!(store.count_call_misfit(a.account, "schema", 1, T0).await.unwrap(), 1);
    assert_eq!(store.count_call_misfit(a.account, "schema", 1, T0 + 5).await.unwrap(), 2);
    assert_eq!(store.count_call_misfit(a.account, "not_a_party", 1, T0 + 1).await.unwrap(), 1);
    assert_eq!(store.count_call_misfit(a.account, "Zulu", 1, T0 + 2).await.unwrap(), 1);
    // An older `now` (another node's clock) counts, but does not move last_at back.
    assert_eq!(store.count_call_misfit(a.account, "schema", 1, T0 + 3).await.unwrap(), 3);
    // A second's worth of one reason arrives added up: one write.
    assert_eq!(store.count_call_misfit(a.account, "schema", 40, T0 + 4).await.unwrap(), 43);
    assert_eq!(store.count_call_misfit(b.account, "schema", 1, T0).await.unwrap(), 1);
    let misfit = |reason: &str, count, last_at| CallMisfit { reason: reason.to_owned(), count, last_at };
    assert_eq!(
        store.call_misfits(a.account).await.unwrap(),
        vec![misfit("Zulu", 1, T0 + 2), misfit("not_a_party", 1, T0 + 1), misfit("schema", 43, T0 + 5)]
    );
    assert_eq!(store.call_misfits(b.account).await.unwrap(), vec![misfit("schema", 1, T0)]);
    assert!(store.call_misfits(AccountId(u64::MAX)).await.unwrap().is_empty());

    let longest = "x".repeat(crate::MAX_MISFIT_REASON);
    assert_eq!(store.count_call_misfit(b.account, &longest, 1, T0).await.unwrap(), 1);
    let r = store.count_call_misfit(b.account, &format!("{longest}x"), 1, T0).await;
    assert!(matches!(r, Err(StoreError::Forbidden(_))), "{r:?}");
    let r = store.count_call_misfit(AccountId(987_654_321), "schema", 1, T0).await;
    assert!(matches!(r, Err(StoreError::NoSuchAccount)), "{r:?}");
    assert_eq!(store.call_misfits(b.account).await.unwrap().len(), 2);
}

/// The operator's list: totals over all reasons, highest first, ties by account id, capped.
pub async fn top_misfits_highest_first<S: Store>(store: Arc<S>) {
    assert!(store.top_call_misfits(10).await.unwrap().is_empty());
    let a = register(&*store, 1, None).await;
    let b = register(&*store, 2, None).await;
    let c = register(&*store, 3, None).await;
    let d = register(&*store, 4, None).await;
    let counts = [(&a, "schema", 2), (&a, "unknown_call", 1), (&b, "schema", 5), (&c, "not_a_party", 3)];
    for (who, reason, n) in counts {
        for _ in 0..n {
            store.count_call_misfit(who.account, reason, 1, T0).await.unwrap();
        }
    }
    store.count_call_misfit(d.account, "not_in_conversation", 1, T0).await.unwrap();
    let (first, second) = if a.account < c.account { (a.account, c.account) } else { (c.account, a.account) };
    assert_eq!(
        store.top_call_misfits(10).await.unwrap(),
        vec![(b.account, 5), (first, 3), (second, 3), (d.account, 1)]
    );
    assert_eq!(store.top_call_misfits(2).await.unwrap(), vec![(b.account, 5), (first, 3)]);
    assert!(store.top_call_misfits(0).await.unwrap().is_empty());
}

/// Calls a caller placed at or after a time; calls received and other callers' do not count.
pub async fn calls_placed_since_counts_the_callers_calls<S: Store>(store: Arc<S>) {
    let a = register(&*store, 1, None).await;
    let b = register(&*store, 2, None).await;
    assert_eq!(store.calls_placed_since(a.account, 0).await.unwrap(), 0);
    for n in 0..5u32 {
        let mut call = call_record(n, &a, &b);
        call.created_at = T0 + u64::from(n) * 1_000;
        call.expires_at = call.created_at + RING;
        place(&*store, call).await;
    }
    place(&*store, call_record(10, &b, &a)).await;
    assert_eq!(store.calls_placed_since(a.account, 0).await.unwrap(), 5);
    assert_eq!(store.calls_placed_since(a.account, T0 + 2_000).await.unwrap(), 3);
    assert_eq!(store.calls_placed_since(a.account, T0 + 2_001).await.unwrap(), 2);
    assert_eq!(store.calls_placed_since(a.account, T0 + 10_000).await.unwrap(), 0);
    assert_eq!(store.calls_placed_since(b.account, T0).await.unwrap(), 1);
    assert_eq!(store.calls_placed_since(AccountId(u64::MAX), 0).await.unwrap(), 0);
    // Ending does not undo placing.
    store.end_call(&call_id(4)).await.unwrap();
    assert_eq!(store.calls_placed_since(a.account, T0 + 2_000).await.unwrap(), 3);
}

/// Calls stay (ended or not) for an hour after they stopped ringing, then go; misfit counters
/// are evidence and stay.
pub async fn purge_removes_only_old_calls<S: Store>(store: Arc<S>) {
    let a = register(&*store, 1, None).await;
    let b = register(&*store, 2, None).await;
    let mut early = call_record(1, &a, &b);
    early.expires_at = T0 + 10;
    place(&*store, early).await;
    place(&*store, call_record(2, &a, &b)).await;
    store.end_call(&call_id(2)).await.unwrap();
    store.count_call_misfit(a.account, "schema", 1, T0).await.unwrap();

    // Exactly the keep time after expiry: still there.
    let at = T0 + 10 + CALL_KEEP_AFTER_EXPIRY_MS;
    assert_eq!(store.purge_expired(at, DAY).await.unwrap(), Purged::default());
    assert!(store.call(&call_id(1)).await.unwrap().is_some());
    assert_eq!(store.purge_expired(at + 1, DAY).await.unwrap(), Purged { calls: 1, ..Purged::default() });
    assert_eq!(store.call(&call_id(1)).await.unwrap(), None);
    assert!(store.call(&call_id(2)).await.unwrap().is_some());

    assert_eq!(store.purge_expired(T0 + RING + 2 * HOUR, DAY).await.unwrap().calls, 1);
    assert_eq!(store.call(&call_id(2)).await.unwrap(), None);

    // An answered call still in progress outlives the keep time by a day.
    place(&*store, call_record(3, &a, &b)).await;
    assert!(store.answer_call(&call_id(3), b.device, T0 + 1).await.unwrap().is_some());
    let expiry = T0 + RING;
    let late = expiry + CALL_KEEP_AFTER_EXPIRY_MS + HOUR;
    assert_eq!(store.purge_expired(late, DAY).await.unwrap().calls, 0);
    assert!(store.call(&call_id(3)).await.unwrap().is_some());
    let later = expiry + CALL_KEEP_AFTER_EXPIRY_MS + crate::ANSWERED_CALL_KEEP_MS + 1;
    assert_eq!(store.purge_expired(later, DAY).await.unwrap().calls, 1);
    assert_eq!(store.calls_placed_since(a.account, 0).await.unwrap(), 0);
    assert_eq!(store.call_misfits(a.account).await.unwrap().len(), 1);
    // A time before the keep period ends removes nothing instead of underflowing.
    assert_eq!(store.purge_expired(1, 0).await.unwrap(), Purged::default());
}

fn sentinel_action(
    subject: &str,
    action: &str,
    created_at: UnixMillis,
    until: UnixMillis,
) -> crate::NewSentinelAction {
    crate::NewSentinelAction {
        subject: subject.into(),
        action: action.into(),
        rule: "probing_call_setup".into(),
        reason: "call set-ups that do not fit".into(),
        created_at,
        until,
    }
}

pub async fn sentinel_actions_are_in_force_until_they_expire_or_are_lifted<S: Store>(store: Arc<S>) {
    let first =
        store.record_sentinel_action(sentinel_action("a1", "suspend_calling", T0, T0 + 100)).await.unwrap();
    let second =
        store.record_sentinel_action(sentinel_action("a1", "slow_down", T0 + 1, T0 + 50)).await.unwrap();
    store
        .record_sentinel_action(sentinel_action("net:192.0.2.0/24", "block_network", T0, T0 + 100))
        .await
        .unwrap();
    assert!(second > first);
    let in_force = store.sentinel_actions_in_force("a1", T0 + 10).await.unwrap();
    assert_eq!(in_force.iter().map(|a| a.id).collect::<Vec<_>>(), vec![first, second]);
    assert_eq!(in_force[0].action, "suspend_calling");
    assert_eq!(in_force[0].until, T0 + 100);
    assert_eq!(in_force[0].lifted_at, None);
    // Expiry.
    let later = store.sentinel_actions_in_force("a1", T0 + 50).await.unwrap();
    assert_eq!(later.iter().map(|a| a.id).collect::<Vec<_>>(), vec![first]);
    assert!(store.sentinel_actions_in_force("a2", T0).await.unwrap().is_empty());
    // A lift ends what is in force on that subject only, and says who.
    assert_eq!(store.last_sentinel_lift("a1", "suspend_calling").await.unwrap(), None);
    let lifted = store.lift_sentinel_actions("a1", "operator alice", T0 + 20).await.unwrap();
    assert_eq!(lifted.len(), 2);
    assert!(
        lifted
            .iter()
            .all(|a| a.lifted_at == Some(T0 + 20) && a.lifted_by.as_deref() == Some("operator alice"))
    );
    assert!(store.sentinel_actions_in_force("a1", T0 + 21).await.unwrap().is_empty());
    assert_eq!(store.sentinel_actions_in_force("net:192.0.2.0/24", T0 + 21).await.unwrap().len(), 1);
    assert_eq!(store.last_sentinel_lift("a1", "suspend_calling").await.unwrap(), Some(T0 + 20));
    assert_eq!(store.last_sentinel_lift("a1", "block_network").await.unwrap(), None);
    // Nothing left to lift.
    assert!(store.lift_sentinel_actions("a1", "operator alice", T0 + 30).await.unwrap().is_empty());
    // The list, newest first.
    let all = store.sentinel_actions(10).await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(all[0].id > all[1].id && all[1].id > all[2].id);
    assert_eq!(store.sentinel_actions(1).await.unwrap().len(), 1);
    // Fields are bounded.
    let long = "x".repeat(crate::MAX_SENTINEL_FIELD + 1);
    let r = store.record_sentinel_action(sentinel_action(&long, "slow_down", T0, T0 + 1)).await;
    assert!(matches!(r, Err(StoreError::Forbidden(_))), "{r:?}");
}

pub async fn sentinel_lifts_are_noted_once<S: Store>(store: Arc<S>) {
    for subject in ["a1", "a2", "a3"] {
        store
            .record_sentinel_action(sentinel_action(subject, "suspend_calling", T0, T0 + 100))
            .await
            .unwrap();
    }
    assert!(store.take_unnoted_sentinel_lifts(10).await.unwrap().is_empty());
    store.lift_sentinel_actions("a1", "op", T0 + 1).await.unwrap();
    store.lift_sentinel_actions("a3", "op", T0 + 2).await.unwrap();
    let noted = store.take_unnoted_sentinel_lifts(1).await.unwrap();
    assert_eq!(noted.iter().map(|a| a.subject.as_str()).collect::<Vec<_>>(), vec!["a1"]);
    let noted = store.take_unnoted_sentinel_lifts(10).await.unwrap();
    assert_eq!(noted.iter().map(|a| a.subject.as_str()).collect::<Vec<_>>(), vec!["a3"]);
    assert!(store.take_unnoted_sentinel_lifts(10).await.unwrap().is_empty());
    // Retention: what ended before the cut goes; what is in force, or lifted but not yet
    // noted, stays.
    store.record_sentinel_action(sentinel_action("a4", "slow_down", T0, T0 + 10)).await.unwrap();
    store.lift_sentinel_actions("a2", "op", T0 + 3).await.unwrap();
    assert_eq!(store.purge_sentinel_actions(T0 + 50).await.unwrap(), 3);
    let left: Vec<String> =
        store.sentinel_actions(10).await.unwrap().into_iter().map(|a| a.subject).collect();
    assert_eq!(left, vec!["a2".to_owned()]);
    assert_eq!(store.purge_sentinel_actions(T0 + 50).await.unwrap(), 0);
}

pub async fn sentinel_sightings_are_found_by_account_and_network<S: Store>(store: Arc<S>) {
    use crate::{SentinelSighting, SightingKind, SightingQuery};
    let signed_in = |at, account, network: &str, address: &str| SentinelSighting {
        at,
        account: AccountId(account),
        kind: SightingKind::SignedIn,
        peer: None,
        network: Some(network.into()),
        address: Some(address.into()),
        client: None,
    };
    let called = |at, caller, callee| SentinelSighting {
        at,
        account: AccountId(caller),
        kind: SightingKind::Called,
        peer: Some(AccountId(callee)),
        network: None,
        address: None,
        client: None,
    };
    store.record_sentinel_sightings(vec![]).await.unwrap();
    store
        .record_sentinel_sightings(vec![
            signed_in(T0, 1, "192.0.2.0/24", "192.0.2.7"),
            signed_in(T0 + 1, 2, "192.0.2.0/24", "192.0.2.8"),
            signed_in(T0 + 2, 3, "198.51.100.0/24", "198.51.100.1"),
            called(T0 + 3, 1, 9),
            called(T0 + 4, 3, 9),
        ])
        .await
        .unwrap();
    let query = |accounts: &[u64], networks: &[&str], since| SightingQuery {
        accounts: accounts.iter().copied().map(AccountId).collect(),
        networks: networks.iter().map(|n| (*n).to_owned()).collect(),
        clients: vec![],
        since,
        limit: 100,
    };
    // By account: everything it did, oldest first, with every field as it was kept.
    let of_1 = store.sentinel_sightings(query(&[1], &[], T0)).await.unwrap();
    assert_eq!(of_1, vec![signed_in(T0, 1, "192.0.2.0/24", "192.0.2.7"), called(T0 + 3, 1, 9)]);
    // By network: who else was there.
    let on_net = store.sentinel_sightings(query(&[], &["192.0.2.0/24"], T0)).await.unwrap();
    assert_eq!(on_net.iter().map(|s| s.account.0).collect::<Vec<_>>(), vec![1, 2]);
    // Both, since a time, and a limit.
    let both = store.sentinel_sightings(query(&[3], &["192.0.2.0/24"], T0 + 1)).await.unwrap();
    assert_eq!(
        both.iter().map(|s| (s.account.0, s.at)).collect::<Vec<_>>(),
        vec![(2, T0 + 1), (3, T0 + 2), (3, T0 + 4)]
    );
    let mut limited = query(&[1, 2, 3], &[], T0);
    limited.limit = 2;
    assert_eq!(store.sentinel_sightings(limited).await.unwrap().len(), 2);
    // An id no database can hold was never seen.
    assert!(store.sentinel_sightings(query(&[u64::MAX], &[], T0)).await.unwrap().is_empty());
    // Bounded fields and queries.
    let long = signed_in(T0, 4, &"x".repeat(crate::MAX_SIGHTING_FIELD + 1), "192.0.2.9");
    let r = store.record_sentinel_sightings(vec![signed_in(T0, 5, "192.0.2.0/24", "192.0.2.10"), long]).await;
    assert!(matches!(r, Err(StoreError::Forbidden(_))), "{r:?}");
    let too_many: Vec<u64> = (1..=crate::MAX_SIGHTING_KEYS as u64 + 1).collect();
    let r = store.sentinel_sightings(query(&too_many, &[], T0)).await;
    assert!(matches!(r, Err(StoreError::Forbidden(_))), "{r:?}");
    // Nothing of the refused batch was kept.
    assert!(store.sentinel_sightings(query(&[5], &[], T0)).await.unwrap().is_empty());
    // By the software a device named.
    let lookalike = SentinelSighting {
        client: Some("wa-lite/2.19".into()),
        ..signed_in(T0 + 5, 6, "203.0.113.0/24", "203.0.113.9")
    };
    store.record_sentinel_sightings(vec![lookalike.clone()]).await.unwrap();
    let mut by_client = query(&[], &[], T0);
    by_client.clients = vec!["wa-lite/2.19".into()];
    assert_eq!(store.sentinel_sightings(by_client).await.unwrap(), vec![lookalike]);
    // Retention.
    assert_eq!(store.purge_sentinel_sightings(T0 + 2).await.unwrap(), 2);
    let left = store.sentinel_sightings(query(&[1, 2, 3], &[], 0)).await.unwrap();
    assert_eq!(store.purge_sentinel_sightings(T0 + 6).await.unwrap(), 4);
    assert_eq!(left.iter().map(|s| s.at).collect::<Vec<_>>(), vec![T0 + 2, T0 + 3, T0 + 4]);
    assert!(store.sentinel_sightings(query(&[1, 2, 3, 6], &[], 0)).await.unwrap().is_empty());
}
