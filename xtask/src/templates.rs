//! What `cargo xtask new-service` writes, from the files in `xtask/templates/`, each the
//! text a new service gets with its names filled in ([`crate::names::Names::fill`]):
//! `__NAME__` (plural, e.g. `directors`), `__SINGULAR__` (`director`), `__TYPE__`
//! (`Director`), `__ID__` (`director_id`), `__SCOPE_MARKER__` (`DirectorsRead`, the marker
//! type of the scope `directors:read`), `__MIGRATION__` (the migration version).

/// PostgreSQL migration: the table lives in schema `myapi` like the others.
pub const PG_UP: &str = include_str!("../templates/migrations/postgres/up.sql");
pub const PG_DOWN: &str = include_str!("../templates/migrations/postgres/down.sql");
/// SQLite migration, the same table.
pub const SQLITE_UP: &str = include_str!("../templates/migrations/sqlite/up.sql");
pub const SQLITE_DOWN: &str = include_str!("../templates/migrations/sqlite/down.sql");

/// The diesel table, inserted in `myapi-models/src/schema.rs`.
pub const TABLE: &str = include_str!("../templates/models/table.rs");
/// The row struct, inserted in `myapi-models/src/rows.rs`.
pub const ROW: &str = include_str!("../templates/models/row.rs");

/// The response shape, `myapi-schemas/src/__NAME__.rs`.
pub const SCHEMA: &str = include_str!("../templates/schemas/service.rs");

/// The data manager, `myapi-services/src/__NAME__/data.rs`.
pub const DATA_MANAGER: &str = include_str!("../templates/services/data.rs");
/// The service, `myapi-services/src/__NAME__/mod.rs`.
pub const SERVICE: &str = include_str!("../templates/services/mod.rs");
/// Its field in `Services` (`myapi-services/src/app.rs`).
pub const SERVICES_FIELD: &str = include_str!("../templates/services/app_field.rs");
/// Its construction in `Services::build`.
pub const SERVICES_INIT: &str = include_str!("../templates/services/app_init.rs");

/// The web scope, `myapi-web/src/routes/__NAME__.rs`: each handler is declared once, by
/// its actix attribute, which `#[utoipa::path]` above it reads.
pub const ROUTES: &str = include_str!("../templates/web/routes.rs");

/// The HTTP tests, `tests/http/__NAME__.rs`, on both backends.
pub const HTTP_TESTS: &str = include_str!("../templates/tests/http.rs");
