//! Diesel table definitions shared by both backends.
//!
//! On PostgreSQL the tables live in schema `myapi`; every pooled connection sets
//! `search_path` to it, so the names here stay unqualified and also work on SQLite.
//! Timestamp columns are maintained by the database and not mapped here.

diesel::table! {
    /// Films served by the `movies` service.
    movies (movie_id) {
        /// Primary key chosen by the importer (not generated).
        movie_id -> Integer,
        title -> Text,
        released -> Integer,
        /// Rating from 0.0 to 10.0 with one decimal.
        rating -> Numeric,
    }
}

diesel::table! {
    /// Accounts that can log in at `/token`.
    users (user_id) {
        /// Generated id, the JWT `sub`.
        user_id -> Integer,
        name -> Text,
        /// Lower-case email, the OAuth2 `username`.
        email -> Text,
        /// Argon2id PHC string.
        hashed_password -> Text,
        /// Random, replaced on every password change; tokens carrying another are revoked.
        security_stamp -> Text,
    }
}

// [xtask] tables

diesel::allow_tables_to_appear_in_same_query!(
    movies, users,
    // [xtask] joinable tables
);
