//! The PostgreSQL backend, for several server nodes sharing one database.
//!
//! Each operation that must be atomic runs in its own transaction at READ COMMITTED. Instead of
//! SERIALIZABLE (and retry loops), the operations whose checks must not race take row locks in
//! one global order: pending code row, then account row, then device rows in id order. That is
//! enough for every invariant the store promises:
//! - `enqueue` locks the recipient's device rows, so the queue-length check and the insert of
//!   one sender cannot interleave with another's, and per device the ids are allocated *and
//!   committed* in increasing order (a client fetching "after id N" can never miss a row that
//!   commits later with a smaller id).
//! - `complete_link` locks the account row, so two links racing for the last device slot are
//!   serialised and the second sees the first's device.
//! - registration and linking lock the pending code row, so a code is used at most once.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime};
use rampart_core::call::CallId;
use rampart_core::{
    AccountId, DeviceId, GroupId, MessageId, PhoneNumber, SecretHash, ServerMessageId, Username,
};
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, Row};

use crate::convert::{
    call_id_from_db, call_purge_cutoff, check_misfit_reason, check_sentinel_fields, check_sighting_query,
    check_sightings, fetch_keys, hash_from_db, key, pending_migrations, sighting_kind, to_i64, to_u64,
};
use crate::{
    ANSWERED_CALL_KEEP_MS, AccountKeys, CallMisfit, CallRecord, DeviceAuth, DeviceRecord, GroupCommitRecord,
    GroupMessage, GroupSent, GroupState, NewDevice, NewMessage, NewSentinelAction, OutboxEntry, PendingLink,
    PendingRegistration, Purged, QueueLimits, Registered, SentinelAction, SentinelSighting, SightingQuery,
    Store, StoreError, StoreEvent, StoreResult, StoredMessage, UnixMillis, WhenFull, only_device,
    plan_commit, room_for,
};

const POOL_SIZE: usize = 16;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an operation waits for a free pooled connection before giving up.
const POOL_WAIT: Duration = Duration::from_secs(30);
/// Key of the session-independent advisory lock that serialises migrations across nodes
/// ("rampart" in ASCII).
const MIGRATION_LOCK: i64 = 0x72_61_6d_70_61_72_74;

/// Ordered schema migrations. Never edit an entry once released: append a new version.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "
    CREATE TABLE accounts (
        id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        phone       TEXT NOT NULL CONSTRAINT accounts_phone_key UNIQUE,
        username    TEXT CONSTRAINT accounts_username_key UNIQUE,
        created_at  BIGINT NOT NULL
    );

    CREATE TABLE devices (
        id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        account_id    BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        name          TEXT NOT NULL,
        secret_hash   BYTEA NOT NULL,
        created_at    BIGINT NOT NULL,
        last_seen_at  BIGINT NOT NULL
    );
    CREATE INDEX devices_account ON devices(account_id, id);

    CREATE TABLE pending_registrations (
        phone       TEXT PRIMARY KEY,
        code_hash   BYTEA NOT NULL,
        username    TEXT,
        expires_at  BIGINT NOT NULL,
        attempts    INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX pending_registrations_expires ON pending_registrations(expires_at);

    CREATE TABLE pending_links (
        code_hash    BYTEA PRIMARY KEY,
        device_name  TEXT NOT NULL,
        secret_hash  BYTEA NOT NULL,
        expires_at   BIGINT NOT NULL
    );
    CREATE INDEX pending_links_expires ON pending_links(expires_at);

    CREATE TABLE queue (
        id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        device_id       BIGINT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        sender_account  BIGINT NOT NULL,
        sender_device   BIGINT NOT NULL,
        sender_label    TEXT NOT NULL,
        message_id      BYTEA NOT NULL,
        received_at     BIGINT NOT NULL,
        expires_at      BIGINT NOT NULL,
        body            BYTEA NOT NULL,
        CONSTRAINT queue_copy_key UNIQUE (device_id, sender_account, message_id)
    );
    CREATE INDEX queue_device ON queue(device_id, id);
    CREATE INDEX queue_expires ON queue(expires_at);

    CREATE TABLE verifier_outbox (
        id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        phone       TEXT NOT NULL,
        text        TEXT NOT NULL,
        created_at  BIGINT NOT NULL
    );
    CREATE INDEX verifier_outbox_created ON verifier_outbox(created_at);
    ",
    ),
    (
        2,
        // A per-device queue length kept by a trigger, so the "queue full" check on every send is
        // one row read instead of a count over a possibly long queue.
        "
    ALTER TABLE devices ADD COLUMN queue_len BIGINT NOT NULL DEFAULT 0;
    UPDATE devices SET queue_len = (SELECT COUNT(*) FROM queue WHERE queue.device_id = devices.id);
    CREATE FUNCTION rampart_queue_len() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            UPDATE devices SET queue_len = queue_len + 1 WHERE id = NEW.device_id;
            RETURN NEW;
        END IF;
        UPDATE devices SET queue_len = queue_len - 1 WHERE id = OLD.device_id;
        RETURN OLD;
    END $$;
    CREATE TRIGGER queue_len AFTER INSERT OR DELETE ON queue
        FOR EACH ROW EXECUTE FUNCTION rampart_queue_len();
    ",
    ),
    (
        3,
        // End-to-end encryption: device certificates, MLS key packages, and groups as the
        // delivery service sees them (an epoch and member device ids, nothing else).
        "
    ALTER TABLE devices ADD COLUMN certificate BYTEA;
    CREATE TABLE key_packages (
        id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        device_id    BIGINT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        last_resort  BOOLEAN NOT NULL,
        body         BYTEA NOT NULL
    );
    CREATE INDEX key_packages_device ON key_packages(device_id, last_resort, id);
    CREATE TABLE groups (
        id          BYTEA PRIMARY KEY,
        epoch       BIGINT NOT NULL,
        created_at  BIGINT NOT NULL
    );
    CREATE TABLE group_members (
        group_id   BYTEA NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
        device_id  BIGINT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        PRIMARY KEY (group_id, device_id)
    );
    CREATE INDEX group_members_device ON group_members(device_id);
    ",
    ),
    (
        4,
        // Call set-up through the signaling server, and per-account counts of call requests
        // that did not fit the call schema (evidence: never purged). Reasons sort bytewise
        // (COLLATE "C"), as in SQLite, whatever the database's locale.
        r#"
    CREATE TABLE calls (
        call_id         BYTEA PRIMARY KEY CHECK (octet_length(call_id) = 16),
        caller_account  BIGINT NOT NULL
            CONSTRAINT calls_caller_account_fkey REFERENCES accounts(id) ON DELETE CASCADE,
        caller_device   BIGINT NOT NULL,
        callee_account  BIGINT NOT NULL
            CONSTRAINT calls_callee_account_fkey REFERENCES accounts(id) ON DELETE CASCADE,
        group_id        BYTEA NOT NULL,
        offer           BYTEA NOT NULL,
        created_at      BIGINT NOT NULL,
        expires_at      BIGINT NOT NULL,
        -- No foreign key: a revoked device must neither block purges nor rewrite the record.
        answered_by     BIGINT,
        ended           BOOLEAN NOT NULL DEFAULT FALSE
    );
    CREATE INDEX calls_caller ON calls(caller_account, created_at);
    CREATE INDEX calls_expires ON calls(expires_at);
    CREATE TABLE call_misfits (
        account_id  BIGINT NOT NULL
            CONSTRAINT call_misfits_account_id_fkey REFERENCES accounts(id) ON DELETE CASCADE,
        reason      TEXT COLLATE "C" NOT NULL,
        count       BIGINT NOT NULL,
        last_at     BIGINT NOT NULL,
        PRIMARY KEY (account_id, reason)
    );
    "#,
    ),
    (
        5,
        // Blocks: the blocker takes nothing more from the blocked account.
        r#"
    CREATE TABLE blocks (
        blocker_account BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        blocked_account BIGINT NOT NULL,
        created_at      BIGINT NOT NULL,
        PRIMARY KEY (blocker_account, blocked_account)
    );
    CREATE INDEX blocks_blocked ON blocks(blocked_account);
    "#,
    ),
    (
        6,
        // The delivery service's public MLS state of each group, checked against every commit.
        "ALTER TABLE groups ADD COLUMN public_state BYTEA;",
    ),
    (
        7,
        // Sentinel's actions against accounts and networks, shared by every node.
        r#"
    CREATE TABLE sentinel_actions (
        id          BIGSERIAL PRIMARY KEY,
        subject     TEXT NOT NULL,
        action      TEXT NOT NULL,
        rule        TEXT NOT NULL,
        reason      TEXT NOT NULL,
        created_at  BIGINT NOT NULL,
        until       BIGINT NOT NULL,
        lifted_at   BIGINT,
        lifted_by   TEXT,
        lift_noted  BOOLEAN NOT NULL DEFAULT FALSE
    );
    CREATE INDEX sentinel_actions_subject ON sentinel_actions(subject, until);
    CREATE INDEX sentinel_actions_unnoted ON sentinel_actions(lift_noted) WHERE lifted_at IS NOT NULL;
    "#,
    ),
    (
        8,
        // What Sentinel saw, for investigations; purged after the metadata retention period.
        r#"
    CREATE TABLE sentinel_sightings (
        id       BIGSERIAL PRIMARY KEY,
        at       BIGINT NOT NULL,
        account  BIGINT NOT NULL,
        kind     TEXT NOT NULL,
        peer     BIGINT,
        network  TEXT,
        address  TEXT
    );
    CREATE INDEX sentinel_sightings_account ON sentinel_sightings(account, at);
    CREATE INDEX sentinel_sightings_network ON sentinel_sightings(network, at) WHERE network IS NOT NULL;
    CREATE INDEX sentinel_sightings_at ON sentinel_sightings(at);
    "#,
    ),
    (
        9,
        // The software a device named when it was not Rampart's own: accounts sharing one link.
        r#"
    ALTER TABLE sentinel_sightings ADD COLUMN client TEXT;
    CREATE INDEX sentinel_sightings_client ON sentinel_sightings(client, at) WHERE client IS NOT NULL;
    "#,
    ),
];

/// A store on a PostgreSQL database, through a pool of connections.
pub struct PostgresStore {
    pool: Pool,
    /// For the dedicated LISTEN connection, which cannot come from the pool.
    config: tokio_postgres::Config,
    /// This node's name in notifications, so it can ignore its own.
    node: String,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the URL: it may carry a password.
        f.debug_struct("PostgresStore").field("pool", &self.pool.status()).finish()
    }
}

impl PostgresStore {
    /// Connect to `url` (e.g. `postgres://rampart@127.0.0.1/rampart`), without TLS, and apply
    /// any pending migrations. Fails if the database is unreachable.
    pub async fn connect(url: &str) -> StoreResult<PostgresStore> {
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|_| StoreError::Backend("invalid PostgreSQL connection URL".into()))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Backend(format!("postgres pool: {e}")))?;
        let node = format!("{:016x}", rand::random::<u64>());
        let store = PostgresStore { pool, config, node };
        store.migrate().await?;
        Ok(store)
    }

    /// Close the pool: idle connections are closed now, busy ones when they are returned, and
    /// later calls fail with a `Backend` error.
    pub fn close(&self) {
        self.pool.close();
    }

    /// Queue a notification for other nodes; PostgreSQL delivers it when `tx` commits.
    async fn notify(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        kind: &str,
        body: &str,
    ) -> StoreResult<()> {
        let payload = format!("{}|{kind}|{body}", self.node);
        let st = tx.prepare_cached("SELECT pg_notify('rampart_events', $1)").await.map_err(pg)?;
        tx.execute(&st, &[&payload]).await.map_err(pg)?;
        Ok(())
    }

    async fn client(&self) -> StoreResult<Object> {
        self.pool.get().await.map_err(|e| match e {
            PoolError::Backend(e) => pg(e),
            other => StoreError::Backend(format!("postgres pool: {other}")),
        })
    }

    async fn migrate(&self) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        // Transaction-scoped, so it is released even if this node dies halfway.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(pg)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version     INTEGER PRIMARY KEY,
                applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(pg)?;
        let applied = tx
            .query("SELECT version FROM schema_migrations ORDER BY version", &[])
            .await
            .map_err(pg)?
            .iter()
            .map(|r| r.try_get::<_, i32>(0).map_err(pg))
            .collect::<StoreResult<Vec<i32>>>()?;
        for (version, sql) in pending_migrations(&applied, MIGRATIONS)? {
            tx.batch_execute(sql).await.map_err(pg)?;
            tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&version])
                .await
                .map_err(pg)?;
            tracing::info!(backend = "postgres", version, "applied schema migration");
        }
        tx.commit().await.map_err(pg)
    }
}

// --- conversions ----------------------------------------------------------------------------

/// Database errors become `Backend` errors carrying the SQLSTATE and the primary message only:
/// PostgreSQL's DETAIL line quotes the offending values (phone numbers, usernames).
fn pg(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        if *db.code() == SqlState::UNIQUE_VIOLATION && db.constraint() == Some("accounts_username_key") {
            return StoreError::UsernameTaken;
        }
        // A call or misfit of an account that does not exist: the constraint decides, in the
        // same statement as the insert.
        if *db.code() == SqlState::FOREIGN_KEY_VIOLATION
            && matches!(
                db.constraint(),
                Some(
                    "calls_caller_account_fkey"
                        | "calls_callee_account_fkey"
                        | "call_misfits_account_id_fkey"
                )
            )
        {
            return StoreError::NoSuchAccount;
        }
        return StoreError::Backend(format!("postgres: {} ({})", db.message(), db.code().code()));
    }
    match std::error::Error::source(&e) {
        Some(cause) => StoreError::Backend(format!("postgres: {e}: {cause}")),
        None => StoreError::Backend(format!("postgres: {e}")),
    }
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, idx: usize) -> StoreResult<T> {
    row.try_get(idx).map_err(pg)
}

fn username_from_db(name: &str) -> StoreResult<Username> {
    Username::parse(name).map_err(|_| StoreError::Backend("stored username is invalid".into()))
}

/// Columns in this order: id, device_id, sender_account, sender_device, sender_label,
/// message_id, received_at, expires_at, body.
fn stored_message(row: &Row) -> StoreResult<StoredMessage> {
    let message_id: Vec<u8> = get(row, 5)?;
    Ok(StoredMessage {
        id: ServerMessageId(to_u64(get(row, 0)?, "message id")?),
        device: DeviceId(to_u64(get(row, 1)?, "device id")?),
        sender_account: AccountId(to_u64(get(row, 2)?, "account id")?),
        sender_device: DeviceId(to_u64(get(row, 3)?, "device id")?),
        sender_label: get(row, 4)?,
        message_id: MessageId::from_slice(&message_id)
            .ok_or_else(|| StoreError::Backend("stored message id has the wrong length".into()))?,
        received_at: to_u64(get(row, 6)?, "timestamp")?,
        expires_at: to_u64(get(row, 7)?, "timestamp")?,
        body: get(row, 8)?,
    })
}

async fn insert_device(
    tx: &deadpool_postgres::Transaction<'_>,
    account: i64,
    device: &NewDevice,
    now: i64,
) -> StoreResult<DeviceId> {
    let st = tx
        .prepare_cached(
            "INSERT INTO devices (account_id, name, secret_hash, created_at, last_seen_at)
             VALUES ($1, $2, $3, $4, $4) RETURNING id",
        )
        .await
        .map_err(pg)?;
    let row =
        tx.query_one(&st, &[&account, &device.name, &&device.secret_hash.0[..], &now]).await.map_err(pg)?;
    Ok(DeviceId(to_u64(get(&row, 0)?, "device id")?))
}

const CALL_COLUMNS: &str = "call_id, caller_account, caller_device, callee_account, group_id, offer,
     created_at, expires_at, answered_by, ended";

/// Columns in [`CALL_COLUMNS`] order.
fn call_record(row: &Row) -> StoreResult<CallRecord> {
    let group: Vec<u8> = get(row, 4)?;
    Ok(CallRecord {
        call: call_id_from_db(get(row, 0)?)?,
        caller: AccountId(to_u64(get(row, 1)?, "account id")?),
        caller_device: DeviceId(to_u64(get(row, 2)?, "device id")?),
        callee: AccountId(to_u64(get(row, 3)?, "account id")?),
        group: GroupId::from_slice(&group)
            .ok_or_else(|| StoreError::Backend("stored group id has the wrong length".into()))?,
        offer: get(row, 5)?,
        created_at: to_u64(get(row, 6)?, "timestamp")?,
        expires_at: to_u64(get(row, 7)?, "timestamp")?,
        answered_by: get::<Option<i64>>(row, 8)?.map(|d| to_u64(d, "device id").map(DeviceId)).transpose()?,
        ended: get(row, 9)?,
    })
}

type Tx<'a> = deadpool_postgres::Transaction<'a>;

/// Most device ids in one notification: PostgreSQL caps a payload at 8,000 bytes.
const NOTIFY_CHUNK: usize = 400;

fn device_key(device: DeviceId) -> StoreResult<i64> {
    key(device.0).ok_or(StoreError::NoSuchDevice)
}

/// One message to queue for several devices.
struct Copy<'a> {
    sender_account: AccountId,
    sender_device: DeviceId,
    sender_label: &'a str,
    message_id: MessageId,
    received_at: UnixMillis,
    expires_at: UnixMillis,
    body: &'a [u8],
}

/// Lock these devices' rows in id order (so concurrent fan-outs cannot deadlock) and read
/// their queue lengths. Devices that no longer exist are left out.
async fn lock_devices(tx: &Tx<'_>, devices: &[DeviceId]) -> StoreResult<Vec<QueueSlot>> {
    let ids = devices.iter().map(|d| device_key(*d)).collect::<StoreResult<Vec<i64>>>()?;
    let st = tx
        .prepare_cached(
            "SELECT id, queue_len, account_id FROM devices WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .await
        .map_err(pg)?;
    tx.query(&st, &[&ids]).await.map_err(pg)?.iter().map(QueueSlot::from_row).collect()
}

/// A device a message may be queued for: its id, queue length and account.
#[derive(Clone, Copy)]
struct QueueSlot {
    device: i64,
    depth: i64,
    account: i64,
}

impl QueueSlot {
    fn from_row(r: &Row) -> StoreResult<Self> {
        Ok(Self { device: get(r, 0)?, depth: get(r, 1)?, account: get(r, 2)? })
    }
}

/// The accounts among `accounts` that blocked `sender`.
async fn blockers_of(tx: &Tx<'_>, sender: i64, accounts: &[i64]) -> StoreResult<Vec<i64>> {
    if accounts.is_empty() {
        return Ok(Vec::new());
    }
    let st = tx
        .prepare_cached(
            "SELECT blocker_account FROM blocks WHERE blocked_account = $1 AND blocker_account = ANY($2)",
        )
        .await
        .map_err(pg)?;
    tx.query(&st, &[&sender, &accounts]).await.map_err(pg)?.iter().map(|r| get(r, 0)).collect()
}

/// Queue `copy` once per device, as `when_full` says for devices with no room.
async fn queue_copies(
    tx: &Tx<'_>,
    devices: &[QueueSlot],
    copy: &Copy<'_>,
    when_full: WhenFull,
) -> StoreResult<Vec<StoredMessage>> {
    let sender_account = to_i64(copy.sender_account.0, "sender account")?;
    let sender_device = to_i64(copy.sender_device.0, "sender device")?;
    let received_at = to_i64(copy.received_at, "timestamp")?;
    let expires_at = to_i64(copy.expires_at, "timestamp")?;
    let message_id = &copy.message_id.0[..];
    let select_copy = tx
        .prepare_cached(
            "SELECT id, device_id, sender_account, sender_device, sender_label, message_id,
                 received_at, expires_at, body
             FROM queue WHERE device_id = $1 AND sender_account = $2 AND message_id = $3",
        )
        .await
        .map_err(pg)?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO queue (device_id, sender_account, sender_device, sender_label, message_id,
                 received_at, expires_at, body)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .await
        .map_err(pg)?;
    // The sender's share of each device's queue (the device's own account has none).
    let mut held_from_sender = std::collections::HashMap::new();
    if when_full.limits().is_some() {
        let ids: Vec<i64> =
            devices.iter().filter(|d| d.account != sender_account).map(|d| d.device).collect();
        let st = tx
            .prepare_cached(
                "SELECT device_id, COUNT(*) FROM queue WHERE device_id = ANY($1) AND sender_account = $2
                 GROUP BY device_id",
            )
            .await
            .map_err(pg)?;
        for row in tx.query(&st, &[&ids, &sender_account]).await.map_err(pg)? {
            held_from_sender.insert(get::<i64>(&row, 0)?, get::<i64>(&row, 1)?);
        }
    }
    let mut copies = Vec::with_capacity(devices.len());
    for &QueueSlot { device, depth, account } in devices {
        if let Some(row) =
            tx.query_opt(&select_copy, &[&device, &sender_account, &message_id]).await.map_err(pg)?
        {
            copies.push(stored_message(&row)?);
            continue;
        }
        let from_sender =
            (account != sender_account).then(|| held_from_sender.get(&device).copied().unwrap_or(0));
        if !room_for(when_full, depth, from_sender)? {
            continue;
        }
        let row = tx
            .query_one(
                &insert,
                &[
                    &device,
                    &sender_account,
                    &sender_device,
                    &copy.sender_label,
                    &message_id,
                    &received_at,
                    &expires_at,
                    &copy.body,
                ],
            )
            .await
            .map_err(pg)?;
        copies.push(StoredMessage {
            id: ServerMessageId(to_u64(get(&row, 0)?, "message id")?),
            device: DeviceId(to_u64(device, "device id")?),
            sender_account: copy.sender_account,
            sender_device: copy.sender_device,
            sender_label: copy.sender_label.to_owned(),
            message_id: copy.message_id,
            received_at: copy.received_at,
            expires_at: copy.expires_at,
            body: copy.body.to_vec(),
        });
    }
    Ok(copies)
}

async fn group_state_tx(tx: &Tx<'_>, group: &GroupId, lock: bool) -> StoreResult<Option<GroupState>> {
    let sql = if lock {
        "SELECT epoch, public_state FROM groups WHERE id = $1 FOR UPDATE"
    } else {
        "SELECT epoch, public_state FROM groups WHERE id = $1"
    };
    let st = tx.prepare_cached(sql).await.map_err(pg)?;
    let Some(row) = tx.query_opt(&st, &[&group.as_bytes()]).await.map_err(pg)? else {
        return Ok(None);
    };
    let epoch: i64 = get(&row, 0)?;
    let public_state: Option<Vec<u8>> = get(&row, 1)?;
    let st = tx
        .prepare_cached(
            "SELECT m.device_id, d.account_id FROM group_members m JOIN devices d ON d.id = m.device_id
             WHERE m.group_id = $1 ORDER BY m.device_id",
        )
        .await
        .map_err(pg)?;
    let members = tx
        .query(&st, &[&group.as_bytes()])
        .await
        .map_err(pg)?
        .iter()
        .map(|r| {
            Ok((DeviceId(to_u64(get(r, 0)?, "device id")?), AccountId(to_u64(get(r, 1)?, "account id")?)))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Some(GroupState { epoch: to_u64(epoch, "epoch")?, members, public_state }))
}

async fn label_tx(tx: &Tx<'_>, account: AccountId) -> StoreResult<String> {
    let id = key(account.0).ok_or(StoreError::NoSuchAccount)?;
    let st = tx
        .prepare_cached("SELECT COALESCE('@' || username, phone) FROM accounts WHERE id = $1")
        .await
        .map_err(pg)?;
    let row = tx.query_opt(&st, &[&id]).await.map_err(pg)?;
    get(&row.ok_or(StoreError::NoSuchAccount)?, 0)
}

impl PostgresStore {
    async fn notify_queued(&self, tx: &Tx<'_>, copies: &[StoredMessage]) -> StoreResult<()> {
        for chunk in copies.chunks(NOTIFY_CHUNK) {
            let devices: Vec<String> = chunk.iter().map(|c| c.device.0.to_string()).collect();
            self.notify(tx, "q", &devices.join(",")).await?;
        }
        Ok(())
    }

    async fn fan_out(
        &self,
        tx: &Tx<'_>,
        to: &[DeviceId],
        copy: &Copy<'_>,
        when_full: WhenFull,
    ) -> StoreResult<GroupSent> {
        let mut devices = lock_devices(tx, to).await?;
        // Accounts that blocked the sender get none of its group messages. (Handshake messages
        // still reach them: a group both share must stay readable; `plan_commit` already
        // refused to bring a blocker into a new group.)
        if matches!(when_full, WhenFull::Skip(_)) {
            let accounts: Vec<i64> = devices.iter().map(|d| d.account).collect();
            let blocking =
                blockers_of(tx, to_i64(copy.sender_account.0, "sender account")?, &accounts).await?;
            devices.retain(|d| !blocking.contains(&d.account));
        }
        let copies = queue_copies(tx, &devices, copy, when_full).await?;
        self.notify_queued(tx, &copies).await?;
        let skipped = u32::try_from(devices.len().saturating_sub(copies.len())).unwrap_or(u32::MAX);
        Ok(GroupSent { copies, skipped })
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn subscribe(&self) -> StoreResult<Option<mpsc::Receiver<StoreEvent>>> {
        let (tx, rx) = mpsc::channel(EVENT_CHANNEL);
        // Connect once now so a broken configuration is reported at start-up.
        let first = listen(&self.config).await?;
        tokio::spawn(run_listener(self.config.clone(), self.node.clone(), first, tx));
        Ok(Some(rx))
    }

    fn backend_name(&self) -> &'static str {
        "postgres"
    }

    async fn begin_registration(&self, p: PendingRegistration) -> StoreResult<()> {
        let client = self.client().await?;
        let st = client
            .prepare_cached(
                "INSERT INTO pending_registrations (phone, code_hash, username, expires_at, attempts)
                 VALUES ($1, $2, $3, $4, 0)
                 ON CONFLICT (phone) DO UPDATE SET code_hash = excluded.code_hash,
                     username = excluded.username, expires_at = excluded.expires_at, attempts = 0",
            )
            .await
            .map_err(pg)?;
        let expires_at = to_i64(p.expires_at, "expiry")?;
        client
            .execute(
                &st,
                &[
                    &p.phone.as_e164(),
                    &&p.code_hash.0[..],
                    &p.username.as_ref().map(Username::as_str),
                    &expires_at,
                ],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn complete_registration(
        &self,
        phone: &PhoneNumber,
        code_hash: SecretHash,
        device: NewDevice,
        now: UnixMillis,
        max_attempts: u32,
    ) -> StoreResult<Registered> {
        let now = to_i64(now, "time")?;
        let phone = phone.as_e164();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let st = tx
            .prepare_cached(
                "SELECT code_hash, username, expires_at, attempts FROM pending_registrations
                 WHERE phone = $1 FOR UPDATE",
            )
            .await
            .map_err(pg)?;
        let Some(row) = tx.query_opt(&st, &[&phone]).await.map_err(pg)? else {
            return Err(StoreError::NoPendingCode);
        };
        let stored_hash = hash_from_db(get(&row, 0)?)?;
        let username: Option<String> = get(&row, 1)?;
        let expires_at: i64 = get(&row, 2)?;
        let attempts: i32 = get(&row, 3)?;

        let delete =
            tx.prepare_cached("DELETE FROM pending_registrations WHERE phone = $1").await.map_err(pg)?;
        if expires_at <= now {
            tx.execute(&delete, &[&phone]).await.map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            return Err(StoreError::CodeExpired);
        }
        if !stored_hash.matches(&code_hash) {
            let attempts = u32::try_from(attempts).unwrap_or(0).saturating_add(1);
            if attempts >= max_attempts {
                tx.execute(&delete, &[&phone]).await.map_err(pg)?;
            } else {
                let st = tx
                    .prepare_cached("UPDATE pending_registrations SET attempts = $2 WHERE phone = $1")
                    .await
                    .map_err(pg)?;
                let stored = i32::try_from(attempts)
                    .map_err(|_| StoreError::Backend("attempt count out of range".into()))?;
                tx.execute(&st, &[&phone, &stored]).await.map_err(pg)?;
            }
            tx.commit().await.map_err(pg)?;
            return Err(StoreError::WrongCode { attempts_left: max_attempts.saturating_sub(attempts) });
        }
        tx.execute(&delete, &[&phone]).await.map_err(pg)?;

        let st =
            tx.prepare_cached("SELECT id FROM accounts WHERE phone = $1 FOR UPDATE").await.map_err(pg)?;
        let existing = tx.query_opt(&st, &[&phone]).await.map_err(pg)?;
        // A username already held by someone else fails the statement with a unique violation,
        // which `pg` turns into UsernameTaken; returning drops `tx`, rolling everything back.
        let mut removed = Vec::new();
        let (account, replaced_existing) = match existing {
            Some(row) => {
                let account: i64 = get(&row, 0)?;
                // Lock the devices in id order, like `enqueue`, before deleting them.
                let st = tx
                    .prepare_cached("SELECT id FROM devices WHERE account_id = $1 ORDER BY id FOR UPDATE")
                    .await
                    .map_err(pg)?;
                tx.query(&st, &[&account]).await.map_err(pg)?;
                let st = tx
                    .prepare_cached("DELETE FROM devices WHERE account_id = $1 RETURNING id")
                    .await
                    .map_err(pg)?;
                let gone = tx.query(&st, &[&account]).await.map_err(pg)?;
                for row in &gone {
                    let id: i64 = get(row, 0)?;
                    self.notify(&tx, "r", &id.to_string()).await?;
                    removed.push(DeviceId(to_u64(id, "device id")?));
                }
                let st =
                    tx.prepare_cached("UPDATE accounts SET username = $2 WHERE id = $1").await.map_err(pg)?;
                tx.execute(&st, &[&account, &username]).await.map_err(pg)?;
                (account, true)
            }
            None => {
                let st = tx
                    .prepare_cached(
                        "INSERT INTO accounts (phone, username, created_at) VALUES ($1, $2, $3) RETURNING id",
                    )
                    .await
                    .map_err(pg)?;
                let row = tx.query_one(&st, &[&phone, &username, &now]).await.map_err(pg)?;
                (get::<i64>(&row, 0)?, false)
            }
        };
        let device = insert_device(&tx, account, &device, now).await?;
        tx.commit().await.map_err(pg)?;
        Ok(Registered {
            account: AccountId(to_u64(account, "account id")?),
            device,
            replaced_existing,
            removed_devices: removed,
        })
    }

    async fn account_by_phone(&self, phone: &PhoneNumber) -> StoreResult<Option<AccountId>> {
        let client = self.client().await?;
        let st = client.prepare_cached("SELECT id FROM accounts WHERE phone = $1").await.map_err(pg)?;
        let row = client.query_opt(&st, &[&phone.as_e164()]).await.map_err(pg)?;
        row.map(|r| to_u64(get(&r, 0)?, "account id").map(AccountId)).transpose()
    }

    async fn account_by_username(&self, username: &Username) -> StoreResult<Option<AccountId>> {
        let client = self.client().await?;
        let st = client.prepare_cached("SELECT id FROM accounts WHERE username = $1").await.map_err(pg)?;
        let row = client.query_opt(&st, &[&username.as_str()]).await.map_err(pg)?;
        row.map(|r| to_u64(get(&r, 0)?, "account id").map(AccountId)).transpose()
    }

    async fn account_label(&self, account: AccountId) -> StoreResult<Option<String>> {
        let Some(account) = key(account.0) else {
            return Ok(None);
        };
        let client = self.client().await?;
        let st =
            client.prepare_cached("SELECT phone, username FROM accounts WHERE id = $1").await.map_err(pg)?;
        let Some(row) = client.query_opt(&st, &[&account]).await.map_err(pg)? else {
            return Ok(None);
        };
        let phone: String = get(&row, 0)?;
        let username: Option<&str> = get(&row, 1)?;
        match username {
            Some(name) => Ok(Some(username_from_db(name)?.to_string())),
            None => Ok(Some(phone)),
        }
    }

    async fn set_username(&self, account: AccountId, username: Option<&Username>) -> StoreResult<()> {
        let Some(account) = key(account.0) else {
            return Err(StoreError::NoSuchAccount);
        };
        let client = self.client().await?;
        let st =
            client.prepare_cached("UPDATE accounts SET username = $2 WHERE id = $1").await.map_err(pg)?;
        let changed = client.execute(&st, &[&account, &username.map(Username::as_str)]).await.map_err(pg)?;
        if changed == 0 { Err(StoreError::NoSuchAccount) } else { Ok(()) }
    }

    async fn device_auth(&self, device: DeviceId) -> StoreResult<Option<DeviceAuth>> {
        let Some(id) = key(device.0) else {
            return Ok(None);
        };
        let client = self.client().await?;
        let st = client
            .prepare_cached(
                "SELECT d.account_id, d.secret_hash, a.created_at, d.created_at FROM devices d
                 JOIN accounts a ON a.id = d.account_id WHERE d.id = $1",
            )
            .await
            .map_err(pg)?;
        let Some(row) = client.query_opt(&st, &[&id]).await.map_err(pg)? else {
            return Ok(None);
        };
        Ok(Some(DeviceAuth {
            account: AccountId(to_u64(get(&row, 0)?, "account id")?),
            device,
            secret_hash: hash_from_db(get(&row, 1)?)?,
            account_created_at: to_u64(get(&row, 2)?, "time")?,
            device_created_at: to_u64(get(&row, 3)?, "time")?,
        }))
    }

    async fn touch_device(&self, device: DeviceId, now: UnixMillis) -> StoreResult<()> {
        let Some(id) = key(device.0) else {
            return Ok(());
        };
        let now = to_i64(now, "time")?;
        let client = self.client().await?;
        // Never move backwards, and skip the write when nothing changes.
        let st = client
            .prepare_cached("UPDATE devices SET last_seen_at = $2 WHERE id = $1 AND last_seen_at < $2")
            .await
            .map_err(pg)?;
        client.execute(&st, &[&id, &now]).await.map_err(pg)?;
        Ok(())
    }

    async fn list_devices(&self, account: AccountId) -> StoreResult<Vec<DeviceRecord>> {
        let Some(account) = key(account.0) else {
            return Ok(Vec::new());
        };
        let client = self.client().await?;
        let st = client
            .prepare_cached(
                "SELECT id, name, created_at, last_seen_at FROM devices WHERE account_id = $1 ORDER BY id",
            )
            .await
            .map_err(pg)?;
        let rows = client.query(&st, &[&account]).await.map_err(pg)?;
        rows.iter()
            .map(|r| {
                Ok(DeviceRecord {
                    id: DeviceId(to_u64(get(r, 0)?, "device id")?),
                    name: get(r, 1)?,
                    created_at: to_u64(get(r, 2)?, "timestamp")?,
                    last_seen_at: to_u64(get(r, 3)?, "timestamp")?,
                })
            })
            .collect()
    }

    async fn revoke_device(&self, account: AccountId, device: DeviceId) -> StoreResult<()> {
        let (Some(account), Some(device)) = (key(account.0), key(device.0)) else {
            return Err(StoreError::NoSuchDevice);
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        // The queue goes with the device (ON DELETE CASCADE).
        let st =
            tx.prepare_cached("DELETE FROM devices WHERE id = $1 AND account_id = $2").await.map_err(pg)?;
        let deleted = tx.execute(&st, &[&device, &account]).await.map_err(pg)?;
        if deleted > 0 {
            self.notify(&tx, "r", &device.to_string()).await?;
        }
        tx.commit().await.map_err(pg)?;
        if deleted == 0 { Err(StoreError::NoSuchDevice) } else { Ok(()) }
    }

    async fn begin_link(&self, p: PendingLink) -> StoreResult<()> {
        let expires_at = to_i64(p.expires_at, "expiry")?;
        let client = self.client().await?;
        let st = client
            .prepare_cached(
                "INSERT INTO pending_links (code_hash, device_name, secret_hash, expires_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (code_hash) DO UPDATE SET device_name = excluded.device_name,
                     secret_hash = excluded.secret_hash, expires_at = excluded.expires_at",
            )
            .await
            .map_err(pg)?;
        client
            .execute(&st, &[&&p.code_hash.0[..], &p.device.name, &&p.device.secret_hash.0[..], &expires_at])
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn complete_link(
        &self,
        code_hash: SecretHash,
        approver: DeviceId,
        account: AccountId,
        now: UnixMillis,
        max_devices: u32,
    ) -> StoreResult<DeviceId> {
        let now = to_i64(now, "time")?;
        let code = &code_hash.0[..];
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let st = tx
            .prepare_cached(
                "SELECT device_name, secret_hash, expires_at FROM pending_links
                 WHERE code_hash = $1 FOR UPDATE",
            )
            .await
            .map_err(pg)?;
        let Some(link) = tx.query_opt(&st, &[&code]).await.map_err(pg)? else {
            return Err(StoreError::NoSuchLink);
        };
        let name: String = get(&link, 0)?;
        let secret_hash = hash_from_db(get(&link, 1)?)?;
        let expires_at: i64 = get(&link, 2)?;
        let delete = tx.prepare_cached("DELETE FROM pending_links WHERE code_hash = $1").await.map_err(pg)?;
        if expires_at <= now {
            tx.execute(&delete, &[&code]).await.map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            return Err(StoreError::NoSuchLink);
        }
        let Some(account) = key(account.0) else {
            return Err(StoreError::NoSuchAccount);
        };
        // The account row lock serialises links (and re-registration) of one account, so the
        // device count below cannot go stale before our insert commits.
        let st = tx.prepare_cached("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE").await.map_err(pg)?;
        if tx.query_opt(&st, &[&account]).await.map_err(pg)?.is_none() {
            return Err(StoreError::NoSuchAccount);
        }
        // The approving device must still be there (revocation takes the same account lock).
        let Some(approver) = key(approver.0) else {
            return Err(StoreError::NoSuchDevice);
        };
        let st =
            tx.prepare_cached("SELECT 1 FROM devices WHERE id = $1 AND account_id = $2").await.map_err(pg)?;
        if tx.query_opt(&st, &[&approver, &account]).await.map_err(pg)?.is_none() {
            return Err(StoreError::NoSuchDevice);
        }
        let st = tx.prepare_cached("SELECT COUNT(*) FROM devices WHERE account_id = $1").await.map_err(pg)?;
        let count: i64 = get(&tx.query_one(&st, &[&account]).await.map_err(pg)?, 0)?;
        if count >= i64::from(max_devices) {
            // Rolled back: the code stays valid so the user can revoke a device and retry.
            return Err(StoreError::TooManyDevices { max: max_devices });
        }
        tx.execute(&delete, &[&code]).await.map_err(pg)?;
        let device = insert_device(&tx, account, &NewDevice { name, secret_hash }, now).await?;
        let body = format!("{}|{}|{}", hex_encode(code), account, device.0);
        self.notify(&tx, "l", &body).await?;
        tx.commit().await.map_err(pg)?;
        Ok(device)
    }

    async fn enqueue(&self, msg: NewMessage, limits: QueueLimits) -> StoreResult<Vec<StoredMessage>> {
        let Some(recipient) = key(msg.recipient.0) else {
            return Err(StoreError::NoSuchAccount);
        };
        let sender_account = to_i64(msg.sender_account.0, "sender account")?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let st = tx.prepare_cached("SELECT 1 FROM accounts WHERE id = $1").await.map_err(pg)?;
        if tx.query_opt(&st, &[&recipient]).await.map_err(pg)?.is_none() {
            return Err(StoreError::NoSuchAccount);
        }
        if !blockers_of(&tx, sender_account, &[recipient]).await?.is_empty() {
            return Ok(Vec::new());
        }
        let st = tx
            .prepare_cached(
                "SELECT id, queue_len, account_id FROM devices WHERE account_id = $1 ORDER BY id FOR UPDATE",
            )
            .await
            .map_err(pg)?;
        let devices = tx
            .query(&st, &[&recipient])
            .await
            .map_err(pg)?
            .iter()
            .map(QueueSlot::from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        let devices = only_device(devices, |s| s.device, msg.only_device);
        let sender_label: String = if devices.is_empty() {
            String::new()
        } else {
            let st = tx
                .prepare_cached("SELECT COALESCE('@' || username, phone) FROM accounts WHERE id = $1")
                .await
                .map_err(pg)?;
            let row = tx.query_opt(&st, &[&sender_account]).await.map_err(pg)?;
            get(&row.ok_or(StoreError::NoSuchAccount)?, 0)?
        };
        let copy = Copy {
            sender_account: msg.sender_account,
            sender_device: msg.sender_device,
            sender_label: &sender_label,
            message_id: msg.message_id,
            received_at: msg.received_at,
            expires_at: msg.expires_at,
            body: &msg.body,
        };
        // An error returns before the commit: the copies inserted so far are rolled back.
        let copies = queue_copies(&tx, &devices, &copy, WhenFull::Fail(limits)).await?;
        self.notify_queued(&tx, &copies).await?;
        tx.commit().await.map_err(pg)?;
        Ok(copies)
    }

    async fn fetch_queue(
        &self,
        device: DeviceId,
        after: Option<ServerMessageId>,
        now: UnixMillis,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        let Some((device, after)) = fetch_keys(device, after) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = to_i64(now, "time")?;
        let client = self.client().await?;
        let st = client
            .prepare_cached(
                "SELECT id, device_id, sender_account, sender_device, sender_label, message_id,
                     received_at, expires_at, body
                 FROM queue WHERE device_id = $1 AND id > $2 AND expires_at > $3
                 ORDER BY id LIMIT $4",
            )
            .await
            .map_err(pg)?;
        let rows = client.query(&st, &[&device, &after, &now, &i64::from(limit)]).await.map_err(pg)?;
        rows.iter().map(stored_message).collect()
    }

    async fn ack(&self, device: DeviceId, ids: &[ServerMessageId]) -> StoreResult<u64> {
        let Some(device) = key(device.0) else {
            return Ok(0);
        };
        let ids: Vec<i64> = ids.iter().filter_map(|id| key(id.0)).collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let client = self.client().await?;
        let st = client
            .prepare_cached("DELETE FROM queue WHERE device_id = $1 AND id = ANY($2)")
            .await
            .map_err(pg)?;
        client.execute(&st, &[&device, &ids]).await.map_err(pg)
    }

    async fn queue_depth(&self, device: DeviceId) -> StoreResult<u64> {
        let Some(device) = key(device.0) else {
            return Ok(0);
        };
        let client = self.client().await?;
        let st =
            client.prepare_cached("SELECT COUNT(*) FROM queue WHERE device_id = $1").await.map_err(pg)?;
        let row = client.query_one(&st, &[&device]).await.map_err(pg)?;
        to_u64(get(&row, 0)?, "count")
    }

    async fn total_queued(&self) -> StoreResult<u64> {
        let client = self.client().await?;
        let st = client.prepare_cached("SELECT COUNT(*) FROM queue").await.map_err(pg)?;
        let row = client.query_one(&st, &[]).await.map_err(pg)?;
        to_u64(get(&row, 0)?, "count")
    }

    async fn purge_expired(&self, now: UnixMillis, outbox_ttl_ms: u64) -> StoreResult<Purged> {
        let now_db = to_i64(now, "time")?;
        let mut client = self.client().await?;
        // Expired messages: lock their devices in id order first, as `enqueue` does, so the
        // queue-length triggers of this delete cannot deadlock with concurrent sends.
        let tx = client.transaction().await.map_err(pg)?;
        let lock = tx
            .prepare_cached(
                "SELECT id FROM devices WHERE id IN
                     (SELECT DISTINCT device_id FROM queue WHERE expires_at <= $1)
                 ORDER BY id FOR UPDATE",
            )
            .await
            .map_err(pg)?;
        tx.query(&lock, &[&now_db]).await.map_err(pg)?;
        let st = tx.prepare_cached("DELETE FROM queue WHERE expires_at <= $1").await.map_err(pg)?;
        let messages = tx.execute(&st, &[&now_db]).await.map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        // The rest are independent statements: nothing there needs to be atomic.
        let mut counts = [0u64; 2];
        let statements = [
            "DELETE FROM pending_registrations WHERE expires_at <= $1",
            "DELETE FROM pending_links WHERE expires_at <= $1",
        ];
        for (count, sql) in counts.iter_mut().zip(statements) {
            let st = client.prepare_cached(sql).await.map_err(pg)?;
            *count = client.execute(&st, &[&now_db]).await.map_err(pg)?;
        }
        let [registrations, links] = counts;
        // created_at + ttl <= now, written without an addition that could overflow.
        let outbox = match now.checked_sub(outbox_ttl_ms) {
            Some(cutoff) => {
                let cutoff = to_i64(cutoff, "time")?;
                let st = client
                    .prepare_cached("DELETE FROM verifier_outbox WHERE created_at <= $1")
                    .await
                    .map_err(pg)?;
                client.execute(&st, &[&cutoff]).await.map_err(pg)?
            }
            None => 0,
        };
        let calls = match call_purge_cutoff(now)? {
            Some(cutoff) => {
                // An answered call that has not ended is kept a day longer: its hang-up is
                // still to come.
                let st = client
                    .prepare_cached(
                        "DELETE FROM calls WHERE expires_at < $1
                         AND (answered_by IS NULL OR ended OR expires_at < $1 - $2)",
                    )
                    .await
                    .map_err(pg)?;
                client.execute(&st, &[&cutoff, &to_i64(ANSWERED_CALL_KEEP_MS, "time")?]).await.map_err(pg)?
            }
            None => 0,
        };
        Ok(Purged { messages, registrations, links, outbox, calls })
    }

    async fn outbox_push(&self, entry: OutboxEntry) -> StoreResult<()> {
        let created_at = to_i64(entry.created_at, "timestamp")?;
        let client = self.client().await?;
        let st = client
            .prepare_cached("INSERT INTO verifier_outbox (phone, text, created_at) VALUES ($1, $2, $3)")
            .await
            .map_err(pg)?;
        client.execute(&st, &[&entry.phone, &entry.text, &created_at]).await.map_err(pg)?;
        Ok(())
    }

    async fn outbox_list(&self) -> StoreResult<Vec<OutboxEntry>> {
        let client = self.client().await?;
        let st = client
            .prepare_cached("SELECT phone, text, created_at FROM verifier_outbox ORDER BY created_at, id")
            .await
            .map_err(pg)?;
        let rows = client.query(&st, &[]).await.map_err(pg)?;
        rows.iter()
            .map(|r| {
                Ok(OutboxEntry {
                    phone: get(r, 0)?,
                    text: get(r, 1)?,
                    created_at: to_u64(get(r, 2)?, "timestamp")?,
                })
            })
            .collect()
    }

    async fn set_certificate(&self, device: DeviceId, certificate: Vec<u8>) -> StoreResult<()> {
        let id = device_key(device)?;
        let client = self.client().await?;
        let st = client
            .prepare_cached(
                "UPDATE devices SET certificate = COALESCE(certificate, $2) WHERE id = $1 RETURNING certificate",
            )
            .await
            .map_err(pg)?;
        let row =
            client.query_opt(&st, &[&id, &certificate]).await.map_err(pg)?.ok_or(StoreError::NoSuchDevice)?;
        let stored: Vec<u8> = get(&row, 0)?;
        if stored == certificate {
            Ok(())
        } else {
            Err(StoreError::Forbidden("this device already has a certificate".into()))
        }
    }

    async fn device_certificate(&self, device: DeviceId) -> StoreResult<Option<Vec<u8>>> {
        let id = device_key(device)?;
        let client = self.client().await?;
        let st = client.prepare_cached("SELECT certificate FROM devices WHERE id = $1").await.map_err(pg)?;
        let row = client.query_opt(&st, &[&id]).await.map_err(pg)?.ok_or(StoreError::NoSuchDevice)?;
        get(&row, 0)
    }

    async fn publish_key_packages(
        &self,
        device: DeviceId,
        one_time: Vec<Vec<u8>>,
        last_resort: Option<Vec<u8>>,
        max_stock: u32,
    ) -> StoreResult<u32> {
        let id = device_key(device)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let st = tx.prepare_cached("SELECT 1 FROM devices WHERE id = $1 FOR UPDATE").await.map_err(pg)?;
        if tx.query_opt(&st, &[&id]).await.map_err(pg)?.is_none() {
            return Err(StoreError::NoSuchDevice);
        }
        let insert = tx
            .prepare_cached("INSERT INTO key_packages (device_id, last_resort, body) VALUES ($1, $2, $3)")
            .await
            .map_err(pg)?;
        if let Some(body) = last_resort {
            tx.execute("DELETE FROM key_packages WHERE device_id = $1 AND last_resort", &[&id])
                .await
                .map_err(pg)?;
            tx.execute(&insert, &[&id, &true, &body]).await.map_err(pg)?;
        }
        let count = "SELECT COUNT(*) FROM key_packages WHERE device_id = $1 AND NOT last_resort";
        let stock: i64 = get(&tx.query_one(count, &[&id]).await.map_err(pg)?, 0)?;
        let room = i64::from(max_stock).saturating_sub(stock).max(0);
        for body in one_time.into_iter().take(usize::try_from(room).unwrap_or(0)) {
            tx.execute(&insert, &[&id, &false, &body]).await.map_err(pg)?;
        }
        let stock: i64 = get(&tx.query_one(count, &[&id]).await.map_err(pg)?, 0)?;
        tx.commit().await.map_err(pg)?;
        Ok(u32::try_from(stock).unwrap_or(u32::MAX))
    }

    async fn claim_key_packages(&self, devices: &[DeviceId]) -> StoreResult<Vec<(DeviceId, Vec<u8>)>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        // SKIP LOCKED: two claimers never get the same one-time package, and neither waits.
        let take = tx
            .prepare_cached(
                "SELECT id, last_resort, body FROM key_packages WHERE device_id = $1
                 ORDER BY last_resort, id LIMIT 1 FOR UPDATE SKIP LOCKED",
            )
            .await
            .map_err(pg)?;
        let delete = tx.prepare_cached("DELETE FROM key_packages WHERE id = $1").await.map_err(pg)?;
        let mut out = Vec::with_capacity(devices.len());
        for &device in devices {
            let id = device_key(device)?;
            let Some(row) = tx.query_opt(&take, &[&id]).await.map_err(pg)? else {
                return Err(StoreError::NoKeyPackage(device));
            };
            let package: i64 = get(&row, 0)?;
            let last_resort: bool = get(&row, 1)?;
            if !last_resort {
                tx.execute(&delete, &[&package]).await.map_err(pg)?;
            }
            out.push((device, get(&row, 2)?));
        }
        tx.commit().await.map_err(pg)?;
        Ok(out)
    }

    async fn account_keys(&self, accounts: &[AccountId]) -> StoreResult<Vec<AccountKeys>> {
        let mut out = Vec::with_capacity(accounts.len());
        for &account in accounts {
            let Some(label) = self.account_label(account).await? else { continue };
            let Some(id) = key(account.0) else { continue };
            let client = self.client().await?;
            let st = client
                .prepare_cached("SELECT id, certificate FROM devices WHERE account_id = $1 ORDER BY id")
                .await
                .map_err(pg)?;
            let devices = client
                .query(&st, &[&id])
                .await
                .map_err(pg)?
                .iter()
                .map(|r| Ok((DeviceId(to_u64(get(r, 0)?, "device id")?), get::<Option<Vec<u8>>>(r, 1)?)))
                .collect::<StoreResult<Vec<_>>>()?;
            out.push(AccountKeys { account, label, devices });
        }
        Ok(out)
    }

    async fn group_state(&self, group: &GroupId) -> StoreResult<Option<GroupState>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        group_state_tx(&tx, group, false).await
    }

    async fn commit_group(&self, commit: GroupCommitRecord) -> StoreResult<(u64, Vec<StoredMessage>)> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        // The group row lock orders commits: the first to take it wins the epoch.
        let state = group_state_tx(&tx, &commit.group, true).await?;
        let mut added_accounts = Vec::with_capacity(commit.added.len());
        let st = tx.prepare_cached("SELECT account_id FROM devices WHERE id = $1").await.map_err(pg)?;
        for d in &commit.added {
            let row = tx.query_opt(&st, &[&device_key(*d)?]).await.map_err(pg)?;
            added_accounts.push(match row {
                Some(r) => Some(AccountId(to_u64(get(&r, 0)?, "account id")?)),
                None => None,
            });
        }
        let candidates = added_accounts
            .iter()
            .flatten()
            .map(|a| to_i64(a.0, "account"))
            .collect::<StoreResult<Vec<_>>>()?;
        let blocking = blockers_of(&tx, to_i64(commit.sender_account.0, "sender account")?, &candidates)
            .await?
            .into_iter()
            .map(|a| to_u64(a, "account").map(AccountId))
            .collect::<StoreResult<Vec<_>>>()?;
        let plan = plan_commit(state.as_ref(), &commit, &added_accounts, &blocking)?;
        let group = commit.group.as_bytes();
        let new_epoch = to_i64(plan.new_epoch, "epoch")?;
        let add_member = tx
            .prepare_cached("INSERT INTO group_members (group_id, device_id) VALUES ($1, $2)")
            .await
            .map_err(pg)?;
        if plan.create {
            let created = tx
                .execute(
                    "INSERT INTO groups (id, epoch, created_at, public_state) VALUES ($1, $2, $3, $4)
                     ON CONFLICT DO NOTHING",
                    &[&group, &new_epoch, &to_i64(commit.received_at, "timestamp")?, &commit.public_state],
                )
                .await
                .map_err(pg)?;
            if created == 0 {
                // Another creation of the same id won the race.
                return Err(StoreError::StaleEpoch { current: 1 });
            }
            tx.execute(&add_member, &[&group, &device_key(commit.sender_device)?]).await.map_err(pg)?;
        } else {
            tx.execute(
                "UPDATE groups SET epoch = $2, public_state = COALESCE($3, public_state) WHERE id = $1",
                &[&group, &new_epoch, &commit.public_state],
            )
            .await
            .map_err(pg)?;
        }
        for d in &plan.remove {
            tx.execute(
                "DELETE FROM group_members WHERE group_id = $1 AND device_id = $2",
                &[&group, &device_key(*d)?],
            )
            .await
            .map_err(pg)?;
        }
        for d in &plan.welcome_to {
            tx.execute(&add_member, &[&group, &device_key(*d)?]).await.map_err(pg)?;
        }
        let label = label_tx(&tx, commit.sender_account).await?;
        let mut copy = Copy {
            sender_account: commit.sender_account,
            sender_device: commit.sender_device,
            sender_label: &label,
            message_id: commit.message_id,
            received_at: commit.received_at,
            expires_at: commit.expires_at,
            body: &commit.commit_body,
        };
        let mut copies = self.fan_out(&tx, &plan.commit_to, &copy, WhenFull::Ignore).await?.copies;
        if let Some(welcome) = &commit.welcome_body {
            copy.message_id = commit.welcome_message_id();
            copy.body = welcome;
            let share = QueueLimits { per_device: u32::MAX, per_sender: commit.max_per_sender };
            copies.extend(self.fan_out(&tx, &plan.welcome_to, &copy, WhenFull::Fail(share)).await?.copies);
        }
        tx.commit().await.map_err(pg)?;
        Ok((plan.new_epoch, copies))
    }

    async fn send_group(&self, msg: GroupMessage, limits: QueueLimits) -> StoreResult<GroupSent> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let state = group_state_tx(&tx, &msg.group, false).await?.ok_or(StoreError::NoSuchGroup)?;
        if !state.members.iter().any(|(d, _)| *d == msg.sender_device) {
            return Err(StoreError::NotMember);
        }
        let others: Vec<DeviceId> =
            state.members.iter().map(|(d, _)| *d).filter(|d| *d != msg.sender_device).collect();
        let label = label_tx(&tx, msg.sender_account).await?;
        let copy = Copy {
            sender_account: msg.sender_account,
            sender_device: msg.sender_device,
            sender_label: &label,
            message_id: msg.message_id,
            received_at: msg.received_at,
            expires_at: msg.expires_at,
            body: &msg.body,
        };
        let sent = self.fan_out(&tx, &others, &copy, WhenFull::Skip(limits)).await?;
        tx.commit().await.map_err(pg)?;
        Ok(sent)
    }

    async fn set_block(
        &self,
        blocker: AccountId,
        blocked: AccountId,
        on: bool,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let (blocker, blocked) = (to_i64(blocker.0, "account")?, to_i64(blocked.0, "account")?);
        let client = self.client().await?;
        if on {
            client
                .execute(
                    "INSERT INTO blocks (blocker_account, blocked_account, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                    &[&blocker, &blocked, &to_i64(now, "timestamp")?],
                )
                .await
                .map_err(pg)?;
        } else {
            client
                .execute(
                    "DELETE FROM blocks WHERE blocker_account = $1 AND blocked_account = $2",
                    &[&blocker, &blocked],
                )
                .await
                .map_err(pg)?;
        }
        Ok(())
    }

    async fn blocked_accounts(&self, blocker: AccountId) -> StoreResult<Vec<AccountId>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT blocked_account FROM blocks WHERE blocker_account = $1 ORDER BY created_at, blocked_account",
                &[&to_i64(blocker.0, "account")?],
            )
            .await
            .map_err(pg)?;
        rows.iter().map(|r| to_u64(get(r, 0)?, "account").map(AccountId)).collect()
    }

    async fn leave_group(
        &self,
        devices: &[DeviceId],
        notice: GroupMessage,
    ) -> StoreResult<Vec<StoredMessage>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let state = group_state_tx(&tx, &notice.group, true).await?.ok_or(StoreError::NoSuchGroup)?;
        if !state.members.iter().any(|(d, _)| devices.contains(d)) {
            return Err(StoreError::NotMember);
        }
        let ids = devices.iter().map(|d| device_key(*d)).collect::<StoreResult<Vec<i64>>>()?;
        tx.execute(
            "DELETE FROM group_members WHERE group_id = $1 AND device_id = ANY($2)",
            &[&notice.group.as_bytes(), &ids],
        )
        .await
        .map_err(pg)?;
        let rest: Vec<DeviceId> =
            state.members.iter().map(|(d, _)| *d).filter(|d| !devices.contains(d)).collect();
        let label = label_tx(&tx, notice.sender_account).await?;
        let copy = Copy {
            sender_account: notice.sender_account,
            sender_device: notice.sender_device,
            sender_label: &label,
            message_id: notice.message_id,
            received_at: notice.received_at,
            expires_at: notice.expires_at,
            body: &notice.body,
        };
        let copies = self.fan_out(&tx, &rest, &copy, WhenFull::Ignore).await?.copies;
        tx.commit().await.map_err(pg)?;
        Ok(copies)
    }

    async fn create_call(&self, call: CallRecord) -> StoreResult<bool> {
        let (Some(caller), Some(callee)) = (key(call.caller.0), key(call.callee.0)) else {
            return Err(StoreError::NoSuchAccount);
        };
        let caller_device = to_i64(call.caller_device.0, "device id")?;
        let created_at = to_i64(call.created_at, "timestamp")?;
        let expires_at = to_i64(call.expires_at, "timestamp")?;
        let answered_by = call.answered_by.map(|d| to_i64(d.0, "device id")).transpose()?;
        let client = self.client().await?;
        // An unknown account fails the foreign key, which `pg` turns into NoSuchAccount.
        let st = client
            .prepare_cached(
                "INSERT INTO calls (call_id, caller_account, caller_device, callee_account, group_id,
                     offer, created_at, expires_at, answered_by, ended)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (call_id) DO NOTHING",
            )
            .await
            .map_err(pg)?;
        let inserted = client
            .execute(
                &st,
                &[
                    &&call.call.0[..],
                    &caller,
                    &caller_device,
                    &callee,
                    &call.group.as_bytes(),
                    &call.offer,
                    &created_at,
                    &expires_at,
                    &answered_by,
                    &call.ended,
                ],
            )
            .await
            .map_err(pg)?;
        Ok(inserted > 0)
    }

    async fn call(&self, id: &CallId) -> StoreResult<Option<CallRecord>> {
        let client = self.client().await?;
        let st = client
            .prepare_cached(&format!("SELECT {CALL_COLUMNS} FROM calls WHERE call_id = $1"))
            .await
            .map_err(pg)?;
        let row = client.query_opt(&st, &[&&id.0[..]]).await.map_err(pg)?;
        row.as_ref().map(call_record).transpose()
    }

    async fn answer_call(
        &self,
        id: &CallId,
        device: DeviceId,
        now: UnixMillis,
    ) -> StoreResult<Option<CallRecord>> {
        let Some(device) = key(device.0) else {
            return Ok(None);
        };
        let now = to_i64(now, "time")?;
        let client = self.client().await?;
        // One statement: a racing answer on another node waits for the row lock, then
        // re-checks the condition against the winner's committed row and matches nothing.
        let st = client
            .prepare_cached(&format!(
                "UPDATE calls SET answered_by = $2
                 WHERE call_id = $1 AND NOT ended AND expires_at > $3
                     AND (answered_by IS NULL OR answered_by = $2)
                 RETURNING {CALL_COLUMNS}"
            ))
            .await
            .map_err(pg)?;
        let row = client.query_opt(&st, &[&&id.0[..], &device, &now]).await.map_err(pg)?;
        row.as_ref().map(call_record).transpose()
    }

    async fn end_call(&self, id: &CallId) -> StoreResult<()> {
        let client = self.client().await?;
        let st = client
            .prepare_cached("UPDATE calls SET ended = TRUE, offer = ''::BYTEA WHERE call_id = $1")
            .await
            .map_err(pg)?;
        client.execute(&st, &[&&id.0[..]]).await.map_err(pg)?;
        Ok(())
    }

    async fn count_call_misfit(
        &self,
        account: AccountId,
        reason: &str,
        n: u64,
        now: UnixMillis,
    ) -> StoreResult<u64> {
        check_misfit_reason(reason)?;
        let n = to_i64(n, "count")?;
        let Some(account) = key(account.0) else {
            return Err(StoreError::NoSuchAccount);
        };
        let now = to_i64(now, "time")?;
        let client = self.client().await?;
        // An unknown account fails the foreign key, which `pg` turns into NoSuchAccount.
        let st = client
            .prepare_cached(
                "INSERT INTO call_misfits (account_id, reason, count, last_at) VALUES ($1, $2, $4, $3)
                 ON CONFLICT (account_id, reason) DO UPDATE SET count = call_misfits.count + excluded.count,
                     last_at = GREATEST(call_misfits.last_at, excluded.last_at)
                 RETURNING count",
            )
            .await
            .map_err(pg)?;
        let row = client.query_one(&st, &[&account, &reason, &now, &n]).await.map_err(pg)?;
        to_u64(get(&row, 0)?, "count")
    }

    async fn call_misfits(&self, account: AccountId) -> StoreResult<Vec<CallMisfit>> {
        let Some(account) = key(account.0) else {
            return Ok(Vec::new());
        };
        let client = self.client().await?;
        let st = client
            .prepare_cached(
                "SELECT reason, count, last_at FROM call_misfits WHERE account_id = $1 ORDER BY reason",
            )
            .await
            .map_err(pg)?;
        let rows = client.query(&st, &[&account]).await.map_err(pg)?;
        rows.iter()
            .map(|r| {
                Ok(CallMisfit {
                    reason: get(r, 0)?,
                    count: to_u64(get(r, 1)?, "count")?,
                    last_at: to_u64(get(r, 2)?, "timestamp")?,
                })
            })
            .collect()
    }

    async fn top_call_misfits(&self, limit: u32) -> StoreResult<Vec<(AccountId, u64)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        // SUM of BIGINT is NUMERIC in PostgreSQL: cast it back.
        let st = client
            .prepare_cached(
                "SELECT account_id, SUM(count)::BIGINT AS total FROM call_misfits
                 GROUP BY account_id ORDER BY total DESC, account_id LIMIT $1",
            )
            .await
            .map_err(pg)?;
        let rows = client.query(&st, &[&i64::from(limit)]).await.map_err(pg)?;
        rows.iter()
            .map(|r| Ok((AccountId(to_u64(get(r, 0)?, "account id")?), to_u64(get(r, 1)?, "count")?)))
            .collect()
    }

    async fn calls_placed_since(&self, caller: AccountId, since: UnixMillis) -> StoreResult<u64> {
        let Some(caller) = key(caller.0) else {
            return Ok(0);
        };
        let since = to_i64(since, "time")?;
        let client = self.client().await?;
        let st = client
            .prepare_cached("SELECT COUNT(*) FROM calls WHERE caller_account = $1 AND created_at >= $2")
            .await
            .map_err(pg)?;
        let row = client.query_one(&st, &[&caller, &since]).await.map_err(pg)?;
        to_u64(get(&row, 0)?, "count")
    }

    async fn record_sentinel_action(&self, action: NewSentinelAction) -> StoreResult<u64> {
        check_sentinel_fields(&[&action.subject, &action.action, &action.rule, &action.reason])?;
        let (created_at, until) = (to_i64(action.created_at, "time")?, to_i64(action.until, "time")?);
        let client = self.client().await?;
        let st = client
            .prepare_cached(
                "INSERT INTO sentinel_actions (subject, action, rule, reason, created_at, until)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .await
            .map_err(pg)?;
        let row = client
            .query_one(
                &st,
                &[&action.subject, &action.action, &action.rule, &action.reason, &created_at, &until],
            )
            .await
            .map_err(pg)?;
        to_u64(get(&row, 0)?, "id")
    }

    async fn sentinel_actions_in_force(
        &self,
        subject: &str,
        now: UnixMillis,
    ) -> StoreResult<Vec<SentinelAction>> {
        let now = to_i64(now, "time")?;
        let client = self.client().await?;
        let sql = format!(
            "SELECT {SENTINEL_COLUMNS} FROM sentinel_actions
             WHERE subject = $1 AND until > $2 AND lifted_at IS NULL ORDER BY id"
        );
        let st = client.prepare_cached(&sql).await.map_err(pg)?;
        client.query(&st, &[&subject, &now]).await.map_err(pg)?.iter().map(sentinel_row).collect()
    }

    async fn sentinel_actions(&self, limit: u32) -> StoreResult<Vec<SentinelAction>> {
        let client = self.client().await?;
        let sql = format!("SELECT {SENTINEL_COLUMNS} FROM sentinel_actions ORDER BY id DESC LIMIT $1");
        let st = client.prepare_cached(&sql).await.map_err(pg)?;
        client.query(&st, &[&i64::from(limit)]).await.map_err(pg)?.iter().map(sentinel_row).collect()
    }

    async fn lift_sentinel_actions(
        &self,
        subject: &str,
        by: &str,
        now: UnixMillis,
    ) -> StoreResult<Vec<SentinelAction>> {
        check_sentinel_fields(&[subject, by])?;
        let now = to_i64(now, "time")?;
        let client = self.client().await?;
        let sql = format!(
            "UPDATE sentinel_actions SET lifted_at = $3, lifted_by = $2
             WHERE subject = $1 AND until > $3 AND lifted_at IS NULL RETURNING {SENTINEL_COLUMNS}"
        );
        let st = client.prepare_cached(&sql).await.map_err(pg)?;
        let mut rows: Vec<SentinelAction> = client
            .query(&st, &[&subject, &by, &now])
            .await
            .map_err(pg)?
            .iter()
            .map(sentinel_row)
            .collect::<StoreResult<_>>()?;
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }

    async fn last_sentinel_lift(&self, subject: &str, action: &str) -> StoreResult<Option<UnixMillis>> {
        let client = self.client().await?;
        let st = client
            .prepare_cached("SELECT MAX(lifted_at) FROM sentinel_actions WHERE subject = $1 AND action = $2")
            .await
            .map_err(pg)?;
        let row = client.query_one(&st, &[&subject, &action]).await.map_err(pg)?;
        get::<Option<i64>>(&row, 0)?.map(|at| to_u64(at, "time")).transpose()
    }

    async fn purge_sentinel_actions(&self, before: UnixMillis) -> StoreResult<u64> {
        let before = to_i64(before, "time")?;
        let client = self.client().await?;
        let st = client
            .prepare_cached(
                "DELETE FROM sentinel_actions WHERE
                   (lifted_at IS NOT NULL AND lifted_at < $1 AND lift_noted)
                   OR (lifted_at IS NULL AND until < $1)",
            )
            .await
            .map_err(pg)?;
        client.execute(&st, &[&before]).await.map_err(pg)
    }

    async fn take_unnoted_sentinel_lifts(&self, limit: u32) -> StoreResult<Vec<SentinelAction>> {
        let client = self.client().await?;
        // SKIP LOCKED: two nodes taking at once each get different lifts, never the same one.
        let sql = format!(
            "UPDATE sentinel_actions SET lift_noted = TRUE WHERE id IN (
                SELECT id FROM sentinel_actions WHERE lifted_at IS NOT NULL AND NOT lift_noted
                ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING {SENTINEL_COLUMNS}"
        );
        let st = client.prepare_cached(&sql).await.map_err(pg)?;
        let mut rows: Vec<SentinelAction> = client
            .query(&st, &[&i64::from(limit)])
            .await
            .map_err(pg)?
            .iter()
            .map(sentinel_row)
            .collect::<StoreResult<_>>()?;
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }

    async fn record_sentinel_sightings(&self, sightings: Vec<SentinelSighting>) -> StoreResult<()> {
        check_sightings(&sightings)?;
        if sightings.is_empty() {
            return Ok(());
        }
        let mut at = Vec::with_capacity(sightings.len());
        let mut account = Vec::with_capacity(sightings.len());
        let mut kind = Vec::with_capacity(sightings.len());
        let mut peer = Vec::with_capacity(sightings.len());
        let mut network = Vec::with_capacity(sightings.len());
        let mut address = Vec::with_capacity(sightings.len());
        let mut clients = Vec::with_capacity(sightings.len());
        for s in sightings {
            at.push(to_i64(s.at, "time")?);
            account.push(to_i64(s.account.0, "account id")?);
            kind.push(s.kind.as_str());
            peer.push(s.peer.map(|p| to_i64(p.0, "account id")).transpose()?);
            network.push(s.network);
            address.push(s.address);
            clients.push(s.client);
        }
        let db = self.client().await?;
        // One statement: all of them, or none.
        let st = db
            .prepare_cached(
                "INSERT INTO sentinel_sightings (at, account, kind, peer, network, address, client)
                 SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::BIGINT[], $5::TEXT[], $6::TEXT[],
                                      $7::TEXT[])",
            )
            .await
            .map_err(pg)?;
        db.execute(&st, &[&at, &account, &kind, &peer, &network, &address, &clients]).await.map_err(pg)?;
        Ok(())
    }

    async fn sentinel_sightings(&self, query: SightingQuery) -> StoreResult<Vec<SentinelSighting>> {
        check_sighting_query(&query)?;
        let accounts: Vec<i64> = query.accounts.iter().filter_map(|a| key(a.0)).collect();
        let since = to_i64(query.since, "time")?;
        let client = self.client().await?;
        let st = client
            .prepare_cached(
                "SELECT at, account, kind, peer, network, address, client FROM sentinel_sightings
                 WHERE at >= $1 AND (account = ANY($2) OR network = ANY($3) OR client = ANY($5))
                 ORDER BY at, id LIMIT $4",
            )
            .await
            .map_err(pg)?;
        client
            .query(&st, &[&since, &accounts, &query.networks, &i64::from(query.limit), &query.clients])
            .await
            .map_err(pg)?
            .iter()
            .map(|r| {
                Ok(SentinelSighting {
                    at: to_u64(get(r, 0)?, "time")?,
                    account: AccountId(to_u64(get(r, 1)?, "account id")?),
                    kind: sighting_kind(get(r, 2)?)?,
                    peer: get::<Option<i64>>(r, 3)?
                        .map(|p| to_u64(p, "account id").map(AccountId))
                        .transpose()?,
                    network: get(r, 4)?,
                    address: get(r, 5)?,
                    client: get(r, 6)?,
                })
            })
            .collect()
    }

    async fn purge_sentinel_sightings(&self, before: UnixMillis) -> StoreResult<u64> {
        let before = to_i64(before, "time")?;
        let client = self.client().await?;
        let st = client.prepare_cached("DELETE FROM sentinel_sightings WHERE at < $1").await.map_err(pg)?;
        client.execute(&st, &[&before]).await.map_err(pg)
    }
}

const SENTINEL_COLUMNS: &str = "id, subject, action, rule, reason, created_at, until, lifted_at, lifted_by";

fn sentinel_row(r: &Row) -> StoreResult<SentinelAction> {
    Ok(SentinelAction {
        id: to_u64(get(r, 0)?, "id")?,
        subject: get(r, 1)?,
        action: get(r, 2)?,
        rule: get(r, 3)?,
        reason: get(r, 4)?,
        created_at: to_u64(get(r, 5)?, "time")?,
        until: to_u64(get(r, 6)?, "time")?,
        lifted_at: get::<Option<i64>>(r, 7)?.map(|t| to_u64(t, "time")).transpose()?,
        lifted_by: get(r, 8)?,
    })
}

// ---------------------------------------------------------------- events between nodes

/// Events buffered for the server; past this, one `Resync` replaces what was dropped.
const EVENT_CHANNEL: usize = 4096;

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

type Listener = (tokio_postgres::Client, tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::Notification>);

/// Open a dedicated connection that LISTENs for other nodes' notifications.
async fn listen(config: &tokio_postgres::Config) -> StoreResult<Listener> {
    let (client, mut connection) = config.connect(NoTls).await.map_err(pg)?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        // The connection yields notifications only when polled for messages.
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = futures_util::StreamExt::next(&mut messages).await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message
                && tx.send(n).is_err()
            {
                break;
            }
        }
    });
    client.batch_execute("LISTEN rampart_events").await.map_err(pg)?;
    Ok((client, rx))
}

/// Parse one notification; `None` for our own and for anything malformed (another version).
fn parse_event(own_node: &str, payload: &str) -> Vec<StoreEvent> {
    let mut parts = payload.splitn(3, '|');
    let (Some(node), Some(kind), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        return Vec::new();
    };
    if node == own_node {
        return Vec::new();
    }
    let device = |s: &str| s.parse::<u64>().ok().map(DeviceId);
    match kind {
        "q" => body.split(',').filter_map(device).map(StoreEvent::Queued).collect(),
        "r" => device(body).map(StoreEvent::Revoked).into_iter().collect(),
        "l" => {
            let mut f = body.split('|');
            match (
                f.next().and_then(hex_decode),
                f.next().and_then(|a| a.parse().ok()),
                f.next().and_then(device),
            ) {
                (Some(hash), Some(account), Some(device)) => {
                    vec![StoreEvent::Linked {
                        code_hash: SecretHash(hash),
                        account: AccountId(account),
                        device,
                    }]
                }
                _ => Vec::new(),
            }
        }
        _ => Vec::new(),
    }
}

/// Forward notifications to the server for as long as it listens; reconnect when the listening
/// connection drops, and ask for a resync since notifications may have been missed meanwhile.
async fn run_listener(
    config: tokio_postgres::Config,
    node: String,
    first: Listener,
    events: mpsc::Sender<StoreEvent>,
) {
    let mut current = Some(first);
    let mut backoff = Duration::from_millis(100);
    loop {
        let (client, mut notes) = match current.take() {
            Some(l) => l,
            None => match listen(&config).await {
                Ok(l) => {
                    backoff = Duration::from_millis(100);
                    if events.send(StoreEvent::Resync).await.is_err() {
                        return;
                    }
                    l
                }
                Err(e) => {
                    tracing::warn!(error = %e, "PostgreSQL event listener cannot reconnect; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            },
        };
        let mut overflowed = false;
        while let Some(note) = notes.recv().await {
            for event in parse_event(&node, note.payload()) {
                match events.try_send(event) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => overflowed = true,
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
            if overflowed && events.try_send(StoreEvent::Resync).is_ok() {
                overflowed = false;
            }
        }
        drop(client);
        tracing::warn!("PostgreSQL event listener disconnected; reconnecting");
    }
}

#[cfg(test)]
mod event_tests {
    use super::*;

    #[test]
    fn parses_other_nodes_events_and_ignores_own() {
        assert_eq!(
            parse_event("a", "b|q|1,2"),
            vec![StoreEvent::Queued(DeviceId(1)), StoreEvent::Queued(DeviceId(2))]
        );
        assert!(parse_event("a", "a|q|1").is_empty());
        assert_eq!(parse_event("a", "b|r|7"), vec![StoreEvent::Revoked(DeviceId(7))]);
        let hash = "ab".repeat(32);
        assert_eq!(
            parse_event("a", &format!("b|l|{hash}|3|9")),
            vec![StoreEvent::Linked {
                code_hash: SecretHash([0xab; 32]),
                account: AccountId(3),
                device: DeviceId(9)
            }]
        );
        for junk in ["", "b", "b|q", "b|x|1", "b|l|zz|1|2", "b|q|notanumber"] {
            assert!(parse_event("a", junk).is_empty(), "{junk}");
        }
    }
}
