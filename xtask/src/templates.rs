//! What `cargo xtask new-service` writes. Placeholders: `__NAME__` (plural, e.g.
//! `directors`), `__SINGULAR__` (`director`), `__TYPE__` (`Director`), `__ID__`
//! (`director_id`), `__MIGRATION__` (the migration version).

/// PostgreSQL migration: the table lives in schema `myapi` like the others.
pub const PG_UP: &str = "\
CREATE TABLE myapi.__NAME__ (
    __ID__     SERIAL PRIMARY KEY,
    name       TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
";

/// PostgreSQL rollback.
pub const PG_DOWN: &str = "DROP TABLE IF EXISTS myapi.__NAME__;\n";

/// SQLite migration, the same table.
pub const SQLITE_UP: &str = "\
CREATE TABLE __NAME__ (
    __ID__     INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
";

/// SQLite rollback.
pub const SQLITE_DOWN: &str = "DROP TABLE IF EXISTS __NAME__;\n";

/// The diesel table, in `myapi-models/src/schema.rs`.
pub const TABLE: &str = "\
diesel::table! {
    /// Rows of the `__NAME__` service.
    __NAME__ (__ID__) {
        /// Generated id.
        __ID__ -> Integer,
        /// Display name.
        name -> Text,
    }
}

";

/// The row struct, in `myapi-models/src/rows.rs`.
pub const ROW: &str = "\
/// A `__NAME__` row.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = crate::schema::__NAME__)]
pub struct __TYPE__Row {
    /// Generated id.
    pub __ID__: i32,
    /// Display name.
    pub name: String,
}

";

/// The response shape, `myapi-schemas/src/__NAME__.rs`.
pub const SCHEMA: &str = "\
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A __SINGULAR__ as the `__NAME__` service returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct __TYPE__Schema {
    /// Id.
    #[schema(example = 1)]
    pub __ID__: i32,
    /// Display name.
    pub name: String,
}
";

/// The data manager, `myapi-services/src/__NAME__/data.rs`.
pub const DATA_MANAGER: &str = "\
//! `__TYPE__DataManager`: every query the `__NAME__` service makes, and nothing else.

use diesel::prelude::*;
use myapi_models::rows::__TYPE__Row;
use myapi_models::schema::__NAME__;

use crate::ServiceError;
use crate::database::Database;

/// Queries on `__NAME__`. Each method checks out its own pooled connection.
#[derive(Debug, Clone)]
pub struct __TYPE__DataManager {
    db: Database,
}

impl __TYPE__DataManager {
    /// A data manager over `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// One page of rows, by id.
    pub fn list(&self, limit: i64, offset: i64) -> Result<Vec<__TYPE__Row>, ServiceError> {
        let mut conn = self.db.conn()?;
        Ok(__NAME__::table
            .order(__NAME__::__ID__)
            .limit(limit)
            .offset(offset)
            .select(__TYPE__Row::as_select())
            .load(&mut conn)?)
    }

    /// The row with this id, if any.
    pub fn find(&self, id: i32) -> Result<Option<__TYPE__Row>, ServiceError> {
        let mut conn = self.db.conn()?;
        Ok(__NAME__::table.find(id).select(__TYPE__Row::as_select()).first(&mut conn).optional()?)
    }
}
";

/// The service, `myapi-services/src/__NAME__/mod.rs`.
pub const SERVICE: &str = "\
//! The `__NAME__` service: listing and look-up by id.
//!
//! Blocking: every method that touches the database must run off the async workers.

mod data;

pub use data::__TYPE__DataManager;

use myapi_models::rows::__TYPE__Row;
use myapi_schemas::__TYPE__Schema;

use crate::database::Database;
use crate::{InvalidField, ServiceError};

/// Page size when `limit` is not given.
pub const DEFAULT_PAGE: i64 = 100;
/// Largest accepted `limit`.
pub const MAX_PAGE: i64 = 1000;

/// The `__NAME__` service.
#[derive(Debug, Clone)]
pub struct __TYPE__Service {
    data: __TYPE__DataManager,
}

impl __TYPE__Service {
    /// The service over `db`.
    pub fn new(db: Database) -> Self {
        Self { data: __TYPE__DataManager::new(db) }
    }

    /// One page, ordered by id (blocking).
    pub fn list(&self, limit: Option<i64>, offset: Option<i64>) -> Result<Vec<__TYPE__Schema>, ServiceError> {
        let (limit, offset) = page(limit, offset)?;
        Ok(self.data.list(limit, offset)?.iter().map(to_schema).collect())
    }

    /// One by id (blocking).
    pub fn get(&self, id: i64) -> Result<__TYPE__Schema, ServiceError> {
        let not_found = || ServiceError::NotFound(format!(\"__SINGULAR__ {id} not found\"));
        let id = i32::try_from(id).map_err(|_| not_found())?;
        self.data.find(id)?.as_ref().map(to_schema).ok_or_else(not_found)
    }
}

/// Checks paging parameters, naming each bad one.
fn page(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), ServiceError> {
    let (limit, offset) = (limit.unwrap_or(DEFAULT_PAGE), offset.unwrap_or(0));
    let mut errors = Vec::new();
    if !(1..=MAX_PAGE).contains(&limit) {
        errors.push(InvalidField::new(\"limit\", format!(\"must be between 1 and {MAX_PAGE}\")));
    }
    if offset < 0 {
        errors.push(InvalidField::new(\"offset\", \"must not be negative\"));
    }
    if errors.is_empty() { Ok((limit, offset)) } else { Err(ServiceError::Invalid(errors)) }
}

fn to_schema(row: &__TYPE__Row) -> __TYPE__Schema {
    __TYPE__Schema { __ID__: row.__ID__, name: row.name.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_is_checked() {
        assert_eq!(page(None, None).unwrap(), (DEFAULT_PAGE, 0));
        assert!(page(Some(0), None).is_err());
        assert!(page(Some(MAX_PAGE + 1), None).is_err());
        assert!(page(None, Some(-1)).is_err());
    }
}
";

/// The field in `Services`.
pub const SERVICES_FIELD: &str = "    /// The `__NAME__` service.
    pub __NAME__: __NAME__::__TYPE__Service,
";

/// Its construction in `Services::build`.
pub const SERVICES_INIT: &str =
    "            __NAME__: __NAME__::__TYPE__Service::new(database.clone()),
";

/// The web scope, `myapi-web/src/routes/__NAME__.rs`.
pub const ROUTES: &str = "\
//! The `__NAME__` scope, all behind the bearer guard.

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};
use myapi_schemas::{Problem, __TYPE__Schema};
use myapi_services::{ServiceError, Services};

use crate::error::ApiError;
use crate::extract::{BearerUser, QueryParams};
use crate::openapi::GuardedErrors;
use crate::routes::ApiScope;

/// Mounts `/__NAME__/` and `/__NAME__/{__ID__}`.
pub fn configure(scopes: &mut Vec<ApiScope>) {
    scopes.push(
        ApiScope::new(\"/__NAME__\")
            .route(Method::GET, \"/\", list___NAME__)
            .route(Method::GET, \"/{__ID__}\", get___SINGULAR__),
    );
}

/// One page of __NAME__, ordered by id.
#[utoipa::path(
    get,
    path = \"/__NAME__/\",
    tag = \"__NAME__\",
    security((\"oauth2\" = [])),
    params(
        (\"limit\" = Option<i64>, Query, description = \"Page size (default 100)\", minimum = 1, maximum = 1000),
        (\"offset\" = Option<i64>, Query, description = \"Rows to skip (default 0)\", minimum = 0),
    ),
    responses(
        (status = 200, description = \"One page\", body = Vec<__TYPE__Schema>),
        (status = 422, description = \"Bad paging parameter\", body = Problem, content_type = \"application/problem+json\"),
        GuardedErrors,
    ),
)]
pub async fn list___NAME__(
    _user: BearerUser,
    req: HttpRequest,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let mut params = QueryParams::parse(req.query_string())?;
    let (limit, offset) = (params.optional_int(\"limit\"), params.optional_int(\"offset\"));
    params.finish()?;
    let page = web::block(move || services.__NAME__.list(limit, offset)).await??;
    Ok(HttpResponse::Ok().json(page))
}

/// One __SINGULAR__ by id.
#[utoipa::path(
    get,
    path = \"/__NAME__/{__ID__}\",
    tag = \"__NAME__\",
    security((\"oauth2\" = [])),
    params((\"__ID__\" = i64, Path, description = \"Id\", minimum = 1)),
    responses(
        (status = 200, description = \"The __SINGULAR__\", body = __TYPE__Schema),
        (status = 404, description = \"No such __SINGULAR__\", body = Problem, content_type = \"application/problem+json\"),
        (status = 422, description = \"Non-integer id\", body = Problem, content_type = \"application/problem+json\"),
        GuardedErrors,
    ),
)]
pub async fn get___SINGULAR__(
    _user: BearerUser,
    id: web::Path<String>,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let id = id.trim().parse::<i64>().map_err(|_| ServiceError::invalid(\"__ID__\", \"must be an integer\"))?;
    let found = web::block(move || services.__NAME__.get(id)).await??;
    Ok(HttpResponse::Ok().json(found))
}
";

/// The handlers' entries in `ApiDoc`'s `paths(...)`.
pub const OPENAPI_PATHS: &str = "        routes::__NAME__::list___NAME__,
        routes::__NAME__::get___SINGULAR__,
";

/// HTTP tests, `tests/http/__NAME__.rs`, on both backends.
pub const HTTP_TESTS: &str = "\
use crate::support::TestDb;
use crate::{both_backends, json_body, spawn_app};

async fn __NAME___are_served_behind_auth(db: TestDb) {
    let app = spawn_app(db).await;
    for path in [\"/__NAME__/\", \"/__NAME__/1\"] {
        assert_eq!(app.client.get(app.url(path)).send().await.unwrap().status(), 401, \"{path}\");
    }
    let token = app.login_new_user(\"__NAME__@example.com\").await;
    let page = json_body(app.get_authed(\"/__NAME__/\", &token).await, 200, \"application/json\").await;
    assert_eq!(page, serde_json::json!([]));
    json_body(app.get_authed(\"/__NAME__/1\", &token).await, 404, \"application/problem+json\").await;
    json_body(app.get_authed(\"/__NAME__/abc\", &token).await, 422, \"application/problem+json\").await;
    json_body(app.get_authed(\"/__NAME__/?limit=0\", &token).await, 422, \"application/problem+json\").await;
}
both_backends!(__NAME___are_served_behind_auth);
";
