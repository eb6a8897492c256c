//! Extractors and request parsing shared by the routes.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use myapi_schemas::UserSchema;
use myapi_services::{InvalidField, ServiceError, Services};

use crate::error::ApiError;

/// The user of a valid, unrevoked bearer token. Every protected route takes this.
///
/// Missing credentials → 401 `WWW-Authenticate: Bearer`; anything wrong with the token →
/// 401 `WWW-Authenticate: Bearer error="invalid_token"`. The signature check runs inline
/// (microseconds); the revocation check uses a short cache, else a blocking lookup.
#[derive(Debug, Clone)]
pub struct BearerUser(pub UserSchema);

impl FromRequest for BearerUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let services = req.app_data::<web::Data<Services>>().cloned();
        let token = bearer_token(req);
        Box::pin(async move {
            let services =
                services.ok_or_else(|| ServiceError::Internal("services not configured".into()))?;
            let claims = services.auth.verify_token(&token?)?;
            if let Some(result) = services.auth.cached_user(&claims) {
                return Ok(Self(result?));
            }
            let user = web::block(move || services.auth.load_user(&claims)).await??;
            Ok(Self(user))
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer_token(req: &HttpRequest) -> Result<String, ApiError> {
    let mut values = req.headers().get_all(header::AUTHORIZATION);
    let Some(value) = values.next() else {
        return Err(ApiError::MissingCredentials);
    };
    if values.next().is_some() {
        return Err(ServiceError::InvalidToken("more than one Authorization header").into());
    }
    let value = value
        .to_str()
        .map_err(|_| ServiceError::InvalidToken("malformed header"))?;
    let (scheme, token) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::MissingCredentials);
    }
    let token = token.trim();
    if token.is_empty() || token.len() > 4096 || token.contains(char::is_whitespace) {
        return Err(ServiceError::InvalidToken("malformed token").into());
    }
    Ok(token.to_owned())
}

/// The client's address as seen on the socket (proxies' headers are not trusted).
pub fn client_ip(req: &HttpRequest) -> IpAddr {
    req.peer_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |addr| addr.ip())
}

/// A parsed query string that collects every parameter error, so a 422 names them all.
#[derive(Debug)]
pub struct QueryParams {
    pairs: Vec<(String, String)>,
    errors: Vec<InvalidField>,
}

impl QueryParams {
    /// Parses `query`; undecodable input is a 422.
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let pairs = serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .map_err(|_| ServiceError::invalid("query", "is not a valid query string"))?;
        Ok(Self {
            pairs,
            errors: Vec::new(),
        })
    }

    /// The single value of `name`, if present; a repeated parameter is an error.
    fn single(&mut self, name: &str) -> Option<String> {
        let mut values = self
            .pairs
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, v)| v);
        let first = values.next()?.clone();
        if values.next().is_some() {
            self.errors
                .push(InvalidField::new(name, "must be given once"));
            return None;
        }
        Some(first)
    }

    fn parsed<T: std::str::FromStr>(
        &mut self,
        name: &str,
        required: bool,
        kind: &str,
    ) -> Option<T> {
        match self.single(name) {
            None if required && !self.errors.iter().any(|e| e.field == name) => {
                self.errors.push(InvalidField::new(name, "is required"));
                None
            }
            None => None,
            Some(raw) => match raw.trim().parse::<T>() {
                Ok(value) => Some(value),
                Err(_) => {
                    self.errors
                        .push(InvalidField::new(name, format!("must be {kind}")));
                    None
                }
            },
        }
    }

    /// A required integer parameter.
    pub fn required_int(&mut self, name: &str) -> Option<i64> {
        self.parsed(name, true, "an integer")
    }

    /// An optional integer parameter.
    pub fn optional_int(&mut self, name: &str) -> Option<i64> {
        self.parsed(name, false, "an integer")
    }

    /// A required finite number.
    pub fn required_number(&mut self, name: &str) -> Option<f64> {
        match self.parsed::<f64>(name, true, "a number")? {
            value if value.is_finite() => Some(value),
            _ => {
                self.errors
                    .push(InvalidField::new(name, "must be a finite number"));
                None
            }
        }
    }

    /// Ok when every parameter read so far was valid; otherwise a 422 naming them.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ServiceError::Invalid(self.errors).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_errors_name_each_parameter() {
        let mut q = QueryParams::parse("year=abc&rating=NaN&limit=1&limit=2").unwrap();
        assert_eq!(q.required_int("year"), None);
        assert_eq!(q.required_number("rating"), None);
        assert_eq!(q.optional_int("limit"), None);
        assert_eq!(q.required_int("missing"), None);
        let Err(ApiError::Service(ServiceError::Invalid(fields))) = q.finish() else {
            panic!()
        };
        let names: Vec<_> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, ["year", "rating", "limit", "missing"]);
    }

    proptest::proptest! {
        #[test]
        fn any_query_string_parses_or_fails_cleanly(query in "\\PC{0,200}") {
            if let Ok(mut q) = QueryParams::parse(&query) {
                let _ = (q.required_int("year"), q.required_number("rating"), q.optional_int("limit"));
                let _ = q.finish();
            }
        }

        #[test]
        fn integer_parameters_accept_exactly_what_i64_parses(raw in "[-+0-9a-z. ]{0,25}") {
            let query = serde_urlencoded::to_string([("year", raw.as_str())]).unwrap();
            let mut q = QueryParams::parse(&query).unwrap();
            let parsed = q.required_int("year");
            proptest::prop_assert_eq!(parsed, raw.trim().parse::<i64>().ok());
            proptest::prop_assert_eq!(q.finish().is_ok(), parsed.is_some());
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
            let signer = myapi_services::auth::TokenSigner::new(
                Some(&myapi_services::config::Secret::new("k".repeat(32))),
                &myapi_services::config::AuthSettings::default(),
            );
            proptest::prop_assert!(signer.verify(&token).is_err());
        }

        #[test]
        fn tampered_tokens_never_verify_as_someone_else(position in 0usize..400, replacement in "[A-Za-z0-9_.-]") {
            let signer = myapi_services::auth::TokenSigner::new(
                Some(&myapi_services::config::Secret::new("k".repeat(32))),
                &myapi_services::config::AuthSettings::default(),
            );
            let token = signer.issue(7, "Ada", "ada@example.com", 1).unwrap();
            let mut chars: Vec<char> = token.chars().collect();
            let position = position % chars.len();
            chars[position] = replacement.chars().next().unwrap();
            let tampered: String = chars.into_iter().collect();
            if let Ok(claims) = signer.verify(&tampered) {
                // Only an encoding-equivalent change can survive, and then nothing changed.
                proptest::prop_assert_eq!((claims.sub.as_str(), claims.email.as_str(), claims.ver), ("7", "ada@example.com", 1));
            }
        }
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        let mut q = QueryParams::parse("year=99999999999999999999999").unwrap();
        assert_eq!(q.required_int("year"), None);
        assert!(q.finish().is_err());
    }
}
