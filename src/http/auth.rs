//! Client credentials: parsing them from a request (`Authorization: Token`,
//! `Bearer`, `Basic`, or the v1 `u`/`p` query parameters) without allocating,
//! and the `[auth]` table that maps tokens to client names.

use super::Response;
use serde::Deserialize;
use std::collections::HashMap;

/// How the credentials were presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `Authorization: Token T` (InfluxDB v2 clients).
    Token,
    /// `Authorization: Bearer T`.
    Bearer,
    /// `Authorization: Basic base64(user:password)` (InfluxDB v1 clients); the password is the token.
    Basic,
    /// `?u=user&p=password` on `/write`; the password is the token.
    Query,
}

/// Credentials borrowed from the request (or from the Basic-decoding scratch).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Credentials<'a> {
    pub scheme: Scheme,
    pub user: Option<&'a str>,
    pub token: &'a str,
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("scheme", &self.scheme).field("user", &self.user).finish_non_exhaustive()
    }
}

/// An `Authorization` header that cannot be used (answer 401).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("unsupported authorization scheme (Token, Bearer or Basic)")]
    UnsupportedScheme,
    #[error("malformed authorization header")]
    Malformed,
}

/// Scratch for decoding a Basic header; longer headers are refused.
pub const BASIC_SCRATCH_BYTES: usize = 512;

/// The request's credentials: the `Authorization` header if present, else the
/// v1 `u`/`p` query parameters (`p` alone is enough), else `None`.
/// `scratch` receives a decoded Basic header.
pub fn credentials<'a>(
    authorization: Option<&'a [u8]>,
    query_user: Option<&'a str>,
    query_password: Option<&'a str>,
    scratch: &'a mut [u8],
) -> Result<Option<Credentials<'a>>, AuthError> {
    let Some(header) = authorization else {
        return Ok(query_password.map(|token| Credentials { scheme: Scheme::Query, user: query_user, token }));
    };
    let header = std::str::from_utf8(header).map_err(|_| AuthError::Malformed)?.trim();
    let (scheme, rest) = header.split_once(' ').ok_or(AuthError::Malformed)?;
    let rest = rest.trim();
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        return Err(AuthError::Malformed);
    }
    let creds = if scheme.eq_ignore_ascii_case("token") {
        Credentials { scheme: Scheme::Token, user: None, token: rest }
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Credentials { scheme: Scheme::Bearer, user: None, token: rest }
    } else if scheme.eq_ignore_ascii_case("basic") {
        let n = base64_decode(rest.as_bytes(), scratch).ok_or(AuthError::Malformed)?;
        let text = std::str::from_utf8(&scratch[..n]).map_err(|_| AuthError::Malformed)?;
        let (user, password) = text.split_once(':').ok_or(AuthError::Malformed)?;
        Credentials { scheme: Scheme::Basic, user: (!user.is_empty()).then_some(user), token: password }
    } else {
        return Err(AuthError::UnsupportedScheme);
    };
    Ok(Some(creds))
}

/// Decodes standard base64 (RFC 4648 §4, padding optional) into `out`;
/// returns the decoded length, `None` if malformed or `out` is too small.
pub fn base64_decode(input: &[u8], out: &mut [u8]) -> Option<usize> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let data = match input {
        [d @ .., b'=', b'='] => d,
        [d @ .., b'='] => d,
        d => d,
    };
    if data.len() % 4 == 1 || (data.len() != input.len() && input.len() % 4 != 0) {
        return None;
    }
    let len = data.len() / 4 * 3 + (data.len() % 4).saturating_sub(1);
    if len > out.len() {
        return None;
    }
    let mut n = 0;
    for group in data.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in group.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        let produced = group.len() - 1;
        // Leftover bits of a partial group must be zero (canonical encoding).
        if produced < 3 && bytes[1 + produced..].iter().any(|&b| b != 0) {
            return None;
        }
        out[n..n + produced].copy_from_slice(&bytes[1..1 + produced]);
        n += produced;
    }
    Some(n)
}

/// One `[[auth.tokens]]` entry.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    pub token: String,
    pub client: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthConfig {
    #[serde(default)]
    tokens: Vec<TokenEntry>,
}

/// The `[auth]` table: `tokens = [{ token = "...", client = "..." }]`.
/// No tokens means authentication is off. `Debug` never prints tokens.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(try_from = "RawAuthConfig")]
pub struct AuthConfig {
    clients: HashMap<String, String>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig").field("tokens", &self.clients.len()).finish()
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthConfigError {
    #[error("auth.tokens: entry {0} has an empty token or client")]
    Empty(usize),
    #[error("auth.tokens: entry {0} repeats an earlier token")]
    Duplicate(usize),
}

impl TryFrom<RawAuthConfig> for AuthConfig {
    type Error = AuthConfigError;

    fn try_from(raw: RawAuthConfig) -> Result<Self, Self::Error> {
        AuthConfig::new(raw.tokens)
    }
}

/// What to do with a request's credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthDecision<'c> {
    /// Authentication is off: serve as the default client.
    Off,
    /// A known token: serve as this client.
    Client(&'c str),
    /// Authentication is on and the request has no credentials: 401.
    Missing,
    /// The token is not configured: 401.
    Unknown,
}

impl AuthDecision<'_> {
    /// The 401 answer for [`AuthDecision::Missing`] and [`AuthDecision::Unknown`]
    /// (also for a malformed header, [`AuthError`]). `WWW-Authenticate` is
    /// required on a 401 (RFC 9110 §15.5.2).
    pub fn unauthorized() -> Response<'static> {
        const HEADERS: &[(&str, &str)] = &[("WWW-Authenticate", "Token realm=\"metricsstream\"")];
        Response::error(401, "unauthorized", "unauthorized access").with_headers(HEADERS)
    }
}

impl AuthConfig {
    pub fn new(entries: Vec<TokenEntry>) -> Result<AuthConfig, AuthConfigError> {
        let mut clients = HashMap::with_capacity(entries.len());
        for (i, TokenEntry { token, client }) in entries.into_iter().enumerate() {
            if token.is_empty() || client.is_empty() {
                return Err(AuthConfigError::Empty(i));
            }
            if clients.insert(token, client).is_some() {
                return Err(AuthConfigError::Duplicate(i));
            }
        }
        Ok(AuthConfig { clients })
    }

    pub fn enabled(&self) -> bool {
        !self.clients.is_empty()
    }

    /// The decision for `credentials` (the result of [`credentials`]).
    pub fn client_for(&self, credentials: Option<&Credentials<'_>>) -> AuthDecision<'_> {
        if !self.enabled() {
            return AuthDecision::Off;
        }
        match credentials {
            None => AuthDecision::Missing,
            Some(c) => self.clients.get(c.token).map_or(AuthDecision::Unknown, |client| AuthDecision::Client(client)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<'a>(
        header: Option<&'a [u8]>,
        u: Option<&'a str>,
        p: Option<&'a str>,
        scratch: &'a mut [u8],
    ) -> Result<Option<Credentials<'a>>, AuthError> {
        credentials(header, u, p, scratch)
    }

    #[test]
    fn token_and_bearer() {
        let mut s = [0u8; BASIC_SCRATCH_BYTES];
        let c = parse(Some(b"Token abc123"), None, None, &mut s).unwrap().unwrap();
        assert_eq!((c.scheme, c.user, c.token), (Scheme::Token, None, "abc123"));
        let mut s = [0u8; BASIC_SCRATCH_BYTES];
        // Scheme names are case-insensitive; surrounding spaces are ignored.
        let c = parse(Some(b"  bearer   xyz "), None, None, &mut s).unwrap().unwrap();
        assert_eq!((c.scheme, c.token), (Scheme::Bearer, "xyz"));
    }

    #[test]
    fn basic() {
        let mut s = [0u8; BASIC_SCRATCH_BYTES];
        // base64("alice:s3cret") = YWxpY2U6czNjcmV0
        let c = parse(Some(b"Basic YWxpY2U6czNjcmV0"), None, None, &mut s).unwrap().unwrap();
        assert_eq!((c.scheme, c.user, c.token), (Scheme::Basic, Some("alice"), "s3cret"));
        let mut s = [0u8; BASIC_SCRATCH_BYTES];
        // base64(":tok:with:colons") — empty user, the password keeps its colons.
        let c = parse(Some(b"Basic OnRvazp3aXRoOmNvbG9ucw=="), None, None, &mut s).unwrap().unwrap();
        assert_eq!((c.user, c.token), (None, "tok:with:colons"));
        let mut s = [0u8; BASIC_SCRATCH_BYTES];
        // base64("nocolon") has no ':' separator.
        assert_eq!(parse(Some(b"Basic bm9jb2xvbg=="), None, None, &mut s), Err(AuthError::Malformed));
        let mut s = [0u8; BASIC_SCRATCH_BYTES];
        assert_eq!(parse(Some(b"Basic !!!!"), None, None, &mut s), Err(AuthError::Malformed));
        let mut s = [0u8; 4];
        // Too long for the scratch: refused, not truncated.
        assert_eq!(parse(Some(b"Basic YWxpY2U6czNjcmV0"), None, None, &mut s), Err(AuthError::Malformed));
    }

    #[test]
    fn base64_vectors() {
        // RFC 4648 §10 test vectors.
        let mut out = [0u8; 16];
        for (enc, dec) in [
            ("", ""),
            ("Zg==", "f"),
            ("Zm8=", "fo"),
            ("Zm9v", "foo"),
            ("Zm9vYg==", "foob"),
            ("Zm9vYmE=", "fooba"),
            ("Zm9vYmFy", "foobar"),
            ("Zm9vYg", "foob"),
        ] {
            let n = base64_decode(enc.as_bytes(), &mut out).unwrap();
            assert_eq!(&out[..n], dec.as_bytes(), "{enc}");
        }
        for bad in ["Z", "Zm9vY", "Zh==", "Zm9=", "Zg=", "Zm 9", "Zg==Zg==", "===="] {
            assert_eq!(base64_decode(bad.as_bytes(), &mut out), None, "{bad}");
        }
    }

    #[test]
    fn query_credentials_and_precedence() {
        let mut s = [0u8; BASIC_SCRATCH_BYTES];
        let c = parse(None, Some("bob"), Some("tok"), &mut s).unwrap().unwrap();
        assert_eq!((c.scheme, c.user, c.token), (Scheme::Query, Some("bob"), "tok"));
        let mut s = [0u8; BASIC_SCRATCH_BYTES];
        // The header wins over query parameters.
        let c = parse(Some(b"Token hdr"), Some("bob"), Some("tok"), &mut s).unwrap().unwrap();
        assert_eq!(c.token, "hdr");
        let mut s = [0u8; BASIC_SCRATCH_BYTES];
        assert_eq!(parse(None, Some("bob"), None, &mut s), Ok(None));
        let mut s = [0u8; BASIC_SCRATCH_BYTES];
        assert_eq!(parse(Some(b"Digest x"), None, None, &mut s), Err(AuthError::UnsupportedScheme));
        let mut s = [0u8; BASIC_SCRATCH_BYTES];
        assert_eq!(parse(Some(b"Token"), None, None, &mut s), Err(AuthError::Malformed));
        let mut s = [0u8; BASIC_SCRATCH_BYTES];
        assert_eq!(parse(Some(b"Token a b"), None, None, &mut s), Err(AuthError::Malformed));
        // Debug never shows the token.
        assert!(!format!("{c:?}").contains("tok"));
    }

    #[test]
    fn config_and_decisions() {
        let off: AuthConfig = toml::from_str("").unwrap();
        assert_eq!(off.client_for(None), AuthDecision::Off);
        let cfg: AuthConfig =
            toml::from_str("tokens = [{ token = \"t1\", client = \"edge\" }, { token = \"t2\", client = \"batch\" }]")
                .unwrap();
        assert!(!format!("{cfg:?}").contains("t1"));
        let t1 = Credentials { scheme: Scheme::Token, user: None, token: "t1" };
        let t2 = Credentials { scheme: Scheme::Basic, user: Some("x"), token: "t2" };
        let bad = Credentials { scheme: Scheme::Bearer, user: None, token: "nope" };
        assert_eq!(cfg.client_for(Some(&t1)), AuthDecision::Client("edge"));
        assert_eq!(cfg.client_for(Some(&t2)), AuthDecision::Client("batch"));
        assert_eq!(cfg.client_for(Some(&bad)), AuthDecision::Unknown);
        assert_eq!(cfg.client_for(None), AuthDecision::Missing);
        let r = AuthDecision::unauthorized();
        assert_eq!((r.status, r.headers[0].0), (401, "WWW-Authenticate"));
        let dup = toml::from_str::<AuthConfig>(
            "tokens = [{ token = \"a\", client = \"x\" }, { token = \"a\", client = \"y\" }]",
        );
        assert!(dup.unwrap_err().to_string().contains("repeats"));
        assert!(toml::from_str::<AuthConfig>("tokens = [{ token = \"\", client = \"x\" }]").is_err());
        assert!(toml::from_str::<AuthConfig>("tokens = [{ token = \"a\", client = \"x\", extra = 1 }]").is_err());
    }
}
