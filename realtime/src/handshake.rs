//! The WebSocket handshake rules that the local shim and the `$connect` Lambda share: which
//! `Origin` may connect, where the access token comes from, and which subprotocol the server
//! answers with.
//!
//! Token convention (preferred): the client offers two subprotocols,
//! `Sec-WebSocket-Protocol: momentum.v1, bearer.<access token>` (a browser:
//! `new WebSocket(url, ["momentum.v1", "bearer." + token])`; JWTs are made of token
//! characters, so the token goes in as it is). The server selects and echoes only
//! `momentum.v1`, never the token. The query string (`?token=<JWT>`) still works, but query
//! strings are written to API Gateway's and proxies' access logs, so the header is preferred.
//! When both are present the header wins.

use momentum_shared::config::AppConfig;
use momentum_shared::error::{AppError, AppResult, ErrorCode};

/// The subprotocol the server selects (and echoes) when the client offers it.
pub const PROTOCOL: &str = "momentum.v1";

/// Prefix of the subprotocol entry that carries the access token: `bearer.<JWT>`.
pub const BEARER_PREFIX: &str = "bearer.";

/// The handshake header that carries the offered subprotocols.
pub const PROTOCOL_HEADER: &str = "sec-websocket-protocol";

/// What a handshake asked for: the token to authenticate with and the subprotocol to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The access token, from `bearer.<token>` or else from the query string.
    pub token: Option<String>,
    /// `Some(PROTOCOL)` when the client offered it: the server must answer with it.
    pub protocol: Option<&'static str>,
}

/// Reads the offered subprotocols (every `Sec-WebSocket-Protocol` value, each a
/// comma-separated list) and the query string's `token`.
///
/// A `bearer.` entry without `momentum.v1` is refused (400): the server could only echo the
/// token, which it never does, and a browser drops a connection whose offered subprotocols
/// get no answer. Two `bearer.` entries are refused as ambiguous.
pub fn offer<'a>(
    protocol_values: impl IntoIterator<Item = &'a str>,
    query_token: Option<&str>,
) -> AppResult<Offer> {
    let mut bearer: Option<&str> = None;
    let mut momentum = false;
    for entry in protocol_values
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        if entry == PROTOCOL {
            momentum = true;
        } else if let Some(token) = entry.strip_prefix(BEARER_PREFIX) {
            if bearer.is_some() {
                return Err(protocol_error(
                    "offer at most one bearer.<token> subprotocol",
                ));
            }
            bearer = Some(token);
        }
    }
    if bearer.is_some() && !momentum {
        return Err(protocol_error(
            "offer momentum.v1 together with bearer.<token>: the server answers momentum.v1",
        ));
    }
    Ok(Offer {
        token: bearer.or(query_token).map(str::to_owned),
        protocol: momentum.then_some(PROTOCOL),
    })
}

fn protocol_error(message: &str) -> AppError {
    AppError::validation("Sec-WebSocket-Protocol", message)
}

/// Checks a handshake's `Origin` against the CORS allowlist (`MOMENTUM_CORS_ORIGINS`). No
/// `Origin` (native mobile clients, servers) is allowed: the header only says which web page
/// a browser is connecting for. With the local default allowlist, any loopback origin (a dev
/// server on any port of `localhost`, `127.0.0.1` or `[::1]`) is allowed too. `Origin: null`
/// (sandboxed frames, `file:` pages) is never listed, so never allowed.
pub fn check_origin(config: &AppConfig, origin: Option<&str>) -> AppResult<()> {
    let Some(origin) = origin else {
        return Ok(());
    };
    let origin = origin.trim().trim_end_matches('/');
    let listed = config
        .cors_origins
        .iter()
        .any(|allowed| allowed.eq_ignore_ascii_case(origin));
    if listed || (config.local_default_origins && is_loopback_origin(origin)) {
        return Ok(());
    }
    Err(AppError::new(
        ErrorCode::Forbidden,
        "this Origin may not open a WebSocket (list it in MOMENTUM_CORS_ORIGINS)",
    ))
}

/// `http(s)://localhost[:port]`, `http(s)://127.x.y.z[:port]` or `http(s)://[::1][:port]`.
fn is_loopback_origin(origin: &str) -> bool {
    let lower = origin.to_ascii_lowercase();
    let Some(authority) = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
    else {
        return false;
    };
    let host = if let Some(rest) = authority.strip_prefix('[') {
        match rest.split_once(']') {
            Some((host, "")) => host,
            Some((host, port)) if port.strip_prefix(':').is_some_and(is_port) => host,
            _ => return false,
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) if is_port(port) => host,
            Some(_) => return false,
            None => authority,
        }
    };
    if host == "localhost" {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// `1234`.
fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comes_from_the_bearer_subprotocol_then_the_query() {
        let o = offer(["momentum.v1, bearer.a.b.c"], Some("q")).unwrap();
        assert_eq!(o.token.as_deref(), Some("a.b.c"), "the header wins");
        assert_eq!(o.protocol, Some(PROTOCOL));
        // Several header lines, extra spaces, unknown entries.
        let o = offer(["chat", " bearer.x.y.z ,momentum.v1"], None).unwrap();
        assert_eq!(o.token.as_deref(), Some("x.y.z"));
        assert_eq!(o.protocol, Some(PROTOCOL));
        let o = offer([], Some("q")).unwrap();
        assert_eq!(o.token.as_deref(), Some("q"));
        assert_eq!(o.protocol, None, "nothing offered, nothing echoed");
        let o = offer(["momentum.v1"], Some("q")).unwrap();
        assert_eq!(
            (o.token.as_deref(), o.protocol),
            (Some("q"), Some(PROTOCOL))
        );
        assert_eq!(offer(["chat"], None).unwrap().token, None);
    }

    #[test]
    fn a_bearer_alone_or_twice_is_refused() {
        let e = offer(["bearer.a.b.c"], None).unwrap_err();
        assert_eq!(e.code, ErrorCode::ValidationError);
        assert_eq!(e.field.as_deref(), Some("Sec-WebSocket-Protocol"));
        assert!(!e.message.contains("a.b.c"));
        let e = offer(["momentum.v1, bearer.a", "bearer.b"], None).unwrap_err();
        assert_eq!(e.code, ErrorCode::ValidationError);
    }

    fn config(origins: &[&str], local_default: bool) -> AppConfig {
        let mut c = AppConfig::for_tests();
        c.cors_origins = origins.iter().map(|o| o.to_string()).collect();
        c.local_default_origins = local_default;
        c
    }

    #[test]
    fn origins_follow_the_cors_allowlist() {
        let listed = config(&["https://app.example.com"], false);
        assert!(check_origin(&listed, None).is_ok(), "native clients");
        assert!(check_origin(&listed, Some("https://app.example.com")).is_ok());
        assert!(check_origin(&listed, Some("HTTPS://APP.example.com/")).is_ok());
        for refused in [
            "https://evil.example.com",
            "http://app.example.com",
            "https://app.example.com.evil.net",
            "null",
            "http://localhost:3000",
        ] {
            let e = check_origin(&listed, Some(refused)).unwrap_err();
            assert_eq!(e.code, ErrorCode::Forbidden, "{refused}");
        }
        let local = config(&["http://localhost:3000"], true);
        for ok in [
            "http://localhost:5173",
            "http://localhost",
            "https://127.0.0.1:8443",
            "http://127.0.0.2:3000",
            "http://[::1]:8080",
            "http://[::1]",
        ] {
            assert!(check_origin(&local, Some(ok)).is_ok(), "{ok}");
        }
        for refused in [
            "http://localhost.evil.com",
            "http://localhost:80x",
            "http://localhost:3000/path",
            "http://user@localhost",
            "http://[::2]:80",
            "http://10.0.0.1:3000",
            "ws://localhost:3000",
            "null",
        ] {
            assert!(check_origin(&local, Some(refused)).is_err(), "{refused}");
        }
    }
}
