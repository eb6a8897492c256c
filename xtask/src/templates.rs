//! What `cargo xtask new-service` writes. Placeholders: `__NAME__` (plural, e.g.
//! `directors`), `__SINGULAR__` (`director`), `__TYPE__` (`Director`), `__ID__`
//! (`director_id`), `__SCOPE_MARKER__` (`DirectorsRead`, the marker type of the scope
//! `directors:read`), `__MIGRATION__` (the migration version).

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
    /// Served by the `__NAME__` service.
    __NAME__ (__ID__) {
        /// Generated.
        __ID__ -> Integer,
        name -> Text,
    }
}

";

/// The row struct, in `myapi-models/src/rows.rs`.
pub const ROW: &str = "\
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = crate::schema::__NAME__)]
pub struct __TYPE__Row {
    pub __ID__: i32,
    pub name: String,
}

";

/// The response shape, `myapi-schemas/src/__NAME__.rs`.
pub const SCHEMA: &str = "\
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One of `__NAME__`, as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct __TYPE__Schema {
    #[schema(example = 1, minimum = 1)]
    pub __ID__: i32,
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

/// Each method checks out its own pooled connection.
#[derive(Debug, Clone)]
pub struct __TYPE__DataManager {
    db: Database,
}

impl __TYPE__DataManager {
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

    pub fn find(&self, id: i32) -> Result<Option<__TYPE__Row>, ServiceError> {
        let mut conn = self.db.conn()?;
        Ok(__NAME__::table
            .find(id)
            .select(__TYPE__Row::as_select())
            .first(&mut conn)
            .optional()?)
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

use crate::ServiceError;
use crate::database::Database;
use crate::query::{Page, PageSizes};

/// `limit` when none is given, and the largest accepted.
pub const PAGE_SIZES: PageSizes = PageSizes {
    default: 100,
    max: 1000,
};

/// An id as a client sends it: any integer (one that no row has is simply not found).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct __TYPE__Id(pub i64);

#[derive(Debug, Clone)]
pub struct __TYPE__Service {
    data: __TYPE__DataManager,
}

impl __TYPE__Service {
    pub fn new(db: Database) -> Self {
        Self {
            data: __TYPE__DataManager::new(db),
        }
    }

    /// One page, ordered by id (blocking).
    pub fn list(&self, page: Page) -> Result<Vec<__TYPE__Schema>, ServiceError> {
        let rows = self.data.list(i64::from(page.limit), page.offset)?;
        Ok(rows.iter().map(to_schema).collect())
    }

    /// One by id (blocking).
    pub fn get(&self, __TYPE__Id(id): __TYPE__Id) -> Result<__TYPE__Schema, ServiceError> {
        let not_found = || ServiceError::NotFound(format!(\"__SINGULAR__ {id} not found\"));
        let id = i32::try_from(id).map_err(|_| not_found())?;
        let row = self.data.find(id)?.ok_or_else(not_found)?;
        Ok(to_schema(&row))
    }
}

fn to_schema(row: &__TYPE__Row) -> __TYPE__Schema {
    __TYPE__Schema {
        __ID__: row.__ID__,
        name: row.name.clone(),
    }
}
";

/// The field in `Services`.
pub const SERVICES_FIELD: &str = "    pub __NAME__: crate::__NAME__::__TYPE__Service,\n";

/// Its construction in `Services::build`.
pub const SERVICES_INIT: &str =
    "            __NAME__: crate::__NAME__::__TYPE__Service::new(database.clone()),\n";

/// The web scope, `myapi-web/src/routes/__NAME__.rs`: each handler is declared once, by
/// its actix attribute, which `#[utoipa::path]` above it reads.
pub const ROUTES: &str = "\
//! The `/__NAME__` routes, each requiring the `__NAME__:read` scope.

use actix_web::{HttpRequest, HttpResponse, get, web};
use myapi_schemas::{Problem, __TYPE__Schema};
use myapi_services::__NAME__::{PAGE_SIZES, __TYPE__Id};
use myapi_services::{ServiceError, Services};
use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::blocking::block;
use crate::error::ApiError;
use crate::extract::{Authorized, __SCOPE_MARKER__};
use crate::openapi::GuardedErrors;
use crate::query::{self, integer, query_pairs};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(
        scope(\"/__NAME__\")
            .service(list___NAME__)
            .service(get___SINGULAR__),
    );
}

/// One page of `__NAME__`, ordered by id.
#[utoipa::path(
    tag = \"__NAME__\",
    security((\"oauth2\" = [\"__NAME__:read\"])),
    params(
        (\"limit\" = Option<i64>, Query, description = \"Page size (default 100)\", minimum = 1, maximum = 1000),
        (\"offset\" = Option<i64>, Query, description = \"Rows to skip (default 0)\", minimum = 0, maximum = 1_000_000_000),
    ),
    responses(
        (status = 200, description = \"One page\", body = Vec<__TYPE__Schema>),
        (status = 422, description = \"A malformed or out-of-range parameter\", body = Problem, content_type = \"application/problem+json\"),
        GuardedErrors,
    ),
)]
#[get(\"/\")]
pub async fn list___NAME__(
    _user: Authorized<__SCOPE_MARKER__>,
    req: HttpRequest,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let page = query::page(&query_pairs(&req)?, PAGE_SIZES)?;
    let page = block(move || services.__NAME__.list(page)).await??;
    Ok(HttpResponse::Ok().json(page))
}

/// One by id.
#[utoipa::path(
    tag = \"__NAME__\",
    security((\"oauth2\" = [\"__NAME__:read\"])),
    params((\"__ID__\" = i64, Path, description = \"Id\", minimum = 1)),
    responses(
        (status = 200, description = \"Found\", body = __TYPE__Schema),
        (status = 404, description = \"No such id\", body = Problem, content_type = \"application/problem+json\"),
        (status = 422, description = \"Non-integer `__ID__`\", body = Problem, content_type = \"application/problem+json\"),
        GuardedErrors,
    ),
)]
#[get(\"/{__ID__}\")]
pub async fn get___SINGULAR__(
    _user: Authorized<__SCOPE_MARKER__>,
    id: web::Path<String>,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let id = integer(\"__ID__\", &id, i64::MIN..=i64::MAX).map_err(ServiceError::from)?;
    let found = block(move || services.__NAME__.get(__TYPE__Id(id))).await??;
    Ok(HttpResponse::Ok().json(found))
}
";

/// HTTP tests, `tests/http/__NAME__.rs`, on both backends.
pub const HTTP_TESTS: &str = "\
use crate::support::TestDb;
use crate::{both_backends, json_body, spawn_app};

async fn __NAME___are_served_behind_auth(db: TestDb) {
    let app = spawn_app(db).await;
    for path in [\"/__NAME__/\", \"/__NAME__/1\"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 401, \"{path}\");
    }
    // A reader's token with nothing asked carries `__NAME__:read`: the scaffold grants readers it.
    let token = app.login_new_user(\"__NAME__@example.com\").await;
    let page = json_body(app.get_authed(\"/__NAME__/\", &token).await, 200, \"application/json\").await;
    assert_eq!(page, serde_json::json!([]));
    for (path, status) in [
        (\"/__NAME__/1\", 404),
        (\"/__NAME__/abc\", 422),
        (\"/__NAME__/?limit=0\", 422),
    ] {
        let response = app.get_authed(path, &token).await;
        json_body(response, status, \"application/problem+json\").await;
    }

    // A token narrowed to another scope is refused (RFC 6750 §3.1).
    let response = app
        .post_token(&[
            (\"grant_type\", \"password\"),
            (\"username\", \"__NAME__@example.com\"),
            (\"password\", \"correct-horse-battery\"),
            (\"scope\", \"movies:read\"),
        ])
        .await;
    let body = json_body(response, 200, \"application/json\").await;
    let narrowed = body[\"access_token\"].as_str().unwrap();
    for path in [\"/__NAME__/\", \"/__NAME__/1\"] {
        let response = app.get_authed(path, narrowed).await;
        assert_eq!(
            response.headers()[\"www-authenticate\"],
            r#\"Bearer error=\"insufficient_scope\", scope=\"__NAME__:read\"\"#,
            \"{path}\"
        );
        json_body(response, 403, \"application/problem+json\").await;
    }
}
both_backends!(__NAME___are_served_behind_auth);
";
