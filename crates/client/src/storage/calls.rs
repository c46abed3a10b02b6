//! The call log, contacts and the ring policy.

use rampart_core::call::{CallId, RingPolicy};
use rampart_core::{AccountId, GroupId};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::clock::now_ms;

use super::ProfileError;
use super::profile::{Profile, db_id};

/// One line of the local call log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallLogEntry {
    pub call: String,
    pub peer: String,
    pub peer_account: u64,
    pub outgoing: bool,
    pub started_at_ms: u64,
    pub answered_at_ms: Option<u64>,
    pub ended_at_ms: Option<u64>,
    /// dialing, ringing, missed, request (a stranger's call that did not ring), active,
    /// answered, declined, ended, failed...
    pub outcome: String,
    pub detail: String,
    /// Of the other side's signals: how many reached this device before the local accept
    /// (dropped unread), and how many were released for decryption and parsing.
    pub signals_dropped_before_accept: u64,
    pub signals_released: u64,
}

impl CallLogEntry {
    pub fn duration_secs(&self) -> u64 {
        match (self.answered_at_ms, self.ended_at_ms) {
            (Some(a), Some(e)) => e.saturating_sub(a) / 1000,
            _ => 0,
        }
    }
}

impl Profile {
    pub(crate) fn log_call(
        &self,
        call: &CallId,
        peer: AccountId,
        label: &str,
        outgoing: bool,
        outcome: &str,
        now: u64,
    ) -> Result<(), ProfileError> {
        self.db.execute(
            "INSERT INTO call_log(call_id, peer_account, peer_label, outgoing, started_at, outcome, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, '') ON CONFLICT DO NOTHING",
            params![call.0.as_slice(), db_id(peer.0)?, label, outgoing, db_id(now)?, outcome],
        )?;
        Ok(())
    }

    pub(crate) fn update_call(
        &self,
        call: &CallId,
        outcome: &str,
        detail: &str,
        answered_at: Option<u64>,
        ended_at: Option<u64>,
    ) -> Result<(), ProfileError> {
        self.db.execute(
            "UPDATE call_log SET outcome = ?2, detail = ?3,
                 answered_at = COALESCE(answered_at, ?4), ended_at = COALESCE(ended_at, ?5)
             WHERE id = (SELECT max(id) FROM call_log WHERE call_id = ?1)",
            params![
                call.0.as_slice(),
                outcome,
                detail,
                answered_at.map(db_id).transpose()?,
                ended_at.map(db_id).transpose()?
            ],
        )?;
        Ok(())
    }

    /// What became of the other side's signals in the latest call with this id.
    pub(crate) fn record_call_signals(
        &self,
        call: &CallId,
        dropped_before_accept: u64,
        released: u64,
    ) -> Result<(), ProfileError> {
        self.db.execute(
            "UPDATE call_log SET signals_dropped_before_accept = ?2, signals_released = ?3
             WHERE id = (SELECT max(id) FROM call_log WHERE call_id = ?1)",
            params![call.0.as_slice(), db_id(dropped_before_accept)?, db_id(released)?],
        )?;
        Ok(())
    }

    /// The call log, newest first.
    pub fn call_log(&self, limit: u32) -> Result<Vec<CallLogEntry>, ProfileError> {
        let mut st = self.db.prepare(
            "SELECT call_id, peer_label, peer_account, outgoing, started_at, answered_at, ended_at, outcome, detail,
                    signals_dropped_before_accept, signals_released
             FROM call_log ORDER BY started_at DESC, id DESC LIMIT ?1",
        )?;
        let rows = st.query_map([limit], |r| {
            let id: Vec<u8> = r.get(0)?;
            let peer_account: i64 = r.get(2)?;
            let started: i64 = r.get(4)?;
            let answered: Option<i64> = r.get(5)?;
            let ended: Option<i64> = r.get(6)?;
            Ok(CallLogEntry {
                call: hex::encode(id),
                peer: r.get(1)?,
                peer_account: peer_account as u64,
                outgoing: r.get(3)?,
                started_at_ms: started as u64,
                answered_at_ms: answered.map(|v| v as u64),
                ended_at_ms: ended.map(|v| v as u64),
                outcome: r.get(7)?,
                detail: r.get(8)?,
                signals_dropped_before_accept: r.get::<_, i64>(9)? as u64,
                signals_released: r.get::<_, i64>(10)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Who may make this device ring.
    pub fn ring_policy(&self) -> Result<RingPolicy, ProfileError> {
        Ok(self.get("ring_policy")?.as_deref().and_then(RingPolicy::parse).unwrap_or_default())
    }

    pub fn set_ring_policy(&self, policy: RingPolicy) -> Result<(), ProfileError> {
        self.set("ring_policy", policy.as_str())
    }

    /// Save an account as a contact (it may then ring this device under the default policy).
    pub fn save_contact(&self, account: AccountId, label: &str) -> Result<(), ProfileError> {
        self.db.execute(
            "INSERT INTO contacts(account, label, added_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(account) DO UPDATE SET label = excluded.label",
            params![db_id(account.0)?, label, db_id(now_ms())?],
        )?;
        Ok(())
    }

    /// Every contact with how it is shown: saved ones, and the people written to in a 1:1.
    pub fn contact_list(&self) -> Result<Vec<(AccountId, String)>, ProfileError> {
        let mut st = self.db.prepare(
            "SELECT account, label FROM contacts
             UNION
             SELECT c.peer_account, c.name FROM conversations c
             WHERE c.peer_account IS NOT NULL AND c.peer_account NOT IN (SELECT account FROM contacts)
               AND EXISTS (SELECT 1 FROM messages m WHERE m.conversation = c.group_id AND m.outgoing = 1
                           AND m.kind IN ('text', 'attachment'))",
        )?;
        let rows = st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        let mut out: Vec<(AccountId, String)> = Vec::new();
        for row in rows {
            let (account, label) = row?;
            let account = AccountId(u64::try_from(account).map_err(|_| ProfileError::Corrupt("account id"))?);
            // Labels are sent to the other devices, whose decoder bounds them: keep them in.
            let mut label: String = label.chars().filter(|c| !c.is_control()).collect();
            while label.len() > rampart_core::limits::MAX_LABEL_BYTES {
                label.pop();
            }
            if !out.iter().any(|(a, _)| *a == account) {
                out.push((account, label));
            }
        }
        Ok(out)
    }

    /// A contact is an account the user saved, or wrote to in a 1:1 conversation.
    pub fn is_contact(&self, account: AccountId) -> Result<bool, ProfileError> {
        let id = db_id(account.0)?;
        let saved = self.db.prepare("SELECT 1 FROM contacts WHERE account = ?1")?.exists([id])?;
        if saved {
            return Ok(true);
        }
        Ok(self
            .db
            .prepare(
                "SELECT 1 FROM conversations c JOIN messages m ON m.conversation = c.group_id
                 WHERE c.peer_account = ?1 AND m.outgoing = 1 AND m.kind IN ('text', 'attachment') LIMIT 1",
            )?
            .exists([id])?)
    }

    /// The other person of a 1:1 conversation.
    pub fn conversation_peer(&self, group: &GroupId) -> Result<Option<AccountId>, ProfileError> {
        let peer: Option<Option<i64>> = self
            .db
            .query_row(
                "SELECT peer_account FROM conversations WHERE group_id = ?1",
                [group.as_bytes()],
                |r| r.get(0),
            )
            .optional()?;
        Ok(peer.flatten().map(|p| AccountId(p as u64)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_call_id_gets_its_own_log_line() {
        let dir = tempfile::tempdir().unwrap();
        let profile = Profile::open(dir.path(), None).unwrap();
        let call = CallId([1; 16]);
        let peer = AccountId(7);
        profile.log_call(&call, peer, "@mallory", false, "missed", 1_000).unwrap();
        // The same notice again (a redelivery): still one line.
        profile.log_call(&call, peer, "@mallory", false, "missed", 1_000).unwrap();
        assert_eq!(profile.call_log(10).unwrap().len(), 1);
        // The caller reuses the id later: a second line, and the first one is left as it was.
        profile.log_call(&call, peer, "@mallory", false, "missed", 9_000).unwrap();
        profile.update_call(&call, "answered", "", Some(9_500), None).unwrap();
        let log = profile.call_log(10).unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!((log[0].started_at_ms, log[0].outcome.as_str()), (9_000, "answered"));
        assert_eq!((log[1].started_at_ms, log[1].outcome.as_str()), (1_000, "missed"));
    }

    #[test]
    fn contacts_are_saved_or_written_to() {
        let dir = tempfile::tempdir().unwrap();
        let profile = Profile::open(dir.path(), None).unwrap();
        assert!(!profile.is_contact(AccountId(3)).unwrap());
        profile.save_contact(AccountId(3), "@carol").unwrap();
        assert!(profile.is_contact(AccountId(3)).unwrap());
        assert_eq!(profile.ring_policy().unwrap(), RingPolicy::Contacts);
        profile.set_ring_policy(RingPolicy::Nobody).unwrap();
        assert_eq!(profile.ring_policy().unwrap(), RingPolicy::Nobody);
    }
}
