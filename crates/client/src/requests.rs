//! Message requests: a conversation someone who is not a contact starts waits here, sealed,
//! until the user accepts, declines or blocks.
//!
//! `rampart_core::consent` decides from facts known without opening anything (who the server
//! says sent it, the envelope's kind and conversation); this module keeps what it holds and
//! carries out the user's answer. A held delivery is stored exactly as it arrived and is handed
//! to the MLS engine only after an accept, in arrival order, through the same path as any
//! other delivery.

use rampart_core::consent::{self, DeliveryKind, DropReason, Facts, Standing, Verdict};
use rampart_core::{AccountId, GroupId};
use rampart_proto::{ClientRequest, Delivery, Envelope, ResponseBody};

use crate::client::Client;
use crate::error::ClientError;
use crate::event::Event;
use crate::net::Connection;
use crate::recipient::parse_recipient;
use crate::storage::MessageRequest;

impl Client {
    /// Run the consent rules on a delivery of a conversation, before anything of it is opened.
    /// Returns `None` when the delivery may go on to the MLS engine, else what became of it.
    pub(crate) fn consent(
        &mut self,
        d: &Delivery,
        envelope: &Envelope,
    ) -> Result<Option<Vec<Event>>, ClientError> {
        let (group, kind) = match envelope {
            Envelope::Welcome { group, .. } => (group, DeliveryKind::Welcome),
            // A departure changes who should be in the group, as a commit does: it is never
            // dropped from a group this device is in (a blocked member's included).
            Envelope::Commit { group, .. } | Envelope::MemberLeft { group, .. } => {
                (group, DeliveryKind::Commit)
            }
            Envelope::Application { group, .. } => (group, DeliveryKind::Content),
            Envelope::Direct(_)
            | Envelope::Ring(_)
            | Envelope::CallSignal { .. }
            | Envelope::ServerNotice(_) => {
                return Ok(None);
            }
        };
        let me = self.profile.credentials()?.ok_or(ClientError::NotRegistered)?.account;
        let held = self.profile.held_count(group)?;
        let standing = match self.profile.request_standing(group)? {
            Some(s) => s,
            // Accepted (here, or on another device of this account) but not opened yet: what
            // arrives meanwhile queues behind what is held, in order.
            None if held > 0 && self.releasing.as_ref() != Some(group) => Standing::Requested,
            None if self.engine()?.has_group(group) => Standing::Joined,
            None => Standing::Unknown,
        };
        // An ordinary message in a joined conversation (the common case) needs only the block
        // check; contacts and the request box are looked up for invitations and held ones.
        let weighs_request = standing == Standing::Requested
            || (standing == Standing::Unknown && kind == DeliveryKind::Welcome);
        let facts = Facts {
            policy: self.profile.message_policy()?,
            from_self: d.sender_account == me,
            from_contact: weighs_request && self.profile.is_contact(d.sender_account)?,
            from_blocked: self.profile.is_blocked(d.sender_account)?,
            standing,
            kind,
            open_requests: if weighs_request { self.profile.open_request_count()? } else { 0 },
            open_requests_from_sender: if weighs_request {
                self.profile.open_request_count_from(d.sender_account)?
            } else {
                0
            },
            held_in_request: held,
            held_bytes: if weighs_request { self.profile.held_bytes()? } else { 0 },
        };
        match consent::decide(&facts) {
            Verdict::Process => Ok(None),
            Verdict::OpenRequest => {
                self.profile.open_request(group, d)?;
                self.profile.hold(group, d)?;
                Ok(Some(vec![Event::Request {
                    conversation: group.to_hex(),
                    from: d.sender_label.clone(),
                    from_account: d.sender_account.0,
                }]))
            }
            Verdict::Hold => {
                self.profile.hold(group, d)?;
                Ok(Some(vec![]))
            }
            Verdict::Drop(reason) => {
                self.profile.count_dropped()?;
                // An invitation the policy turned away closes its conversation here: what
                // follows in it is dropped quietly too. (Not for a full request box: that
                // would turn away for good someone who simply came at a busy time.)
                if reason == DropReason::NotAContact {
                    self.profile.open_request(group, d)?;
                    self.profile.decline(group)?;
                }
                // A message for a conversation this device is not in is worth telling (it is
                // what a removed member sees); the other drops are the user's own choices.
                Ok(Some(match reason {
                    DropReason::UnknownConversation => {
                        vec![Event::Refused { reason: format!("a message for {}", reason.as_str()) }]
                    }
                    _ => vec![],
                }))
            }
        }
    }

    /// Open what is held for conversations the user let in (an accepted request), oldest
    /// first, through the ordinary delivery path. Also finishes an accept that was interrupted.
    pub(crate) async fn release_requests(
        &mut self,
        conn: &mut Connection,
    ) -> Result<Vec<Event>, ClientError> {
        let mut events = Vec::new();
        for group in self.profile.releasable()? {
            self.releasing = Some(group.clone());
            let opened = self.open_held(conn, &group, &mut events).await;
            self.releasing = None;
            opened?;
        }
        Ok(events)
    }

    /// Welcomes and group messages this client's MLS engine has been given to open since the
    /// client was opened (what the consent rules keep at zero for a stranger's request).
    pub fn mls_inputs_opened(&self) -> u64 {
        self.engine.as_ref().map_or(0, |e| e.inputs_opened())
    }

    /// Hand a released conversation's held deliveries, oldest first, to the ordinary path;
    /// each is forgotten only once handled (a crash in between opens it again, which
    /// deduplication absorbs).
    async fn open_held(
        &mut self,
        conn: &mut Connection,
        group: &GroupId,
        events: &mut Vec<Event>,
    ) -> Result<(), ClientError> {
        while let Some((seq, d)) = self.profile.next_held(group)? {
            events.extend(Box::pin(self.handle_delivery(conn, &d)).await?);
            self.profile.forget_held(seq)?;
        }
        Ok(())
    }

    /// Open requests on this device.
    pub fn requests(&self) -> Result<Vec<MessageRequest>, ClientError> {
        Ok(self.profile.message_requests()?)
    }

    fn request(&self, which: &str) -> Result<MessageRequest, ClientError> {
        self.profile.find_request(which)?.ok_or_else(|| {
            ClientError::Input(format!(
                "no open request {which:?}: give its id (or 6+ characters of it) or its sender; `rampart requests` lists them"
            ))
        })
    }

    /// Accept a request: its sender becomes a contact and the conversation is opened, with
    /// everything it held, in order. Returns what that produced (the join, the messages).
    pub async fn accept_request(&mut self, which: &str) -> Result<Vec<Event>, ClientError> {
        let mut conn = self.connect().await?;
        let result = self.accept_request_on(&mut conn, which).await;
        conn.close().await;
        result
    }

    /// [`Client::accept_request`] on an open connection (the chat window keeps one).
    pub async fn accept_request_on(
        &mut self,
        conn: &mut Connection,
        which: &str,
    ) -> Result<Vec<Event>, ClientError> {
        let request = self.request(which)?;
        let group = GroupId::from_hex(&request.conversation).ok_or(ClientError::Unexpected("request id"))?;
        self.profile.save_contact(AccountId(request.from_account), &request.from)?;
        self.profile.close_request(&group)?;
        let events = self.release_requests(conn).await?;
        // The account's other devices open this person's conversations too.
        self.share_contacts(conn, vec![(AccountId(request.from_account), request.from.clone())]).await;
        Ok(events)
    }

    /// Decline a request: what it held is deleted unopened, and what still comes in that
    /// conversation is dropped here. The account stays a member on the server (another of its
    /// devices may have accepted); `block` stops the sender on the server.
    pub fn decline_request(&mut self, which: &str) -> Result<MessageRequest, ClientError> {
        let request = self.request(which)?;
        let group = GroupId::from_hex(&request.conversation).ok_or(ClientError::Unexpected("request id"))?;
        self.profile.decline(&group)?;
        Ok(request)
    }

    /// Block an account (given as +E164, @username, or an open request's id): the server
    /// stops delivering anything from it to this account, its open requests are declined, and
    /// this device drops whatever still comes from it. Returns how it is shown.
    pub async fn block(&mut self, who: &str) -> Result<String, ClientError> {
        let mut conn = self.connect().await?;
        let result = self.block_on(&mut conn, who).await;
        conn.close().await;
        result
    }

    /// [`Client::block`] on an open connection.
    pub async fn block_on(&mut self, conn: &mut Connection, who: &str) -> Result<String, ClientError> {
        let (account, label) = match self.profile.find_request(who)? {
            Some(r) => (AccountId(r.from_account), r.from),
            None => {
                let found = self.lookup(conn, parse_recipient(who)?).await?;
                (found.account, found.label)
            }
        };
        match conn.request(ClientRequest::Block { account }).await? {
            ResponseBody::Ok => {}
            _ => return Err(ClientError::Unexpected("block")),
        }
        self.profile.save_block(account, &label)?;
        for r in self.profile.message_requests()?.into_iter().filter(|r| r.from_account == account.0) {
            let Some(group) = GroupId::from_hex(&r.conversation) else { continue };
            self.profile.decline(&group)?;
            leave_declined(conn, group).await?;
        }
        Ok(label)
    }

    /// Lift a block (the account's earlier requests stay declined).
    pub async fn unblock(&mut self, who: &str) -> Result<String, ClientError> {
        let blocked = self.profile.blocked_accounts()?;
        let named = blocked.iter().find(|(_, label)| label.eq_ignore_ascii_case(who.trim()));
        let mut conn = self.connect().await?;
        let result = async {
            let (account, label) = match named {
                Some((a, l)) => (*a, l.clone()),
                None => {
                    let found = self.lookup(&mut conn, parse_recipient(who)?).await?;
                    (found.account, found.label)
                }
            };
            match conn.request(ClientRequest::Unblock { account }).await? {
                ResponseBody::Ok => {}
                _ => return Err(ClientError::Unexpected("unblock")),
            }
            self.profile.remove_block(account)?;
            Ok(label)
        }
        .await;
        conn.close().await;
        result
    }
}

/// Leave a declined conversation on the server, so nothing more of it is queued here.
async fn leave_declined(conn: &mut Connection, group: GroupId) -> Result<(), ClientError> {
    match conn.request(ClientRequest::LeaveGroup { group }).await {
        Ok(_) => Ok(()),
        // Never joined on the server (the inviter's commit was refused): nothing to leave.
        Err(ClientError::Server(e))
            if matches!(
                e.code,
                rampart_proto::ErrorCode::NoSuchGroup | rampart_proto::ErrorCode::NotAMember
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}
