//! Which URLs an organization may register as an outbound webhook endpoint (pure).
//!
//! Tollgate's own functions send the requests, from inside AWS, so an endpoint URL is a request
//! another tenant's data leaves through and a request Tollgate makes on a stranger's behalf. It
//! must therefore be `https`, carry no credentials, and not name Tollgate's own machine or
//! network by address: no loopback, private, link-local, unspecified, multicast or reserved IP
//! literal (`https://169.254.169.254/` is the instance metadata service), and not `localhost`.
//! Locally (`WEBHOOK_ALLOW_LOOPBACK=true`: the dev gateway, the tests) plain `http` to a loopback
//! host is accepted too, so a receiver on the developer's machine can be used.
//!
//! A host *name* is not resolved here: a name that resolves to an internal address is refused by
//! whoever connects, with [`is_internal_ip`] on the address it resolved.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Longest endpoint URL accepted, in characters (as given and as normalized).
pub const MAX_URL_CHARS: usize = 2048;

/// Why a URL cannot be an endpoint. `Display` is a sentence a person can act on; it repeats no
/// part of the URL (it may hold a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookUrlError {
    #[error("`url` may be at most 2,048 characters.")]
    TooLong,
    #[error(
        "`url` must be an absolute URL with a host, e.g. \"https://hooks.example.com/tollgate\"."
    )]
    Unparseable,
    #[error(
        "`url` must use https (plain http is accepted only for a loopback host on a local deployment)."
    )]
    HttpsRequired,
    #[error(
        "`url` may not contain a user name or password; authenticate the requests with the endpoint's signing secret instead."
    )]
    Credentials,
    #[error(
        "`url` may not point at localhost or at a loopback, private, link-local, unspecified, multicast or reserved IP address; use the receiver's public host name."
    )]
    InternalHost,
}

impl WebhookUrlError {
    /// The `error` code of the 400 answer.
    pub fn code(&self) -> &'static str {
        match self {
            WebhookUrlError::TooLong | WebhookUrlError::Unparseable => "invalid_url",
            WebhookUrlError::HttpsRequired => "https_required",
            WebhookUrlError::Credentials => "url_credentials_not_allowed",
            WebhookUrlError::InternalHost => "url_host_not_allowed",
        }
    }
}

/// Checks `raw` as an endpoint URL and answers it normalized (WHATWG serialization: lower-case
/// scheme and host, IPv4 in dotted form, default port dropped, `/` path when empty). With
/// `allow_loopback`, `http` and `https` to `localhost`, `127.0.0.0/8` and `::1` are accepted too.
pub fn validate_endpoint_url(raw: &str, allow_loopback: bool) -> Result<Url, WebhookUrlError> {
    if raw.chars().count() > MAX_URL_CHARS {
        return Err(WebhookUrlError::TooLong);
    }
    let url = Url::parse(raw.trim()).map_err(|_| WebhookUrlError::Unparseable)?;
    if url.as_str().len() > MAX_URL_CHARS {
        return Err(WebhookUrlError::TooLong);
    }
    let https = match url.scheme() {
        "https" => true,
        "http" => false,
        _ => return Err(WebhookUrlError::HttpsRequired),
    };
    let host = url.host().ok_or(WebhookUrlError::Unparseable)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(WebhookUrlError::Credentials);
    }
    let loopback = match &host {
        Host::Domain(name) => {
            // `localhost.` and `localhost..` are still localhost.
            let name = name.trim_end_matches('.');
            if name.is_empty() {
                return Err(WebhookUrlError::Unparseable);
            }
            is_localhost_name(name)
        }
        Host::Ipv4(ip) => {
            let ip = IpAddr::V4(*ip);
            if is_internal_ip(ip) && !ip.is_loopback() {
                return Err(WebhookUrlError::InternalHost);
            }
            ip.is_loopback()
        }
        Host::Ipv6(ip) => {
            let loopback = *ip == Ipv6Addr::LOCALHOST;
            if is_internal_ip(IpAddr::V6(*ip)) && !loopback {
                return Err(WebhookUrlError::InternalHost);
            }
            loopback
        }
    };
    match (loopback, allow_loopback, https) {
        (true, false, _) => Err(WebhookUrlError::InternalHost),
        (true, true, _) | (false, _, true) => Ok(url),
        (false, _, false) => Err(WebhookUrlError::HttpsRequired),
    }
}

/// `localhost` and its subdomains (RFC 6761: they always resolve to loopback).
fn is_localhost_name(name: &str) -> bool {
    name.eq_ignore_ascii_case("localhost")
        || name
            .len()
            .checked_sub(".localhost".len())
            .and_then(|start| name.get(start..))
            .is_some_and(|tail| tail.eq_ignore_ascii_case(".localhost"))
}

/// Whether `ip` is an address a webhook must never be sent to: loopback, private, shared
/// (carrier-grade NAT), link-local, unspecified / "this network", broadcast, multicast, reserved
/// or benchmarking ranges, IPv6 unique-local and site-local, and IPv4 addresses embedded in IPv6
/// (mapped, compatible, translated, NAT64, 6to4) that are any of these, and local-use NAT64.
pub fn is_internal_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_internal_v4(ip),
        IpAddr::V6(ip) => is_internal_v6(ip),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        // 0.0.0.0/8 "this network"
        || a == 0
        // 100.64.0.0/10 shared address space (carrier-grade NAT)
        || (a == 100 && (b & 0xc0) == 64)
        // 192.0.0.0/24 IETF protocol assignments
        || (a == 192 && b == 0 && c == 0)
        // 198.18.0.0/15 benchmarking
        || (a == 198 && (b & 0xfe) == 18)
        // 240.0.0.0/4 reserved
        || a >= 240
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    let embedded_v4 = |high: u16, low: u16| {
        Ipv4Addr::new(
            (high >> 8) as u8,
            (high & 0xff) as u8,
            (low >> 8) as u8,
            (low & 0xff) as u8,
        )
    };
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_internal_v4(v4);
    }
    match segments {
        // ::a.b.c.d (IPv4-compatible, deprecated) and :: / ::1.
        [0, 0, 0, 0, 0, 0, high, low] => {
            ip.is_unspecified() || ip.is_loopback() || is_internal_v4(embedded_v4(high, low))
        }
        // ::ffff:0:a.b.c.d (IPv4-translated, SIIT).
        [0, 0, 0, 0, 0xffff, 0, high, low] => is_internal_v4(embedded_v4(high, low)),
        // 64:ff9b::/96 NAT64.
        [0x64, 0xff9b, 0, 0, 0, 0, high, low] => is_internal_v4(embedded_v4(high, low)),
        // 64:ff9b:1::/48 local-use NAT64 (RFC 8215): a deployment's own translator, whatever
        // IPv4 address it embeds (at a prefix-dependent offset).
        [0x64, 0xff9b, 1, ..] => true,
        // 2002::/16 6to4: the IPv4 address is the next 32 bits.
        [0x2002, high, low, ..] => is_internal_v4(embedded_v4(high, low)),
        [first, ..] => {
            // fc00::/7 unique local, fe80::/10 link-local, fec0::/10 site-local, ff00::/8 multicast.
            (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
                || (first & 0xff00) == 0xff00
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use WebhookUrlError::*;

    /// (url, allowed in production, allowed locally with `WEBHOOK_ALLOW_LOOPBACK=true`).
    /// `Ok(normalized)` or the error.
    #[allow(clippy::type_complexity)]
    const CASES: &[(
        &str,
        Result<&str, WebhookUrlError>,
        Result<&str, WebhookUrlError>,
    )] = &[
        // Public https: accepted everywhere, normalized.
        (
            "https://hooks.example.com/tollgate",
            Ok("https://hooks.example.com/tollgate"),
            Ok("https://hooks.example.com/tollgate"),
        ),
        (
            "HTTPS://Hooks.Example.COM",
            Ok("https://hooks.example.com/"),
            Ok("https://hooks.example.com/"),
        ),
        (
            "  https://hooks.example.com:8443/a?b=c  ",
            Ok("https://hooks.example.com:8443/a?b=c"),
            Ok("https://hooks.example.com:8443/a?b=c"),
        ),
        (
            "https://93.184.216.34/hook",
            Ok("https://93.184.216.34/hook"),
            Ok("https://93.184.216.34/hook"),
        ),
        (
            "https://[2606:2800:220:1:248:1893:25c8:1946]/",
            Ok("https://[2606:2800:220:1:248:1893:25c8:1946]/"),
            Ok("https://[2606:2800:220:1:248:1893:25c8:1946]/"),
        ),
        (
            "https://bücher.example/",
            Ok("https://xn--bcher-kva.example/"),
            Ok("https://xn--bcher-kva.example/"),
        ),
        // Plain http: never to a public host.
        (
            "http://hooks.example.com/",
            Err(HttpsRequired),
            Err(HttpsRequired),
        ),
        // Loopback: only locally, http or https.
        (
            "http://127.0.0.1:9000/hook",
            Err(InternalHost),
            Ok("http://127.0.0.1:9000/hook"),
        ),
        (
            "https://127.0.0.1/",
            Err(InternalHost),
            Ok("https://127.0.0.1/"),
        ),
        (
            "http://[::1]:8080/",
            Err(InternalHost),
            Ok("http://[::1]:8080/"),
        ),
        (
            "http://localhost:3001/in",
            Err(InternalHost),
            Ok("http://localhost:3001/in"),
        ),
        (
            "https://LOCALHOST./",
            Err(InternalHost),
            Ok("https://localhost./"),
        ),
        (
            "https://api.localhost/",
            Err(InternalHost),
            Ok("https://api.localhost/"),
        ),
        // Loopback written other ways is still loopback.
        (
            "http://2130706433/",
            Err(InternalHost),
            Ok("http://127.0.0.1/"),
        ),
        ("http://0x7f.1/", Err(InternalHost), Ok("http://127.0.0.1/")),
        // Internal addresses: never, not even locally.
        (
            "https://169.254.169.254/latest/meta-data/",
            Err(InternalHost),
            Err(InternalHost),
        ),
        ("https://10.0.0.5/", Err(InternalHost), Err(InternalHost)),
        ("https://172.16.3.4/", Err(InternalHost), Err(InternalHost)),
        ("https://192.168.1.1/", Err(InternalHost), Err(InternalHost)),
        ("https://100.64.0.1/", Err(InternalHost), Err(InternalHost)),
        ("https://0.0.0.0/", Err(InternalHost), Err(InternalHost)),
        (
            "https://255.255.255.255/",
            Err(InternalHost),
            Err(InternalHost),
        ),
        ("https://224.0.0.1/", Err(InternalHost), Err(InternalHost)),
        ("https://[::]/", Err(InternalHost), Err(InternalHost)),
        ("https://[fe80::1]/", Err(InternalHost), Err(InternalHost)),
        ("https://[fd00::1]/", Err(InternalHost), Err(InternalHost)),
        ("https://[ff02::1]/", Err(InternalHost), Err(InternalHost)),
        (
            "https://[::ffff:169.254.169.254]/",
            Err(InternalHost),
            Err(InternalHost),
        ),
        (
            "https://[::ffff:127.0.0.1]/",
            Err(InternalHost),
            Err(InternalHost),
        ),
        (
            "https://[64:ff9b::a00:1]/",
            Err(InternalHost),
            Err(InternalHost),
        ),
        (
            "https://[2002:c0a8:101::]/",
            Err(InternalHost),
            Err(InternalHost),
        ),
        (
            "https://[::ffff:0:169.254.169.254]/",
            Err(InternalHost),
            Err(InternalHost),
        ),
        (
            "https://[64:ff9b:1::a9fe:a9fe]/",
            Err(InternalHost),
            Err(InternalHost),
        ),
        (
            "https://api.localhost.../",
            Err(InternalHost),
            Ok("https://api.localhost.../"),
        ),
        // Credentials in the URL.
        (
            "https://user:pass@hooks.example.com/",
            Err(Credentials),
            Err(Credentials),
        ),
        (
            "https://user@hooks.example.com/",
            Err(Credentials),
            Err(Credentials),
        ),
        (
            "https://:pass@hooks.example.com/",
            Err(Credentials),
            Err(Credentials),
        ),
        // Not a URL, or not an http(s) one.
        ("", Err(Unparseable), Err(Unparseable)),
        (
            "hooks.example.com/tollgate",
            Err(Unparseable),
            Err(Unparseable),
        ),
        ("/relative/path", Err(Unparseable), Err(Unparseable)),
        ("https://", Err(Unparseable), Err(Unparseable)),
        ("https://exa mple.com/", Err(Unparseable), Err(Unparseable)),
        ("https://[::1/", Err(Unparseable), Err(Unparseable)),
        (
            "ftp://hooks.example.com/",
            Err(HttpsRequired),
            Err(HttpsRequired),
        ),
        (
            "javascript:alert(1)",
            Err(HttpsRequired),
            Err(HttpsRequired),
        ),
        ("file:///etc/passwd", Err(HttpsRequired), Err(HttpsRequired)),
    ];

    #[test]
    fn endpoint_urls_table() {
        for (raw, production, local) in CASES {
            for (allow_loopback, expected) in [(false, production), (true, local)] {
                let got = validate_endpoint_url(raw, allow_loopback);
                let got = got.as_ref().map(Url::as_str).map_err(Clone::clone);
                assert_eq!(
                    got,
                    expected.clone(),
                    "{raw:?} with allow_loopback={allow_loopback}"
                );
            }
        }
    }

    #[test]
    fn length_is_limited_as_given_and_as_normalized() {
        let base = "https://hooks.example.com/";
        let exact = format!("{base}{}", "a".repeat(MAX_URL_CHARS - base.len()));
        assert!(validate_endpoint_url(&exact, false).is_ok());
        let over = format!("{exact}a");
        assert_eq!(validate_endpoint_url(&over, false), Err(TooLong));
        // 1,400 characters whose spaces percent-encode to three each: 2,800 once normalized.
        let expands = format!("{base}{}", " a".repeat(700));
        assert_eq!(validate_endpoint_url(&expands, false), Err(TooLong));
        // A huge input is refused before it is parsed.
        let huge = format!("{base}{}", "a".repeat(1_000_000));
        assert_eq!(validate_endpoint_url(&huge, true), Err(TooLong));
    }

    #[test]
    fn codes_and_messages_never_repeat_the_url() {
        let raw = "https://alice:hunter2@hooks.example.com/";
        let error = validate_endpoint_url(raw, false).unwrap_err();
        assert_eq!(error.code(), "url_credentials_not_allowed");
        assert!(!error.to_string().contains("hunter2"));
        for (error, code) in [
            (TooLong, "invalid_url"),
            (Unparseable, "invalid_url"),
            (HttpsRequired, "https_required"),
            (Credentials, "url_credentials_not_allowed"),
            (InternalHost, "url_host_not_allowed"),
        ] {
            assert_eq!(error.code(), code);
            assert!(error.to_string().starts_with("`url`"), "{error}");
        }
    }

    #[test]
    fn internal_addresses() {
        let internal = [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.31.255.255",
            "192.168.0.1",
            "169.254.169.254",
            "100.127.0.1",
            "0.1.2.3",
            "192.0.0.8",
            "198.19.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fe80::abcd",
            "fec0::1",
            "ff05::2",
            "::ffff:10.0.0.1",
            "::10.0.0.1",
            "64:ff9b::7f00:1",
            "2002:a9fe:a9fe::1",
            "::ffff:0:7f00:1",
            "::ffff:0:a9fe:a9fe",
            "64:ff9b:1::a9fe:a9fe",
            "64:ff9b:1:a9fe:a9:fe00::",
        ];
        for ip in internal {
            assert!(is_internal_ip(ip.parse().unwrap()), "{ip}");
        }
        let public = [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "198.20.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "::ffff:0:808:808",
        ];
        for ip in public {
            assert!(!is_internal_ip(ip.parse().unwrap()), "{ip}");
        }
    }
}
