//! Refresh-token families at the service tier, on both backends: what a refresh grants once
//! the family's stored scopes have left the list, the absolute session lifetime, and the
//! upgrade that binds existing families to their user's security stamp.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::net::{IpAddr, Ipv4Addr};

use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use myapi_models::diesel::connection::SimpleConnection;
use myapi_models::diesel::dsl::sql;
use myapi_models::diesel::prelude::*;
use myapi_models::diesel::sql_types::{BigInt, Text};
use myapi_models::migrations::{POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};
use myapi_models::{ConnectionOptions, DatabaseUrl, DbConnection};
use myapi_services::auth::{Credentials, LoginError, Role};
use myapi_services::{Services, Settings};
use support::{Backend, TestDb};

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const EMAIL: &str = "family@example.com";
const PASSWORD: &str = "correct-horse-battery";

fn connect(db: &TestDb) -> DbConnection {
    let url = DatabaseUrl::parse(&db.dsn).unwrap();
    myapi_models::connection::establish(&url, &ConnectionOptions::default()).unwrap()
}

fn execute(db: &TestDb, statements: &str) {
    connect(db).batch_execute(statements).unwrap();
}

fn query_i64(db: &TestDb, query: &str) -> i64 {
    myapi_models::diesel::select(sql::<BigInt>(query))
        .get_result(&mut connect(db))
        .unwrap()
}

/// The services on a fresh database, with an editor who logged in for `scope`; returns
/// them and the login's refresh token.
async fn logged_in(
    db: &TestDb,
    scope: &str,
    tweak: impl FnOnce(&mut Settings),
) -> (Services, String) {
    let mut settings = db.settings();
    tweak(&mut settings);
    let services = tokio::task::spawn_blocking(move || {
        let services = Services::build(&settings, true).unwrap();
        services
            .auth
            .create_user("Family", EMAIL, PASSWORD.into(), Role::Editor)
            .unwrap();
        services
    })
    .await
    .unwrap();
    let credentials = Credentials {
        username: EMAIL.into(),
        password: PASSWORD.into(),
        scope: Some(scope.into()),
        client_id: None,
    };
    let tokens = services.auth.login(credentials, CLIENT).await.unwrap();
    (services, tokens.refresh_token.unwrap())
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread")]
            async fn sqlite() {
                if let Some(db) = super::TestDb::new(super::Backend::Sqlite) {
                    super::$name(db).await;
                }
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() {
                if let Some(db) = super::TestDb::new(super::Backend::Postgres) {
                    super::$name(db).await;
                }
            }
        }
    )*};
}

both_backends!(
    a_family_whose_scopes_left_the_list_refreshes_to_nothing,
    no_session_outlives_its_maximum,
    the_upgrade_binds_families_to_their_users_stamp,
);

/// A family that stored only scopes which have since been removed is not taken for one
/// from before scopes were stored (which gets the role's): it is refused, and the refusal
/// leaves the token current.
async fn a_family_whose_scopes_left_the_list_refreshes_to_nothing(db: TestDb) {
    // No grace: a token used up by the refusal would answer the retry as reuse.
    let (services, token) = logged_in(&db, "movies:read", |settings| {
        settings.auth.refresh_reuse_grace_secs = 0;
    })
    .await;
    execute(&db, "UPDATE refresh_families SET scope = 'retired:read'");
    let refused = services
        .auth
        .refresh(token.clone(), None, None, CLIENT)
        .await;
    assert!(
        matches!(refused, Err(LoginError::InvalidScope(_))),
        "{refused:?}"
    );
    execute(&db, "UPDATE refresh_families SET scope = ''");
    let legacy = services
        .auth
        .refresh(token, None, None, CLIENT)
        .await
        .unwrap();
    assert_eq!(
        legacy.scope,
        Some(Role::Editor.scopes().to_string()),
        "a family from before scopes gets what the role allows"
    );
}

/// `auth.session_max_days` caps each refresh token's expiry at the family's start plus
/// the maximum, and refuses a family past it.
async fn no_session_outlives_its_maximum(db: TestDb) {
    let (services, token) = logged_in(&db, "movies:read", |settings| {
        settings.auth.refresh_token_lifetime_days = 7.try_into().unwrap();
        settings.auth.session_max_days = 10.try_into().unwrap();
    })
    .await;
    // Started 9 days ago: the next token lives 1 day, not 7.
    execute(
        &db,
        "UPDATE refresh_families SET created_at = created_at - 9 * 86400",
    );
    let next = services
        .auth
        .refresh(token, None, None, CLIENT)
        .await
        .unwrap();
    let lifetime = query_i64(
        &db,
        "(SELECT t.expires_at - f.created_at FROM refresh_tokens t \
         JOIN refresh_families f ON f.family_id = t.family_id WHERE t.used_at IS NULL)",
    );
    assert_eq!(lifetime, 10 * 86400, "capped at the session's maximum");
    execute(
        &db,
        "UPDATE refresh_families SET created_at = created_at - 86400",
    );
    let refused = services
        .auth
        .refresh(next.refresh_token.unwrap(), None, None, CLIENT)
        .await;
    assert!(
        matches!(refused, Err(LoginError::InvalidRefreshToken)),
        "{refused:?}"
    );
}

/// Families from before the `session_integrity` migration get their user's current stamp,
/// so the upgrade logs nobody out (but those past `auth.session_max_days`).
async fn the_upgrade_binds_families_to_their_users_stamp(db: TestDb) {
    let mut conn = connect(&db);
    match &mut conn {
        DbConnection::Pg(pg) => {
            pg.batch_execute("CREATE SCHEMA IF NOT EXISTS myapi")
                .unwrap();
            run_before_integrity(pg, POSTGRES_MIGRATIONS);
        }
        DbConnection::Sqlite(sqlite) => run_before_integrity(sqlite, SQLITE_MIGRATIONS),
    }
    conn.batch_execute(
        "INSERT INTO users (name, email, hashed_password, security_stamp, role) \
         VALUES ('Old', 'old@example.com', 'x', 'stamp-of-old', 'reader'); \
         INSERT INTO refresh_families (family_id, user_id, scope, created_at) \
         SELECT 'family-of-old', user_id, '', 0 FROM users;",
    )
    .unwrap();
    let settings = db.settings();
    tokio::task::spawn_blocking(move || Services::build(&settings, true).unwrap())
        .await
        .unwrap();
    let stamp: String = myapi_models::diesel::select(sql::<Text>(
        "(SELECT security_stamp FROM refresh_families WHERE family_id = 'family-of-old')",
    ))
    .get_result(&mut connect(&db))
    .unwrap();
    assert_eq!(stamp, "stamp-of-old");
}

/// Applies the migrations that come before `session_integrity`.
fn run_before_integrity<C>(conn: &mut C, source: EmbeddedMigrations)
where
    C: MigrationHarness<C::Backend> + myapi_models::diesel::Connection,
{
    for migration in conn.pending_migrations(source).unwrap() {
        if migration.name().to_string().contains("session_integrity") {
            return;
        }
        conn.run_migration(&*migration).unwrap();
    }
    panic!("no session_integrity migration");
}
