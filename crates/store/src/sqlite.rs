//! The embedded SQLite backend: one file, one writer thread, group commit.
//!
//! Every operation (reads included) is a command sent to a single dedicated thread that owns
//! the only connection. The thread takes up to [`MAX_BATCH`] waiting commands, runs them in one
//! transaction, each inside its own savepoint so that a failing command (say `QueueFull`) undoes
//! only its own work, and answers the callers only after `COMMIT` returned. With
//! `synchronous=FULL` that means every acknowledged write is in the fsynced WAL, so it survives
//! a crash or power loss, while the cost of the fsync is shared by the whole batch.
//!
//! Routing reads through the same thread keeps the model simple and gives read-your-writes for
//! free: a caller that got an answer to a write will see it in any read issued afterwards.

use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use rampart_core::call::CallId;
use rampart_core::{
    AccountId, DeviceId, GroupId, MessageId, PhoneNumber, SecretHash, ServerMessageId, Username,
};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use crate::convert::{
    call_id_from_db, call_purge_cutoff, check_misfit_reason, check_sentinel_fields, check_sighting_query,
    check_sightings, fetch_keys, hash_from_db, key, pending_migrations, sighting_kind, to_i64, to_u64,
};
use crate::{
    ANSWERED_CALL_KEEP_MS, AccountKeys, CallMisfit, CallRecord, DeviceAuth, DeviceRecord, GroupCommitRecord,
    GroupMessage, GroupSent, GroupState, NewDevice, NewMessage, NewSentinelAction, OutboxEntry, PendingLink,
    PendingRegistration, Purged, QueueLimits, Registered, SentinelAction, SentinelSighting, SightingQuery,
    Store, StoreError, StoreResult, StoredMessage, UnixMillis, WhenFull, only_device, plan_commit, room_for,
};

/// Most commands committed together. Large enough to amortise the fsync under load, small
/// enough that one batch does not hold callers for long.
const MAX_BATCH: usize = 256;
/// Bounded so that a flood of callers waits (asynchronously) instead of growing memory.
const CHANNEL_CAPACITY: usize = 4096;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const STATEMENT_CACHE: usize = 64;

/// Ordered schema migrations. Never edit an entry once released: append a new version.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "
    CREATE TABLE accounts (
        -- AUTOINCREMENT everywhere ids leave the database: a reused id could make a client
        -- confuse a new row with an old one (a revoked device, an acknowledged message).
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        phone       TEXT NOT NULL UNIQUE,
        username    TEXT UNIQUE,
        created_at  INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE devices (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        account_id    INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        name          TEXT NOT NULL,
        secret_hash   BLOB NOT NULL,
        created_at    INTEGER NOT NULL,
        last_seen_at  INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX devices_account ON devices(account_id, id);

    CREATE TABLE pending_registrations (
        phone       TEXT PRIMARY KEY,
        code_hash   BLOB NOT NULL,
        username    TEXT,
        expires_at  INTEGER NOT NULL,
        attempts    INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    CREATE INDEX pending_registrations_expires ON pending_registrations(expires_at);

    CREATE TABLE pending_links (
        code_hash    BLOB PRIMARY KEY,
        device_name  TEXT NOT NULL,
        secret_hash  BLOB NOT NULL,
        expires_at   INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX pending_links_expires ON pending_links(expires_at);

    CREATE TABLE queue (
        -- AUTOINCREMENT also keeps ids increasing after the newest row is deleted, which
        -- clients rely on when they fetch 'after' the last id they saw.
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        device_id       INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        sender_account  INTEGER NOT NULL,
        sender_device   INTEGER NOT NULL,
        sender_label    TEXT NOT NULL,
        message_id      BLOB NOT NULL,
        received_at     INTEGER NOT NULL,
        expires_at      INTEGER NOT NULL,
        body            BLOB NOT NULL,
        UNIQUE (device_id, sender_account, message_id)
    ) STRICT;
    CREATE INDEX queue_device ON queue(device_id, id);
    CREATE INDEX queue_expires ON queue(expires_at);

    CREATE TABLE verifier_outbox (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        phone       TEXT NOT NULL,
        text        TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX verifier_outbox_created ON verifier_outbox(created_at);
    ",
    ),
    (
        2,
        // A per-device queue length kept by triggers, so the "queue full" check on every send is
        // one row read instead of a count over a possibly long queue.
        "
    ALTER TABLE devices ADD COLUMN queue_len INTEGER NOT NULL DEFAULT 0;
    UPDATE devices SET queue_len = (SELECT COUNT(*) FROM queue WHERE queue.device_id = devices.id);
    CREATE TRIGGER queue_len_insert AFTER INSERT ON queue BEGIN
        UPDATE devices SET queue_len = queue_len + 1 WHERE id = NEW.device_id;
    END;
    CREATE TRIGGER queue_len_delete AFTER DELETE ON queue BEGIN
        UPDATE devices SET queue_len = queue_len - 1 WHERE id = OLD.device_id;
    END;
    ",
    ),
    (
        3,
        // End-to-end encryption: device certificates, MLS key packages, and groups as the
        // delivery service sees them (an epoch and member device ids, nothing else).
        "
    ALTER TABLE devices ADD COLUMN certificate BLOB;
    CREATE TABLE key_packages (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        device_id    INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        last_resort  INTEGER NOT NULL,
        body         BLOB NOT NULL
    ) STRICT;
    CREATE INDEX key_packages_device ON key_packages(device_id, last_resort, id);
    CREATE TABLE groups (
        id          BLOB PRIMARY KEY,
        epoch       INTEGER NOT NULL,
        created_at  INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE group_members (
        group_id   BLOB NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
        device_id  INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        PRIMARY KEY (group_id, device_id)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX group_members_device ON group_members(device_id);
    ",
    ),
    (
        4,
        // Call set-up through the signaling server, and per-account counts of call requests
        // that did not fit the call schema (evidence: never purged).
        "
    CREATE TABLE calls (
        call_id         BLOB PRIMARY KEY CHECK (length(call_id) = 16),
        caller_account  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        caller_device   INTEGER NOT NULL,
        callee_account  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        group_id        BLOB NOT NULL,
        offer           BLOB NOT NULL,
        created_at      INTEGER NOT NULL,
        expires_at      INTEGER NOT NULL,
        -- No foreign key: a revoked device must neither block purges nor rewrite the record.
        answered_by     INTEGER,
        ended           INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    CREATE INDEX calls_caller ON calls(caller_account, created_at);
    CREATE INDEX calls_expires ON calls(expires_at);
    CREATE TABLE call_misfits (
        account_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        reason      TEXT NOT NULL,
        count       INTEGER NOT NULL,
        last_at     INTEGER NOT NULL,
        PRIMARY KEY (account_id, reason)
    ) STRICT, WITHOUT ROWID;
    ",
    ),
    (
        5,
        // Blocks: the blocker takes nothing more from the blocked account.
        "
    CREATE TABLE blocks (
        blocker_account INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        blocked_account INTEGER NOT NULL,
        created_at      INTEGER NOT NULL,
        PRIMARY KEY (blocker_account, blocked_account)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX blocks_blocked ON blocks(blocked_account);
    ",
    ),
    (
        6,
        // The delivery service's public MLS state of each group, checked against every commit.
        "ALTER TABLE groups ADD COLUMN public_state BLOB;",
    ),
    (
        7,
        // Sentinel's actions against accounts and networks, shared by every node.
        "
    CREATE TABLE sentinel_actions (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        subject     TEXT NOT NULL,
        action      TEXT NOT NULL,
        rule        TEXT NOT NULL,
        reason      TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        until       INTEGER NOT NULL,
        lifted_at   INTEGER,
        lifted_by   TEXT,
        lift_noted  INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    CREATE INDEX sentinel_actions_subject ON sentinel_actions(subject, until);
    CREATE INDEX sentinel_actions_unnoted ON sentinel_actions(lift_noted) WHERE lifted_at IS NOT NULL;
    ",
    ),
    (
        8,
        // What Sentinel saw, for investigations; purged after the metadata retention period.
        "
    CREATE TABLE sentinel_sightings (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        at       INTEGER NOT NULL,
        account  INTEGER NOT NULL,
        kind     TEXT NOT NULL,
        peer     INTEGER,
        network  TEXT,
        address  TEXT
    ) STRICT;
    CREATE INDEX sentinel_sightings_account ON sentinel_sightings(account, at);
    CREATE INDEX sentinel_sightings_network ON sentinel_sightings(network, at) WHERE network IS NOT NULL;
    CREATE INDEX sentinel_sightings_at ON sentinel_sightings(at);
    ",
    ),
    (
        9,
        // The software a device named when it was not Rampart's own: accounts sharing one link.
        "
    ALTER TABLE sentinel_sightings ADD COLUMN client TEXT;
    CREATE INDEX sentinel_sightings_client ON sentinel_sightings(client, at) WHERE client IS NOT NULL;
    ",
    ),
];

/// The embedded store. Cheap to share behind an `Arc`; all methods may be called concurrently.
pub struct SqliteStore {
    /// `None` only while dropping: the writer stops once every sender is gone.
    sender: Option<mpsc::Sender<Msg>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Open (creating if needed) the database file, apply pending migrations and start the
    /// writer thread.
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        let conn = Connection::open(path).db()?;
        let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).db()?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Still durable with synchronous=FULL, only slower; some file systems refuse WAL.
            tracing::warn!(journal_mode = %mode, "SQLite refused WAL mode");
        }
        Self::start(conn)
    }

    /// A private in-memory database, gone when the store is dropped. For tests.
    pub fn open_in_memory() -> StoreResult<SqliteStore> {
        Self::start(Connection::open_in_memory().db()?)
    }

    fn start(mut conn: Connection) -> StoreResult<SqliteStore> {
        conn.pragma_update(None, "synchronous", "FULL").db()?;
        conn.pragma_update(None, "foreign_keys", "ON").db()?;
        // Each command runs in a savepoint, whose sub-journal is a temporary file by default:
        // profiling showed a third of the writer's time in writing it. Keep it in memory (it
        // holds only the pages one command touched; durability comes from the WAL).
        conn.pragma_update(None, "temp_store", "MEMORY").db()?;
        conn.busy_timeout(BUSY_TIMEOUT).db()?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        migrate(&mut conn)?;
        let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
        let writer = std::thread::Builder::new()
            .name("rampart-sqlite".into())
            .spawn(move || writer_loop(conn, receiver))
            .map_err(|e| StoreError::Backend(format!("cannot start the SQLite writer thread: {e}")))?;
        Ok(SqliteStore { sender: Some(sender), writer: Mutex::new(Some(writer)) })
    }

    /// How the writer's connection is set up for durability: the journal mode and the
    /// `synchronous` level (0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA). Read from the connection that
    /// writes, since both are per-connection settings; tests hold the store to FULL.
    pub async fn durability(&self) -> StoreResult<(String, i64)> {
        self.call(|c| {
            let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0)).db()?;
            let level: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0)).db()?;
            Ok((mode, level))
        })
        .await
    }

    /// Finish every command already queued, close the database and stop the writer thread.
    /// Calls made afterwards fail with a `Backend` error. Dropping the store does the same.
    pub async fn close(&self) {
        if let Some(sender) = &self.sender {
            let (done, wait) = oneshot::channel();
            if sender.send(Msg::Close(done)).await.is_ok() {
                let _ = wait.await;
            }
        }
        // The writer answered after closing the connection, so this join does not wait long.
        if let Some(handle) = self.take_writer() {
            let _ = handle.join();
        }
    }

    fn take_writer(&self) -> Option<JoinHandle<()>> {
        self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }

    /// Run `f` on the writer thread inside the next batch. An `Err` from `f` rolls back
    /// everything `f` did; an error that must be reported *and* committed (a wrong code that
    /// counts as an attempt) is returned as `Ok(Err(..))` by `f`.
    async fn call<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let sender = self.sender.as_ref().ok_or_else(closed)?;
        let (reply, answer) = oneshot::channel();
        let call = Msg::Run(Box::new(Call { f: Some(f), result: None, reply }));
        // Submit synchronously on the first poll when there is room (the usual case): calls
        // then reach the writer, and commit, in the order they were first polled, which keeps
        // one connection's pipelined sends in order. Only a full channel waits.
        match sender.try_send(call) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(call)) => sender.send(call).await.map_err(|_| closed())?,
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(closed()),
        }
        answer.await.map_err(|_| closed())?
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Dropping the last sender lets the writer drain the channel and exit.
        drop(self.sender.take());
        if let Some(handle) = self.take_writer()
            && handle.join().is_err()
        {
            tracing::error!("the SQLite writer thread panicked");
        }
    }
}

fn closed() -> StoreError {
    StoreError::Backend("the SQLite store is closed".into())
}

// --- the writer thread ----------------------------------------------------------------------

enum Msg {
    Run(Box<dyn Command>),
    Close(oneshot::Sender<()>),
}

trait Command: Send {
    /// Runs inside the batch transaction. False means the command failed and its savepoint must
    /// be rolled back.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the fate of the batch is known. `failure` is set when the batch
    /// did not commit, whatever the command's own result was.
    fn finish(self: Box<Self>, failure: Option<&str>);
}

struct Call<F, T> {
    f: Option<F>,
    result: Option<StoreResult<T>>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<F, T> Command for Call<F, T>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let result = match self.f.take() {
            Some(f) => f(conn),
            None => Err(StoreError::Backend("internal error: command ran twice".into())),
        };
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, failure: Option<&str>) {
        let answer = match (failure, self.result) {
            (None, Some(result)) => result,
            (Some(why), _) => Err(StoreError::Backend(why.to_owned())),
            (None, None) => Err(StoreError::Backend("internal error: command did not run".into())),
        };
        // The caller may have given up waiting; its data is committed all the same.
        let _ = self.reply.send(answer);
    }
}

fn writer_loop(conn: Connection, mut receiver: mpsc::Receiver<Msg>) {
    let mut msgs = Vec::with_capacity(MAX_BATCH);
    let mut closers = Vec::new();
    // Returns 0 only once the channel is closed (all senders dropped or `close()`) and empty,
    // so everything queued before that is still executed.
    while receiver.blocking_recv_many(&mut msgs, MAX_BATCH) > 0 {
        let mut batch: Vec<Box<dyn Command>> = Vec::with_capacity(msgs.len());
        for msg in msgs.drain(..) {
            match msg {
                Msg::Run(cmd) => batch.push(cmd),
                Msg::Close(done) => {
                    receiver.close();
                    closers.push(done);
                }
            }
        }
        if !batch.is_empty() {
            run_batch(&conn, batch);
        }
    }
    if let Err((_, e)) = conn.close() {
        tracing::error!(error = %e, "closing the SQLite database failed");
    }
    for done in closers {
        let _ = done.send(());
    }
}

fn run_batch(conn: &Connection, mut batch: Vec<Box<dyn Command>>) {
    let failure = run_in_transaction(conn, &mut batch).err();
    if let Some(why) = &failure {
        tracing::error!(commands = batch.len(), error = %why, "SQLite batch failed");
    }
    for cmd in batch {
        cmd.finish(failure.as_deref());
    }
}

fn run_in_transaction(conn: &Connection, batch: &mut [Box<dyn Command>]) -> Result<(), String> {
    // IMMEDIATE: if another process ever opens the file, we wait for the write lock here
    // (busy_timeout) rather than fail halfway through the batch.
    step(conn, "BEGIN IMMEDIATE")?;
    for cmd in batch.iter_mut() {
        let outcome = step(conn, "SAVEPOINT cmd").and_then(|()| {
            let ok = cmd.run(conn);
            if conn.is_autocommit() {
                // SQLite abandons the whole transaction on some errors (I/O, disk full), which
                // lost the work of earlier commands too: none of them may report success.
                return Err("SQLite aborted the transaction".to_owned());
            }
            if ok {
                step(conn, "RELEASE cmd")
            } else {
                step(conn, "ROLLBACK TO cmd").and_then(|()| step(conn, "RELEASE cmd"))
            }
        });
        if let Err(e) = outcome {
            rollback(conn);
            return Err(e);
        }
    }
    if let Err(e) = step(conn, "COMMIT") {
        rollback(conn);
        return Err(e);
    }
    Ok(())
}

fn step(conn: &Connection, sql: &str) -> Result<(), String> {
    conn.prepare_cached(sql).and_then(|mut st| st.execute([])).map(drop).map_err(|e| format!("sqlite: {e}"))
}

fn rollback(conn: &Connection) {
    if !conn.is_autocommit()
        && let Err(e) = conn.execute_batch("ROLLBACK")
    {
        tracing::error!(error = %e, "SQLite rollback failed");
    }
}

fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).db()?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version     INTEGER PRIMARY KEY,
            applied_at  INTEGER NOT NULL
        ) STRICT;",
    )
    .db()?;
    let applied: Vec<i64> = {
        let mut st = tx.prepare("SELECT version FROM schema_migrations ORDER BY version").db()?;
        st.query_map([], |r| r.get(0)).db()?.collect::<Result<_, _>>().db()?
    };
    for (version, sql) in pending_migrations(&applied, MIGRATIONS)? {
        tx.execute_batch(sql).db()?;
        // The clock here is only a note for operators; domain times always come from callers.
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, unixepoch() * 1000)",
            [version],
        )
        .db()?;
        tracing::info!(backend = "sqlite", version, "applied schema migration");
    }
    tx.commit().db()
}

// --- conversions ----------------------------------------------------------------------------

trait OrBackend<T> {
    fn db(self) -> StoreResult<T>;
}

impl<T> OrBackend<T> for Result<T, rusqlite::Error> {
    fn db(self) -> StoreResult<T> {
        self.map_err(|e| match &e {
            // Backstop for the uniqueness of usernames: the constraint, not a prior SELECT,
            // is what decides.
            rusqlite::Error::SqliteFailure(f, Some(msg))
                if f.code == rusqlite::ErrorCode::ConstraintViolation
                    && msg.contains("accounts.username") =>
            {
                StoreError::UsernameTaken
            }
            // SQLite's messages name tables and columns, never bound values.
            _ => StoreError::Backend(format!("sqlite: {e}")),
        })
    }
}

fn username_from_db(name: String) -> StoreResult<Username> {
    Username::parse(&name).map_err(|_| StoreError::Backend("stored username is invalid".into()))
}

struct RawMessage {
    id: i64,
    device: i64,
    sender_account: i64,
    sender_device: i64,
    sender_label: String,
    message_id: Vec<u8>,
    received_at: i64,
    expires_at: i64,
    body: Vec<u8>,
}

impl RawMessage {
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            device: r.get(1)?,
            sender_account: r.get(2)?,
            sender_device: r.get(3)?,
            sender_label: r.get(4)?,
            message_id: r.get(5)?,
            received_at: r.get(6)?,
            expires_at: r.get(7)?,
            body: r.get(8)?,
        })
    }

    fn into_stored(self) -> StoreResult<StoredMessage> {
        Ok(StoredMessage {
            id: ServerMessageId(to_u64(self.id, "message id")?),
            device: DeviceId(to_u64(self.device, "device id")?),
            sender_account: AccountId(to_u64(self.sender_account, "account id")?),
            sender_device: DeviceId(to_u64(self.sender_device, "device id")?),
            sender_label: self.sender_label,
            message_id: MessageId::from_slice(&self.message_id)
                .ok_or_else(|| StoreError::Backend("stored message id has the wrong length".into()))?,
            received_at: to_u64(self.received_at, "timestamp")?,
            expires_at: to_u64(self.expires_at, "timestamp")?,
            body: self.body,
        })
    }
}

// --- operations (run on the writer thread) --------------------------------------------------

fn begin_registration(c: &Connection, p: PendingRegistration) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO pending_registrations (phone, code_hash, username, expires_at, attempts)
         VALUES (?1, ?2, ?3, ?4, 0)
         ON CONFLICT (phone) DO UPDATE SET code_hash = excluded.code_hash,
             username = excluded.username, expires_at = excluded.expires_at, attempts = 0",
    )
    .db()?
    .execute(params![
        p.phone.as_e164(),
        &p.code_hash.0[..],
        p.username.as_ref().map(Username::as_str),
        to_i64(p.expires_at, "expiry")?,
    ])
    .db()?;
    Ok(())
}

fn complete_registration(
    c: &Connection,
    phone: &str,
    code_hash: SecretHash,
    device: NewDevice,
    now: UnixMillis,
    max_attempts: u32,
) -> StoreResult<StoreResult<Registered>> {
    let now = to_i64(now, "time")?;
    let pending = c
        .prepare_cached(
            "SELECT code_hash, username, expires_at, attempts FROM pending_registrations
             WHERE phone = ?1",
        )
        .db()?
        .query_row([phone], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .optional()
        .db()?;
    let Some((stored_hash, username, expires_at, attempts)) = pending else {
        return Ok(Err(StoreError::NoPendingCode));
    };
    let delete_pending = || -> StoreResult<()> {
        c.prepare_cached("DELETE FROM pending_registrations WHERE phone = ?1")
            .db()?
            .execute([phone])
            .db()
            .map(drop)
    };
    if expires_at <= now {
        delete_pending()?;
        return Ok(Err(StoreError::CodeExpired));
    }
    if !hash_from_db(stored_hash)?.matches(&code_hash) {
        let attempts = u32::try_from(attempts).unwrap_or(0).saturating_add(1);
        if attempts >= max_attempts {
            delete_pending()?;
        } else {
            c.prepare_cached("UPDATE pending_registrations SET attempts = ?2 WHERE phone = ?1")
                .db()?
                .execute(params![phone, i64::from(attempts)])
                .db()?;
        }
        return Ok(Err(StoreError::WrongCode { attempts_left: max_attempts.saturating_sub(attempts) }));
    }
    delete_pending()?;

    let existing: Option<i64> = c
        .prepare_cached("SELECT id FROM accounts WHERE phone = ?1")
        .db()?
        .query_row([phone], |r| r.get(0))
        .optional()
        .db()?;
    let mut removed = Vec::new();
    let (account, replaced_existing) = match existing {
        Some(account) => {
            // Queues go with the devices (ON DELETE CASCADE).
            let gone: Vec<i64> = c
                .prepare_cached("DELETE FROM devices WHERE account_id = ?1 RETURNING id")
                .db()?
                .query_map([account], |r| r.get(0))
                .db()?
                .collect::<Result<_, _>>()
                .db()?;
            for id in gone {
                removed.push(DeviceId(to_u64(id, "device id")?));
            }
            c.prepare_cached("UPDATE accounts SET username = ?2 WHERE id = ?1")
                .db()?
                .execute(params![account, username])
                .db()?;
            (account, true)
        }
        None => {
            c.prepare_cached("INSERT INTO accounts (phone, username, created_at) VALUES (?1, ?2, ?3)")
                .db()?
                .execute(params![phone, username, now])
                .db()?;
            (c.last_insert_rowid(), false)
        }
    };
    let device = insert_device(c, account, &device, now)?;
    Ok(Ok(Registered {
        account: AccountId(to_u64(account, "account id")?),
        device,
        replaced_existing,
        removed_devices: removed,
    }))
}

fn insert_device(c: &Connection, account: i64, device: &NewDevice, now: i64) -> StoreResult<DeviceId> {
    c.prepare_cached(
        "INSERT INTO devices (account_id, name, secret_hash, created_at, last_seen_at)
         VALUES (?1, ?2, ?3, ?4, ?4)",
    )
    .db()?
    .execute(params![account, device.name, &device.secret_hash.0[..], now])
    .db()?;
    Ok(DeviceId(to_u64(c.last_insert_rowid(), "device id")?))
}

fn account_by_phone(c: &Connection, phone: &str) -> StoreResult<Option<AccountId>> {
    let id: Option<i64> = c
        .prepare_cached("SELECT id FROM accounts WHERE phone = ?1")
        .db()?
        .query_row([phone], |r| r.get(0))
        .optional()
        .db()?;
    id.map(|id| to_u64(id, "account id").map(AccountId)).transpose()
}

fn account_by_username(c: &Connection, name: &str) -> StoreResult<Option<AccountId>> {
    let id: Option<i64> = c
        .prepare_cached("SELECT id FROM accounts WHERE username = ?1")
        .db()?
        .query_row([name], |r| r.get(0))
        .optional()
        .db()?;
    id.map(|id| to_u64(id, "account id").map(AccountId)).transpose()
}

fn account_label(c: &Connection, account: AccountId) -> StoreResult<Option<String>> {
    let Some(account) = key(account.0) else {
        return Ok(None);
    };
    let row: Option<(String, Option<String>)> = c
        .prepare_cached("SELECT phone, username FROM accounts WHERE id = ?1")
        .db()?
        .query_row([account], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .db()?;
    row.map(|(phone, username)| match username {
        Some(name) => username_from_db(name).map(|u| u.to_string()),
        None => Ok(phone),
    })
    .transpose()
}

fn set_username(c: &Connection, account: AccountId, name: Option<String>) -> StoreResult<()> {
    let Some(account) = key(account.0) else {
        return Err(StoreError::NoSuchAccount);
    };
    let changed = c
        .prepare_cached("UPDATE accounts SET username = ?2 WHERE id = ?1")
        .db()?
        .execute(params![account, name])
        .db()?;
    if changed == 0 { Err(StoreError::NoSuchAccount) } else { Ok(()) }
}

fn device_auth(c: &Connection, device: DeviceId) -> StoreResult<Option<DeviceAuth>> {
    let Some(id) = key(device.0) else {
        return Ok(None);
    };
    let row: Option<(i64, Vec<u8>, i64, i64)> = c
        .prepare_cached(
            "SELECT d.account_id, d.secret_hash, a.created_at, d.created_at FROM devices d
             JOIN accounts a ON a.id = d.account_id WHERE d.id = ?1",
        )
        .db()?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()
        .db()?;
    row.map(|(account, hash, created_at, device_created_at)| {
        Ok(DeviceAuth {
            account: AccountId(to_u64(account, "account id")?),
            device,
            secret_hash: hash_from_db(hash)?,
            account_created_at: to_u64(created_at, "time")?,
            device_created_at: to_u64(device_created_at, "time")?,
        })
    })
    .transpose()
}

fn touch_device(c: &Connection, device: DeviceId, now: UnixMillis) -> StoreResult<()> {
    let Some(id) = key(device.0) else {
        return Ok(());
    };
    // Never move backwards, and skip the write when nothing changes.
    c.prepare_cached("UPDATE devices SET last_seen_at = ?2 WHERE id = ?1 AND last_seen_at < ?2")
        .db()?
        .execute(params![id, to_i64(now, "time")?])
        .db()?;
    Ok(())
}

fn list_devices(c: &Connection, account: AccountId) -> StoreResult<Vec<DeviceRecord>> {
    let Some(account) = key(account.0) else {
        return Ok(Vec::new());
    };
    let mut st = c
        .prepare_cached(
            "SELECT id, name, created_at, last_seen_at FROM devices WHERE account_id = ?1 ORDER BY id",
        )
        .db()?;
    let rows = st
        .query_map([account], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
        })
        .db()?;
    let mut out = Vec::new();
    for row in rows {
        let (id, name, created_at, last_seen_at) = row.db()?;
        out.push(DeviceRecord {
            id: DeviceId(to_u64(id, "device id")?),
            name,
            created_at: to_u64(created_at, "timestamp")?,
            last_seen_at: to_u64(last_seen_at, "timestamp")?,
        });
    }
    Ok(out)
}

fn revoke_device(c: &Connection, account: AccountId, device: DeviceId) -> StoreResult<()> {
    let (Some(account), Some(device)) = (key(account.0), key(device.0)) else {
        return Err(StoreError::NoSuchDevice);
    };
    let deleted = c
        .prepare_cached("DELETE FROM devices WHERE id = ?1 AND account_id = ?2")
        .db()?
        .execute([device, account])
        .db()?;
    if deleted == 0 { Err(StoreError::NoSuchDevice) } else { Ok(()) }
}

fn begin_link(c: &Connection, p: PendingLink) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO pending_links (code_hash, device_name, secret_hash, expires_at)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (code_hash) DO UPDATE SET device_name = excluded.device_name,
             secret_hash = excluded.secret_hash, expires_at = excluded.expires_at",
    )
    .db()?
    .execute(params![
        &p.code_hash.0[..],
        p.device.name,
        &p.device.secret_hash.0[..],
        to_i64(p.expires_at, "expiry")?,
    ])
    .db()?;
    Ok(())
}

fn complete_link(
    c: &Connection,
    code_hash: SecretHash,
    approver: DeviceId,
    account: AccountId,
    now: UnixMillis,
    max_devices: u32,
) -> StoreResult<StoreResult<DeviceId>> {
    let now = to_i64(now, "time")?;
    let code = &code_hash.0[..];
    let link: Option<(String, Vec<u8>, i64)> = c
        .prepare_cached("SELECT device_name, secret_hash, expires_at FROM pending_links WHERE code_hash = ?1")
        .db()?
        .query_row([code], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
        .db()?;
    let Some((name, secret_hash, expires_at)) = link else {
        return Ok(Err(StoreError::NoSuchLink));
    };
    let delete_link = || -> StoreResult<()> {
        c.prepare_cached("DELETE FROM pending_links WHERE code_hash = ?1")
            .db()?
            .execute([code])
            .db()
            .map(drop)
    };
    if expires_at <= now {
        delete_link()?;
        return Ok(Err(StoreError::NoSuchLink));
    }
    let Some(account) = key(account.0) else {
        return Ok(Err(StoreError::NoSuchAccount));
    };
    let exists = c.prepare_cached("SELECT 1 FROM accounts WHERE id = ?1").db()?.exists([account]).db()?;
    if !exists {
        return Ok(Err(StoreError::NoSuchAccount));
    }
    // The approving device must still be there: one revoked while it approved adds nothing.
    let Some(approver) = key(approver.0) else {
        return Ok(Err(StoreError::NoSuchDevice));
    };
    let approving = c
        .prepare_cached("SELECT 1 FROM devices WHERE id = ?1 AND account_id = ?2")
        .db()?
        .exists([approver, account])
        .db()?;
    if !approving {
        return Ok(Err(StoreError::NoSuchDevice));
    }
    let count: i64 = c
        .prepare_cached("SELECT COUNT(*) FROM devices WHERE account_id = ?1")
        .db()?
        .query_row([account], |r| r.get(0))
        .db()?;
    if count >= i64::from(max_devices) {
        // The code stays valid: the user may revoke a device and approve again.
        return Ok(Err(StoreError::TooManyDevices { max: max_devices }));
    }
    delete_link()?;
    let device = NewDevice { name, secret_hash: hash_from_db(secret_hash)? };
    Ok(Ok(insert_device(c, account, &device, now)?))
}

const SELECT_COPY: &str = "SELECT id, device_id, sender_account, sender_device, sender_label, message_id,
         received_at, expires_at, body
     FROM queue WHERE device_id = ?1 AND sender_account = ?2 AND message_id = ?3";

fn enqueue(c: &Connection, msg: NewMessage, limits: QueueLimits) -> StoreResult<Vec<StoredMessage>> {
    let Some(recipient) = key(msg.recipient.0) else {
        return Err(StoreError::NoSuchAccount);
    };
    let devices: Vec<QueueSlot> = {
        let mut st = c
            .prepare_cached("SELECT id, queue_len, account_id FROM devices WHERE account_id = ?1 ORDER BY id")
            .db()?;
        st.query_map([recipient], QueueSlot::from_row).db()?.collect::<Result<_, _>>().db()?
    };
    let devices = only_device(devices, |s| s.device, msg.only_device);
    if devices.is_empty() {
        let exists =
            c.prepare_cached("SELECT 1 FROM accounts WHERE id = ?1").db()?.exists([recipient]).db()?;
        if !exists {
            return Err(StoreError::NoSuchAccount);
        }
    }
    let sender_account = to_i64(msg.sender_account.0, "sender account")?;
    if !blockers_of(c, sender_account, &[recipient])?.is_empty() {
        return Ok(Vec::new());
    }
    let sender_label: String = if devices.is_empty() {
        String::new()
    } else {
        c.prepare_cached("SELECT COALESCE('@' || username, phone) FROM accounts WHERE id = ?1")
            .db()?
            .query_row([sender_account], |r| r.get(0))
            .optional()
            .db()?
            .ok_or(StoreError::NoSuchAccount)?
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
    queue_copies(c, &devices, &copy, WhenFull::Fail(limits))
}

/// A device a message may be queued for: its id, queue length and account.
#[derive(Clone, Copy)]
struct QueueSlot {
    device: i64,
    depth: i64,
    account: i64,
}

impl QueueSlot {
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self { device: r.get(0)?, depth: r.get(1)?, account: r.get(2)? })
    }
}

/// The accounts among `accounts` that blocked `sender`.
fn blockers_of(c: &Connection, sender: i64, accounts: &[i64]) -> StoreResult<Vec<i64>> {
    let mut st =
        c.prepare_cached("SELECT 1 FROM blocks WHERE blocker_account = ?1 AND blocked_account = ?2").db()?;
    let mut out = Vec::new();
    for &a in accounts {
        if st.exists(params![a, sender]).db()? {
            out.push(a);
        }
    }
    Ok(out)
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

/// Queue `copy` for each `(device, queue length)`, once: a device that already holds this
/// sender's message id gets nothing new (the existing copy is returned).
fn queue_copies(
    c: &Connection,
    devices: &[QueueSlot],
    copy: &Copy<'_>,
    when_full: WhenFull,
) -> StoreResult<Vec<StoredMessage>> {
    let sender_account = to_i64(copy.sender_account.0, "sender account")?;
    let sender_device = to_i64(copy.sender_device.0, "sender device")?;
    let received_at = to_i64(copy.received_at, "timestamp")?;
    let expires_at = to_i64(copy.expires_at, "timestamp")?;
    let message_id = &copy.message_id.0[..];
    let mut copies = Vec::with_capacity(devices.len());
    for &QueueSlot { device, depth, account } in devices {
        let existing = c
            .prepare_cached(SELECT_COPY)
            .db()?
            .query_row(params![device, sender_account, message_id], RawMessage::from_row)
            .optional()
            .db()?;
        if let Some(existing) = existing {
            copies.push(existing.into_stored()?);
            continue;
        }
        // The device's own account (its other devices) has no share: it is the user.
        let from_sender = if when_full.limits().is_some() && account != sender_account {
            Some(
                c.prepare_cached("SELECT COUNT(*) FROM queue WHERE device_id = ?1 AND sender_account = ?2")
                    .db()?
                    .query_row(params![device, sender_account], |r| r.get::<_, i64>(0))
                    .db()?,
            )
        } else {
            None
        };
        if !room_for(when_full, depth, from_sender)? {
            continue;
        }
        c.prepare_cached(
            "INSERT INTO queue (device_id, sender_account, sender_device, sender_label, message_id,
                 received_at, expires_at, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .db()?
        .execute(params![
            device,
            sender_account,
            sender_device,
            copy.sender_label,
            message_id,
            received_at,
            expires_at,
            copy.body,
        ])
        .db()?;
        copies.push(StoredMessage {
            id: ServerMessageId(to_u64(c.last_insert_rowid(), "message id")?),
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

fn fetch_queue(
    c: &Connection,
    device: DeviceId,
    after: Option<ServerMessageId>,
    now: UnixMillis,
    limit: u32,
) -> StoreResult<Vec<StoredMessage>> {
    let Some((device, after)) = fetch_keys(device, after) else {
        return Ok(Vec::new());
    };
    let mut st = c
        .prepare_cached(
            "SELECT id, device_id, sender_account, sender_device, sender_label, message_id,
                 received_at, expires_at, body
             FROM queue WHERE device_id = ?1 AND id > ?2 AND expires_at > ?3
             ORDER BY id LIMIT ?4",
        )
        .db()?;
    let rows = st
        .query_map(params![device, after, to_i64(now, "time")?, i64::from(limit)], RawMessage::from_row)
        .db()?;
    rows.map(|r| r.db().and_then(RawMessage::into_stored)).collect()
}

fn ack(c: &Connection, device: DeviceId, ids: &[ServerMessageId]) -> StoreResult<u64> {
    let Some(device) = key(device.0) else {
        return Ok(0);
    };
    let mut st = c.prepare_cached("DELETE FROM queue WHERE id = ?1 AND device_id = ?2").db()?;
    let mut deleted = 0u64;
    for id in ids.iter().filter_map(|id| key(id.0)) {
        let n = st.execute([id, device]).db()?;
        deleted = deleted.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
    }
    Ok(deleted)
}

fn count(c: &Connection, sql: &str, args: impl rusqlite::Params) -> StoreResult<u64> {
    let n: i64 = c.prepare_cached(sql).db()?.query_row(args, |r| r.get(0)).db()?;
    to_u64(n, "count")
}

fn purge_expired(c: &Connection, now: UnixMillis, outbox_ttl_ms: u64) -> StoreResult<Purged> {
    let now_db = to_i64(now, "time")?;
    let delete = |sql: &str, bound: i64| -> StoreResult<u64> {
        let n = c.prepare_cached(sql).db()?.execute([bound]).db()?;
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
    };
    let messages = delete("DELETE FROM queue WHERE expires_at <= ?1", now_db)?;
    let registrations = delete("DELETE FROM pending_registrations WHERE expires_at <= ?1", now_db)?;
    let links = delete("DELETE FROM pending_links WHERE expires_at <= ?1", now_db)?;
    // created_at + ttl <= now, written without an addition that could overflow.
    let outbox = match now.checked_sub(outbox_ttl_ms) {
        Some(cutoff) => {
            delete("DELETE FROM verifier_outbox WHERE created_at <= ?1", to_i64(cutoff, "time")?)?
        }
        None => 0,
    };
    let calls = match call_purge_cutoff(now)? {
        // An answered call that has not ended is kept a day longer: its hang-up is still to come.
        Some(cutoff) => c
            .prepare_cached(
                "DELETE FROM calls WHERE expires_at < ?1
                 AND (answered_by IS NULL OR ended OR expires_at < ?1 - ?2)",
            )
            .db()?
            .execute(params![cutoff, to_i64(ANSWERED_CALL_KEEP_MS, "time")?])
            .db()? as u64,
        None => 0,
    };
    Ok(Purged { messages, registrations, links, outbox, calls })
}

fn outbox_push(c: &Connection, entry: OutboxEntry) -> StoreResult<()> {
    c.prepare_cached("INSERT INTO verifier_outbox (phone, text, created_at) VALUES (?1, ?2, ?3)")
        .db()?
        .execute(params![entry.phone, entry.text, to_i64(entry.created_at, "timestamp")?])
        .db()?;
    Ok(())
}

fn outbox_list(c: &Connection) -> StoreResult<Vec<OutboxEntry>> {
    let mut st = c
        .prepare_cached("SELECT phone, text, created_at FROM verifier_outbox ORDER BY created_at, id")
        .db()?;
    let rows = st
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))
        .db()?;
    let mut out = Vec::new();
    for row in rows {
        let (phone, text, created_at) = row.db()?;
        out.push(OutboxEntry { phone, text, created_at: to_u64(created_at, "timestamp")? });
    }
    Ok(out)
}

// --- end-to-end keys and groups -----------------------------------------------------------

fn device_key(device: DeviceId) -> StoreResult<i64> {
    key(device.0).ok_or(StoreError::NoSuchDevice)
}

fn set_certificate(c: &Connection, device: DeviceId, cert: Vec<u8>) -> StoreResult<()> {
    let id = device_key(device)?;
    let current: Option<Option<Vec<u8>>> = c
        .prepare_cached("SELECT certificate FROM devices WHERE id = ?1")
        .db()?
        .query_row([id], |r| r.get(0))
        .optional()
        .db()?;
    match current {
        None => Err(StoreError::NoSuchDevice),
        Some(Some(existing)) if existing == cert => Ok(()),
        Some(Some(_)) => Err(StoreError::Forbidden("this device already has a certificate".into())),
        Some(None) => {
            c.prepare_cached("UPDATE devices SET certificate = ?2 WHERE id = ?1")
                .db()?
                .execute(params![id, cert])
                .db()?;
            Ok(())
        }
    }
}

fn device_certificate(c: &Connection, device: DeviceId) -> StoreResult<Option<Vec<u8>>> {
    let id = device_key(device)?;
    let cert: Option<Option<Vec<u8>>> = c
        .prepare_cached("SELECT certificate FROM devices WHERE id = ?1")
        .db()?
        .query_row([id], |r| r.get(0))
        .optional()
        .db()?;
    cert.ok_or(StoreError::NoSuchDevice)
}

fn publish_key_packages(
    c: &Connection,
    device: DeviceId,
    one_time: Vec<Vec<u8>>,
    last_resort: Option<Vec<u8>>,
    max_stock: u32,
) -> StoreResult<u32> {
    let id = device_key(device)?;
    if !c.prepare_cached("SELECT 1 FROM devices WHERE id = ?1").db()?.exists([id]).db()? {
        return Err(StoreError::NoSuchDevice);
    }
    if let Some(body) = last_resort {
        c.prepare_cached("DELETE FROM key_packages WHERE device_id = ?1 AND last_resort = 1")
            .db()?
            .execute([id])
            .db()?;
        c.prepare_cached("INSERT INTO key_packages (device_id, last_resort, body) VALUES (?1, 1, ?2)")
            .db()?
            .execute(params![id, body])
            .db()?;
    }
    let stock = count(c, "SELECT COUNT(*) FROM key_packages WHERE device_id = ?1 AND last_resort = 0", [id])?;
    let room = u64::from(max_stock).saturating_sub(stock);
    for body in one_time.into_iter().take(usize::try_from(room).unwrap_or(usize::MAX)) {
        c.prepare_cached("INSERT INTO key_packages (device_id, last_resort, body) VALUES (?1, 0, ?2)")
            .db()?
            .execute(params![id, body])
            .db()?;
    }
    let stock = count(c, "SELECT COUNT(*) FROM key_packages WHERE device_id = ?1 AND last_resort = 0", [id])?;
    Ok(u32::try_from(stock).unwrap_or(u32::MAX))
}

fn claim_key_packages(c: &Connection, devices: &[DeviceId]) -> StoreResult<Vec<(DeviceId, Vec<u8>)>> {
    let mut out = Vec::with_capacity(devices.len());
    for &device in devices {
        let id = device_key(device)?;
        // One-time packages first (last_resort = 0 sorts first), oldest first.
        let row: Option<(i64, i64, Vec<u8>)> = c
            .prepare_cached(
                "SELECT id, last_resort, body FROM key_packages WHERE device_id = ?1
                 ORDER BY last_resort, id LIMIT 1",
            )
            .db()?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()
            .db()?;
        let Some((package, last_resort, body)) = row else {
            return Err(StoreError::NoKeyPackage(device));
        };
        if last_resort == 0 {
            c.prepare_cached("DELETE FROM key_packages WHERE id = ?1").db()?.execute([package]).db()?;
        }
        out.push((device, body));
    }
    Ok(out)
}

fn account_keys(c: &Connection, accounts: &[AccountId]) -> StoreResult<Vec<AccountKeys>> {
    let mut out = Vec::with_capacity(accounts.len());
    for &account in accounts {
        let Some(id) = key(account.0) else { continue };
        let Some(label) = account_label(c, account)? else { continue };
        let mut st =
            c.prepare_cached("SELECT id, certificate FROM devices WHERE account_id = ?1 ORDER BY id").db()?;
        let devices = st
            .query_map([id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<Vec<u8>>>(1)?)))
            .db()?
            .map(|row| {
                let (d, cert) = row.db()?;
                Ok((DeviceId(to_u64(d, "device id")?), cert))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        out.push(AccountKeys { account, label, devices });
    }
    Ok(out)
}

fn group_state(c: &Connection, group: &GroupId) -> StoreResult<Option<GroupState>> {
    let row: Option<(i64, Option<Vec<u8>>)> = c
        .prepare_cached("SELECT epoch, public_state FROM groups WHERE id = ?1")
        .db()?
        .query_row([group.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .db()?;
    let Some((epoch, public_state)) = row else { return Ok(None) };
    let mut st = c
        .prepare_cached(
            "SELECT m.device_id, d.account_id FROM group_members m JOIN devices d ON d.id = m.device_id
             WHERE m.group_id = ?1 ORDER BY m.device_id",
        )
        .db()?;
    let members = st
        .query_map([group.as_bytes()], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
        .db()?
        .map(|row| {
            let (d, a) = row.db()?;
            Ok((DeviceId(to_u64(d, "device id")?), AccountId(to_u64(a, "account id")?)))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Some(GroupState { epoch: to_u64(epoch, "epoch")?, members, public_state }))
}

fn device_account(c: &Connection, device: DeviceId) -> StoreResult<Option<AccountId>> {
    let Some(id) = key(device.0) else { return Ok(None) };
    let account: Option<i64> = c
        .prepare_cached("SELECT account_id FROM devices WHERE id = ?1")
        .db()?
        .query_row([id], |r| r.get(0))
        .optional()
        .db()?;
    account.map(|a| to_u64(a, "account id").map(AccountId)).transpose()
}

fn queue_depths(c: &Connection, devices: &[DeviceId]) -> StoreResult<Vec<QueueSlot>> {
    let mut st = c.prepare_cached("SELECT id, queue_len, account_id FROM devices WHERE id = ?1").db()?;
    let mut out = Vec::with_capacity(devices.len());
    for d in devices {
        let id = device_key(*d)?;
        if let Some(slot) = st.query_row([id], QueueSlot::from_row).optional().db()? {
            out.push(slot);
        }
    }
    Ok(out)
}

fn sender_label(c: &Connection, account: AccountId) -> StoreResult<String> {
    account_label(c, account)?.ok_or(StoreError::NoSuchAccount)
}

fn commit_group(c: &Connection, commit: GroupCommitRecord) -> StoreResult<(u64, Vec<StoredMessage>)> {
    let state = group_state(c, &commit.group)?;
    let added_accounts =
        commit.added.iter().map(|d| device_account(c, *d)).collect::<StoreResult<Vec<_>>>()?;
    let candidates =
        added_accounts.iter().flatten().map(|a| to_i64(a.0, "account")).collect::<StoreResult<Vec<_>>>()?;
    let blocking = blockers_of(c, to_i64(commit.sender_account.0, "sender account")?, &candidates)?
        .into_iter()
        .map(|a| to_u64(a, "account").map(AccountId))
        .collect::<StoreResult<Vec<_>>>()?;
    let plan = plan_commit(state.as_ref(), &commit, &added_accounts, &blocking)?;
    let group = commit.group.as_bytes();
    let new_epoch = to_i64(plan.new_epoch, "epoch")?;
    if plan.create {
        c.prepare_cached("INSERT INTO groups (id, epoch, created_at, public_state) VALUES (?1, ?2, ?3, ?4)")
            .db()?
            .execute(params![group, new_epoch, to_i64(commit.received_at, "timestamp")?, commit.public_state])
            .db()?;
        c.prepare_cached("INSERT INTO group_members (group_id, device_id) VALUES (?1, ?2)")
            .db()?
            .execute(params![group, device_key(commit.sender_device)?])
            .db()?;
    } else {
        c.prepare_cached(
            "UPDATE groups SET epoch = ?2, public_state = COALESCE(?3, public_state) WHERE id = ?1",
        )
        .db()?
        .execute(params![group, new_epoch, commit.public_state])
        .db()?;
    }
    for d in &plan.remove {
        c.prepare_cached("DELETE FROM group_members WHERE group_id = ?1 AND device_id = ?2")
            .db()?
            .execute(params![group, device_key(*d)?])
            .db()?;
    }
    for d in &plan.welcome_to {
        c.prepare_cached("INSERT INTO group_members (group_id, device_id) VALUES (?1, ?2)")
            .db()?
            .execute(params![group, device_key(*d)?])
            .db()?;
    }
    let label = sender_label(c, commit.sender_account)?;
    let mut copy = Copy {
        sender_account: commit.sender_account,
        sender_device: commit.sender_device,
        sender_label: &label,
        message_id: commit.message_id,
        received_at: commit.received_at,
        expires_at: commit.expires_at,
        body: &commit.commit_body,
    };
    let mut copies = queue_copies(c, &queue_depths(c, &plan.commit_to)?, &copy, WhenFull::Ignore)?;
    if let Some(welcome) = &commit.welcome_body {
        copy.message_id = commit.welcome_message_id();
        copy.body = welcome;
        let share = QueueLimits { per_device: u32::MAX, per_sender: commit.max_per_sender };
        copies.extend(queue_copies(c, &queue_depths(c, &plan.welcome_to)?, &copy, WhenFull::Fail(share))?);
    }
    Ok((plan.new_epoch, copies))
}

fn send_group(c: &Connection, msg: GroupMessage, limits: QueueLimits) -> StoreResult<GroupSent> {
    let state = group_state(c, &msg.group)?.ok_or(StoreError::NoSuchGroup)?;
    if !state.members.iter().any(|(d, _)| *d == msg.sender_device) {
        return Err(StoreError::NotMember);
    }
    let others: Vec<DeviceId> =
        state.members.iter().map(|(d, _)| *d).filter(|d| *d != msg.sender_device).collect();
    let label = sender_label(c, msg.sender_account)?;
    let copy = Copy {
        sender_account: msg.sender_account,
        sender_device: msg.sender_device,
        sender_label: &label,
        message_id: msg.message_id,
        received_at: msg.received_at,
        expires_at: msg.expires_at,
        body: &msg.body,
    };
    let mut slots = queue_depths(c, &others)?;
    let accounts: Vec<i64> = slots.iter().map(|s| s.account).collect();
    let blocking = blockers_of(c, to_i64(msg.sender_account.0, "sender account")?, &accounts)?;
    slots.retain(|s| !blocking.contains(&s.account));
    let copies = queue_copies(c, &slots, &copy, WhenFull::Skip(limits))?;
    let skipped = u32::try_from(slots.len().saturating_sub(copies.len())).unwrap_or(u32::MAX);
    Ok(GroupSent { copies, skipped })
}

fn set_block(
    c: &Connection,
    blocker: AccountId,
    blocked: AccountId,
    on: bool,
    now: UnixMillis,
) -> StoreResult<()> {
    let (blocker, blocked) = (to_i64(blocker.0, "account")?, to_i64(blocked.0, "account")?);
    if on {
        c.prepare_cached(
            "INSERT INTO blocks (blocker_account, blocked_account, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
        )
        .db()?
        .execute(params![blocker, blocked, to_i64(now, "timestamp")?])
        .db()?;
    } else {
        c.prepare_cached("DELETE FROM blocks WHERE blocker_account = ?1 AND blocked_account = ?2")
            .db()?
            .execute(params![blocker, blocked])
            .db()?;
    }
    Ok(())
}

fn blocked_accounts(c: &Connection, blocker: AccountId) -> StoreResult<Vec<AccountId>> {
    let mut st = c
        .prepare_cached("SELECT blocked_account FROM blocks WHERE blocker_account = ?1 ORDER BY created_at, blocked_account")
        .db()?;
    let rows: Vec<i64> =
        st.query_map([to_i64(blocker.0, "account")?], |r| r.get(0)).db()?.collect::<Result<_, _>>().db()?;
    rows.into_iter().map(|a| to_u64(a, "account").map(AccountId)).collect()
}

fn leave_group(
    c: &Connection,
    devices: &[DeviceId],
    notice: GroupMessage,
) -> StoreResult<Vec<StoredMessage>> {
    let state = group_state(c, &notice.group)?.ok_or(StoreError::NoSuchGroup)?;
    if !state.members.iter().any(|(d, _)| devices.contains(d)) {
        return Err(StoreError::NotMember);
    }
    for d in devices {
        c.prepare_cached("DELETE FROM group_members WHERE group_id = ?1 AND device_id = ?2")
            .db()?
            .execute(params![notice.group.as_bytes(), device_key(*d)?])
            .db()?;
    }
    let rest: Vec<DeviceId> =
        state.members.iter().map(|(d, _)| *d).filter(|d| !devices.contains(d)).collect();
    let label = sender_label(c, notice.sender_account)?;
    let copy = Copy {
        sender_account: notice.sender_account,
        sender_device: notice.sender_device,
        sender_label: &label,
        message_id: notice.message_id,
        received_at: notice.received_at,
        expires_at: notice.expires_at,
        body: &notice.body,
    };
    queue_copies(c, &queue_depths(c, &rest)?, &copy, WhenFull::Ignore)
}

// --- calls --------------------------------------------------------------------------------

const CALL_COLUMNS: &str = "call_id, caller_account, caller_device, callee_account, group_id, offer,
     created_at, expires_at, answered_by, ended";

struct RawCall {
    call_id: Vec<u8>,
    caller_account: i64,
    caller_device: i64,
    callee_account: i64,
    group_id: Vec<u8>,
    offer: Vec<u8>,
    created_at: i64,
    expires_at: i64,
    answered_by: Option<i64>,
    ended: i64,
}

impl RawCall {
    /// Columns in [`CALL_COLUMNS`] order.
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            call_id: r.get(0)?,
            caller_account: r.get(1)?,
            caller_device: r.get(2)?,
            callee_account: r.get(3)?,
            group_id: r.get(4)?,
            offer: r.get(5)?,
            created_at: r.get(6)?,
            expires_at: r.get(7)?,
            answered_by: r.get(8)?,
            ended: r.get(9)?,
        })
    }

    fn into_record(self) -> StoreResult<CallRecord> {
        Ok(CallRecord {
            call: call_id_from_db(self.call_id)?,
            caller: AccountId(to_u64(self.caller_account, "account id")?),
            caller_device: DeviceId(to_u64(self.caller_device, "device id")?),
            callee: AccountId(to_u64(self.callee_account, "account id")?),
            group: GroupId::from_slice(&self.group_id)
                .ok_or_else(|| StoreError::Backend("stored group id has the wrong length".into()))?,
            offer: self.offer,
            created_at: to_u64(self.created_at, "timestamp")?,
            expires_at: to_u64(self.expires_at, "timestamp")?,
            answered_by: self.answered_by.map(|d| to_u64(d, "device id").map(DeviceId)).transpose()?,
            ended: self.ended != 0,
        })
    }
}

fn account_exists(c: &Connection, account: i64) -> StoreResult<bool> {
    c.prepare_cached("SELECT 1 FROM accounts WHERE id = ?1").db()?.exists([account]).db()
}

fn create_call(c: &Connection, call: CallRecord) -> StoreResult<bool> {
    let (Some(caller), Some(callee)) = (key(call.caller.0), key(call.callee.0)) else {
        return Err(StoreError::NoSuchAccount);
    };
    if !account_exists(c, caller)? || !account_exists(c, callee)? {
        return Err(StoreError::NoSuchAccount);
    }
    let inserted = c
        .prepare_cached(
            "INSERT INTO calls (call_id, caller_account, caller_device, callee_account, group_id, offer,
                 created_at, expires_at, answered_by, ended)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (call_id) DO NOTHING",
        )
        .db()?
        .execute(params![
            &call.call.0[..],
            caller,
            to_i64(call.caller_device.0, "device id")?,
            callee,
            call.group.as_bytes(),
            call.offer,
            to_i64(call.created_at, "timestamp")?,
            to_i64(call.expires_at, "timestamp")?,
            call.answered_by.map(|d| to_i64(d.0, "device id")).transpose()?,
            i64::from(call.ended),
        ])
        .db()?;
    Ok(inserted > 0)
}

fn get_call(c: &Connection, id: CallId) -> StoreResult<Option<CallRecord>> {
    c.prepare_cached(&format!("SELECT {CALL_COLUMNS} FROM calls WHERE call_id = ?1"))
        .db()?
        .query_row([&id.0[..]], RawCall::from_row)
        .optional()
        .db()?
        .map(RawCall::into_record)
        .transpose()
}

fn answer_call(
    c: &Connection,
    id: CallId,
    device: DeviceId,
    now: UnixMillis,
) -> StoreResult<Option<CallRecord>> {
    let Some(device) = key(device.0) else {
        return Ok(None);
    };
    c.prepare_cached(&format!(
        "UPDATE calls SET answered_by = ?2
         WHERE call_id = ?1 AND NOT ended AND expires_at > ?3 AND (answered_by IS NULL OR answered_by = ?2)
         RETURNING {CALL_COLUMNS}"
    ))
    .db()?
    .query_row(params![&id.0[..], device, to_i64(now, "time")?], RawCall::from_row)
    .optional()
    .db()?
    .map(RawCall::into_record)
    .transpose()
}

fn end_call(c: &Connection, id: CallId) -> StoreResult<()> {
    c.prepare_cached("UPDATE calls SET ended = 1, offer = x'' WHERE call_id = ?1")
        .db()?
        .execute([&id.0[..]])
        .db()?;
    Ok(())
}

fn count_call_misfit(
    c: &Connection,
    account: AccountId,
    reason: &str,
    n: u64,
    now: UnixMillis,
) -> StoreResult<u64> {
    let Some(account) = key(account.0) else {
        return Err(StoreError::NoSuchAccount);
    };
    if !account_exists(c, account)? {
        return Err(StoreError::NoSuchAccount);
    }
    let count: i64 = c
        .prepare_cached(
            "INSERT INTO call_misfits (account_id, reason, count, last_at) VALUES (?1, ?2, ?4, ?3)
             ON CONFLICT (account_id, reason) DO UPDATE SET count = call_misfits.count + excluded.count,
                 last_at = MAX(call_misfits.last_at, excluded.last_at)
             RETURNING count",
        )
        .db()?
        .query_row(params![account, reason, to_i64(now, "time")?, to_i64(n, "count")?], |r| r.get(0))
        .db()?;
    to_u64(count, "count")
}

fn call_misfits(c: &Connection, account: AccountId) -> StoreResult<Vec<CallMisfit>> {
    let Some(account) = key(account.0) else {
        return Ok(Vec::new());
    };
    let mut st = c
        .prepare_cached(
            "SELECT reason, count, last_at FROM call_misfits WHERE account_id = ?1 ORDER BY reason",
        )
        .db()?;
    let rows = st
        .query_map([account], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))
        .db()?;
    rows.map(|row| {
        let (reason, count, last_at) = row.db()?;
        Ok(CallMisfit { reason, count: to_u64(count, "count")?, last_at: to_u64(last_at, "timestamp")? })
    })
    .collect()
}

fn top_call_misfits(c: &Connection, limit: u32) -> StoreResult<Vec<(AccountId, u64)>> {
    let mut st = c
        .prepare_cached(
            "SELECT account_id, SUM(count) AS total FROM call_misfits
             GROUP BY account_id ORDER BY total DESC, account_id LIMIT ?1",
        )
        .db()?;
    let rows = st.query_map([i64::from(limit)], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))).db()?;
    rows.map(|row| {
        let (account, total) = row.db()?;
        Ok((AccountId(to_u64(account, "account id")?), to_u64(total, "count")?))
    })
    .collect()
}

fn calls_placed_since(c: &Connection, caller: AccountId, since: UnixMillis) -> StoreResult<u64> {
    let Some(caller) = key(caller.0) else {
        return Ok(0);
    };
    count(
        c,
        "SELECT COUNT(*) FROM calls WHERE caller_account = ?1 AND created_at >= ?2",
        params![caller, to_i64(since, "time")?],
    )
}

#[async_trait]
impl Store for SqliteStore {
    fn backend_name(&self) -> &'static str {
        "sqlite"
    }

    async fn begin_registration(&self, pending: PendingRegistration) -> StoreResult<()> {
        self.call(move |c| begin_registration(c, pending)).await
    }

    async fn complete_registration(
        &self,
        phone: &PhoneNumber,
        code_hash: SecretHash,
        device: NewDevice,
        now: UnixMillis,
        max_attempts: u32,
    ) -> StoreResult<Registered> {
        let phone = phone.as_e164().to_owned();
        self.call(move |c| complete_registration(c, &phone, code_hash, device, now, max_attempts)).await?
    }

    async fn account_by_phone(&self, phone: &PhoneNumber) -> StoreResult<Option<AccountId>> {
        let phone = phone.as_e164().to_owned();
        self.call(move |c| account_by_phone(c, &phone)).await
    }

    async fn account_by_username(&self, username: &Username) -> StoreResult<Option<AccountId>> {
        let name = username.as_str().to_owned();
        self.call(move |c| account_by_username(c, &name)).await
    }

    async fn account_label(&self, account: AccountId) -> StoreResult<Option<String>> {
        self.call(move |c| account_label(c, account)).await
    }

    async fn set_username(&self, account: AccountId, username: Option<&Username>) -> StoreResult<()> {
        let name = username.map(|u| u.as_str().to_owned());
        self.call(move |c| set_username(c, account, name)).await
    }

    async fn device_auth(&self, device: DeviceId) -> StoreResult<Option<DeviceAuth>> {
        self.call(move |c| device_auth(c, device)).await
    }

    async fn touch_device(&self, device: DeviceId, now: UnixMillis) -> StoreResult<()> {
        self.call(move |c| touch_device(c, device, now)).await
    }

    async fn list_devices(&self, account: AccountId) -> StoreResult<Vec<DeviceRecord>> {
        self.call(move |c| list_devices(c, account)).await
    }

    async fn revoke_device(&self, account: AccountId, device: DeviceId) -> StoreResult<()> {
        self.call(move |c| revoke_device(c, account, device)).await
    }

    async fn begin_link(&self, pending: PendingLink) -> StoreResult<()> {
        self.call(move |c| begin_link(c, pending)).await
    }

    async fn complete_link(
        &self,
        code_hash: SecretHash,
        approver: DeviceId,
        account: AccountId,
        now: UnixMillis,
        max_devices: u32,
    ) -> StoreResult<DeviceId> {
        self.call(move |c| complete_link(c, code_hash, approver, account, now, max_devices)).await?
    }

    async fn enqueue(&self, msg: NewMessage, limits: QueueLimits) -> StoreResult<Vec<StoredMessage>> {
        self.call(move |c| enqueue(c, msg, limits)).await
    }

    async fn fetch_queue(
        &self,
        device: DeviceId,
        after: Option<ServerMessageId>,
        now: UnixMillis,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.call(move |c| fetch_queue(c, device, after, now, limit)).await
    }

    async fn ack(&self, device: DeviceId, ids: &[ServerMessageId]) -> StoreResult<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let ids = ids.to_vec();
        self.call(move |c| ack(c, device, &ids)).await
    }

    async fn queue_depth(&self, device: DeviceId) -> StoreResult<u64> {
        let Some(device) = key(device.0) else {
            return Ok(0);
        };
        self.call(move |c| count(c, "SELECT COUNT(*) FROM queue WHERE device_id = ?1", [device])).await
    }

    async fn total_queued(&self) -> StoreResult<u64> {
        self.call(|c| count(c, "SELECT COUNT(*) FROM queue", [])).await
    }

    async fn purge_expired(&self, now: UnixMillis, outbox_ttl_ms: u64) -> StoreResult<Purged> {
        self.call(move |c| purge_expired(c, now, outbox_ttl_ms)).await
    }

    async fn outbox_push(&self, entry: OutboxEntry) -> StoreResult<()> {
        self.call(move |c| outbox_push(c, entry)).await
    }

    async fn outbox_list(&self) -> StoreResult<Vec<OutboxEntry>> {
        self.call(outbox_list).await
    }

    async fn set_certificate(&self, device: DeviceId, certificate: Vec<u8>) -> StoreResult<()> {
        self.call(move |c| set_certificate(c, device, certificate)).await
    }

    async fn device_certificate(&self, device: DeviceId) -> StoreResult<Option<Vec<u8>>> {
        self.call(move |c| device_certificate(c, device)).await
    }

    async fn publish_key_packages(
        &self,
        device: DeviceId,
        one_time: Vec<Vec<u8>>,
        last_resort: Option<Vec<u8>>,
        max_stock: u32,
    ) -> StoreResult<u32> {
        self.call(move |c| publish_key_packages(c, device, one_time, last_resort, max_stock)).await
    }

    async fn claim_key_packages(&self, devices: &[DeviceId]) -> StoreResult<Vec<(DeviceId, Vec<u8>)>> {
        let devices = devices.to_vec();
        self.call(move |c| claim_key_packages(c, &devices)).await
    }

    async fn account_keys(&self, accounts: &[AccountId]) -> StoreResult<Vec<AccountKeys>> {
        let accounts = accounts.to_vec();
        self.call(move |c| account_keys(c, &accounts)).await
    }

    async fn group_state(&self, group: &GroupId) -> StoreResult<Option<GroupState>> {
        let group = group.clone();
        self.call(move |c| group_state(c, &group)).await
    }

    async fn commit_group(&self, commit: GroupCommitRecord) -> StoreResult<(u64, Vec<StoredMessage>)> {
        self.call(move |c| commit_group(c, commit)).await
    }

    async fn send_group(&self, msg: GroupMessage, limits: QueueLimits) -> StoreResult<GroupSent> {
        self.call(move |c| send_group(c, msg, limits)).await
    }

    async fn set_block(
        &self,
        blocker: AccountId,
        blocked: AccountId,
        on: bool,
        now: UnixMillis,
    ) -> StoreResult<()> {
        self.call(move |c| set_block(c, blocker, blocked, on, now)).await
    }

    async fn blocked_accounts(&self, blocker: AccountId) -> StoreResult<Vec<AccountId>> {
        self.call(move |c| blocked_accounts(c, blocker)).await
    }

    async fn leave_group(
        &self,
        devices: &[DeviceId],
        notice: GroupMessage,
    ) -> StoreResult<Vec<StoredMessage>> {
        let devices = devices.to_vec();
        self.call(move |c| leave_group(c, &devices, notice)).await
    }

    async fn create_call(&self, call: CallRecord) -> StoreResult<bool> {
        self.call(move |c| create_call(c, call)).await
    }

    async fn call(&self, id: &CallId) -> StoreResult<Option<CallRecord>> {
        let id = *id;
        self.call(move |c| get_call(c, id)).await
    }

    async fn answer_call(
        &self,
        id: &CallId,
        device: DeviceId,
        now: UnixMillis,
    ) -> StoreResult<Option<CallRecord>> {
        let id = *id;
        self.call(move |c| answer_call(c, id, device, now)).await
    }

    async fn end_call(&self, id: &CallId) -> StoreResult<()> {
        let id = *id;
        self.call(move |c| end_call(c, id)).await
    }

    async fn count_call_misfit(
        &self,
        account: AccountId,
        reason: &str,
        n: u64,
        now: UnixMillis,
    ) -> StoreResult<u64> {
        check_misfit_reason(reason)?;
        let reason = reason.to_owned();
        self.call(move |c| count_call_misfit(c, account, &reason, n, now)).await
    }

    async fn call_misfits(&self, account: AccountId) -> StoreResult<Vec<CallMisfit>> {
        self.call(move |c| call_misfits(c, account)).await
    }

    async fn top_call_misfits(&self, limit: u32) -> StoreResult<Vec<(AccountId, u64)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.call(move |c| top_call_misfits(c, limit)).await
    }

    async fn calls_placed_since(&self, caller: AccountId, since: UnixMillis) -> StoreResult<u64> {
        self.call(move |c| calls_placed_since(c, caller, since)).await
    }

    async fn record_sentinel_action(&self, action: NewSentinelAction) -> StoreResult<u64> {
        check_sentinel_fields(&[&action.subject, &action.action, &action.rule, &action.reason])?;
        self.call(move |c| {
            let id: i64 = c
                .prepare_cached(
                    "INSERT INTO sentinel_actions (subject, action, rule, reason, created_at, until)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                )
                .db()?
                .query_row(
                    params![
                        action.subject,
                        action.action,
                        action.rule,
                        action.reason,
                        to_i64(action.created_at, "time")?,
                        to_i64(action.until, "time")?
                    ],
                    |r| r.get(0),
                )
                .db()?;
            to_u64(id, "id")
        })
        .await
    }

    async fn sentinel_actions_in_force(
        &self,
        subject: &str,
        now: UnixMillis,
    ) -> StoreResult<Vec<SentinelAction>> {
        let subject = subject.to_owned();
        self.call(move |c| {
            sentinel_rows(
                c,
                &format!(
                    "SELECT {SENTINEL_COLUMNS} FROM sentinel_actions
                  WHERE subject = ?1 AND until > ?2 AND lifted_at IS NULL ORDER BY id"
                ),
                params![subject, to_i64(now, "time")?],
            )
        })
        .await
    }

    async fn sentinel_actions(&self, limit: u32) -> StoreResult<Vec<SentinelAction>> {
        self.call(move |c| {
            sentinel_rows(
                c,
                &format!("SELECT {SENTINEL_COLUMNS} FROM sentinel_actions ORDER BY id DESC LIMIT ?1"),
                params![i64::from(limit)],
            )
        })
        .await
    }

    async fn lift_sentinel_actions(
        &self,
        subject: &str,
        by: &str,
        now: UnixMillis,
    ) -> StoreResult<Vec<SentinelAction>> {
        check_sentinel_fields(&[subject, by])?;
        let (subject, by) = (subject.to_owned(), by.to_owned());
        self.call(move |c| {
            let now = to_i64(now, "time")?;
            sentinel_rows(
                c,
                &format!(
                    "UPDATE sentinel_actions SET lifted_at = ?3, lifted_by = ?2
                  WHERE subject = ?1 AND until > ?3 AND lifted_at IS NULL RETURNING {SENTINEL_COLUMNS}"
                ),
                params![subject, by, now],
            )
            .map(|mut rows| {
                rows.sort_by_key(|r| r.id);
                rows
            })
        })
        .await
    }

    async fn last_sentinel_lift(&self, subject: &str, action: &str) -> StoreResult<Option<UnixMillis>> {
        let (subject, action) = (subject.to_owned(), action.to_owned());
        self.call(move |c| {
            let at: Option<i64> = c
                .prepare_cached(
                    "SELECT MAX(lifted_at) FROM sentinel_actions WHERE subject = ?1 AND action = ?2",
                )
                .db()?
                .query_row([subject, action], |r| r.get(0))
                .db()?;
            at.map(|at| to_u64(at, "time")).transpose()
        })
        .await
    }

    async fn purge_sentinel_actions(&self, before: UnixMillis) -> StoreResult<u64> {
        self.call(move |c| {
            let before = to_i64(before, "time")?;
            let n = c
                .prepare_cached(
                    "DELETE FROM sentinel_actions WHERE
                       (lifted_at IS NOT NULL AND lifted_at < ?1 AND lift_noted = 1)
                       OR (lifted_at IS NULL AND until < ?1)",
                )
                .db()?
                .execute([before])
                .db()?;
            Ok(n as u64)
        })
        .await
    }

    async fn take_unnoted_sentinel_lifts(&self, limit: u32) -> StoreResult<Vec<SentinelAction>> {
        self.call(move |c| {
            let mut rows = sentinel_rows(
                c,
                &format!(
                    "UPDATE sentinel_actions SET lift_noted = 1 WHERE id IN (
                    SELECT id FROM sentinel_actions WHERE lifted_at IS NOT NULL AND lift_noted = 0
                    ORDER BY id LIMIT ?1) RETURNING {SENTINEL_COLUMNS}"
                ),
                params![i64::from(limit)],
            )?;
            rows.sort_by_key(|r| r.id);
            Ok(rows)
        })
        .await
    }

    async fn record_sentinel_sightings(&self, sightings: Vec<SentinelSighting>) -> StoreResult<()> {
        check_sightings(&sightings)?;
        if sightings.is_empty() {
            return Ok(());
        }
        // One batch of the writer: all of them, or (on an error) none.
        self.call(move |c| {
            let mut st = c
                .prepare_cached(
                    "INSERT INTO sentinel_sightings (at, account, kind, peer, network, address, client)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .db()?;
            for s in &sightings {
                st.execute(params![
                    to_i64(s.at, "time")?,
                    to_i64(s.account.0, "account id")?,
                    s.kind.as_str(),
                    s.peer.map(|p| to_i64(p.0, "account id")).transpose()?,
                    s.network,
                    s.address,
                    s.client
                ])
                .db()?;
            }
            Ok(())
        })
        .await
    }

    async fn sentinel_sightings(&self, query: SightingQuery) -> StoreResult<Vec<SentinelSighting>> {
        check_sighting_query(&query)?;
        // Ids that cannot be stored cannot have been seen.
        let accounts: Vec<i64> = query.accounts.iter().filter_map(|a| key(a.0)).collect();
        let accounts = serde_json::to_string(&accounts).map_err(|e| StoreError::Backend(e.to_string()))?;
        let networks =
            serde_json::to_string(&query.networks).map_err(|e| StoreError::Backend(e.to_string()))?;
        let clients =
            serde_json::to_string(&query.clients).map_err(|e| StoreError::Backend(e.to_string()))?;
        self.call(move |c| {
            let mut st = c
                .prepare_cached(
                    "SELECT at, account, kind, peer, network, address, client FROM sentinel_sightings
                     WHERE at >= ?1 AND (account IN (SELECT value FROM json_each(?2))
                                         OR network IN (SELECT value FROM json_each(?3))
                                         OR client IN (SELECT value FROM json_each(?5)))
                     ORDER BY at, id LIMIT ?4",
                )
                .db()?;
            let rows = st
                .query_map(
                    params![
                        to_i64(query.since, "time")?,
                        accounts,
                        networks,
                        i64::from(query.limit),
                        clients
                    ],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, Option<i64>>(3)?,
                            r.get::<_, Option<String>>(4)?,
                            r.get::<_, Option<String>>(5)?,
                            r.get::<_, Option<String>>(6)?,
                        ))
                    },
                )
                .db()?;
            rows.map(|row| {
                let (at, account, kind, peer, network, address, client) = row.db()?;
                Ok(SentinelSighting {
                    at: to_u64(at, "time")?,
                    account: AccountId(to_u64(account, "account id")?),
                    kind: sighting_kind(&kind)?,
                    peer: peer.map(|p| to_u64(p, "account id").map(AccountId)).transpose()?,
                    network,
                    address,
                    client,
                })
            })
            .collect()
        })
        .await
    }

    async fn purge_sentinel_sightings(&self, before: UnixMillis) -> StoreResult<u64> {
        self.call(move |c| {
            let n = c
                .prepare_cached("DELETE FROM sentinel_sightings WHERE at < ?1")
                .db()?
                .execute([to_i64(before, "time")?])
                .db()?;
            Ok(n as u64)
        })
        .await
    }
}

const SENTINEL_COLUMNS: &str = "id, subject, action, rule, reason, created_at, until, lifted_at, lifted_by";

fn sentinel_rows(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> StoreResult<Vec<SentinelAction>> {
    let mut st = c.prepare(sql).db()?;
    let rows = st
        .query_map(params, |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, Option<i64>>(7)?,
                r.get::<_, Option<String>>(8)?,
            ))
        })
        .db()?;
    rows.map(|row| {
        let (id, subject, action, rule, reason, created_at, until, lifted_at, lifted_by) = row.db()?;
        Ok(SentinelAction {
            id: to_u64(id, "id")?,
            subject,
            action,
            rule,
            reason,
            created_at: to_u64(created_at, "time")?,
            until: to_u64(until, "time")?,
            lifted_at: lifted_at.map(|t| to_u64(t, "time")).transpose()?,
            lifted_by,
        })
    })
    .collect()
}
