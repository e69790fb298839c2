//! JWT (seed 003): HS256 with `JWT_SECRET`, issuer `reflow-tracing`,
//! audience `reflow-clients`, `exp` required; checked at the upgrade.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::Deserialize;

pub const ISSUER: &str = "reflow-tracing";
pub const AUDIENCE: &str = "reflow-clients";

#[derive(Debug, Deserialize)]
struct Claims {
    #[allow(dead_code)]
    exp: u64,
}

/// Checks a token; the error says why it was refused.
pub fn check(secret: &str, leeway: u64, token: &str) -> Result<(), String> {
    let mut v = Validation::new(Algorithm::HS256);
    v.set_issuer(&[ISSUER]);
    v.set_audience(&[AUDIENCE]);
    v.set_required_spec_claims(&["exp", "iss", "aud"]);
    v.leeway = leeway;
    decode::<Claims>(token, &DecodingKey::from_secret(secret.as_bytes()), &v)
        .map(|_| ())
        .map_err(|e| format!("invalid token: {e}"))
}

/// The token of an upgrade request: `Authorization: Bearer …` or `?token=…`.
pub fn token<'a>(authorization: Option<&'a str>, query: Option<&'a str>) -> Option<String> {
    if let Some(h) = authorization
        && let Some(t) = h
            .strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
    {
        return Some(t.trim().to_owned());
    }
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "token").then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    fn make(secret: &str, iss: &str, aud: &str, exp: i64) -> String {
        let claims = serde_json::json!({"sub": "t", "iss": iss, "aud": aud, "exp": exp});
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn tokens_are_checked_for_secret_issuer_audience_and_expiry() {
        let later = chrono::Utc::now().timestamp() + 3600;
        let earlier = chrono::Utc::now().timestamp() - 3600;
        assert!(check("k", 5, &make("k", ISSUER, AUDIENCE, later)).is_ok());
        assert!(check("k", 5, &make("other", ISSUER, AUDIENCE, later)).is_err());
        assert!(check("k", 5, &make("k", "someone", AUDIENCE, later)).is_err());
        assert!(check("k", 5, &make("k", ISSUER, "others", later)).is_err());
        let expired = check("k", 5, &make("k", ISSUER, AUDIENCE, earlier)).unwrap_err();
        assert!(expired.contains("Expired"), "{expired}");
        assert!(check("k", 5, "garbage").is_err());
    }

    #[test]
    fn the_token_comes_from_the_header_or_the_query() {
        assert_eq!(token(Some("Bearer abc"), None).as_deref(), Some("abc"));
        assert_eq!(token(None, Some("x=1&token=a%2Eb")).as_deref(), Some("a.b"));
        assert_eq!(token(Some("Basic zzz"), Some("y=2")), None);
    }
}
