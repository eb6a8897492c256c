//! `/movies/new` gets a plan that fits its values on the 100th execution on a connection as
//! much as on the first (issue #13). PostgreSQL only; skipped without it outside CI.
//!
//! On one pooled connection (a pool of one, set up as the app sets up its connections),
//! each point of the grid year × rating, without a cursor and with one halfway through the
//! table, runs 99 times through the service, and then the plan of its 100th execution must
//! have the shape PostgreSQL picks for the same SQL with the values written in. A prepared
//! statement's generic plan fails this: it walks the whole primary key, filtering, for
//! filters the `(released, rating)` or `(rating, released)` index answers at once. Plans, not times, so a busy
//! machine cannot make it flaky.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../tests/support/mod.rs"]
mod support;

use diesel::prelude::*;
use diesel::{Connection, PgConnection};
use myapi_services::database::Database;
use myapi_services::movies::{MovieService, NewMoviesQuery};
use support::{Backend, TestDb};

/// Rows in the table: enough that reading all of them costs far more than an index range.
const MOVIES: i32 = 100_000;
const YEARS: [i32; 6] = [0, 1900, 1990, 2020, 2024, 2025];
const RATINGS: [f64; 6] = [0.0, 5.0, 9.0, 9.5, 9.9, 10.0];

/// The plan's nodes, without costs: `Limit / Sort / Index Only Scan using … on movies`.
fn shape(plan: &str) -> Vec<String> {
    plan.lines()
        .filter_map(|line| line.split_once("  (cost=").map(|(node, _)| node))
        .map(|node| node.trim().trim_start_matches("->").trim().to_owned())
        .collect()
}

#[test]
fn every_grid_point_gets_a_fitting_plan_on_its_100th_execution() {
    let Some(db) = TestDb::new(Backend::Postgres) else {
        return;
    };
    let mut settings = db.settings();
    settings.database.pool_size = 1.try_into().unwrap();
    let database = Database::connect(&settings.database).unwrap();
    database.migrate().unwrap();
    // Released 1900–2025 and ratings 0–10 in tenths, uniformly; fixed seed.
    let mut setup = PgConnection::establish(&db.dsn).unwrap();
    diesel::connection::SimpleConnection::batch_execute(
        &mut setup,
        &format!(
            "SELECT setseed(0.13);
             INSERT INTO myapi.movies (movie_id, title, released, rating)
             SELECT i, 'Movie ' || i, 1900 + floor(random() * 126)::int,
                    round((random() * 100)::numeric) / 10
             FROM generate_series(1, {MOVIES}) AS i;
             ANALYZE myapi.movies;"
        ),
    )
    .unwrap();
    let count: i64 =
        diesel::dsl::sql::<diesel::sql_types::BigInt>("SELECT count(*) FROM myapi.movies")
            .get_result(&mut setup)
            .unwrap();
    assert_eq!(count, i64::from(MOVIES));

    let service = MovieService::new(database, &settings, Default::default()).unwrap();
    let halfway = MOVIES / 2;
    let mut misfits = Vec::new();
    let mut shapes = std::collections::BTreeSet::new();
    for after in [None, Some(halfway)] {
        for year in YEARS {
            for rating in RATINGS {
                let query = NewMoviesQuery::new(year, rating, 1000, after.unwrap_or(0), 0).unwrap();
                let plans = service
                    .released_since_plans(&query, 99)
                    .unwrap()
                    .expect("PostgreSQL explains");
                let (served, literal) = (shape(&plans.served), shape(&plans.literal));
                assert!(!literal.is_empty(), "{}", plans.literal);
                shapes.insert(literal.join(" / "));
                if served != literal {
                    misfits.push(format!(
                        "year={year} rating={rating} after={after:?}: the 100th execution \
                         runs\n{}\nbut with its values PostgreSQL picks\n{}",
                        plans.served, plans.literal
                    ));
                }
            }
        }
    }
    // The grid must call for each index, or it proves little.
    for index in [
        "movies_pkey",
        "movies_released_rating_idx",
        "movies_rating_released_idx",
    ] {
        assert!(
            shapes.iter().any(|s| s.contains(index)),
            "no grid point uses {index}: {shapes:#?}"
        );
    }
    assert!(
        misfits.is_empty(),
        "{} of 72 grid points run a plan unfit for their values:\n\n{}",
        misfits.len(),
        misfits.join("\n\n")
    );
}
