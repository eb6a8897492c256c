//! Diesel table definitions shared by both backends.
//!
//! On PostgreSQL the tables live in schema `myapi`; every pooled connection sets
//! `search_path` to it, so the names here stay unqualified and also work on SQLite.
//! Timestamp columns are maintained by the database and not mapped here.

diesel::table! {
    /// Films served by the `movies` service.
    movies (movie_id) {
        /// Primary key: chosen by the importer, or the next after the largest for `POST`.
        movie_id -> Integer,
        title -> Text,
        released -> Integer,
        /// Rating from 0.0 to 10.0 with one decimal.
        rating -> Numeric,
        /// Row version, the `ETag`: random at insert, raised by a trigger on every update.
        version -> BigInt,
    }
}

diesel::table! {
    /// One row: raised by triggers on every change to `movies` (the listings' `ETag`).
    movie_changes (only_row) {
        only_row -> Bool,
        generation -> BigInt,
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
        /// `reader`, `editor` or `admin`.
        role -> Text,
        /// `false` from a sign-up until its mail's token comes back.
        email_verified -> Bool,
    }
}

diesel::table! {
    /// Single-use tokens that mails carry (`verify`, `reset`), by hash; one per user and
    /// purpose.
    account_tokens (token_hash) {
        /// SHA-256 of the token, hex.
        token_hash -> Text,
        user_id -> Integer,
        purpose -> Text,
        /// Unix seconds.
        expires_at -> BigInt,
    }
}

diesel::table! {
    /// One family per password login; its refresh tokens rotate within it.
    refresh_families (family_id) {
        family_id -> Text,
        user_id -> Integer,
        scope -> Text,
        /// Unix seconds, as every time in these two tables.
        created_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
        /// The user's security stamp when the family started; it refreshes only while the
        /// user still has it.
        security_stamp -> Text,
        /// The OAuth client of the login; '' for families from before clients were kept.
        client_id -> Text,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        /// SHA-256 of the token, base64url: the token itself is never stored.
        token_hash -> Text,
        family_id -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        /// When the token was rotated; presenting it again after that is reuse.
        used_at -> Nullable<BigInt>,
        /// The hash of the token that replaced it.
        successor_hash -> Nullable<Text>,
        /// That token, encrypted under a key derived from this one (which is not stored),
        /// so a double submit within the reuse grace gets the same answer.
        successor_sealed -> Nullable<Text>,
    }
}

diesel::table! {
    /// The audit trail: security-relevant events, written in the transaction of the change
    /// they record. No foreign key to `users`, so a deleted user's trail stays.
    audit_events (id) {
        /// Generated, increasing: the paging cursor.
        id -> BigInt,
        /// Unix seconds; for a count of throttled answers, the start of its minute.
        at -> BigInt,
        /// The event's stable snake_case name, such as `login_failed`.
        event -> Text,
        /// The acting user's id, `cli` or `anonymous`.
        actor -> Text,
        subject_user_id -> Nullable<Integer>,
        /// The subject's email, or `hmac:` and a keyed digest of an unknown username.
        subject -> Nullable<Text>,
        /// The resolved client address, or network for a count of throttled answers.
        client -> Nullable<Text>,
        request_id -> Nullable<Text>,
        /// How many answers one row stands for: 1, except for throttled answers.
        count -> Integer,
        detail -> Nullable<Text>,
    }
}

diesel::table! {
    /// The stored answers to requests sent with an `Idempotency-Key`, per caller and route.
    idempotency_keys (caller, operation, idempotency_key) {
        /// The caller's user id.
        caller -> Text,
        /// The route, such as `POST /movies/`.
        operation -> Text,
        idempotency_key -> Text,
        /// SHA-256 of the request body, hex.
        fingerprint -> Text,
        /// Unix seconds.
        created_at -> BigInt,
        status -> SmallInt,
        location -> Nullable<Text>,
        etag -> Nullable<Text>,
        body -> Text,
    }
}

diesel::table! {
    /// Mail waiting to be sent, or sent: one row per message. Times are Unix seconds.
    mail_outbox (message_id) {
        /// The `Message-ID`, kept across retries.
        message_id -> Text,
        recipient -> Text,
        subject -> Text,
        /// Plain text; may hold a live single-use token.
        body -> Text,
        created_at -> BigInt,
        next_attempt_at -> BigInt,
        attempts -> Integer,
        /// A sender's lease on the row.
        claimed_until -> Nullable<BigInt>,
        sent_at -> Nullable<BigInt>,
        /// Set when the attempts ran out.
        failed_at -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
    }
}

diesel::joinable!(refresh_families -> users (user_id));
diesel::joinable!(account_tokens -> users (user_id));
diesel::joinable!(refresh_tokens -> refresh_families (family_id));

// [xtask] tables

diesel::allow_tables_to_appear_in_same_query!(
    movies,
    users,
    refresh_families,
    refresh_tokens,
    audit_events,
    idempotency_keys,
    mail_outbox,
    account_tokens,
    // [xtask] joinable tables
);
