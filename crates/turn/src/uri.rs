//! Where a TURN relay is and how to reach it: `turn:` and `turns:` URIs (RFC 7065).
//!
//! ```text
//! turn:relay.example.org               UDP, port 3478
//! turn:relay.example.org:3478?transport=tcp
//! turns:relay.example.org:443          TLS over TCP, port 5349 when none is given
//! 192.0.2.7:3478                       a bare address: UDP (what servers handed out before)
//! ```
//!
//! The server hands these out with call credentials, so a client parses what a possibly hostile
//! server wrote: the length and the characters of each part are bounded, and anything else is
//! an error rather than a guess.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// Longest URI accepted: what relay credentials carry (`rampart_core::limits::MAX_RELAY_BYTES`;
/// this crate stands alone, so the number is repeated here).
pub const MAX_URI_LEN: usize = 255;
/// Longest host name (RFC 1035).
const MAX_HOST_LEN: usize = 253;
/// The default TURN port over UDP and TCP.
pub const DEFAULT_PORT: u16 = 3478;
/// The default TURN port over TLS.
pub const DEFAULT_TLS_PORT: u16 = 5349;

/// How a client reaches the relay. The relayed side is UDP in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RelayTransport {
    /// UDP: the fastest, and blocked on many office, hotel and national networks.
    Udp,
    /// TCP: gets through where UDP is blocked but outbound TCP is not.
    Tcp,
    /// TLS over TCP: looks like any HTTPS connection (on port 443), gets through proxies and
    /// firewalls that only let TLS out.
    Tls,
}

impl RelayTransport {
    /// The name used in logs and in `?transport=`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
        }
    }
}

/// A parsed TURN URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TurnUri {
    pub transport: RelayTransport,
    /// A host name or an IP address (without the brackets of an IPv6 literal).
    pub host: String,
    pub port: u16,
}

/// Why a string is not a TURN URI this client accepts.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UriError {
    #[error("{len} bytes, at most {max} are accepted")]
    TooLong { len: usize, max: usize },
    #[error("the scheme must be turn: or turns:")]
    Scheme,
    #[error("invalid host")]
    Host,
    #[error("invalid port")]
    Port,
    #[error("unsupported query (only ?transport=udp or ?transport=tcp)")]
    Query,
}

impl TurnUri {
    pub fn new(transport: RelayTransport, host: impl Into<String>, port: u16) -> Self {
        Self { transport, host: host.into(), port }
    }

    /// `host:port` for a resolver (IPv6 literals in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for TurnUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.transport {
            RelayTransport::Udp => write!(f, "turn:{}?transport=udp", self.authority()),
            RelayTransport::Tcp => write!(f, "turn:{}?transport=tcp", self.authority()),
            RelayTransport::Tls => write!(f, "turns:{}?transport=tcp", self.authority()),
        }
    }
}

/// The relays a client tries, in order: every UDP relay first (media goes fastest), then TCP,
/// then TLS, each in the order the server gave. Entries that do not parse come back apart, to
/// be reported.
pub fn fallback_order<'a>(
    entries: impl IntoIterator<Item = &'a str>,
) -> (Vec<TurnUri>, Vec<(String, UriError)>) {
    let mut usable = Vec::new();
    let mut refused = Vec::new();
    for entry in entries {
        match entry.parse::<TurnUri>() {
            Ok(uri) => usable.push(uri),
            Err(error) => refused.push((entry.chars().take(MAX_URI_LEN).collect(), error)),
        }
    }
    usable.sort_by_key(|uri| uri.transport);
    (usable, refused)
}

/// Splits `host[:port]` with an optional bracketed IPv6 literal.
fn host_and_port(authority: &str, default_port: u16) -> Result<(String, u16), UriError> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or(UriError::Host)?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(UriError::Host);
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(UriError::Port)?),
        };
        (host, port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let valid_name = !host.is_empty()
        && host.len() <= MAX_HOST_LEN
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':');
    if !valid_name {
        return Err(UriError::Host);
    }
    let port = match port {
        None => default_port,
        Some(text) if !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit()) => {
            text.parse::<u16>().ok().filter(|p| *p != 0).ok_or(UriError::Port)?
        }
        Some(_) => return Err(UriError::Port),
    };
    Ok((host.to_owned(), port))
}

impl FromStr for TurnUri {
    type Err = UriError;

    fn from_str(text: &str) -> Result<Self, UriError> {
        if text.len() > MAX_URI_LEN {
            return Err(UriError::TooLong { len: text.len(), max: MAX_URI_LEN });
        }
        let (secure, rest) = if let Some(rest) = text.strip_prefix("turns:") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("turn:") {
            (false, rest)
        } else if text.contains("://") || text.starts_with("stun") {
            return Err(UriError::Scheme);
        } else {
            // A bare `host:port`: UDP, with the port required.
            let (host, port) = host_and_port(text, 0)?;
            if port == 0 {
                return Err(UriError::Port);
            }
            return Ok(Self::new(RelayTransport::Udp, host, port));
        };
        let (authority, query) = match rest.split_once('?') {
            Some((authority, query)) => (authority, Some(query)),
            None => (rest, None),
        };
        let transport = match (secure, query) {
            (false, None | Some("transport=udp")) => RelayTransport::Udp,
            (false, Some("transport=tcp")) => RelayTransport::Tcp,
            (true, None | Some("transport=tcp")) => RelayTransport::Tls,
            _ => return Err(UriError::Query),
        };
        let default_port = if secure { DEFAULT_TLS_PORT } else { DEFAULT_PORT };
        let (host, port) = host_and_port(authority, default_port)?;
        Ok(Self::new(transport, host, port))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn parses_the_forms_servers_hand_out() {
        let cases = [
            ("turn:relay.example.org", RelayTransport::Udp, "relay.example.org", 3478),
            ("turn:relay.example.org:3479?transport=udp", RelayTransport::Udp, "relay.example.org", 3479),
            ("turn:10.0.0.1:80?transport=tcp", RelayTransport::Tcp, "10.0.0.1", 80),
            ("turns:relay.example.org", RelayTransport::Tls, "relay.example.org", 5349),
            ("turns:relay.example.org:443?transport=tcp", RelayTransport::Tls, "relay.example.org", 443),
            ("turn:[2001:db8::1]:3478?transport=tcp", RelayTransport::Tcp, "2001:db8::1", 3478),
            ("127.0.0.1:3478", RelayTransport::Udp, "127.0.0.1", 3478),
            ("[::1]:3478", RelayTransport::Udp, "::1", 3478),
        ];
        for (text, transport, host, port) in cases {
            let uri: TurnUri = text.parse().unwrap();
            assert_eq!(uri, TurnUri::new(transport, host, port), "{text}");
            // Display gives a URI that parses back to the same.
            assert_eq!(uri.to_string().parse::<TurnUri>().unwrap(), uri, "{text}");
        }
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        for text in [
            "",
            "turn:",
            "turn::3478",
            "turn:host:0",
            "turn:host:99999",
            "turn:host:12a",
            "turn:host?transport=sctp",
            "turns:host?transport=udp",
            "turn:host?transport=tcp&x=1",
            "turn:ho st",
            "turn:host/path",
            "turn:[not-v6]:3478",
            "turn:[::1]3478",
            "stun:host",
            "https://host",
            "host",
            "host:",
        ] {
            assert!(text.parse::<TurnUri>().is_err(), "{text:?} parsed");
        }
        let long = format!("turn:{}", "a".repeat(MAX_URI_LEN));
        assert!(matches!(long.parse::<TurnUri>(), Err(UriError::TooLong { .. })));
    }

    #[test]
    fn relays_are_tried_fastest_transport_first() {
        let (order, refused) = fallback_order([
            "turns:a:443",
            "turn:b?transport=tcp",
            "c:3478",
            "bogus",
            "turn:d",
            "turn:e?transport=tcp",
        ]);
        let hosts: Vec<&str> = order.iter().map(|uri| uri.host.as_str()).collect();
        assert_eq!(hosts, ["c", "d", "b", "e", "a"]);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0, "bogus");
    }
}
