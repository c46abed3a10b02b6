//! The relay and the client over real UDP on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use rampart_relay::{TurnClient, TurnClientError};
use rampart_turn::credentials;
use rampart_turn::integrity::encode_protected;
use rampart_turn::{
    Attribute, ChannelNumber, Class, ErrorCode, Message, Method, TransactionId, TransportProtocol,
};
use tokio::net::UdpSocket;

const WAIT: Duration = Duration::from_secs(2);
const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn two_clients_relay_send_indications_and_channel_data_both_ways() {
    let relay = relay(|_| {}).await;
    let alice = client(&relay, "alice.phone").await;
    let bob = client(&relay, "bob.laptop").await;
    assert_eq!(alice.mapped_address(), Some(alice.local_addr()));
    assert_eq!(alice.relayed_address().ip(), LOOPBACK);
    assert_ne!(alice.relayed_address(), bob.relayed_address());
    assert!((49152..=65535).contains(&alice.relayed_address().port()));
    assert_eq!(relay.stats().allocations, 2);

    alice.create_permission(bob.relayed_address()).await.unwrap();
    bob.create_permission(alice.relayed_address()).await.unwrap();

    // Send indications out, Data indications in.
    for sequence in 0..5 {
        alice.send_to(bob.relayed_address(), &srtp(sequence, 100)).await.unwrap();
        let (from, data) = recv_within(&bob, WAIT).await.expect("bob received nothing");
        assert_eq!(from, alice.relayed_address());
        assert_eq!(data, srtp(sequence, 100));
        bob.send_to(alice.relayed_address(), &srtp(sequence + 100, 60)).await.unwrap();
        let (from, data) = recv_within(&alice, WAIT).await.expect("alice received nothing");
        assert_eq!(from, bob.relayed_address());
        assert_eq!(data, srtp(sequence + 100, 60));
    }

    // Channels both ways: ChannelData out and in.
    alice.channel_bind(bob.relayed_address()).await.unwrap();
    bob.channel_bind(alice.relayed_address()).await.unwrap();
    // Binding again (a refresh) is fine.
    alice.channel_bind(bob.relayed_address()).await.unwrap();
    for sequence in 0..50 {
        alice.send_to(bob.relayed_address(), &srtp(sequence, 140)).await.unwrap();
        let (from, data) = recv_within(&bob, WAIT).await.expect("bob received nothing");
        assert_eq!((from, data), (alice.relayed_address(), srtp(sequence, 140)));
        bob.send_to(alice.relayed_address(), &srtp(sequence, 140)).await.unwrap();
        let (from, data) = recv_within(&alice, WAIT).await.expect("alice received nothing");
        assert_eq!((from, data), (bob.relayed_address(), srtp(sequence, 140)));
    }
    // SRTCP passes the media check too.
    let mut rtcp = vec![0x81, 201, 0, 7];
    rtcp.extend_from_slice(&[0x55; 28 + 4 + 16]);
    alice.send_to(bob.relayed_address(), &rtcp).await.unwrap();
    assert_eq!(recv_within(&bob, WAIT).await.unwrap().1, rtcp);

    let stats = relay.stats();
    assert_eq!(stats.relayed_to_peer, 111);
    assert_eq!(stats.relayed_to_client, 111);
    assert_eq!(stats.dropped_malformed, 0);
    assert_eq!(stats.rejected_auth, 0);

    alice.close().await.unwrap();
    bob.close().await.unwrap();
    assert!(matches!(alice.recv_from().await, Err(TurnClientError::Closed)));
    assert_eq!(relay.stats().allocations, 0);
    assert_eq!(relay.stats().allocations_total, 2);
    relay.shutdown().await;
}

#[tokio::test]
async fn wrong_password_and_expired_or_malformed_credentials_are_rejected() {
    let relay = relay(|_| {}).await;
    let (username, password) = creds("mallory.x");
    let wrong = TurnClient::allocate(relay.local_addr(), &username, "not-the-password").await;
    assert!(matches!(wrong, Err(TurnClientError::Rejected { code: 401, .. })), "{wrong:?}");

    // Credentials minted for another secret.
    let other = credentials::SharedSecret::new(b"another-secret-entirely".to_vec()).unwrap();
    let forged = credentials::mint(&other, "mallory.x", now(), 600).unwrap();
    let result =
        TurnClient::allocate(relay.local_addr(), forged.username().as_str(), forged.password()).await;
    assert!(matches!(result, Err(TurnClientError::Rejected { code: 401, .. })), "{result:?}");

    // Expired: minted two hours ago for one hour.
    let old = credentials::mint(&secret(), "mallory.x", now() - 7200, 3600).unwrap();
    let result = TurnClient::allocate(relay.local_addr(), old.username().as_str(), old.password()).await;
    assert!(matches!(result, Err(TurnClientError::Rejected { code: 401, .. })), "{result:?}");

    // Not a REST username at all.
    let result = TurnClient::allocate(relay.local_addr(), "mallory", "password").await;
    assert!(matches!(result, Err(TurnClientError::Rejected { code: 401, .. })), "{result:?}");

    assert_eq!(relay.stats().rejected_auth, 4);
    assert_eq!(relay.stats().allocations, 0);
    // The right password still works.
    TurnClient::allocate(relay.local_addr(), &username, &password).await.unwrap();
    assert_eq!(relay.stats().allocations, 1);
    relay.shutdown().await;
}

#[tokio::test]
async fn allocation_quota_is_per_user() {
    let relay = relay(|config| config.max_allocations_per_user = 2).await;
    let first = client(&relay, "carol.1").await;
    let _second = client(&relay, "carol.2").await;
    let (username, password) = creds("carol.3");
    let third = TurnClient::allocate(relay.local_addr(), &username, &password).await;
    assert!(matches!(third, Err(TurnClientError::Rejected { code: 486, .. })), "{third:?}");
    assert_eq!(relay.stats().rejected_quota, 1);
    // Another user is not affected.
    let _dave = client(&relay, "dave.1").await;
    // Releasing one makes room.
    first.close().await.unwrap();
    let _third = client(&relay, "carol.3").await;
    assert_eq!(relay.stats().allocations, 3);
    relay.shutdown().await;
}

#[tokio::test]
async fn nothing_passes_without_a_permission() {
    let relay = relay(|_| {}).await;
    let alice = client(&relay, "alice.1").await;
    let bob = client(&relay, "bob.1").await;
    // Only bob permits alice; alice permits nobody.
    bob.create_permission(alice.relayed_address()).await.unwrap();

    // Alice's relay has no permission for bob: dropped at alice's allocation on the way out.
    alice.send_to(bob.relayed_address(), &srtp(1, 50)).await.unwrap();
    // Bob's packet leaves through bob's allocation but alice's has no permission for it.
    bob.send_to(alice.relayed_address(), &srtp(2, 50)).await.unwrap();
    // A stranger sending straight to the relayed address.
    let stranger = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    // (Bob permits 127.0.0.1, the stranger's address too, since on loopback everyone shares
    // it: permissions are by IP address, RFC 8656 §9.)
    stranger.send_to(&srtp(3, 50), alice.relayed_address()).await.unwrap();
    assert!(recv_within(&alice, QUIET).await.is_none());
    assert!(recv_within(&bob, QUIET).await.is_none());
    // A channel bind counts as a permission only for what it binds.
    let result = alice.channel_bind("127.0.0.1:0".parse().unwrap()).await;
    assert!(matches!(result, Err(TurnClientError::Rejected { code: 400, .. })), "{result:?}");

    let stats = relay.stats();
    assert_eq!(stats.relayed_to_peer, 1, "only bob's packet left the relay");
    assert_eq!(stats.relayed_to_client, 0);
    assert_eq!(stats.dropped_no_permission, 3);

    // Once alice permits bob, the same traffic flows.
    alice.create_permission(bob.relayed_address()).await.unwrap();
    bob.send_to(alice.relayed_address(), &srtp(4, 50)).await.unwrap();
    assert_eq!(recv_within(&alice, WAIT).await.unwrap().1, srtp(4, 50));
    relay.shutdown().await;
}

#[tokio::test]
async fn loopback_peers_are_refused_by_default() {
    let relay = relay(|config| config.allow_loopback_peers = false).await;
    let alice = client(&relay, "alice.1").await;
    let result = alice.create_permission("127.0.0.1:5000".parse().unwrap()).await;
    assert!(matches!(result, Err(TurnClientError::Rejected { code: 403, .. })), "{result:?}");
    let result = alice.channel_bind("127.0.0.1:5000".parse().unwrap()).await;
    assert!(matches!(result, Err(TurnClientError::Rejected { code: 403, .. })), "{result:?}");
    // An IPv6 peer on an IPv4 relay.
    let result = alice.create_permission("[2001:db8::1]:5000".parse().unwrap()).await;
    assert!(matches!(result, Err(TurnClientError::Rejected { code: 443, .. })), "{result:?}");
    alice.create_permission("192.0.2.1:5000".parse().unwrap()).await.unwrap();
    relay.shutdown().await;
}

#[tokio::test]
async fn malformed_media_is_counted_per_user_and_not_forwarded() {
    let relay = relay(|_| {}).await;
    let alice = client(&relay, "alice.phone").await;
    let bob = client(&relay, "bob.phone").await;
    alice.create_permission(bob.relayed_address()).await.unwrap();
    bob.create_permission(alice.relayed_address()).await.unwrap();

    let mut not_rtp = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n".to_vec();
    not_rtp.resize(64, b' ');
    let mut lying_header = srtp(1, 10);
    lying_header[0] |= 0x0f; // 15 CSRCs that are not there
    let too_short = srtp(1, 0)[..20].to_vec();
    let too_big = srtp(1, 1400);
    for bad in [&not_rtp, &lying_header, &too_short, &too_big] {
        alice.send_to(bob.relayed_address(), bad).await.unwrap();
    }
    alice.channel_bind(bob.relayed_address()).await.unwrap();
    alice.send_to(bob.relayed_address(), &not_rtp).await.unwrap();
    assert!(recv_within(&bob, QUIET).await.is_none());

    let stats = relay.stats();
    assert_eq!(stats.dropped_malformed, 5);
    assert_eq!(stats.per_user_malformed.get("alice"), Some(&5));
    assert_eq!(stats.per_user_malformed.get("bob"), None);
    assert_eq!(stats.relayed_to_peer, 0);

    // Well-formed media still flows, and peer-to-client traffic is not shape-checked (the
    // sender's relay checked it).
    alice.send_to(bob.relayed_address(), &srtp(2, 100)).await.unwrap();
    assert_eq!(recv_within(&bob, WAIT).await.unwrap().1, srtp(2, 100));
    relay.shutdown().await;
}

#[tokio::test]
async fn media_check_can_be_turned_off() {
    let relay = relay(|config| config.media_check = false).await;
    let alice = client(&relay, "alice.1").await;
    let bob = client(&relay, "bob.1").await;
    alice.create_permission(bob.relayed_address()).await.unwrap();
    bob.create_permission(alice.relayed_address()).await.unwrap();
    alice.send_to(bob.relayed_address(), b"plain bytes").await.unwrap();
    assert_eq!(recv_within(&bob, WAIT).await.unwrap().1, b"plain bytes");
    relay.shutdown().await;
}

/// Datagrams of every wrong kind, from a stranger and from a client with an allocation.
fn garbage(valid_request: &[u8]) -> Vec<Vec<u8>> {
    let mut datagrams: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0x40],
        vec![0x40, 0x00, 0x00],
        vec![0x40, 0x00, 0xff, 0xff, 1, 2, 3],
        vec![0x4f, 0xff, 0x00, 0x04, 1, 2, 3, 4],
        vec![0x80; 100],
        vec![0xff; 1500],
        vec![0x00; 20],
        vec![0x00; 65_000],
        vec![0x40; 65_000],
    ];
    // Every truncation of a valid request, and the request with a length field that lies.
    for cut in 0..valid_request.len() {
        datagrams.push(valid_request[..cut].to_vec());
    }
    let mut lying = valid_request.to_vec();
    lying[3] = lying[3].wrapping_add(4);
    datagrams.push(lying);
    // Oversized STUN: a valid header claiming 2000 bytes of zero attributes.
    let mut oversized = valid_request[..20].to_vec();
    oversized[2..4].copy_from_slice(&2000u16.to_be_bytes());
    oversized.resize(2020, 0);
    datagrams.push(oversized);
    // Every single-bit flip of the valid request.
    for index in 0..valid_request.len() {
        for bit in 0..8 {
            let mut flipped = valid_request.to_vec();
            flipped[index] ^= 1 << bit;
            datagrams.push(flipped);
        }
    }
    // Random bytes of random lengths with every first byte.
    for first in 0..=255u8 {
        let len = rand::random_range(1..1600);
        let mut random: Vec<u8> = (0..len).map(|_| rand::random()).collect();
        random[0] = first;
        datagrams.push(random);
    }
    datagrams
}

#[tokio::test]
async fn garbage_does_not_stop_service_for_others() {
    let relay = relay(|_| {}).await;
    let alice = client(&relay, "alice.1").await;
    let bob = client(&relay, "bob.1").await;
    alice.create_permission(bob.relayed_address()).await.unwrap();
    bob.create_permission(alice.relayed_address()).await.unwrap();
    bob.channel_bind(alice.relayed_address()).await.unwrap();

    let mut mallory = Raw::new(relay.local_addr(), "mallory.1").await;
    let allocate = request(Method::Allocate).with(Attribute::RequestedTransport(TransportProtocol::UDP));
    let valid = encode_protected(&allocate, mallory.key.as_ref(), true).unwrap();
    let datagrams = garbage(&valid);
    let count = datagrams.len();
    let stranger = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    for datagram in &datagrams {
        stranger.send_to(datagram, relay.local_addr()).await.unwrap();
    }
    // Mallory gets an allocation and sends the same from it, and towards the relayed ports.
    // (Not to alice's or bob's: on loopback the stranger has the IP address they permitted, and
    // its flood would rightly eat their bandwidth budget.)
    let response = mallory.authed(allocate).await;
    assert_eq!(response.class, Class::SuccessResponse, "{response:?}");
    let mallory_relayed = response.xor_relayed_address().unwrap();
    for datagram in &datagrams {
        mallory.send(datagram).await;
        stranger.send_to(datagram, mallory_relayed).await.unwrap();
        // Keep the socket buffers from overflowing, which would only test the kernel.
        tokio::task::yield_now().await;
    }

    // Service goes on.
    for sequence in 0..10 {
        alice.send_to(bob.relayed_address(), &srtp(sequence, 100)).await.unwrap();
        let received = recv_within(&bob, WAIT).await;
        assert_eq!(received.map(|r| r.1), Some(srtp(sequence, 100)), "{:?}", relay.stats());
        bob.send_to(alice.relayed_address(), &srtp(sequence, 100)).await.unwrap();
        assert_eq!(recv_within(&alice, WAIT).await.unwrap().1, srtp(sequence, 100));
    }
    let binding = mallory.plain(&request(Method::Binding)).await;
    assert_eq!(binding.class, Class::SuccessResponse);
    assert_eq!(binding.xor_mapped_address(), Some(mallory.socket.local_addr().unwrap()));
    let stats = relay.stats();
    assert!(stats.dropped_garbage > count as u64 / 2, "{stats:?}");
    // A new client can still allocate.
    let _carol = client(&relay, "carol.1").await;
    relay.shutdown().await;
}

#[tokio::test]
async fn bandwidth_cap_drops_excess() {
    let rate = 8_000;
    let relay = relay(|config| config.bandwidth_bytes_per_sec = rate).await;
    let alice = client(&relay, "alice.1").await;
    let bob = client(&relay, "bob.1").await;
    alice.create_permission(bob.relayed_address()).await.unwrap();
    bob.create_permission(alice.relayed_address()).await.unwrap();
    alice.channel_bind(bob.relayed_address()).await.unwrap();
    // 300 packets of 200 bytes (60 kB) as fast as possible: about one second's worth (the
    // bucket) passes.
    let packet = srtp(1, 172);
    for _ in 0..300 {
        alice.send_to(bob.relayed_address(), &packet).await.unwrap();
        // Let the relay read as we go, so the kernel's socket buffers are not what drops.
        tokio::task::yield_now().await;
    }
    let received = drain(&bob, QUIET).await;
    let stats = relay.stats();
    assert!((30..=80).contains(&received), "received {received}");
    assert!(stats.dropped_over_bandwidth >= 150, "{stats:?}");
    assert!(stats.relayed_to_peer + stats.dropped_over_bandwidth <= 300, "{stats:?}");
    relay.shutdown().await;
}

#[tokio::test]
async fn client_refreshes_and_recovers_from_stale_nonces() {
    let relay = relay(|config| {
        config.default_lifetime = Duration::from_secs(2);
        config.max_lifetime = Duration::from_secs(2);
        config.nonce_lifetime = Duration::from_secs(1);
    })
    .await;
    let alice = client(&relay, "alice.1").await;
    let bob = client(&relay, "bob.1").await;
    // Past the nonce lifetime: the next request gets 438 and is retried with a new nonce;
    // past the allocation lifetime: the refresher kept it alive.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(relay.stats().allocations, 2);
    alice.create_permission(bob.relayed_address()).await.unwrap();
    bob.create_permission(alice.relayed_address()).await.unwrap();
    alice.send_to(bob.relayed_address(), &srtp(1, 10)).await.unwrap();
    assert_eq!(recv_within(&bob, WAIT).await.unwrap().1, srtp(1, 10));
    relay.shutdown().await;
}

#[tokio::test]
async fn allocations_expire_without_refresh() {
    let relay = relay(|config| {
        config.default_lifetime = Duration::from_secs(1);
        config.max_lifetime = Duration::from_secs(1);
    })
    .await;
    let mut raw = Raw::new(relay.local_addr(), "erin.1").await;
    let response = raw
        .authed(request(Method::Allocate).with(Attribute::RequestedTransport(TransportProtocol::UDP)))
        .await;
    assert_eq!(response.lifetime(), Some(1));
    assert_eq!(relay.stats().allocations, 1);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(relay.stats().allocations, 0);
    // Requests on it now get 437.
    let response = raw.authed(request(Method::Refresh)).await;
    assert_eq!(code(&response), Some(ErrorCode::ALLOCATION_MISMATCH));
    relay.shutdown().await;
}

#[tokio::test]
async fn protocol_errors() {
    let relay = relay(|_| {}).await;
    let mut raw = Raw::new(relay.local_addr(), "frank.1").await;

    // Binding needs no credentials.
    let binding = raw.plain(&request(Method::Binding)).await;
    assert_eq!(binding.class, Class::SuccessResponse);
    assert!(binding.software().is_some());

    // The first Allocate is challenged with REALM and NONCE.
    let challenge = raw
        .plain(&request(Method::Allocate).with(Attribute::RequestedTransport(TransportProtocol::UDP)))
        .await;
    assert_eq!(code(&challenge), Some(401));
    assert_eq!(challenge.realm().unwrap().as_str(), REALM);
    assert!(challenge.nonce().is_some());

    // A made-up nonce is stale.
    raw.nonce = Some(rampart_turn::Nonce::new("0123456789abcdef0123456789abcdef01234567").unwrap());
    let stale = raw.authed(request(Method::Allocate)).await;
    assert_eq!(code(&stale), Some(ErrorCode::STALE_NONCE));
    raw.nonce = stale.nonce().cloned();

    // No REQUESTED-TRANSPORT, TCP, DONT-FRAGMENT, reservation.
    assert_eq!(code(&raw.authed(request(Method::Allocate)).await), Some(400));
    let tcp = request(Method::Allocate).with(Attribute::RequestedTransport(TransportProtocol::TCP));
    assert_eq!(code(&raw.authed(tcp).await), Some(442));
    let df = request(Method::Allocate)
        .with(Attribute::RequestedTransport(TransportProtocol::UDP))
        .with(Attribute::DontFragment);
    let response = raw.authed(df).await;
    assert_eq!(code(&response), Some(420));
    let even_reserve = request(Method::Allocate)
        .with(Attribute::RequestedTransport(TransportProtocol::UDP))
        .with(Attribute::EvenPort { reserve_next: true });
    assert_eq!(code(&raw.authed(even_reserve).await), Some(508));
    let v6 = request(Method::Allocate)
        .with(Attribute::RequestedTransport(TransportProtocol::UDP))
        .with(Attribute::RequestedAddressFamily(rampart_turn::AddressFamily::IPV6));
    assert_eq!(code(&raw.authed(v6).await), Some(440));

    // Requests before an allocation exists: 437.
    let permission =
        request(Method::CreatePermission).with(Attribute::XorPeerAddress("192.0.2.1:1".parse().unwrap()));
    assert_eq!(code(&raw.authed(permission).await), Some(437));

    // An even port on request; a retransmitted Allocate gets the same success, another 437.
    let allocate = request(Method::Allocate)
        .with(Attribute::RequestedTransport(TransportProtocol::UDP))
        .with(Attribute::EvenPort { reserve_next: false })
        .with(Attribute::Lifetime { seconds: 100_000 });
    let first = raw.authed(allocate.clone()).await;
    assert_eq!(first.class, Class::SuccessResponse, "{first:?}");
    let relayed = first.xor_relayed_address().unwrap();
    assert_eq!(relayed.port() % 2, 0);
    assert_eq!(first.lifetime(), Some(3600), "capped at the maximum");
    let again = raw.authed(allocate).await;
    assert_eq!(again.xor_relayed_address(), Some(relayed));
    let other = raw
        .authed(request(Method::Allocate).with(Attribute::RequestedTransport(TransportProtocol::UDP)))
        .await;
    assert_eq!(code(&other), Some(437));

    // Another user's credentials on this allocation: 441.
    let mut impostor = Raw::new(relay.local_addr(), "grace.1").await;
    impostor.socket = raw.socket;
    impostor.nonce = raw.nonce.clone();
    let response = impostor.authed(request(Method::Refresh)).await;
    assert_eq!(code(&response), Some(441));
    raw.socket = impostor.socket;

    // CreatePermission without a peer, ChannelBind rules.
    assert_eq!(code(&raw.authed(request(Method::CreatePermission)).await), Some(400));
    let peer_a = "192.0.2.1:1000".parse().unwrap();
    let peer_b = "192.0.2.2:1000".parse().unwrap();
    let bind = |channel: u16, peer| {
        request(Method::ChannelBind)
            .with(Attribute::ChannelNumber(ChannelNumber::new(channel).unwrap()))
            .with(Attribute::XorPeerAddress(peer))
    };
    assert_eq!(raw.authed(bind(0x4000, peer_a)).await.class, Class::SuccessResponse);
    assert_eq!(code(&raw.authed(bind(0x4000, peer_b)).await), Some(400));
    assert_eq!(code(&raw.authed(bind(0x4001, peer_a)).await), Some(400));
    assert_eq!(raw.authed(bind(0x4001, peer_b)).await.class, Class::SuccessResponse);
    // A CHANNEL-NUMBER outside the range is a malformed request.
    let mut raw_bind = encode_protected(&bind(0x4002, peer_a), None, false).unwrap();
    raw_bind[24] = 0x30;
    raw.send(&raw_bind).await;
    assert_eq!(code(&raw.receive().await.unwrap().1), Some(400));

    // An unknown comprehension-required attribute: 420 listing it.
    let mut unknown = encode_protected(&request(Method::Refresh), None, false).unwrap();
    unknown.extend_from_slice(&[0x00, 0x7f, 0x00, 0x00]);
    unknown[3] += 4;
    raw.send(&unknown).await;
    let response = raw.receive().await.unwrap().1;
    assert_eq!(code(&response), Some(420));

    // Responses carry MESSAGE-INTEGRITY and FINGERPRINT.
    raw.send(&encode_protected(&request(Method::Binding), None, false).unwrap()).await;
    let (bytes, _) = raw.receive().await.unwrap();
    rampart_turn::integrity::verify_fingerprint(&bytes).unwrap();
    let refresh = request(Method::Refresh)
        .with(Attribute::Username(rampart_turn::Username::new(raw.username.clone()).unwrap()))
        .with(Attribute::Realm(rampart_turn::Realm::new(REALM).unwrap()))
        .with(Attribute::Nonce(raw.nonce.clone().unwrap()));
    raw.send(&encode_protected(&refresh, raw.key.as_ref(), true).unwrap()).await;
    let (bytes, response) = raw.receive().await.unwrap();
    assert_eq!(response.class, Class::SuccessResponse);
    rampart_turn::integrity::verify_message_integrity(&bytes, raw.key.as_ref().unwrap()).unwrap();
    rampart_turn::integrity::verify_fingerprint(&bytes).unwrap();

    // Refresh with lifetime 0 deletes.
    let delete = raw.authed(request(Method::Refresh).with(Attribute::Lifetime { seconds: 0 })).await;
    assert_eq!(delete.class, Class::SuccessResponse);
    assert_eq!(relay.stats().allocations, 0);

    // A Data indication or a response from a client is ignored.
    let data = Message::new(Class::Indication, Method::Data, TransactionId([1; 12]));
    raw.send(&data.encode().unwrap()).await;
    assert!(raw.receive().await.is_none());
    relay.shutdown().await;
}

#[tokio::test]
async fn no_free_port_is_508() {
    // A one-port range already taken.
    let taken = std::net::UdpSocket::bind((LOOPBACK, 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let relay = relay(|config| config.port_range = port..=port).await;
    let (username, password) = creds("henry.1");
    let result = TurnClient::allocate(relay.local_addr(), &username, &password).await;
    assert!(matches!(result, Err(TurnClientError::Rejected { code: 508, .. })), "{result:?}");
    relay.shutdown().await;
}

#[tokio::test]
async fn client_times_out_without_a_server() {
    let silent = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let started = std::time::Instant::now();
    let result = TurnClient::allocate(silent.local_addr().unwrap(), "1:x", "y").await;
    assert!(matches!(result, Err(TurnClientError::Timeout)), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
