//! Message requests, blocked accounts and held deliveries, as kept in the profile.

use rampart_core::consent::{MessagePolicy, Standing};
use rampart_core::{AccountId, DeviceId, GroupId, MessageId, ServerMessageId};
use rampart_proto::Delivery;
use rusqlite::{OptionalExtension, params};

use crate::clock::now_ms;

use super::ProfileError;
use super::profile::{Profile, db_id};

/// A conversation waiting for the user's answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MessageRequest {
    /// The conversation's id, in hex.
    pub conversation: String,
    /// Who the server says started it.
    pub from: String,
    pub from_account: u64,
    /// The sender created the conversation (it may be a 1:1 or a group: which, nobody can
    /// tell without opening the invitation).
    pub started_by_sender: bool,
    pub opened_at_ms: u64,
    /// Deliveries kept, unopened, for after an accept.
    pub held: u64,
}

/// What the consent rules did on this device, for the user and the tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConsentCounters {
    /// Deliveries kept sealed in a request.
    pub held: u64,
    /// Deliveries dropped unopened (declined, blocked, over a limit, policy).
    pub dropped: u64,
}

const HELD_COUNTER: &str = "consent.held";
const DROPPED_COUNTER: &str = "consent.dropped";

fn account_of(v: i64) -> Result<AccountId, ProfileError> {
    u64::try_from(v).map(AccountId).map_err(|_| ProfileError::Corrupt("account id"))
}

impl Profile {
    /// Who may start a conversation with this account (`requests` unless changed).
    pub fn message_policy(&self) -> Result<MessagePolicy, ProfileError> {
        Ok(self.get("message_policy")?.as_deref().and_then(MessagePolicy::parse).unwrap_or_default())
    }

    pub fn set_message_policy(&self, policy: MessagePolicy) -> Result<(), ProfileError> {
        self.set("message_policy", policy.as_str())
    }

    pub fn is_blocked(&self, account: AccountId) -> Result<bool, ProfileError> {
        Ok(self.db.prepare_cached("SELECT 1 FROM blocked WHERE account = ?1")?.exists([db_id(account.0)?])?)
    }

    /// Blocked accounts with how they were shown when blocked.
    pub fn blocked_accounts(&self) -> Result<Vec<(AccountId, String)>, ProfileError> {
        let mut st = self.db.prepare("SELECT account, label FROM blocked ORDER BY blocked_at")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (account, label) = row?;
            out.push((account_of(account)?, label));
        }
        Ok(out)
    }

    pub(crate) fn save_block(&self, account: AccountId, label: &str) -> Result<(), ProfileError> {
        self.db.execute(
            "INSERT INTO blocked(account, label, blocked_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(account) DO NOTHING",
            params![db_id(account.0)?, label, db_id(now_ms())?],
        )?;
        Ok(())
    }

    pub(crate) fn remove_block(&self, account: AccountId) -> Result<bool, ProfileError> {
        Ok(self.db.execute("DELETE FROM blocked WHERE account = ?1", [db_id(account.0)?])? > 0)
    }

    /// `Requested` or `Declined` when a request exists for the conversation.
    pub(crate) fn request_standing(&self, group: &GroupId) -> Result<Option<Standing>, ProfileError> {
        let declined: Option<bool> = self
            .db
            .query_row("SELECT declined FROM requests WHERE group_id = ?1", [group.as_bytes()], |r| r.get(0))
            .optional()?;
        Ok(declined.map(|d| if d { Standing::Declined } else { Standing::Requested }))
    }

    pub(crate) fn held_bytes(&self) -> Result<u64, ProfileError> {
        let n: i64 =
            self.db
                .query_row("SELECT COALESCE(SUM(length(body)), 0) FROM held_deliveries", [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub(crate) fn open_request_count_from(&self, sender: AccountId) -> Result<usize, ProfileError> {
        let n: i64 = self.db.query_row(
            "SELECT COUNT(*) FROM requests WHERE declined = 0 AND sender_account = ?1",
            [db_id(sender.0)?],
            |r| r.get(0),
        )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    pub(crate) fn open_request_count(&self) -> Result<usize, ProfileError> {
        let n: i64 =
            self.db.query_row("SELECT COUNT(*) FROM requests WHERE declined = 0", [], |r| r.get(0))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    pub(crate) fn held_count(&self, group: &GroupId) -> Result<usize, ProfileError> {
        let n: i64 = self.db.query_row(
            "SELECT COUNT(*) FROM held_deliveries WHERE group_id = ?1",
            [group.as_bytes()],
            |r| r.get(0),
        )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    pub(crate) fn open_request(&self, group: &GroupId, d: &Delivery) -> Result<(), ProfileError> {
        self.db.execute(
            "INSERT INTO requests(group_id, sender_account, sender_label, opened_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(group_id) DO NOTHING",
            params![group.as_bytes(), db_id(d.sender_account.0)?, d.sender_label, db_id(now_ms())?],
        )?;
        Ok(())
    }

    /// Keep a delivery exactly as it arrived.
    pub(crate) fn hold(&self, group: &GroupId, d: &Delivery) -> Result<(), ProfileError> {
        self.db.execute(
            "INSERT INTO held_deliveries(group_id, message_id, sender_account, sender_device, sender_label, server_ts, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                group.as_bytes(),
                &d.message_id.0[..],
                db_id(d.sender_account.0)?,
                db_id(d.sender_device.0)?,
                d.sender_label,
                db_id(d.server_timestamp_ms)?,
                &d.body[..],
            ],
        )?;
        self.bump(HELD_COUNTER)
    }

    pub(crate) fn bump(&self, counter: &str) -> Result<(), ProfileError> {
        self.db.execute(
            "INSERT INTO settings(key, value) VALUES (?1, '1')
             ON CONFLICT(key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)",
            [counter],
        )?;
        Ok(())
    }

    /// Count a delivery the consent rules dropped unopened.
    pub(crate) fn count_dropped(&self) -> Result<(), ProfileError> {
        self.bump(DROPPED_COUNTER)
    }

    pub fn consent_counters(&self) -> Result<ConsentCounters, ProfileError> {
        let read = |key| -> Result<u64, ProfileError> {
            Ok(self.get(key)?.and_then(|v| v.parse().ok()).unwrap_or(0))
        };
        Ok(ConsentCounters { held: read(HELD_COUNTER)?, dropped: read(DROPPED_COUNTER)? })
    }

    /// Open requests, oldest first.
    pub fn message_requests(&self) -> Result<Vec<MessageRequest>, ProfileError> {
        let mut st = self.db.prepare(
            "SELECT r.group_id, r.sender_account, r.sender_label, r.opened_at,
                    (SELECT COUNT(*) FROM held_deliveries h WHERE h.group_id = r.group_id)
             FROM requests r WHERE r.declined = 0 ORDER BY r.opened_at, r.rowid",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (group, account, from, opened, held) = row?;
            let group = GroupId::from_slice(&group).ok_or(ProfileError::Corrupt("request group id"))?;
            let account = account_of(account)?;
            out.push(MessageRequest {
                conversation: group.to_hex(),
                from,
                from_account: account.0,
                started_by_sender: group.creator() == account,
                opened_at_ms: opened.max(0) as u64,
                held: held.max(0) as u64,
            });
        }
        Ok(out)
    }

    /// The conversations with held deliveries whose request is closed (accepted, and maybe
    /// interrupted before everything was opened): what they hold may be opened now.
    pub(crate) fn releasable(&self) -> Result<Vec<GroupId>, ProfileError> {
        let mut st = self.db.prepare(
            "SELECT DISTINCT h.group_id FROM held_deliveries h
             WHERE NOT EXISTS (SELECT 1 FROM requests r WHERE r.group_id = h.group_id)",
        )?;
        let rows = st.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
        let mut out = Vec::new();
        for row in rows {
            if let Some(group) = GroupId::from_slice(&row?) {
                out.push(group);
            }
        }
        Ok(out)
    }

    /// Close every open request from `account` as accepted (the user saved them as a contact,
    /// or wrote to them).
    pub(crate) fn accept_requests_from(&self, account: AccountId) -> Result<(), ProfileError> {
        self.db.execute(
            "DELETE FROM requests WHERE sender_account = ?1 AND declined = 0",
            [db_id(account.0)?],
        )?;
        Ok(())
    }

    /// The oldest held delivery of a conversation, with its row.
    pub(crate) fn next_held(&self, group: &GroupId) -> Result<Option<(i64, Delivery)>, ProfileError> {
        let row = self
            .db
            .query_row(
                "SELECT seq, message_id, sender_account, sender_device, sender_label, server_ts, body
                 FROM held_deliveries WHERE group_id = ?1 ORDER BY seq LIMIT 1",
                [group.as_bytes()],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, Vec<u8>>(6)?,
                    ))
                },
            )
            .optional()?;
        let Some((seq, message_id, account, device, label, ts, body)) = row else { return Ok(None) };
        let message_id = <[u8; 16]>::try_from(message_id.as_slice())
            .map_err(|_| ProfileError::Corrupt("held message id"))?;
        Ok(Some((
            seq,
            Delivery {
                // Acknowledged to the server when it was held.
                server_id: ServerMessageId(0),
                message_id: MessageId(message_id),
                sender_account: account_of(account)?,
                sender_device: DeviceId(
                    u64::try_from(device).map_err(|_| ProfileError::Corrupt("device id"))?,
                ),
                sender_label: label,
                server_timestamp_ms: ts.max(0) as u64,
                body: body.into(),
            },
        )))
    }

    pub(crate) fn forget_held(&self, seq: i64) -> Result<(), ProfileError> {
        self.db.execute("DELETE FROM held_deliveries WHERE seq = ?1", [seq])?;
        Ok(())
    }

    /// Close a request as accepted: what it held stays until it has been processed.
    pub(crate) fn close_request(&self, group: &GroupId) -> Result<(), ProfileError> {
        self.db.execute("DELETE FROM requests WHERE group_id = ?1", [group.as_bytes()])?;
        Ok(())
    }

    /// Decline: what it held is deleted unopened, and later deliveries are dropped.
    pub(crate) fn decline(&self, group: &GroupId) -> Result<(), ProfileError> {
        let tx = self.db.unchecked_transaction()?;
        tx.execute("UPDATE requests SET declined = 1 WHERE group_id = ?1", [group.as_bytes()])?;
        tx.execute("DELETE FROM held_deliveries WHERE group_id = ?1", [group.as_bytes()])?;
        tx.commit()?;
        Ok(())
    }

    /// The open request matching `which`: a conversation id (or a unique prefix of at least 6
    /// characters), or how its sender is shown (@name, +number).
    pub fn find_request(&self, which: &str) -> Result<Option<MessageRequest>, ProfileError> {
        let all = self.message_requests()?;
        let lower = which.trim().to_lowercase();
        let by_id: Vec<&MessageRequest> =
            all.iter().filter(|r| lower.len() >= 6 && r.conversation.starts_with(&lower)).collect();
        if let [one] = by_id.as_slice() {
            return Ok(Some((*one).clone()));
        }
        let by_sender: Vec<&MessageRequest> = all.iter().filter(|r| r.from.to_lowercase() == lower).collect();
        Ok(match by_sender.as_slice() {
            [one] => Some((*one).clone()),
            _ => None,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    fn profile() -> (tempfile::TempDir, Profile) {
        let dir = tempfile::tempdir().unwrap();
        let profile = Profile::open(dir.path(), None).unwrap();
        (dir, profile)
    }

    fn delivery(sender: u64, body: &[u8]) -> Delivery {
        Delivery {
            server_id: ServerMessageId(7),
            message_id: MessageId([sender as u8; 16]),
            sender_account: AccountId(sender),
            sender_device: DeviceId(sender * 10),
            sender_label: format!("@user{sender}"),
            server_timestamp_ms: 1_000 + sender,
            body: body.to_vec().into(),
        }
    }

    #[test]
    fn held_deliveries_come_back_byte_for_byte_in_order() {
        let (_dir, profile) = profile();
        let group = GroupId::new(AccountId(9), &mut rand::rng());
        let first = delivery(9, b"welcome bytes");
        let second = delivery(9, b"\x00\xffmessage");
        profile.open_request(&group, &first).unwrap();
        profile.hold(&group, &first).unwrap();
        profile.hold(&group, &second).unwrap();
        assert_eq!(profile.request_standing(&group).unwrap(), Some(Standing::Requested));
        let listed = profile.message_requests().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].held, listed[0].started_by_sender, listed[0].from.as_str()),
            (2, true, "@user9")
        );
        assert_eq!(profile.find_request("@USER9").unwrap().map(|r| r.conversation), Some(group.to_hex()));
        assert_eq!(profile.find_request(&group.to_hex()[..6]).unwrap().map(|r| r.from_account), Some(9));
        // Not releasable while the request is open, even once the sender is a contact: the
        // user answers each request; saving the sender (`accept_requests_from`) answers all.
        assert!(profile.releasable().unwrap().is_empty());
        profile.save_contact(AccountId(9), "@user9").unwrap();
        assert!(profile.releasable().unwrap().is_empty());
        profile.accept_requests_from(AccountId(9)).unwrap();
        assert_eq!(profile.releasable().unwrap(), vec![group.clone()]);
        let (seq, got) = profile.next_held(&group).unwrap().unwrap();
        assert_eq!(
            (got.body.as_ref(), got.sender_device, got.message_id),
            (&b"welcome bytes"[..], DeviceId(90), first.message_id)
        );
        profile.forget_held(seq).unwrap();
        assert_eq!(profile.next_held(&group).unwrap().unwrap().1.body.as_ref(), b"\x00\xffmessage");
        assert_eq!(profile.consent_counters().unwrap(), ConsentCounters { held: 2, dropped: 0 });
    }

    #[test]
    fn a_declined_request_keeps_nothing_and_is_never_released() {
        let (_dir, profile) = profile();
        let group = GroupId::new(AccountId(5), &mut rand::rng());
        let d = delivery(5, b"invite");
        profile.open_request(&group, &d).unwrap();
        profile.hold(&group, &d).unwrap();
        profile.decline(&group).unwrap();
        assert_eq!(profile.request_standing(&group).unwrap(), Some(Standing::Declined));
        assert_eq!(profile.held_count(&group).unwrap(), 0);
        assert!(profile.message_requests().unwrap().is_empty());
        profile.accept_requests_from(AccountId(5)).unwrap();
        assert!(
            profile.releasable().unwrap().is_empty(),
            "a declined request is not reopened by saving its sender"
        );
    }

    #[test]
    fn blocks_are_kept_and_lifted() {
        let (_dir, profile) = profile();
        assert!(!profile.is_blocked(AccountId(3)).unwrap());
        profile.save_block(AccountId(3), "@spam").unwrap();
        assert!(profile.is_blocked(AccountId(3)).unwrap());
        assert_eq!(profile.blocked_accounts().unwrap(), vec![(AccountId(3), "@spam".to_owned())]);
        assert!(profile.remove_block(AccountId(3)).unwrap());
        assert!(!profile.remove_block(AccountId(3)).unwrap());
        assert_eq!(profile.message_policy().unwrap(), MessagePolicy::Requests);
    }
}
