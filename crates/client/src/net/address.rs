//! Where the server is.

use crate::error::ClientError;

/// Where the server is: `host:port`, from `https://host:port`, `rampart://host:port` or bare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddress {
    pub host: String,
    pub port: u16,
}

impl ServerAddress {
    pub const DEFAULT_PORT: u16 = 8443;

    pub fn parse(input: &str) -> Result<Self, ClientError> {
        let bad = || ClientError::BadServerAddress(input.to_owned());
        let rest = input
            .trim()
            .trim_start_matches("https://")
            .trim_start_matches("wss://")
            .trim_start_matches("rampart://")
            .trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') || rest.contains('@') {
            return Err(bad());
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None if after.is_empty() => Self::DEFAULT_PORT,
                None => return Err(bad()),
            };
            (h.to_owned(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad())?),
                None => (rest.to_owned(), Self::DEFAULT_PORT),
            }
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Self { host, port })
    }

    /// The canonical form stored in profiles.
    pub fn to_url(&self) -> String {
        if self.host.contains(':') {
            format!("https://[{}]:{}", self.host, self.port)
        } else {
            format!("https://{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses() {
        let a = ServerAddress::parse("https://chat.example.org:9443/").ok();
        assert_eq!(a, Some(ServerAddress { host: "chat.example.org".into(), port: 9443 }));
        let b = ServerAddress::parse("127.0.0.1").ok();
        assert_eq!(b.map(|b| b.port), Some(ServerAddress::DEFAULT_PORT));
        let c = ServerAddress::parse("[::1]:8443").ok();
        assert_eq!(c.map(|c| c.host), Some("::1".to_owned()));
        assert!(ServerAddress::parse("https://user@host").is_err());
        assert!(ServerAddress::parse("host:notaport").is_err());
    }
}
