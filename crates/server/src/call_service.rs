//! Call signaling: the server rings the callee's devices with a notice it writes itself, holds
//! the caller's offer until one of them accepts, forwards later signals between exactly the two
//! parties, and mints short-lived relay credentials. It never sees what the signals say (they
//! are MLS application messages of the callers' 1:1 conversation).
//!
//! Everything a caller sends that does not fit the call schema is refused and counted against
//! the caller in the store ([`rampart_store::Store::count_call_misfit`]): a look-alike client
//! probing call set-up, as in the 2019 attack, leaves evidence on every node.

use bytes::Bytes;
use rampart_core::call::{CallId, MediaKind, RING_TIMEOUT_MS, RingNotice, SignalKind};
use rampart_core::{AccountId, DeviceId, GroupId, MessageId};
use rampart_mls::ds;
use rampart_proto::{
    ChallengeAnswer, Envelope, ErrorBody, ErrorCode, RelayCredentials, ResponseBody, encode_envelope,
};
use rampart_sentinel::signals::AT_ONCE_MS;
use rampart_sentinel::{Observation, Quirk};
use rampart_store::{CallRecord, NewMessage};
use tracing::{debug, info, warn};

use crate::session::{Answer, Connection, err, store_error};
use crate::state::{Shared, now_ms};

/// Why a call request was refused and counted against its sender. Fixed names: they are
/// metric labels and store keys, never anything a client chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misfit {
    /// The request did not decode as a call request (sizes, kinds, ids).
    Schema,
    /// The offer or signal is not an MLS application message of the named conversation.
    NotMls,
    /// Caller and callee do not share that 1:1 conversation.
    NotInConversation,
    UnknownCall,
    /// The sender is not the caller or the callee (or not the callee device that answered).
    NotAParty,
    /// A signal the sender's role may not send, e.g. a caller's "answer" or "connect".
    WrongKind,
    /// A caller signal other than hang-up before anyone accepted: nothing written by the
    /// caller reaches the callee before accept.
    BeforeAccept,
    DuplicateCall,
}

impl Misfit {
    pub fn as_str(self) -> &'static str {
        match self {
            Misfit::Schema => "schema",
            Misfit::NotMls => "not_mls",
            Misfit::NotInConversation => "not_in_conversation",
            Misfit::UnknownCall => "unknown_call",
            Misfit::NotAParty => "not_a_party",
            Misfit::WrongKind => "wrong_kind",
            Misfit::BeforeAccept => "before_accept",
            Misfit::DuplicateCall => "duplicate_call",
        }
    }
}

/// Calls a connection remembers asking relay credentials for: a device places one call at a
/// time, so a few are plenty.
const RELAY_ASKS_KEPT: usize = 8;

/// A ring notice is worth delivering a little past the ring timeout: a device that was offline
/// then learns of the missed call.
const RING_NOTICE_TTL_MS: u64 = 24 * 60 * 60 * 1000;

fn call_hex(call: &CallId) -> String {
    hex::encode(call.0)
}

/// Count a misfit against the sending account: in the metrics at once, and in a tally that
/// [`flush_misfits`] writes to the store (shared by every node) and the log (account ids only)
/// once a second. A flood of misfits costs memory for one counter per account and reason, not
/// a store write and a log line each.
pub(crate) fn count_misfit(shared: &Shared, account: AccountId, misfit: Misfit) {
    shared.metrics.call_misfit(misfit.as_str());
    crate::sentinel_service::observe(shared, Observation::Misfit { account: account.0 });
    let mut tally = shared.misfit_tally.lock().unwrap_or_else(|p| p.into_inner());
    *tally.entry((account, misfit.as_str())).or_default() += 1;
}

/// Write the tallied misfits to the store, one write and one log line per account and reason,
/// and record the refusals in the evidence log: one entry per account and reason a second.
pub(crate) async fn flush_misfits(shared: &Shared) {
    let tally = std::mem::take(&mut *shared.misfit_tally.lock().unwrap_or_else(|p| p.into_inner()));
    let mut records = Vec::new();
    for ((account, reason), n) in tally {
        let total = match shared.store.count_call_misfit(account, reason, n, now_ms()).await {
            Ok(total) => {
                warn!(account = %account, reason, refused = n, total, "call requests refused");
                Some(total)
            }
            Err(e) => {
                warn!(account = %account, reason, error = %e, "cannot count call misfits");
                None
            }
        };
        let mut signals = std::collections::BTreeMap::from([("refused".to_owned(), n)]);
        if let Some(total) = total {
            signals.insert("refused_in_all".to_owned(), total);
        }
        records.push(rampart_sentinel::Record {
            decision: "refuse_call_setup".into(),
            subject: format!("account {account}"),
            by: "call schema".into(),
            reason: reason.to_owned(),
            signals,
            until_ms: None,
        });
    }
    crate::sentinel_service::append_evidence(shared, records).await;
}

fn refuse(shared: &Shared, account: AccountId, misfit: Misfit, code: ErrorCode, message: &str) -> ErrorBody {
    count_misfit(shared, account, misfit);
    err(code, message)
}

/// Queue an envelope for every device of `recipient`, or only for `only` (the call's party
/// device once it is known), from this device.
async fn queue_call_envelope(
    shared: &Shared,
    (recipient, only): (AccountId, Option<DeviceId>),
    from: (AccountId, DeviceId),
    envelope: &Envelope,
    ttl_ms: u64,
) -> Result<u32, ErrorBody> {
    let now = now_ms();
    let msg = NewMessage {
        recipient,
        only_device: only,
        sender_account: from.0,
        sender_device: from.1,
        message_id: MessageId::random(&mut rand::rng()),
        received_at: now,
        expires_at: now.saturating_add(ttl_ms),
        body: encode_envelope(envelope),
    };
    let copies = shared.store.enqueue(msg, shared.config.limits.queue()).await.map_err(store_error)?;
    let count = u32::try_from(copies.len()).unwrap_or(u32::MAX);
    for copy in copies {
        shared.hub.push_message(copy);
    }
    Ok(count)
}

/// The call's record, or a refusal counted against `account`: asking about a call that does
/// not exist is a misfit.
async fn known_call(shared: &Shared, account: AccountId, call: &CallId) -> Result<CallRecord, ErrorBody> {
    match shared.store.call(call).await.map_err(store_error)? {
        Some(record) => Ok(record),
        None => Err(refuse(shared, account, Misfit::UnknownCall, ErrorCode::WrongState, "no such call")),
    }
}

/// A call set-up as the caller sent it.
struct SetUp {
    call: CallId,
    callee: AccountId,
    group: GroupId,
    media: MediaKind,
    offer: Bytes,
}

impl Connection {
    pub(crate) async fn place_call(
        &mut self,
        call: CallId,
        callee: AccountId,
        group: GroupId,
        media: MediaKind,
        offer: Bytes,
        work: Option<ChallengeAnswer>,
    ) -> Answer {
        let set_up = SetUp { call, callee, group, media, offer };
        let answer = async {
            let (account, _) = self.identity()?;
            let shared = self.shared.clone();
            self.limit(&shared.limits.calls_per_account, &account, 1, "calls")?;
            let paid =
                crate::sentinel_service::check_calling(&shared, account, callee, work.as_ref()).await?;
            let placed = self.place_allowed_call(set_up).await;
            // Work pays for a call that rings, not for a set-up refused after it (a transient
            // storage error, say): the answer may be used again.
            if placed.is_err()
                && let (Some(paid), Some(sentinel)) = (paid, &shared.sentinel)
            {
                sentinel.refund(&paid);
            }
            placed
        }
        .await;
        // A refused set-up still names whom it was aimed at: the operators' list of targets to
        // notify must hold the people a malformed call never reached too. Not a call priced in
        // work: asking for the price is not a refusal, and it would name targets for free.
        if let Err(refused) = &answer
            && refused.code != ErrorCode::ChallengeRequired
            && let Ok((account, _)) = self.identity()
            && callee != account
        {
            crate::sentinel_service::sight_attempt(&self.shared, account, callee);
        }
        answer
    }

    /// The checks and the ringing after Sentinel let the account call.
    async fn place_allowed_call(&mut self, set_up: SetUp) -> Answer {
        let SetUp { call, callee, group, media, offer } = set_up;
        let (account, device) = self.identity()?;
        let shared = self.shared.clone();
        if callee == account {
            return Err(refuse(
                &shared,
                account,
                Misfit::NotInConversation,
                ErrorCode::BadRequest,
                "a call needs someone else",
            ));
        }
        if ds::check_group_message(&offer, &group, ds::Expect::Application).is_err() {
            return Err(refuse(
                &shared,
                account,
                Misfit::NotMls,
                ErrorCode::BadRequest,
                "the offer is not a message of that conversation",
            ));
        }
        let state = shared.store.group_state(&group).await.map_err(store_error)?;
        let one_to_one = state.as_ref().is_some_and(|s| {
            let has_me = s.members.iter().any(|(d, a)| *d == device && *a == account);
            let has_callee = s.members.iter().any(|(_, a)| *a == callee);
            let strangers = s.members.iter().any(|(_, a)| *a != account && *a != callee);
            has_me && has_callee && !strangers
        });
        if !one_to_one {
            return Err(refuse(
                &shared,
                account,
                Misfit::NotInConversation,
                ErrorCode::NotAMember,
                "calls go through the 1:1 conversation of caller and callee",
            ));
        }
        let now = now_ms();
        let record = CallRecord {
            call,
            caller: account,
            caller_device: device,
            callee,
            group,
            offer: offer.to_vec(),
            created_at: now,
            expires_at: now.saturating_add(RING_TIMEOUT_MS),
            answered_by: None,
            ended: false,
        };
        if !shared.store.create_call(record).await.map_err(store_error)? {
            return Err(refuse(
                &shared,
                account,
                Misfit::DuplicateCall,
                ErrorCode::BadRequest,
                "that call id is taken",
            ));
        }
        // The notice is written here, field by field: nothing of the caller's but the call id.
        let notice = RingNotice { call, caller: account, caller_device: device, media, sent_at_ms: now };
        let ringing = queue_call_envelope(
            &shared,
            (callee, None),
            (account, device),
            &Envelope::Ring(notice),
            RING_NOTICE_TTL_MS,
        )
        .await?;
        shared.metrics.calls_placed.inc();
        crate::sentinel_service::observe(
            &shared,
            Observation::CallPlaced { caller: account.0, callee: callee.0 },
        );
        // Behaviour, for the calls that reach someone: a set-up its device did not prepare the
        // way Rampart's client always does.
        if !self.relay_asked.contains(&call) {
            crate::sentinel_service::observe_quirk(&shared, account, Quirk::SetUpWithoutRelay, &self.client);
        }
        info!(caller = %account, callee = %callee, call = %call_hex(&call), devices = ringing, "call placed");
        Ok(ResponseBody::CallPlaced { ringing_devices: ringing })
    }

    pub(crate) async fn fetch_offer(&mut self, call: CallId) -> Answer {
        let (account, device) = self.identity()?;
        let shared = self.shared.clone();
        self.limit(&shared.limits.call_signals_per_device, &device, 1, "call requests")?;
        let record = known_call(&shared, account, &call).await?;
        if record.callee != account {
            return Err(refuse(&shared, account, Misfit::NotAParty, ErrorCode::Forbidden, "not your call"));
        }
        let Some(record) = shared.store.answer_call(&call, device, now_ms()).await.map_err(store_error)?
        else {
            return Err(err(ErrorCode::WrongState, "the call is over or was answered on another device"));
        };
        // Stop the account's other devices ringing. They act on the kind alone; the answering
        // device recognises its own id as the sender and ignores it.
        let answered = Envelope::CallSignal {
            call,
            kind: SignalKind::Hangup,
            group: record.group.clone(),
            payload: Bytes::new(),
        };
        queue_call_envelope(&shared, (account, None), (account, device), &answered, RING_TIMEOUT_MS).await?;
        crate::sentinel_service::observe(
            &shared,
            Observation::CallAnswered { caller: record.caller.0, callee: account.0 },
        );
        debug!(call = %call_hex(&call), device = %device, "call answered");
        Ok(ResponseBody::CallOffer { group: record.group, offer: Bytes::from(record.offer) })
    }

    pub(crate) async fn call_signal(&mut self, call: CallId, kind: SignalKind, body: Bytes) -> Answer {
        let (account, device) = self.identity()?;
        let shared = self.shared.clone();
        self.limit(&shared.limits.call_signals_per_device, &device, 1, "call signals")?;
        let record = known_call(&shared, account, &call).await?;
        let from_caller = account == record.caller && device == record.caller_device;
        let from_callee = account == record.callee;
        let recipient = if from_caller {
            match kind {
                SignalKind::Hangup => {}
                SignalKind::Candidates | SignalKind::Update if record.answered_by.is_some() => {}
                SignalKind::Candidates | SignalKind::Update => {
                    return Err(refuse(
                        &shared,
                        account,
                        Misfit::BeforeAccept,
                        ErrorCode::WrongState,
                        "nobody accepted the call yet",
                    ));
                }
                _ => {
                    return Err(refuse(
                        &shared,
                        account,
                        Misfit::WrongKind,
                        ErrorCode::BadRequest,
                        "a caller does not send that",
                    ));
                }
            }
            // Once a device answered, the call is between two devices: the callee's others
            // hear nothing more of it (before, a hang-up stops them all ringing).
            (record.callee, record.answered_by)
        } else if from_callee {
            let answered_here = record.answered_by == Some(device);
            match kind {
                SignalKind::Reject | SignalKind::Busy if record.answered_by.is_none() => {}
                SignalKind::Answer | SignalKind::Candidates | SignalKind::Update | SignalKind::Hangup
                    if answered_here => {}
                // Declining or hanging up on a device after another one answered is a race an
                // honest user runs into, not a probe: refuse it without counting.
                SignalKind::Reject | SignalKind::Busy | SignalKind::Hangup => {
                    return Err(err(ErrorCode::WrongState, "the call was answered on another device"));
                }
                _ => {
                    return Err(refuse(
                        &shared,
                        account,
                        Misfit::WrongKind,
                        ErrorCode::BadRequest,
                        "not a signal this device may send now",
                    ));
                }
            }
            (record.caller, Some(record.caller_device))
        } else {
            return Err(refuse(&shared, account, Misfit::NotAParty, ErrorCode::Forbidden, "not your call"));
        };
        if record.ended {
            return Err(err(ErrorCode::WrongState, "the call is over"));
        }
        if !body.is_empty() && ds::check_group_message(&body, &record.group, ds::Expect::Application).is_err()
        {
            return Err(refuse(
                &shared,
                account,
                Misfit::NotMls,
                ErrorCode::BadRequest,
                "the signal is not a message of the call's conversation",
            ));
        }
        if matches!(kind, SignalKind::Hangup | SignalKind::Reject | SignalKind::Busy) {
            shared.store.end_call(&call).await.map_err(store_error)?;
            let observed = match kind {
                SignalKind::Hangup if from_caller && record.answered_by.is_none() => {
                    if now_ms().saturating_sub(record.created_at) < AT_ONCE_MS {
                        crate::sentinel_service::observe_quirk(
                            &shared,
                            record.caller,
                            Quirk::HungUpAtOnce,
                            &self.client,
                        );
                    }
                    Some(Observation::CallAbandoned { caller: record.caller.0 })
                }
                SignalKind::Reject | SignalKind::Busy => {
                    Some(Observation::CallDeclined { caller: record.caller.0, callee: record.callee.0 })
                }
                _ => None,
            };
            if let Some(observed) = observed {
                crate::sentinel_service::observe(&shared, observed);
            }
        }
        let envelope = Envelope::CallSignal { call, kind, group: record.group, payload: body };
        queue_call_envelope(&shared, recipient, (account, device), &envelope, RING_TIMEOUT_MS).await?;
        Ok(ResponseBody::Ok)
    }

    /// TURN credentials for this call, valid briefly. The caller gets them to dial (the call
    /// may not exist yet); the callee only from the device that accepted.
    pub(crate) async fn fetch_relay_credentials(&mut self, call: CallId) -> Answer {
        let (account, device) = self.identity()?;
        let shared = self.shared.clone();
        if !self.relay_asked.contains(&call) {
            if self.relay_asked.len() >= RELAY_ASKS_KEPT {
                self.relay_asked.pop_front();
            }
            self.relay_asked.push_back(call);
        }
        self.limit(&shared.limits.call_signals_per_device, &device, 1, "relay credentials")?;
        if let Some(record) = shared.store.call(&call).await.map_err(store_error)? {
            let caller = record.caller == account && record.caller_device == device;
            let callee = record.callee == account && record.answered_by == Some(device);
            if !caller && !callee {
                return Err(refuse(
                    &shared,
                    account,
                    Misfit::NotAParty,
                    ErrorCode::Forbidden,
                    "relay credentials come after accepting",
                ));
            }
        }
        let Some(relay) = &shared.relay else {
            return Err(err(ErrorCode::Unavailable, "this server has no relay for calls"));
        };
        let now = now_ms();
        // "<account>.<call>": the relay counts and limits per account (the part before the dot).
        let id = format!("{}.{}", account.0, call_hex(&call).get(..16).unwrap_or_default());
        let credential = rampart_turn::credentials::mint(&relay.secret, &id, now / 1000, relay.ttl_secs)
            .map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
        Ok(ResponseBody::RelayCredentials(RelayCredentials {
            username: credential.username().as_str().to_owned(),
            password: credential.password().to_owned(),
            relays: relay.relays.clone(),
            expires_at_ms: credential.expires_at().saturating_mul(1000),
        }))
    }
}
