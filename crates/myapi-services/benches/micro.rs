//! Micro-benchmarks for the hot paths: token sign/verify, argon2 verify, and the movies
//! query on SQLite. `cargo bench -p myapi-services --bench micro`; `bench/run.py` reads the
//! results from `target/criterion`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use myapi_services::Services;
use myapi_services::auth::{PasswordHasher, TokenSigner};
use myapi_services::auth::{Session, TokenKey, TokenKeys};
use myapi_services::config::Settings;
use myapi_services::movies::{NewMoviesQuery, OnExisting};
use myapi_services::secrets::Secret;

const SESSION: Session<'static> = Session {
    family_id: "family",
    client_id: "myapi",
};

/// `token_sign{suffix}` and `token_verify{suffix}` for `signer`: what a token costs to sign
/// and to verify the first time; returns a token it signed.
fn sign_and_verify(c: &mut Criterion, signer: &TokenSigner, suffix: &str) -> String {
    c.bench_function(&format!("token_sign{suffix}"), |b| {
        b.iter(|| {
            signer
                .issue(
                    black_box(7),
                    "Ada",
                    "ada@example.com",
                    "stamp",
                    "movies:read",
                    SESSION,
                )
                .unwrap()
        })
    });
    let token = signer
        .issue(7, "Ada", "ada@example.com", "stamp", "movies:read", SESSION)
        .unwrap();
    c.bench_function(&format!("token_verify{suffix}"), |b| {
        b.iter(|| signer.verify(black_box(&token)).unwrap())
    });
    token
}

/// HS256 (a secret), and how a token verified before is answered from memory.
fn tokens(c: &mut Criterion) {
    let key = TokenKey::try_from("bench-0123456789abcdefghijklmnopqrstuv".to_owned()).unwrap();
    let signer = TokenSigner::new(Some(&key.into()), &Settings::defaults().unwrap().auth);
    let token = sign_and_verify(c, &signer, "");
    c.bench_function("token_verify_memoised", |b| {
        b.iter(|| signer.verify_memoised(black_box(&token)).unwrap())
    });
}

/// EdDSA (an Ed25519 key file) beside the HS256 rows; later uses of a token are
/// remembered alike, as `token_verify_memoised` shows.
fn eddsa_tokens(c: &mut Criterion) {
    let keys = TokenKeys::random();
    let signer = TokenSigner::new(Some(&keys), &Settings::defaults().unwrap().auth);
    sign_and_verify(c, &signer, "_eddsa");
}

fn argon2(c: &mut Criterion) {
    let hasher = PasswordHasher::new(Settings::defaults().unwrap().auth.argon2_params().unwrap());
    let phc = hasher.hash("correct-horse-battery").unwrap();
    let mut group = c.benchmark_group("argon2");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4));
    group.bench_function("argon2_verify", |b| {
        b.iter(|| assert!(hasher.verify(black_box("correct-horse-battery"), &phc)))
    });
    group.finish();
}

fn movies_query(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::defaults().unwrap();
    settings.database.dsn = Secret::new(format!(
        "sqlite://{}",
        dir.path().join("bench.db").display()
    ));
    let services = Services::build(&settings, true).unwrap();
    let mut csv = String::from("movie_id,title,released,rating\n");
    for id in 1..=1000u32 {
        csv.push_str(&format!(
            "{id},Movie {id},{},{}.{}\n",
            1900 + id % 126,
            id % 10,
            id % 7
        ));
    }
    services
        .movies
        .import_csv(csv.as_bytes(), OnExisting::Fail)
        .unwrap();
    let query = NewMoviesQuery::new(1990, 9.0, 50, 0, 0).unwrap();
    c.bench_function("movies_query_sqlite_1k", |b| {
        b.iter(|| services.movies.released_since(black_box(&query)).unwrap())
    });
}

criterion_group!(benches, tokens, eddsa_tokens, argon2, movies_query);
criterion_main!(benches);
