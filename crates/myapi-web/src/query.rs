//! Query parameters (and path ids) as clients send them, read into the typed values the
//! services take, with every error named so a 422 lists them all.

use std::ops::RangeInclusive;
use std::str::FromStr;

use actix_web::HttpRequest;
use myapi_services::audit::AuditQuery;
use myapi_services::config::{AuditSettings, MoviesSettings};
use myapi_services::movies::{MovieId, NewMoviesQuery};
use myapi_services::query::{MAX_OFFSET, Page, PageSizes};
use myapi_services::{InvalidField, ServiceError};

use crate::error::ApiError;

/// Query parameters as sent, in order.
pub type QueryPairs = [(String, String)];

/// The query string's name/value pairs, in order; undecodable input is a 422.
pub fn query_pairs(req: &HttpRequest) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str(req.query_string())
        .map_err(|_| ServiceError::invalid("query", "is not a valid query string").into())
}

/// The one value of `name`; sent twice is an error, since picking either would be a guess.
pub fn optional<'a>(pairs: &'a QueryPairs, name: &str) -> Result<Option<&'a str>, InvalidField> {
    let mut values = pairs.iter().filter(|(key, _)| key == name);
    let first = values.next().map(|(_, value)| value.as_str());
    match values.next() {
        Some(_) => Err(InvalidField::new(name, "must be given once")),
        None => Ok(first),
    }
}

pub fn required<'a>(pairs: &'a QueryPairs, name: &str) -> Result<&'a str, InvalidField> {
    optional(pairs, name)?.ok_or_else(|| InvalidField::new(name, "is required"))
}

/// An integer within `range`, converted to the type the caller holds it in.
pub fn integer<T: TryFrom<i64>>(
    name: &str,
    raw: &str,
    range: RangeInclusive<i64>,
) -> Result<T, InvalidField> {
    let value: i64 = raw
        .trim()
        .parse()
        .map_err(|_| InvalidField::new(name, "must be an integer"))?;
    range
        .contains(&value)
        .then(|| T::try_from(value).ok())
        .flatten()
        .ok_or_else(|| {
            InvalidField::new(
                name,
                format!("must be between {} and {}", range.start(), range.end()),
            )
        })
}

/// The errors in one 422.
fn refused<const N: usize>(errors: [Option<InvalidField>; N]) -> ServiceError {
    ServiceError::Invalid(errors.into_iter().flatten().collect())
}

/// `limit` and `offset`.
pub fn page(pairs: &QueryPairs, sizes: PageSizes) -> Result<Page, ServiceError> {
    let limit = optional(pairs, "limit").and_then(|raw| match raw {
        None => Ok(sizes.default),
        Some(raw) => integer("limit", raw, 1..=i64::from(sizes.max)),
    });
    let offset = optional(pairs, "offset").and_then(|raw| match raw {
        None => Ok(0),
        Some(raw) => integer("offset", raw, 0..=MAX_OFFSET),
    });
    match (limit, offset) {
        (Ok(limit), Ok(offset)) => Ok(Page { limit, offset }),
        (limit, offset) => Err(refused([limit.err(), offset.err()])),
    }
}

/// A movie id: any integer (ids outside the stored range are simply not found).
pub fn movie_id(raw: &str) -> Result<MovieId, InvalidField> {
    integer("movie_id", raw, i64::MIN..=i64::MAX).map(MovieId)
}

/// `GET /movies/new`: `year`, `rating`, `limit` and either the cursor `after` or `offset`
/// (at most `settings.max_offset`).
pub fn new_movies(
    pairs: &QueryPairs,
    settings: &MoviesSettings,
) -> Result<NewMoviesQuery, ServiceError> {
    let max_limit = i64::from(settings.max_page_size.get());
    let year = required(pairs, "year").and_then(|raw| integer("year", raw, 0..=9999));
    let min_rating = required(pairs, "rating").and_then(min_rating);
    let limit = optional(pairs, "limit").and_then(|raw| match raw {
        None => Ok(settings.default_page_size),
        Some(raw) => integer("limit", raw, 1..=max_limit),
    });
    let raw_after = optional(pairs, "after");
    let raw_offset = optional(pairs, "offset");
    let both = matches!((&raw_after, &raw_offset), (Ok(Some(_)), Ok(Some(_))));
    let after = raw_after.and_then(|raw| match raw {
        None => Ok(0),
        Some(_) if both => Err(InvalidField::new(
            "after",
            "cannot be combined with offset: the cursor alone says where the page starts",
        )),
        Some(raw) => integer("after", raw, 0..=i64::from(i32::MAX)),
    });
    let offset = raw_offset.and_then(|raw| match raw {
        None => Ok(0),
        Some(raw) => capped_offset(raw, settings.max_offset),
    });
    match (year, min_rating, limit, after, offset) {
        (Ok(year), Ok(min_rating), Ok(limit), Ok(after), Ok(offset)) => {
            Ok(NewMoviesQuery::new(year, min_rating, limit, after, offset)?)
        }
        (year, min_rating, limit, after, offset) => Err(refused([
            year.err(),
            min_rating.err(),
            limit.err(),
            after.err(),
            offset.err(),
        ])),
    }
}

/// A filter rating: any finite number from 0 to 10 (unlike a stored rating, any precision).
fn min_rating(raw: &str) -> Result<f64, InvalidField> {
    let invalid = |message| InvalidField::new("rating", message);
    let value: f64 = raw
        .trim()
        .parse()
        .map_err(|_| invalid("must be a number"))?;
    if !value.is_finite() {
        return Err(invalid("must be a finite number"));
    }
    if !(0.0..=10.0).contains(&value) {
        return Err(invalid("must be a number between 0 and 10"));
    }
    Ok(value)
}

/// `offset` from 0 to `max`. Past `max` the message points to the cursor, which pages to
/// any depth at the cost of the first page.
fn capped_offset(raw: &str, max: u32) -> Result<i64, InvalidField> {
    let offset: i64 = integer("offset", raw, i64::MIN..=i64::MAX)?;
    if offset < 0 {
        return Err(InvalidField::new("offset", "must be 0 or more"));
    }
    if offset > i64::from(max) {
        return Err(InvalidField::new(
            "offset",
            format!("offset above {max}: page with after=<last movie_id> instead"),
        ));
    }
    Ok(offset)
}

/// `GET /audit/`: `after`, `user`, `event` and `limit`.
pub fn audit(pairs: &QueryPairs, settings: &AuditSettings) -> Result<AuditQuery, ServiceError> {
    let after = optional(pairs, "after").and_then(|raw| match raw {
        None => Ok(0),
        Some(raw) => integer("after", raw, 0..=i64::MAX),
    });
    let user = optional(pairs, "user").and_then(|raw| {
        raw.map(|raw| integer("user", raw, 1..=i64::from(i32::MAX)))
            .transpose()
    });
    let event = optional(pairs, "event").and_then(|raw| {
        raw.map(|raw| FromStr::from_str(raw).map_err(|e: String| InvalidField::new("event", e)))
            .transpose()
    });
    let limit = optional(pairs, "limit").and_then(|raw| match raw {
        None => Ok(settings.default_page_size),
        Some(raw) => integer("limit", raw, 1..=i64::from(settings.max_page_size.get())),
    });
    match (after, user, event, limit) {
        (Ok(after), Ok(user), Ok(event), Ok(limit)) => Ok(AuditQuery {
            after,
            user,
            event,
            limit,
        }),
        (after, user, event, limit) => {
            Err(refused([after.err(), user.err(), event.err(), limit.err()]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn query_names_every_bad_parameter() {
        let settings = myapi_services::Settings::defaults().unwrap().movies;
        let bad = pairs(&[
            ("year", "-1"),
            ("rating", "NaN"),
            ("limit", "0"),
            ("offset", "-5"),
        ]);
        let Err(ServiceError::Invalid(fields)) = new_movies(&bad, &settings) else {
            panic!("expected invalid");
        };
        let names: Vec<_> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, ["year", "rating", "limit", "offset"]);
        let repeated = pairs(&[("year", "1"), ("year", "2"), ("rating", "x")]);
        let Err(ServiceError::Invalid(fields)) = new_movies(&repeated, &settings) else {
            panic!("expected invalid");
        };
        assert_eq!(fields[0], InvalidField::new("year", "must be given once"));
        assert_eq!(fields[1], InvalidField::new("rating", "must be a number"));

        let q = new_movies(&pairs(&[("year", "1990"), ("rating", "8.55")]), &settings).unwrap();
        assert_eq!(
            (q.year(), q.limit(), q.after(), q.offset()),
            (1990, 100, 0, 0)
        );
        assert_eq!(q.min_rating().to_string(), "8.55");
    }

    #[test]
    fn cursor_and_offset_rules() {
        let settings = myapi_services::Settings::defaults().unwrap().movies;
        assert_eq!(settings.max_offset, 10_000);
        let parse = |extra: &[(&str, &str)]| {
            let mut query = vec![("year", "1990"), ("rating", "8")];
            query.extend_from_slice(extra);
            new_movies(&pairs(&query), &settings)
        };
        let fields = |extra: &[(&str, &str)]| match parse(extra) {
            Err(ServiceError::Invalid(fields)) => fields,
            other => panic!("{extra:?}: expected invalid, got {other:?}"),
        };
        assert_eq!(parse(&[("after", "2147483647")]).unwrap().after(), i32::MAX);
        assert_eq!(parse(&[("after", "0")]).unwrap().after(), 0);
        assert_eq!(parse(&[("offset", "10000")]).unwrap().offset(), 10_000);
        for bad in [
            "-1",
            "2147483648",
            "1.5",
            "",
            " ",
            "x",
            "99999999999999999999",
        ] {
            let found = fields(&[("after", bad)]);
            assert_eq!(found.len(), 1, "{bad:?}: {found:?}");
            assert_eq!(found[0].field, "after", "{bad:?}");
        }
        let deep = fields(&[("offset", "10001")]);
        assert_eq!(deep[0].field, "offset");
        assert!(deep[0].message.contains("after="), "{}", deep[0].message);
        assert!(deep[0].message.contains("10000"), "{}", deep[0].message);
        let both = fields(&[("after", "5"), ("offset", "0")]);
        assert_eq!(both.len(), 1);
        assert_eq!(both[0].field, "after");
        // Every offending field at once, in order.
        let all = fields(&[("year", "x"), ("after", "5"), ("offset", "99999")]);
        let names: Vec<_> = all.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, ["year", "after", "offset"]);
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        assert!(movie_id("99999999999999999999999").is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_query_string_parses_or_fails_cleanly(query in "\\PC{0,200}") {
            if let Ok(pairs) = serde_urlencoded::from_str::<Vec<(String, String)>>(&query) {
                let settings = myapi_services::Settings::defaults().unwrap().movies;
                let _ = new_movies(&pairs, &settings);
            }
        }

        #[test]
        fn integer_parameters_accept_exactly_what_i64_parses(raw in "[-+0-9a-z. ]{0,25}") {
            let parsed = movie_id(&raw).ok();
            let expected = raw.trim().parse::<i64>().ok();
            proptest::prop_assert_eq!(parsed.is_some(), expected.is_some());
        }
    }
}
