//! Where a webhook may point: the URL rules and the address classifier that keeps deliveries
//! off loopback, private, link-local (the cloud metadata endpoint 169.254.169.254 included)
//! and every other non-public range, v4 and v6. Checked at creation and again at every
//! delivery, where the sender's resolver filters the addresses it connects to (so the check
//! and the connection use the same address: no DNS rebinding).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::Url;

use crate::error::{AppError, AppResult};

/// Longest accepted URL.
pub const MAX_URL_CHARS: usize = 2048;

/// What targets a deployment accepts (`AppConfig::webhooks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetPolicy {
    /// `http://` besides `https://` (local mode only).
    pub allow_http: bool,
    /// Non-public addresses (local mode with `MOMENTUM_WEBHOOKS_ALLOW_PRIVATE=1` only).
    pub allow_private: bool,
}

/// Whether `ip` is a public unicast address a webhook may reach.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    const BLOCKED: &[([u8; 4], u32)] = &[
        ([0, 0, 0, 0], 8),       // "this network", unspecified
        ([10, 0, 0, 0], 8),      // private
        ([100, 64, 0, 0], 10),   // CGNAT
        ([127, 0, 0, 0], 8),     // loopback
        ([169, 254, 0, 0], 16),  // link-local, cloud metadata
        ([172, 16, 0, 0], 12),   // private
        ([192, 0, 0, 0], 24),    // IETF protocol assignments
        ([192, 0, 2, 0], 24),    // documentation (TEST-NET-1)
        ([192, 88, 99, 0], 24),  // 6to4 relay anycast
        ([192, 168, 0, 0], 16),  // private
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // documentation (TEST-NET-2)
        ([203, 0, 113, 0], 24),  // documentation (TEST-NET-3)
        ([224, 0, 0, 0], 4),     // multicast
        ([240, 0, 0, 0], 4),     // reserved, broadcast
    ];
    !BLOCKED.iter().any(|(net, prefix)| in_v4(ip, *net, *prefix))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // Addresses that carry an IPv4 address are judged by it: IPv4-mapped (::ffff:0:0/96),
    // NAT64 (64:ff9b::/96).
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return is_public_v4(v4);
    }
    // Only global unicast (2000::/3) is public; inside it, the special ranges are not.
    let global_unicast = (s[0] & 0xe000) == 0x2000;
    let documentation = s[0] == 0x2001 && s[1] == 0x0db8; // 2001:db8::/32
    let ietf_special = s[0] == 0x2001 && s[1] < 0x0200; // 2001::/23 (Teredo, ORCHID, ...)
    let six_to_four = s[0] == 0x2002; // 2002::/16 tunnels to an embedded v4
    let documentation_2 = s[0] == 0x3fff && s[1] < 0x1000; // 3fff::/20
    // Everything else outside 2000::/3 is refused: ::, ::1, ::/96 (v4-compatible),
    // fc00::/7 (unique local), fe80::/10 (link-local), fec0::/10, ff00::/8 (multicast).
    global_unicast && !documentation && !ietf_special && !six_to_four && !documentation_2
}

/// Parses and checks a webhook URL: `https` (or `http` where allowed), a host, no user
/// name or password, no fragment, at most `MAX_URL_CHARS`. An IP literal host is
/// classified here; names are resolved by `check_resolves`.
pub fn parse_url(policy: TargetPolicy, raw: &str) -> AppResult<Url> {
    let bad = |msg: &str| AppError::validation("url", msg.to_owned());
    if raw.chars().count() > MAX_URL_CHARS {
        return Err(bad("url is longer than 2048 characters"));
    }
    let url = Url::parse(raw).map_err(|_| bad("url must be an absolute http(s) URL"))?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        "http" => return Err(bad("url must use https")),
        _ => return Err(bad("url must use https")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("url must not carry a user name or password"));
    }
    if url.fragment().is_some() {
        return Err(bad("url must not have a fragment"));
    }
    let Some(host) = url.host() else {
        return Err(bad("url must name a host"));
    };
    if let Some(ip) = literal_ip(&host) {
        refuse_unless_allowed(policy, ip)?;
    }
    Ok(url)
}

fn literal_ip(host: &url::Host<&str>) -> Option<IpAddr> {
    match host {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(*v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(*v6)),
        url::Host::Domain(_) => None,
    }
}

fn refuse_unless_allowed(policy: TargetPolicy, ip: IpAddr) -> AppResult<()> {
    if policy.allow_private || is_public(ip) {
        Ok(())
    } else {
        Err(AppError::unprocessable(
            "url",
            format!("url points at a non-public address ({ip})"),
        ))
    }
}

/// Resolves the URL's host and refuses it when it has no address or any address it
/// resolves to is not public (unless the policy allows private targets). Every address
/// must pass: a name that also resolves to a private address is refused.
pub async fn check_resolves(policy: TargetPolicy, url: &Url) -> AppResult<()> {
    let Some(host) = url.host() else {
        return Err(AppError::validation("url", "url must name a host"));
    };
    if literal_ip(&host).is_some() {
        return Ok(());
    }
    let name = url.host_str().unwrap_or_default();
    let addrs = resolve(name)
        .await
        .map_err(|e| AppError::unprocessable("url", format!("url's host does not resolve: {e}")))?;
    for addr in addrs {
        refuse_unless_allowed(policy, addr.ip())?;
    }
    Ok(())
}

/// The addresses of `name`, at most a few seconds of waiting.
pub async fn resolve(name: &str) -> Result<Vec<SocketAddr>, String> {
    let lookup = tokio::net::lookup_host((name, 0));
    match tokio::time::timeout(std::time::Duration::from_secs(5), lookup).await {
        Err(_) => Err("lookup timed out".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(addrs)) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                Err("no address".into())
            } else {
                Ok(addrs)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: TargetPolicy = TargetPolicy {
        allow_http: false,
        allow_private: false,
    };

    #[test]
    fn classifier_refuses_every_non_public_range() {
        let refused = [
            "0.0.0.0",
            "127.0.0.1",
            "127.255.0.9",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.254",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.2.10",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
            "2001:db8::1",
            "2001::1",
            "2002:7f00:1::1",
        ];
        for ip in refused {
            let parsed: IpAddr = ip.parse().unwrap();
            assert!(!is_public(parsed), "{ip} must be refused");
        }
        let public = [
            "1.1.1.1",
            "8.8.8.8",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.1.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ];
        for ip in public {
            let parsed: IpAddr = ip.parse().unwrap();
            assert!(is_public(parsed), "{ip} is public");
        }
    }

    #[test]
    fn urls_follow_the_policy() {
        let field = |raw: &str| parse_url(STRICT, raw).unwrap_err().field;
        assert!(parse_url(STRICT, "https://hooks.example.com/x?y=1").is_ok());
        for bad in [
            "http://hooks.example.com/",
            "ftp://hooks.example.com/",
            "https://user:pw@hooks.example.com/",
            "https://hooks.example.com/#frag",
            "not a url",
            "https://127.0.0.1/",
            "https://[::1]/",
            "https://[fc00::1]/",
            "https://169.254.169.254/latest/meta-data/",
            "https://10.0.0.1/",
            "https://[::ffff:192.168.0.1]/",
        ] {
            assert_eq!(field(bad).as_deref(), Some("url"), "{bad}");
        }
        let long = format!("https://hooks.example.com/{}", "a".repeat(MAX_URL_CHARS));
        assert_eq!(field(&long).as_deref(), Some("url"), "over 2048 characters");
        let local = TargetPolicy {
            allow_http: true,
            allow_private: true,
        };
        assert!(parse_url(local, "http://127.0.0.1:8080/hook").is_ok());
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused() {
        let url = parse_url(STRICT, "https://localhost/hook").unwrap();
        let err = check_resolves(STRICT, &url).await.unwrap_err();
        assert_eq!(err.field.as_deref(), Some("url"));
        assert_eq!(err.status(), 422);
    }
}
