//! The writable fields of a movie and their rules, declared once: the API's movie documents
//! (`POST`, `PUT`, the result of a `PATCH`) are checked here, the CSV import uses the same
//! rules, web builds the OpenAPI schemas of the bodies from [`MOVIE_FIELDS`], and the
//! database enforces the same limits as constraints (see the migrations).

use std::ops::RangeInclusive;

use myapi_models::rows::MovieRow;
use serde_json::{Map, Value};

use super::Rating;
use crate::{InvalidField, ServiceError};

/// Oldest and newest release years a stored movie may have.
pub const RELEASE_YEARS: RangeInclusive<i64> = 1800..=3000;
/// Shortest and longest title, in characters.
pub const TITLE_CHARS: RangeInclusive<usize> = 1..=500;
/// Lowest and highest rating.
pub const RATINGS: RangeInclusive<u8> = 0..=10;

/// What a writable field holds; each kind is one JSON type and one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A JSON string of [`TITLE_CHARS`] characters, none of them a control character.
    Title,
    /// A JSON Schema integer (`1994` or `1994.0`) within [`RELEASE_YEARS`].
    Year,
    /// A JSON number within [`RATINGS`] with at most one decimal (a [`Rating`]).
    Rating,
}

/// A writable member of a movie document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MovieField {
    pub name: &'static str,
    pub kind: FieldKind,
}

/// The writable fields, in the order a refused document names them.
pub const MOVIE_FIELDS: [MovieField; 3] = [
    MovieField {
        name: "title",
        kind: FieldKind::Title,
    },
    MovieField {
        name: "released",
        kind: FieldKind::Year,
    },
    MovieField {
        name: "rating",
        kind: FieldKind::Rating,
    },
];

/// A title: [`TITLE_CHARS`] characters, none of them a control character (NUL included).
pub fn check_title(title: &str) -> Result<(), String> {
    let chars = title.chars().count();
    if TITLE_CHARS.contains(&chars) && !title.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(format!(
            "must be {} to {} printable characters",
            TITLE_CHARS.start(),
            TITLE_CHARS.end()
        ))
    }
}

/// A release year within [`RELEASE_YEARS`].
pub fn check_released(year: i64) -> Result<i32, String> {
    RELEASE_YEARS
        .contains(&year)
        .then(|| i32::try_from(year).ok())
        .flatten()
        .ok_or_else(|| {
            format!(
                "must be a year between {} and {}",
                RELEASE_YEARS.start(),
                RELEASE_YEARS.end()
            )
        })
}

/// A JSON integer as JSON Schema counts one: `1994` or `1994.0`.
fn integer(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| value.as_f64().and_then(integral))
}

/// `value` as an `i64` if it is a whole number in range.
fn integral(value: f64) -> Option<i64> {
    // -2^63 is exact as an f64; 2^63 (`i64::MAX as f64`) is already out of range.
    let (min, max) = (i64::MIN as f64, i64::MAX as f64);
    (value.fract() == 0.0 && value >= min && value < max).then_some(value as i64)
}

/// One checked field value.
enum Checked {
    Title(String),
    Year(i32),
    Rating(Rating),
}

impl FieldKind {
    /// The JSON type, as a 422 names it.
    pub fn json_type(self) -> &'static str {
        match self {
            Self::Title => "a string",
            Self::Year => "an integer",
            Self::Rating => "a number",
        }
    }

    fn check(self, value: &Value) -> Result<Checked, String> {
        let wrong_type = || format!("must be {}", self.json_type());
        match self {
            Self::Title => {
                let title = value.as_str().ok_or_else(wrong_type)?;
                check_title(title).map(|()| Checked::Title(title.to_owned()))
            }
            Self::Year => check_released(integer(value).ok_or_else(wrong_type)?).map(Checked::Year),
            Self::Rating => {
                Rating::from_number(value.as_f64().ok_or_else(wrong_type)?).map(Checked::Rating)
            }
        }
    }
}

/// The row for the movie document `document` under `movie_id`, or every member that is
/// missing, of the wrong JSON type, out of its rule, unknown or read-only, in one 422.
pub(super) fn check_document(movie_id: i32, document: &Value) -> Result<MovieRow, ServiceError> {
    let Value::Object(members) = document else {
        return Err(ServiceError::invalid("body", "must be a JSON object"));
    };
    let mut refused = Vec::new();
    let (mut title, mut released, mut rating) = (None, None, None);
    for field in MOVIE_FIELDS {
        let Some(value) = members.get(field.name) else {
            refused.push(InvalidField::new(field.name, "is required"));
            continue;
        };
        match field.kind.check(value) {
            Ok(Checked::Title(checked)) => title = Some(checked),
            Ok(Checked::Year(checked)) => released = Some(checked),
            Ok(Checked::Rating(checked)) => rating = Some(checked.to_decimal()),
            Err(message) => refused.push(InvalidField::new(field.name, message)),
        }
    }
    refused.extend(foreign_members(members));
    match (title, released, rating) {
        (Some(title), Some(released), Some(rating)) if refused.is_empty() => Ok(MovieRow {
            movie_id,
            title,
            released,
            rating,
        }),
        _ => Err(ServiceError::Invalid(refused)),
    }
}

/// The members of a movie document that are not writable fields.
fn foreign_members(members: &Map<String, Value>) -> impl Iterator<Item = InvalidField> + '_ {
    members
        .keys()
        .filter(|name| !is_field(name))
        .map(|name| match name.as_str() {
            "movie_id" => InvalidField::new(
                "movie_id",
                "is read-only: the server assigns it and the path names it",
            ),
            _ => InvalidField::new(name.as_str(), "is not a field of a movie"),
        })
}

/// Whether `name` is a writable field.
pub fn is_field(name: &str) -> bool {
    MOVIE_FIELDS.iter().any(|field| field.name == name)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn refused(document: Value) -> Vec<String> {
        match check_document(1, &document) {
            Err(ServiceError::Invalid(fields)) => fields.into_iter().map(|f| f.field).collect(),
            other => panic!("{document}: {other:?}"),
        }
    }

    #[test]
    fn documents_name_every_refused_field() {
        let cases = [
            (
                json!({"title": 5, "released": "1994", "rating": 9.2}),
                &["title", "released"][..],
            ),
            (
                json!({"title": "A", "released": 1994.5, "rating": null, "extra": 1}),
                &["released", "rating", "extra"],
            ),
            (
                json!({"movie_id": 3, "title": "A", "released": 1994, "rating": 9}),
                &["movie_id"],
            ),
            (json!({"title": "A"}), &["released", "rating"]),
            // Out-of-range values are named along with the unknown field.
            (
                json!({"x": 1, "title": "", "released": 99, "rating": 9.25}),
                &["title", "released", "rating", "x"],
            ),
            (
                json!({"released": 1994, "rating": 9.2, "title": "A", "": null}),
                &[""],
            ),
            (
                json!({"released": 1994, "rating": 9.2, "movie_id": 7}),
                &["title", "movie_id"],
            ),
            (json!([1]), &["body"]),
            (json!("x"), &["body"]),
        ];
        for (document, fields) in cases {
            assert_eq!(refused(document.clone()), fields, "{document}");
        }
    }

    #[test]
    fn json_schema_integers_are_years() {
        for released in [json!(1994), json!(1994.0), json!(1.994e3)] {
            let row = check_document(1, &json!({"title": "A", "released": released, "rating": 9}));
            assert_eq!(row.unwrap().released, 1994, "{released}");
        }
    }
}
