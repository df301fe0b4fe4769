//! Replica addresses as users type them.
//!
//! Users write `host:port` (as in the server's `my_addr`) or
//! `http://host:port`; tonic needs a URI. [`Address`] keeps both: the short
//! form for messages ("UNAVAILABLE from 127.0.0.1:8001") and the URI to
//! connect to. There is no TLS, so `https://` is rejected rather than
//! silently downgraded. The `host:port` part is checked by the parser the
//! server uses for its own settings ([`paxoskv::HostPort`]).

use paxoskv::HostPort;

use crate::error::ClientError;

/// A validated replica address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// `host:port`, as shown in messages.
    pub host_port: String,
    /// `http://host:port`, as given to tonic.
    pub uri: String,
}

impl Address {
    /// Parses `host:port` or `http://host:port` (a trailing `/` is allowed).
    /// The host may be a name, an IPv4 address or a bracketed IPv6 address.
    pub fn parse(input: &str) -> Result<Address, ClientError> {
        let bad = |why: &str| ClientError::bad_address(format!("bad address {input:?}: {why}"));
        let trimmed = input.trim();
        if trimmed.starts_with("https://") {
            return Err(bad(
                "TLS is not supported, use host:port or http://host:port",
            ));
        }
        let rest = trimmed.strip_prefix("http://").unwrap_or(trimmed);
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains("://") {
            return Err(bad("expected host:port or http://host:port"));
        }
        let host_port = HostPort::parse(rest)
            .map_err(|e| bad(&e.to_string()))?
            .to_string();
        let uri = format!("http://{host_port}");
        if uri.parse::<tonic::transport::Uri>().is_err() {
            return Err(bad("not a valid URI"));
        }
        Ok(Address { host_port, uri })
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.host_port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_host_port_and_http_uris() {
        let a = Address::parse("127.0.0.1:8000").expect("valid");
        assert_eq!(a.host_port, "127.0.0.1:8000");
        assert_eq!(a.uri, "http://127.0.0.1:8000");
        let b = Address::parse("http://localhost:8001/").expect("valid");
        assert_eq!(b.host_port, "localhost:8001");
        let c = Address::parse(" [::1]:9000 ").expect("valid");
        assert_eq!(c.uri, "http://[::1]:9000");
    }

    #[test]
    fn rejects_malformed_addresses_with_a_reason() {
        for (input, why) in [
            ("", "empty"),
            ("localhost", "host:port"),
            ("localhost:", "port"),
            ("localhost:99999", "port"),
            ("localhost:0", "port"),
            (":8000", "missing host"),
            ("https://h:1", "TLS"),
            ("h:1/path", "host:port"),
            ("::1:9000", "brackets"),
            ("ho st:1", "invalid characters"),
        ] {
            let e = Address::parse(input).expect_err(input);
            assert_eq!(e.kind, crate::ErrorKind::BadAddress);
            assert!(e.message.contains(why), "{input}: {}", e.message);
        }
    }
}
