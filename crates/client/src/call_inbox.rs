//! Ring notices and call signals as they arrive, queued unopened for a call driver.

use bytes::Bytes;
use rampart_core::call::{CallId, RingNotice, SignalKind};
use rampart_core::{AccountId, DeviceId, GroupId};

/// What a received delivery for calls turned into, queued for a call driver. Nothing here has
/// been decrypted.
#[derive(Debug, Clone)]
pub enum CallInput {
    Ring { notice: RingNotice, label: String, may_ring: bool },
    Signal { call: CallId, kind: SignalKind, group: GroupId, payload: Bytes, from: (AccountId, DeviceId) },
}
