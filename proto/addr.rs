//! `host:port` as users type it: the server's `my_addr`, `my_paxos` and
//! `replica` settings and the client's replica list share this one parser
//! and its messages.

use std::net::{IpAddr, Ipv6Addr};

/// A checked `host:port`: the host is a name, an IPv4 address or a bracketed
/// IPv6 address, the port is in 1..=65535.
///
/// Equality ignores the case of host names (`LocalHost:1 == localhost:1`).
#[derive(Debug, Clone, Eq)]
pub struct HostPort {
    /// The host as written, IPv6 without its brackets.
    host: String,
    /// The port.
    port: u16,
}

/// Why a string is not `host:port`. The text is the reason alone; callers
/// say which setting or argument it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// Nothing but white space.
    #[error("empty; expected host:port")]
    Empty,
    /// No `:port`.
    #[error("expected host:port")]
    NoPort,
    /// `[` without `]`.
    #[error("unclosed [ in IPv6 host")]
    UnclosedBracket,
    /// Brackets around something that is not an IPv6 address.
    #[error("not an IPv6 address in brackets")]
    BadIpv6,
    /// An IPv6 address without brackets.
    #[error("IPv6 hosts need brackets: [::1]:9000")]
    UnbracketedIpv6,
    /// `:port` alone.
    #[error("missing host")]
    MissingHost,
    /// A host that is not a name, IPv4 or IPv6 address.
    #[error("host has invalid characters")]
    BadHost,
    /// A port that is not in 1..=65535.
    #[error("port must be a number in 1..=65535")]
    BadPort,
}

impl HostPort {
    /// Parses `host:port`, ignoring surrounding white space.
    pub fn parse(input: &str) -> Result<HostPort, AddrError> {
        let v = input.trim();
        if v.is_empty() {
            return Err(AddrError::Empty);
        }
        let (host, port) = v.rsplit_once(':').ok_or(AddrError::NoPort)?;
        let host = if let Some(inner) = host.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(AddrError::UnclosedBracket)?;
            inner.parse::<Ipv6Addr>().map_err(|_| AddrError::BadIpv6)?;
            inner
        } else {
            if host.contains(':') {
                return Err(AddrError::UnbracketedIpv6);
            }
            if host.is_empty() {
                return Err(AddrError::MissingHost);
            }
            if !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
            {
                return Err(AddrError::BadHost);
            }
            host
        };
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(AddrError::BadPort),
        };
        Ok(HostPort {
            host: host.to_owned(),
            port,
        })
    }

    /// The host, IPv6 without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the host names this machine (`localhost`, loopback or
    /// wildcard address).
    pub fn is_local(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self
                .host
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
    }
}

impl PartialEq for HostPort {
    fn eq(&self, other: &HostPort) -> bool {
        self.port == other.port && self.host.eq_ignore_ascii_case(&other.host)
    }
}

/// `host:port`, IPv6 hosts in brackets.
impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_ipv4_and_bracketed_ipv6() {
        let a = HostPort::parse(" 127.0.0.1:8000 ").expect("valid");
        assert_eq!((a.host(), a.port()), ("127.0.0.1", 8000));
        assert_eq!(a.to_string(), "127.0.0.1:8000");
        let b = HostPort::parse("[::1]:9000").expect("valid");
        assert_eq!(b.host(), "::1");
        assert_eq!(b.to_string(), "[::1]:9000");
        assert!(b.is_local());
        assert_eq!(
            HostPort::parse("LocalHost:1").expect("valid"),
            HostPort::parse("localhost:1").expect("valid")
        );
        assert!(!HostPort::parse("10.0.0.1:1").expect("valid").is_local());
    }

    #[test]
    fn each_mistake_has_its_reason() {
        for (input, err) in [
            ("", AddrError::Empty),
            ("localhost", AddrError::NoPort),
            ("[::1:9000", AddrError::UnclosedBracket),
            ("[nope]:9000", AddrError::BadIpv6),
            ("::1:9000", AddrError::UnbracketedIpv6),
            (":8000", AddrError::MissingHost),
            ("ho st:1", AddrError::BadHost),
            ("localhost:", AddrError::BadPort),
            ("localhost:0", AddrError::BadPort),
            ("localhost:99999", AddrError::BadPort),
        ] {
            assert_eq!(HostPort::parse(input), Err(err), "{input}");
        }
    }
}
