//! TURN over TCP and TLS (RFC 8656 §3.1): clients that cannot use UDP reach the relay over a
//! stream, and their media still crosses relayed UDP ports. Loopback only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use rampart_relay::{RelayStats, TlsListen, TurnClient, TurnClientError};
use rampart_turn::Transport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A relay that accepts UDP, TCP and TLS, with `tweak` applied.
async fn stream_relay(
    tweak: impl FnOnce(&mut rampart_relay::RelayConfig),
) -> (rampart_relay::RelayHandle, std::sync::Arc<rustls::ClientConfig>) {
    let tls = test_tls();
    let relay = relay(|config| {
        config.tcp_listen = Some(std::net::SocketAddr::new(LOOPBACK, 0));
        config.tls = Some(TlsListen { listen: std::net::SocketAddr::new(LOOPBACK, 0), config: tls.server });
        tweak(config);
    })
    .await;
    (relay, tls.client)
}

/// Waits up to two seconds for the relay's counters to satisfy `check`.
async fn eventually(relay: &rampart_relay::RelayHandle, check: impl Fn(&RelayStats) -> bool) -> RelayStats {
    for _ in 0..40 {
        let stats = relay.stats();
        if check(&stats) {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    relay.stats()
}

/// Reads until the relay closes the connection; `true` if it did within `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 256];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(wait, read).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_tcp_and_tls_clients_relay_media_to_each_other() {
    let (relay, client_tls) = stream_relay(|_| {}).await;
    let tcp_addr = relay.tcp_addr().unwrap();
    let tls_addr = relay.tls_addr().unwrap();
    assert_eq!(tcp_addr.ip(), LOOPBACK);

    let (user, password) = creds("alice.laptop");
    let alice = TurnClient::allocate_tcp(tcp_addr, &user, &password).await.unwrap();
    let (user, password) = creds("bob.phone");
    let bob = TurnClient::allocate_tls(tls_addr, localhost(), client_tls, &user, &password).await.unwrap();
    let carol = client(&relay, "carol.phone").await;
    assert_eq!(
        (alice.transport(), bob.transport(), carol.transport()),
        (Transport::Stream, Transport::Stream, Transport::Datagram)
    );
    // Over a stream the mapped address is the client's end of its connection.
    assert_eq!(alice.mapped_address(), Some(alice.local_addr()));
    assert_eq!(relay.stats().stream_connections, 2);

    let everyone = [&alice, &bob, &carol];
    for from in everyone {
        for to in everyone {
            if !std::ptr::eq(from, to) {
                from.create_permission(to.relayed_address()).await.unwrap();
            }
        }
    }
    let wait = Duration::from_secs(2);
    // Send and Data indications, then channels (with lengths that need stream padding).
    for round in 0..2 {
        if round == 1 {
            for (from, to) in [(&alice, &bob), (&bob, &alice), (&alice, &carol), (&carol, &alice)] {
                from.channel_bind(to.relayed_address()).await.unwrap();
            }
        }
        for sequence in 0..20u16 {
            let size = 61 + usize::from(sequence);
            for (from, to) in [(&alice, &bob), (&bob, &alice), (&alice, &carol), (&carol, &alice)] {
                from.send_to(to.relayed_address(), &srtp(sequence, size)).await.unwrap();
                let got = recv_within(to, wait).await;
                assert_eq!(
                    got,
                    Some((from.relayed_address(), srtp(sequence, size))),
                    "round {round}, {sequence}"
                );
            }
        }
    }
    let stats = relay.stats();
    assert_eq!(stats.dropped_garbage, 0, "{stats:?}");
    assert_eq!(stats.allocations, 3);
    alice.close().await.unwrap();
    bob.close().await.unwrap();
    carol.close().await.unwrap();
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_connection_releases_the_allocation() {
    let (relay, _) = stream_relay(|_| {}).await;
    let (user, password) = creds("alice.laptop");
    let alice = TurnClient::allocate_tcp(relay.tcp_addr().unwrap(), &user, &password).await.unwrap();
    assert_eq!(relay.stats().allocations, 1);
    // No Refresh with lifetime 0: the connection just goes.
    drop(alice);
    let stats = eventually(&relay, |s| s.allocations == 0 && s.stream_connections == 0).await;
    assert_eq!((stats.allocations, stats.stream_connections), (0, 0), "{stats:?}");
    // The user's quota is free again.
    for _ in 0..4 {
        let (user, password) = creds("alice.laptop");
        let again = TurnClient::allocate_tcp(relay.tcp_addr().unwrap(), &user, &password).await.unwrap();
        drop(again);
        eventually(&relay, |s| s.allocations == 0).await;
    }
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_are_not_turn_idle_or_too_many_are_closed() {
    let (relay, client_tls) = stream_relay(|config| {
        config.stream_idle = Duration::from_millis(500);
        config.max_stream_connections = 2;
    })
    .await;
    let tcp_addr = relay.tcp_addr().unwrap();
    let wait = Duration::from_secs(3);

    // An HTTP request is not TURN: closed at once, and counted.
    let mut http = TcpStream::connect(tcp_addr).await.unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert!(closed_within(&mut http, wait).await, "an HTTP request was not refused");
    // A STUN length that no message may have (past the datagram limit): closed too.
    let mut huge = TcpStream::connect(tcp_addr).await.unwrap();
    huge.write_all(&[0x00, 0x01, 0xFF, 0xFC, 0x21, 0x12, 0xA4, 0x42]).await.unwrap();
    assert!(closed_within(&mut huge, wait).await, "an oversized frame was not refused");
    assert!(eventually(&relay, |s| s.dropped_garbage >= 2).await.dropped_garbage >= 2);

    // A connection that never allocates is closed after `stream_idle`.
    let mut idle = TcpStream::connect(tcp_addr).await.unwrap();
    assert!(closed_within(&mut idle, wait).await, "an idle connection stayed open");
    // A TLS client that never finishes its handshake holds no slot forever either: plain bytes
    // on the TLS port are a failed handshake.
    let mut not_tls = TcpStream::connect(relay.tls_addr().unwrap()).await.unwrap();
    not_tls.write_all(b"\x00\x01\x00\x00 plainly not TLS").await.unwrap();
    assert!(closed_within(&mut not_tls, wait).await, "a failed TLS handshake left the connection open");
    eventually(&relay, |s| s.stream_connections == 0).await;

    // At most two connections: the third is closed on accept, and counted.
    let (user, password) = creds("alice.laptop");
    let alice = TurnClient::allocate_tcp(tcp_addr, &user, &password).await.unwrap();
    let (user, password) = creds("bob.phone");
    let bob = TurnClient::allocate_tls(relay.tls_addr().unwrap(), localhost(), client_tls, &user, &password)
        .await
        .unwrap();
    let (user, password) = creds("carol.phone");
    let third = TurnClient::allocate_tcp(tcp_addr, &user, &password).await;
    assert!(matches!(third, Err(TurnClientError::Closed | TurnClientError::Io(_))), "{third:?}");
    assert_eq!(relay.stats().rejected_connections, 1);
    // The two that got in keep their allocations past `stream_idle`.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(relay.stats().allocations, 2);
    alice.create_permission(bob.relayed_address()).await.unwrap();
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_refuses_a_relay_it_does_not_trust() {
    let (relay, _) = stream_relay(|_| {}).await;
    // A client that trusts another certificate.
    let other_trust = test_tls().client;
    let (user, password) = creds("alice.laptop");
    let result =
        TurnClient::allocate_tls(relay.tls_addr().unwrap(), localhost(), other_trust, &user, &password).await;
    assert!(matches!(result, Err(TurnClientError::Tls(_))), "{result:?}");
    assert_eq!(relay.stats().allocations, 0);
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_a_limited_number_of_connections() {
    let (relay, _) = stream_relay(|config| config.max_stream_connections_per_ip = 2).await;
    let tcp_addr = relay.tcp_addr().unwrap();
    let (user, password) = creds("alice.laptop");
    let first = TurnClient::allocate_tcp(tcp_addr, &user, &password).await.unwrap();
    let second = TurnClient::allocate_tcp(tcp_addr, &user, &password).await.unwrap();
    let third = TurnClient::allocate_tcp(tcp_addr, &user, &password).await;
    assert!(third.is_err(), "{third:?}");
    assert_eq!(relay.stats().rejected_connections, 1);
    // A place is given back when its connection closes.
    drop(first);
    eventually(&relay, |s| s.stream_connections == 1).await;
    let again = TurnClient::allocate_tcp(tcp_addr, &user, &password).await;
    assert!(again.is_ok(), "{again:?}");
    drop((second, again));
    relay.shutdown().await;
}

/// A stranger who floods requests and never reads the answers (so the relay's writes to them
/// block) still loses the connection after `stream_idle`, and its place is given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_is_still_closed_and_its_place_freed() {
    let (relay, _) = stream_relay(|config| {
        config.stream_idle = Duration::from_millis(500);
        config.max_stream_connections = 1;
    })
    .await;
    let tcp_addr = relay.tcp_addr().unwrap();
    let mut stranger = TcpStream::connect(tcp_addr).await.unwrap();
    // Binding requests are answered without credentials: 40,000 of them is megabytes of
    // answers, more than the socket buffers hold, while nothing is read.
    let binding =
        rampart_turn::integrity::encode_protected(&request(rampart_turn::Method::Binding), None, false)
            .unwrap();
    let flood: Vec<u8> = binding.iter().copied().cycle().take(binding.len() * 40_000).collect();
    let _ = tokio::time::timeout(Duration::from_secs(5), stranger.write_all(&flood)).await;
    let stats = eventually(&relay, |s| s.stream_connections == 0).await;
    assert_eq!(stats.stream_connections, 0, "the flooding connection is still open: {stats:?}");
    // Its place is free: a real client gets in (the limit is one connection).
    let (user, password) = creds("alice.laptop");
    let mut allocated = None;
    for _ in 0..40 {
        if let Ok(client) = TurnClient::allocate_tcp(tcp_addr, &user, &password).await {
            allocated = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(allocated.is_some(), "{:?}", relay.stats());
    drop(stranger);
    relay.shutdown().await;
}
