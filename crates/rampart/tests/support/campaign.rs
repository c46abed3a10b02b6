//! A look-alike client's campaign in miniature: malformed call set-ups aimed at one account.

use std::time::Duration;

use bytes::Bytes;
use rampart_client::ClientError;
use rampart_core::call::{CallId, MediaKind};
use rampart_core::{AccountId, GroupId};
use rampart_proto::{ClientRequest, ErrorBody, ErrorCode, ResponseBody};

/// A call set-up with an offer that is not MLS: refused by the call schema (a misfit), or by
/// Sentinel when the account's calling is suspended.
pub fn garbage_call(callee: AccountId) -> ClientRequest {
    ClientRequest::PlaceCall {
        call: CallId(rand::random()),
        callee,
        group: GroupId::new(callee, &mut rand::rng()),
        media: MediaKind::Audio,
        offer: Bytes::from_static(b"not an MLS message"),
        answer: None,
    }
}

/// The server's refusal of a request that had to be refused.
pub fn refusal(result: Result<ResponseBody, ClientError>) -> ErrorBody {
    match result {
        Err(ClientError::Server(body)) => body,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Probe `victim` with malformed call set-ups until Sentinel stops `prober`'s calling.
pub async fn probe_until_stopped(prober: &mut rampart_client::Client, victim: AccountId) {
    let mut conn = prober.connect().await.unwrap();
    for _ in 0..40 {
        let refused = refusal(conn.request(garbage_call(victim)).await);
        if refused.code == ErrorCode::Forbidden {
            return;
        }
        assert_eq!(refused.code, ErrorCode::BadRequest, "{refused:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("Sentinel never stopped the prober");
}
