//! The `audit` scope: `GET /audit/`, the audit trail (admins: `audit:read`).

use actix_web::{HttpRequest, HttpResponse, get, web};
use myapi_schemas::{AuditEvent, AuditEventSchema, Problem};
use myapi_services::Services;
use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::blocking::block;
use crate::error::ApiError;
use crate::extract::{AuditRead, Authorized, next_page_link};
use crate::openapi::GuardedErrors;
use crate::query::{self, query_pairs};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(scope("/audit").service(list_events));
}

/// Security-relevant events, oldest first, one page at a time: logins (succeeded, failed,
/// throttled), refresh-token reuse and revocations, and the user administration of
/// `myapi-cli`. When more follow, a `Link: <…>; rel="next"` header gives the next page's
/// URL, which continues with the cursor `after` (the last `id` of this page).
///
/// A failed login to an account that does not exist names the username by a digest, never
/// the text. Throttled answers are counted per client network and minute (`count`).
#[utoipa::path(
    tag = "audit",
    security(("oauth2" = ["audit:read"])),
    params(
        ("after" = Option<i64>, Query, description = "Cursor: the page holds events with ids above this one, as the `Link` header gives it (default 0: from the first)", minimum = 0),
        ("user" = Option<i64>, Query, description = "Only events about this user id (kept after the user is deleted)", minimum = 1, maximum = 2_147_483_647),
        ("event" = Option<AuditEvent>, Query, description = "Only events of this kind"),
        ("limit" = Option<i64>, Query, description = "Page size (default `audit.default_page_size`, 100)", minimum = 1, maximum = 1000),
    ),
    responses(
        (status = 200, description = "One page of events; `[]` and no `Link` past the last one", body = Vec<AuditEventSchema>,
            headers(("Link" = String, description = "`</audit/?user=U&event=E&limit=L&after=ID>; rel=\"next\"` when another page follows"))),
        (status = 403, description = "The token lacks `audit:read`", body = Problem,
            content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer error=\"insufficient_scope\", scope=\"audit:read\"`"))),
        (status = 422, description = "A parameter is malformed or out of range, or `event` names no event; each is named in `errors`", body = Problem,
            content_type = "application/problem+json"),
        GuardedErrors,
    ),
)]
#[get("/")]
pub async fn list_events(
    _user: Authorized<AuditRead>,
    req: HttpRequest,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let query = query::audit(&query_pairs(&req)?, services.audit.settings())?;
    let page = {
        let query = query.clone();
        block(move || services.audit.page(&query)).await??
    };
    let mut response = HttpResponse::Ok();
    if let Some(after) = page.next_after {
        let mut parameters: Vec<(&str, String)> = Vec::new();
        if let Some(user) = query.user {
            parameters.push(("user", user.to_string()));
        }
        if let Some(event) = query.event {
            parameters.push(("event", event.as_str().to_owned()));
        }
        parameters.push(("limit", query.limit.to_string()));
        parameters.push(("after", after.to_string()));
        response.insert_header(next_page_link("/audit/", &parameters));
    }
    Ok(response.json(page.events))
}
