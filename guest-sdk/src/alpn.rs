//! Helpers for the ALPN protocols a client offers (`ClientHello::alpn`).
//!
//! Protocol IDs compare byte for byte, as RFC 7301 requires (no case
//! folding). Server-name helpers are in [`names`](crate::names).

use crate::ClientHello;

/// HTTP/2 over TLS.
pub const H2: &str = "h2";
/// HTTP/1.1.
pub const HTTP_1_1: &str = "http/1.1";
/// The ACME TLS-ALPN-01 challenge protocol (RFC 8737).
pub const ACME_TLS_1: &str = "acme-tls/1";

/// True if the client offers `protocol`.
pub fn offers(hello: &ClientHello, protocol: &str) -> bool {
    hello.alpn.iter().any(|offered| offered == protocol)
}

/// True if the client offers any of `protocols`.
pub fn offers_any<S: AsRef<str>>(hello: &ClientHello, protocols: &[S]) -> bool {
    protocols.iter().any(|p| offers(hello, p.as_ref()))
}

/// True if this is an ACME TLS-ALPN-01 validation connection: it offers
/// `acme-tls/1`. The edge answers those of the names it manages itself,
/// before the policy is asked; a policy only sees the others, which belong
/// to whoever runs ACME for the name (typically the passthrough backend).
pub fn is_acme_tls(hello: &ClientHello) -> bool {
    offers(hello, ACME_TLS_1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_matches_exactly() {
        let hello = ClientHello::default().with_alpn(&["h2", "http/1.1"]);
        assert!(offers(&hello, H2));
        assert!(offers(&hello, HTTP_1_1));
        assert!(!offers(&hello, "H2"));
        assert!(!offers(&hello, "h"));
        assert!(!offers(&ClientHello::default(), H2));
    }

    #[test]
    fn offers_any_of_a_list() {
        let hello = ClientHello::default().with_alpn(&["http/1.1"]);
        assert!(offers_any(&hello, &["h2", "http/1.1"]));
        assert!(!offers_any(&hello, &["h2", "h3"]));
        assert!(!offers_any::<&str>(&hello, &[]));
    }

    #[test]
    fn acme_tls_detection() {
        assert!(is_acme_tls(
            &ClientHello::default().with_alpn(&["acme-tls/1"])
        ));
        assert!(!is_acme_tls(&ClientHello::default().with_alpn(&["h2"])));
    }
}
