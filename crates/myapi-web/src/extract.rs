//! Extractors and request parsing shared by the routes.

use std::future::Future;
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use myapi_services::auth::AuthenticatedUser;
use myapi_services::{ServiceError, Services};

use crate::client::{ClientIpHeader, TrustedProxies, resolve_client};
use crate::error::ApiError;

/// The user of a valid, unrevoked bearer token, whatever its scopes (`/users/me`).
///
/// Missing credentials → 401 `WWW-Authenticate: Bearer`; anything wrong with the token →
/// 401 `WWW-Authenticate: Bearer error="invalid_token"`.
#[derive(Debug, Clone)]
pub struct BearerUser(pub AuthenticatedUser);

impl FromRequest for BearerUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // The rate limit authenticated the request already and left the outcome here, for
        // the one extractor that takes it (a second would authenticate again).
        if let Some(Authenticated(outcome)) = req.extensions_mut().remove::<Authenticated>() {
            return Box::pin(async move { Ok(Self(outcome?)) });
        }
        let services = req.app_data::<web::Data<Services>>().cloned();
        let token = bearer_token(req);
        Box::pin(async move {
            let services = services.ok_or_else(|| {
                ServiceError::internal("services are not registered", "missing app data")
            })?;
            Ok(Self(services.auth.authenticate(&token?).await?))
        })
    }
}

/// How the request's bearer token authenticated, when something before the extractors
/// (the rate limit) already asked: [`BearerUser`] takes it instead of asking again.
#[derive(Debug)]
pub struct Authenticated(pub Result<AuthenticatedUser, ServiceError>);

/// A bearer user whose token carries the scope `S`; without it, 403 with
/// `WWW-Authenticate: Bearer error="insufficient_scope"` (RFC 6750 §3.1). Take it as a
/// handler's first argument, so the check runs before the body is read, and declare the
/// same scope in the handler's `security(("oauth2" = [...]))` (utoipa takes only literals
/// there; `tests/http/scopes.rs` checks every documented route against what it enforces).
#[derive(Debug, Clone)]
pub struct Authorized<S>(pub AuthenticatedUser, PhantomData<S>);

// The scopes' marker types, declared with the scopes themselves (services' `roles.rs`).
use myapi_services::auth::RequiredScope;
pub use myapi_services::auth::scope::*;

impl<S: RequiredScope + 'static> FromRequest for Authorized<S> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let user = BearerUser::from_request(req, payload);
        Box::pin(async move {
            let BearerUser(user) = user.await?;
            if user.scopes.contains(S::SCOPE) {
                Ok(Self(user, PhantomData))
            } else {
                Err(ApiError::InsufficientScope { scope: S::SCOPE })
            }
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
///
/// Every authenticated request scans its token here, and tokens run to hundreds of bytes:
/// the checks are folds over the whole slice, which the compiler vectorises, rather than
/// `HeaderValue::to_str` and `any`, which stop early and so go a byte at a time.
pub(crate) fn bearer_token(req: &HttpRequest) -> Result<String, ApiError> {
    let mut values = req.headers().get_all(header::AUTHORIZATION);
    let Some(value) = values.next() else {
        return Err(ApiError::MissingCredentials);
    };
    if values.next().is_some() {
        return Err(ServiceError::InvalidToken("more than one Authorization header").into());
    }
    // What `to_str` lets through: visible ASCII, spaces and tabs.
    let printable = |b: u8| b == b'\t' || (b' '..=b'~').contains(&b);
    let bytes = value.as_bytes();
    if !bytes.iter().fold(true, |all, &b| all & printable(b)) {
        return Err(ServiceError::InvalidToken("malformed header").into());
    }
    let value = bytes.trim_ascii();
    let (scheme, token) = match value.iter().position(|&b| b == b' ') {
        Some(space) => (&value[..space], &value[space + 1..]),
        None => (value, &[][..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(ApiError::MissingCredentials);
    }
    let token = token.trim_ascii();
    let blank = token
        .iter()
        .fold(false, |any, &b| any | (b == b' ' || b == b'\t'));
    if token.is_empty() || token.len() > 4096 || blank {
        return Err(ServiceError::InvalidToken("malformed token").into());
    }
    // ASCII throughout (checked above): nothing is replaced.
    Ok(String::from_utf8_lossy(token).into_owned())
}

/// The client's address: the socket peer, or the address trusted proxies report for it
/// (`server.trusted_proxies` and `server.client_ip_header`, see [`resolve_client`]).
/// Unspecified when there is no socket.
pub fn client_ip(req: &HttpRequest) -> IpAddr {
    let Some(peer) = req.peer_addr() else {
        return IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    };
    match (
        req.app_data::<TrustedProxies>(),
        req.app_data::<ClientIpHeader>(),
    ) {
        (Some(trusted), Some(forwarding)) => {
            resolve_client(peer.ip(), req.headers(), trusted, *forwarding)
        }
        _ => peer.ip().to_canonical(),
    }
}

/// `Link: <path?parameters>; rel="next"`: where the page after this one is, `parameters`
/// being that page's whole query (filters, `limit`, and its `offset` or cursor).
pub fn next_page_link(path: &str, parameters: &[(&str, String)]) -> (header::HeaderName, String) {
    let query = serde_urlencoded::to_string(parameters).unwrap_or_default();
    (header::LINK, format!("<{path}?{query}>; rel=\"next\""))
}

/// Whether `Content-Type` names the media type `expected` (parameters such as `charset`
/// aside).
pub fn has_media_type(headers: &header::HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_signer() -> myapi_services::auth::TokenSigner {
        let key = myapi_services::auth::TokenKey::try_from(
            "k-0123456789abcdefghijklmnopqrstuv".to_owned(),
        )
        .unwrap();
        let auth = myapi_services::Settings::defaults().unwrap().auth;
        myapi_services::auth::TokenSigner::new(Some(&key.into()), &auth)
    }

    /// How `bearer_token` read a header before it was made to scan whole slices: `to_str`,
    /// `trim` and `split_once`. The two must agree on every header.
    fn bearer_token_by_str(value: &header::HeaderValue) -> Result<String, &'static str> {
        let value = value.to_str().map_err(|_| "invalid")?;
        let (scheme, token) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err("missing");
        }
        let token = token.trim();
        if token.is_empty() || token.len() > 4096 || token.bytes().any(|b| b == b' ' || b == b'\t')
        {
            return Err("invalid");
        }
        Ok(token.to_owned())
    }

    proptest::proptest! {
        #[test]
        fn bearer_token_reads_headers_as_str_methods_would(
            scheme in proptest::sample::select(vec!["Bearer ", "bearer", " BEARER\t ", "Basic ", "Bearer  ", ""]),
            rest in proptest::collection::vec(proptest::sample::select(b" \t\x7f\x80\xffab.-_=Z9~".to_vec()), 0..40),
        ) {
            let mut bytes = scheme.as_bytes().to_vec();
            bytes.extend(rest);
            if let Ok(value) = header::HeaderValue::from_bytes(&bytes) {
                let req = actix_web::test::TestRequest::default()
                    .insert_header((header::AUTHORIZATION, value.clone()))
                    .to_http_request();
                let read = bearer_token(&req).map_err(|error| match error {
                    ApiError::MissingCredentials => "missing",
                    _ => "invalid",
                });
                proptest::prop_assert_eq!(read, bearer_token_by_str(&value));
            }
        }

        #[test]
        fn any_authorization_header_is_handled(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            if let Ok(value) = header::HeaderValue::from_bytes(&bytes) {
                let req = actix_web::test::TestRequest::default()
                    .insert_header((header::AUTHORIZATION, value))
                    .to_http_request();
                if let Ok(token) = bearer_token(&req) {
                    proptest::prop_assert!(!token.is_empty() && !token.contains(char::is_whitespace));
                }
            }
        }

        #[test]
        fn arbitrary_tokens_never_verify(token in "\\PC{0,400}") {
            let signer = test_signer();
            proptest::prop_assert!(signer.verify(&token).is_err());
        }

        #[test]
        fn tampered_tokens_never_verify_as_someone_else(position in 0usize..400, replacement in "[A-Za-z0-9_.-]") {
            let signer = test_signer();
            let session = myapi_services::auth::Session { family_id: "f", client_id: "myapi" };
            let token = signer.issue(7, "Ada", "ada@example.com", "stamp", "movies:read", session).unwrap();
            let mut chars: Vec<char> = token.chars().collect();
            let position = position % chars.len();
            chars[position] = replacement.chars().next().unwrap();
            let tampered: String = chars.into_iter().collect();
            if let Ok(claims) = signer.verify(&tampered) {
                // Only an encoding-equivalent change can survive, and then nothing changed.
                proptest::prop_assert_eq!((claims.sub.as_str(), claims.email.as_str(), claims.stm.as_str()), ("7", "ada@example.com", "stamp"));
            }
        }
    }

    #[test]
    fn client_ip_follows_the_registered_trusted_proxies() {
        let request = |trusted: Option<&str>| {
            let mut request = actix_web::test::TestRequest::default()
                .peer_addr("10.0.0.1:5000".parse().unwrap())
                .insert_header(("x-forwarded-for", "203.0.113.7"));
            if let Some(list) = trusted {
                request = request
                    .app_data(list.parse::<TrustedProxies>().unwrap())
                    .app_data(ClientIpHeader::XForwardedFor);
            }
            client_ip(&request.to_http_request()).to_string()
        };
        assert_eq!(request(None), "10.0.0.1");
        assert_eq!(request(Some("")), "10.0.0.1");
        assert_eq!(request(Some("10.0.0.0/8")), "203.0.113.7");
    }
}
