//! Helpers on the WIT [`ClientHello`]: typed access to its text fields and
//! builder-style constructors for tests.
//!
//! Matching helpers live beside this file: [`names`](crate::names) for the
//! server name, [`alpn`](crate::alpn), and [`cidr`](crate::cidr) for the
//! source address.

use std::net::IpAddr;

use crate::ClientHello;

impl ClientHello {
    /// A hello with only a server name set; for tests. Chain the `with_*`
    /// methods (or use struct update syntax with `..Default::default()`) to
    /// fill in more.
    pub fn for_server_name(name: &str) -> Self {
        ClientHello {
            server_name: Some(name.to_owned()),
            ..ClientHello::default()
        }
    }

    /// Replaces the offered ALPN protocols; for tests.
    #[must_use]
    pub fn with_alpn(mut self, protocols: &[&str]) -> Self {
        self.alpn = protocols.iter().map(|p| (*p).to_owned()).collect();
        self
    }

    /// Replaces the source address; for tests.
    #[must_use]
    pub fn with_source(mut self, addr: &str) -> Self {
        self.source_addr = addr.to_owned();
        self
    }

    /// The server name, if the client sent one.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// The source address parsed; `None` if the text is not an IP address
    /// (the edge always sends one, test hellos may not). IPv4-mapped IPv6
    /// addresses come back as IPv4.
    pub fn source_ip(&self) -> Option<IpAddr> {
        let ip: IpAddr = self.source_addr.parse().ok()?;
        Some(ip.to_canonical())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_fill_fields() {
        let hello = ClientHello::for_server_name("a.example")
            .with_alpn(&["h2", "http/1.1"])
            .with_source("203.0.113.7");
        assert_eq!(hello.server_name(), Some("a.example"));
        assert_eq!(hello.alpn, ["h2", "http/1.1"]);
        assert_eq!(hello.source_ip(), Some("203.0.113.7".parse().unwrap()));
        assert_eq!(ClientHello::default().server_name(), None);
    }

    #[test]
    fn source_ip_unmaps_ipv4_mapped_ipv6() {
        let hello = ClientHello::default().with_source("::ffff:10.1.2.3");
        assert_eq!(hello.source_ip(), Some("10.1.2.3".parse().unwrap()));
        assert_eq!(ClientHello::default().with_source("junk").source_ip(), None);
    }
}
