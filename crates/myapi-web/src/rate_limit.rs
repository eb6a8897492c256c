//! Request limits at the edge: which class a route is in ([`route_class`]), who the caller
//! is, and the RateLimit fields of draft-ietf-httpapi-ratelimit-headers-10 on every limited
//! answer ([`limit_requests`]). The buckets are the services' [`RateLimiter`].

use std::fmt::Write;

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, ResponseError, web};
use myapi_services::Services;
use myapi_services::limits::{
    Admission, BucketKey, Caller, Class, Decision, Lease, Policy, RateLimiter,
};
use utoipa::PartialSchema;
use utoipa::openapi::header::Header;
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Response};

use crate::blocking::block;
use crate::error::{ApiError, PROBLEM_JSON};
use crate::extract::{Authenticated, bearer_token, client_ip};
use crate::metrics;

/// Paths no limit applies to: probes, the API's description, and well-known documents.
/// `/metrics` has a listener of its own.
const EXEMPT: [&str; 4] = ["/health", "/ready", "/openapi.json", "/docs"];
/// Paths under which nothing is limited.
const EXEMPT_PREFIXES: [&str; 2] = ["/docs/", "/.well-known/"];
/// Paths whose `POST` the login budget limits instead (`auth.*_failure_*`): it counts
/// failures per client network and per account, which a request limit would only blur.
/// Sign-ups and reset requests spend buckets of their own (`auth.signup_*`,
/// `auth.reset_*`), per client network and per address. Their other methods are reads or
/// writes like any other.
const LOGIN: [&str; 4] = ["/token", "/revoke", "/users/", "/password-reset"];

/// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers-10 §4, §5).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The class a request spends, or `None` when no request limit applies (exempt paths,
/// and the login routes' `POST`). Every other path is limited, routed or not: a loop of
/// 404s costs too. `path` is the path as the router matches it (percent-decoded).
pub fn route_class(method: &Method, path: &str) -> Option<Class> {
    let exempt = EXEMPT.contains(&path)
        || (*method == Method::POST && LOGIN.contains(&path))
        || EXEMPT_PREFIXES
            .iter()
            .any(|prefix| path.starts_with(prefix));
    if exempt {
        return None;
    }
    match *method {
        // Introspection writes nothing: a resource server asking is reading.
        Method::POST if path == "/introspect" => Some(Class::Read),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE => Some(Class::Write),
        _ => Some(Class::Read),
    }
}

/// Limits every request [`route_class`] puts in a class: 429 with `Retry-After` when the
/// caller's bucket is empty, and the RateLimit fields on every answer, 2xx included.
///
/// The caller is the user of a valid bearer token, else the client network (through trusted
/// proxies, as the login budget counts it). How the token fared is left in the request for
/// the extractors ([`Authenticated`]), so a request is authenticated once.
pub async fn limit_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody, BoxBody>>, actix_web::Error> {
    let services = req
        .app_data::<web::Data<Services>>()
        .filter(|services| services.limits.enabled())
        .cloned();
    let class = route_class(req.method(), req.match_info().as_str());
    // Registered by the server beside `Services` (built once at start-up).
    let policies = req.app_data::<PolicyFields>().cloned();
    let (Some(services), Some(class), Some(policies)) = (services, class, policies) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let outcome = match bearer_token(req.request()) {
        Ok(token) => Some(services.auth.authenticate(&token).await),
        Err(_) => None,
    };
    let caller = match &outcome {
        Some(Ok(user)) => Caller::User(user.user.user_id),
        _ => Caller::Network(services.auth.client_network(client_ip(req.request()))),
    };
    if let Some(outcome) = outcome {
        req.extensions_mut().insert(Authenticated(outcome));
    }
    let decision = decide(&services.limits, BucketKey { caller, class }).await;
    if let Some(secs) = decision.retry_after_secs {
        if metrics::recording() {
            ::metrics::counter!(metrics::RATE_LIMITED, "class" => class.as_str()).increment(1);
        }
        let mut response = ApiError::RateLimited {
            class: class.as_str(),
            retry_after_secs: whole_secs(secs).max(1),
        }
        .error_response();
        set_fields(response.headers_mut(), &policies, &decision);
        return Ok(req.into_response(response).map_into_right_body());
    }
    let mut response = next.call(req).await?;
    set_fields(response.headers_mut(), &policies, &decision);
    Ok(response.map_into_left_body())
}

/// Spends one request of `key`'s bucket: from memory when the instance can (the limiter's
/// own thread takes the next lease ahead of need), else after a lease on a blocking thread.
async fn decide(limiter: &RateLimiter, key: BucketKey) -> Decision {
    match limiter.admit(key) {
        Admission::Decided(decision) => decision,
        // Boxed: the common path above then carries no blocking call's state, and every
        // request's future stays small.
        Admission::NeedsLease(lease) => Box::pin(take_lease(limiter.clone(), key, lease)).await,
    }
}

/// A lease taken on a blocking thread, for a request [`RateLimiter::admit`] could not
/// decide from memory.
async fn take_lease(limiter: RateLimiter, key: BucketKey, lease: Lease) -> Decision {
    let fallback = limiter.clone();
    match block(move || limiter.lease(lease)).await {
        Ok(decision) => decision,
        // The blocking pool is gone (the server is stopping): count from memory.
        Err(_) => fallback.lease_from_memory(key),
    }
}

/// The `RateLimit-Policy` value of each class, rendered once at start-up (an app datum
/// beside `Services`): it changes only with the settings, and every limited answer
/// carries it.
#[derive(Debug, Clone)]
pub struct PolicyFields {
    read: Option<HeaderValue>,
    write: Option<HeaderValue>,
}

impl PolicyFields {
    pub fn new(limiter: &RateLimiter) -> Self {
        Self {
            read: policy_field(Class::Read, limiter.policy(Class::Read)),
            write: policy_field(Class::Write, limiter.policy(Class::Write)),
        }
    }

    fn of(&self, class: Class) -> Option<&HeaderValue> {
        match class {
            Class::Read => self.read.as_ref(),
            Class::Write => self.write.as_ref(),
        }
    }
}

/// `"read";q=400;w=2`: the quota and the seconds it takes to refill (at least one).
fn policy_field(class: Class, policy: Policy) -> Option<HeaderValue> {
    let window = whole_secs(policy.window_secs()).max(1);
    let value = format!("\"{}\";q={};w={window}", class.as_str(), policy.burst);
    HeaderValue::from_str(&value).ok()
}

/// `RateLimit-Policy: "read";q=400;w=2` and `RateLimit: "read";r=399;t=1`: the quota and
/// the window it refills in, and what is left and when it is whole again, in seconds
/// (rounded up: a client that waits `t` finds it whole).
fn set_fields(headers: &mut HeaderMap, policies: &PolicyFields, decision: &Decision) {
    let mut value = web::BytesMut::with_capacity(32);
    // Writing to a `BytesMut` does not fail; the value is then shared, not copied.
    let _ = write!(
        value,
        "\"{}\";r={};t={}",
        decision.class.as_str(),
        decision.remaining,
        whole_secs(decision.reset_secs)
    );
    if let Some(policy) = policies.of(decision.class) {
        headers.insert(RATELIMIT_POLICY, policy.clone());
    }
    if let Ok(value) = HeaderValue::from_maybe_shared(value.freeze()) {
        headers.insert(RATELIMIT, value);
    }
}

/// Documents the limits in `api`: on each operation [`route_class`] limits, the RateLimit
/// fields on every answer, and a 429 (problem+json, with `Retry-After`).
pub fn document(api: &mut OpenApi) {
    let field = |description: &str| {
        Header::builder()
            .schema(String::schema())
            .description(Some(description))
            .build()
    };
    let fields = [
        (
            "RateLimit-Policy",
            field(
                "The caller's quota for the route's class: `\"<class>\";q=<requests>;w=<seconds \
                 to refill>` (draft-ietf-httpapi-ratelimit-headers-10)",
            ),
        ),
        (
            "RateLimit",
            field(
                "What is left of it: `\"<class>\";r=<requests>;t=<seconds until whole>` \
                 (draft-ietf-httpapi-ratelimit-headers-10)",
            ),
        ),
    ];
    let refused = Response::builder()
        .description("Too many requests of this class from this caller (README: Rate limits)")
        .content(
            PROBLEM_JSON,
            Content::new(Some(Ref::from_schema_name("Problem"))),
        )
        .header(
            "Retry-After",
            Header::builder()
                .schema(u64::schema())
                .description(Some("Seconds until the request would be admitted"))
                .build(),
        )
        .build();
    for (path, item) in &mut api.paths.paths {
        let operations = [
            (Method::GET, &mut item.get),
            (Method::PUT, &mut item.put),
            (Method::POST, &mut item.post),
            (Method::DELETE, &mut item.delete),
            (Method::OPTIONS, &mut item.options),
            (Method::HEAD, &mut item.head),
            (Method::PATCH, &mut item.patch),
            (Method::TRACE, &mut item.trace),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else { continue };
            if route_class(&method, path).is_none() {
                continue;
            }
            let responses = &mut operation.responses.responses;
            responses.insert("429".into(), RefOr::T(refused.clone()));
            for response in responses.values_mut() {
                if let RefOr::T(response) = response {
                    for (name, header) in &fields {
                        response.headers.insert((*name).into(), header.clone());
                    }
                }
            }
        }
    }
}

/// Seconds rounded up to a whole number, as the fields and `Retry-After` carry them.
fn whole_secs(secs: f64) -> u64 {
    if secs.is_finite() && secs > 0.0 {
        secs.ceil().min(u64::MAX as f64) as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_method_and_path() {
        let class = |method: Method, path: &str| route_class(&method, path);
        assert_eq!(class(Method::GET, "/movies/"), Some(Class::Read));
        assert_eq!(class(Method::HEAD, "/movies/7"), Some(Class::Read));
        assert_eq!(class(Method::GET, "/no/such/path"), Some(Class::Read));
        assert_eq!(class(Method::POST, "/movies/"), Some(Class::Write));
        assert_eq!(class(Method::DELETE, "/movies/7"), Some(Class::Write));
        assert_eq!(class(Method::POST, "/introspect"), Some(Class::Read));
        for exempt in [
            "/health",
            "/ready",
            "/openapi.json",
            "/docs",
            "/docs/",
            "/docs/index.html",
            "/.well-known/jwks.json",
        ] {
            assert_eq!(class(Method::GET, exempt), None, "{exempt}");
            assert_eq!(class(Method::POST, exempt), None, "{exempt}");
        }
        for login in ["/token", "/revoke"] {
            assert_eq!(class(Method::POST, login), None, "{login}");
            assert_eq!(class(Method::GET, login), Some(Class::Read), "{login}");
        }
        assert_eq!(class(Method::GET, "/healthz"), Some(Class::Read));
        assert_eq!(class(Method::GET, "/docsx"), Some(Class::Read));
    }

    #[test]
    fn fields_round_up_and_name_the_policy() {
        let decision = Decision {
            class: Class::Read,
            policy: Policy {
                per_second: 200,
                burst: 400,
            },
            remaining: 399,
            reset_secs: 0.005,
            retry_after_secs: None,
        };
        let mut headers = HeaderMap::new();
        let policies = PolicyFields {
            read: policy_field(Class::Read, decision.policy),
            write: policy_field(Class::Write, decision.policy),
        };
        set_fields(&mut headers, &policies, &decision);
        assert_eq!(headers.get(RATELIMIT_POLICY).unwrap(), "\"read\";q=400;w=2");
        assert_eq!(headers.get(RATELIMIT).unwrap(), "\"read\";r=399;t=1");
    }
}
