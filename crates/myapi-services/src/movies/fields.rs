//! The writable fields of a movie and their rules, declared once: the API's movie documents
//! (`POST`, `PUT`, the result of a `PATCH`) are checked here, the CSV import uses the same
//! rules, web builds the OpenAPI schemas of the bodies from [`MOVIE_FIELDS`], and the
//! database enforces the same limits as constraints (see the migrations).

use std::ops::RangeInclusive;
use std::str::FromStr;

use myapi_models::BigDecimal;
use myapi_models::rows::MovieRow;
use serde_json::{Map, Value};

use crate::{InvalidField, ServiceError};

/// Oldest and newest release years a stored movie may have.
pub const RELEASE_YEARS: RangeInclusive<i64> = 1800..=3000;
/// Shortest and longest title, in characters.
pub const TITLE_CHARS: RangeInclusive<usize> = 1..=500;
/// Lowest and highest rating.
pub const RATINGS: RangeInclusive<u8> = 0..=10;

/// The largest rating, in tenths.
const MAX_TENTHS: u8 = *RATINGS.end() * 10;

/// A rating: [`RATINGS`] in steps of 0.1, held as tenths so it is exact on both backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rating(u8);

impl Rating {
    /// Parses a decimal such as `9.2` or `10`; more than one decimal place is refused.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let value = BigDecimal::from_str(raw.trim()).map_err(|_| "must be a number".to_owned())?;
        if value.fractional_digit_count() > 1 && value.normalized().fractional_digit_count() > 1 {
            return Err("must have at most one decimal place".into());
        }
        Self::from_decimal(&value)
            .ok_or_else(|| format!("must be between {} and {}", RATINGS.start(), RATINGS.end()))
    }

    /// A JSON number, by the same rule as [`Rating::parse`] applied to its shortest decimal
    /// form (`9.2` is 9.2; `9.25` and `0.30000000000000004` have too many decimals).
    pub fn from_number(value: f64) -> Result<Self, String> {
        if !value.is_finite() {
            return Err("must be a number".into());
        }
        Self::parse(&value.to_string())
    }

    /// Reads a stored value, rounding away SQLite's binary-float noise (9.19999… → 9.2).
    pub(super) fn from_decimal(value: &BigDecimal) -> Option<Self> {
        match Self::nearest_tenths(value) {
            Some(tenths) => u8::try_from(tenths)
                .ok()
                .filter(|t| *t <= MAX_TENTHS)
                .map(Self),
            None => Self::from_decimal_exactly(value),
        }
    }

    /// The value in tenths, rounded to the nearest, by integer arithmetic on the decimal's
    /// digits: every row read goes through here, and the general path below (BigDecimal
    /// multiplication, rounding, a string and a parse) cost about 2,400 instructions a
    /// rating. `None` for what it does not decide: negative values, more than 18 digits or
    /// decimals, and exact halves (which the general path rounds half to even).
    fn nearest_tenths(value: &BigDecimal) -> Option<u64> {
        use bigdecimal::ToPrimitive;
        let (digits, scale) = value.as_bigint_and_scale();
        let digits = digits.to_u64()?;
        match scale {
            ..=-18 => None,
            // A whole number (times 10^-scale): exact.
            -17..=1 => 10u64
                .checked_pow(u32::try_from(1 - scale).ok()?)
                .and_then(|factor| digits.checked_mul(factor)),
            2..=19 => {
                let divisor = 10u64.pow(u32::try_from(scale - 1).ok()?);
                let (tenths, rest) = (digits / divisor, digits % divisor);
                match (rest * 2).cmp(&divisor) {
                    std::cmp::Ordering::Less => Some(tenths),
                    std::cmp::Ordering::Greater => tenths.checked_add(1),
                    std::cmp::Ordering::Equal => None,
                }
            }
            _ => None,
        }
    }

    /// [`Rating::from_decimal`] for any decimal.
    fn from_decimal_exactly(value: &BigDecimal) -> Option<Self> {
        let tenths = (value * BigDecimal::from(10)).round(0);
        let tenths: i64 = tenths.to_string().parse().ok()?;
        u8::try_from(tenths)
            .ok()
            .filter(|t| *t <= MAX_TENTHS)
            .map(Self)
    }

    /// The value as stored in the database.
    pub(super) fn to_decimal(self) -> BigDecimal {
        BigDecimal::new(self.0.into(), 1)
    }

    /// The value for JSON: the nearest `f64`, which serialises as `9.2`.
    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / 10.0
    }
}

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
    fn ratings_parse_and_round_trip_exactly() {
        assert_eq!(Rating::parse("9.2").unwrap().as_f64().to_string(), "9.2");
        assert_eq!(Rating::parse("10").unwrap().as_f64(), 10.0);
        assert_eq!(Rating::parse("0.0").unwrap().as_f64(), 0.0);
        assert_eq!(Rating::parse("9.20").unwrap(), Rating(92));
        for bad in ["10.1", "-0.1", "9.25", "abc", "", "NaN", "inf"] {
            assert!(Rating::parse(bad).is_err(), "{bad}");
        }
        // JSON numbers go through the same rule, by their shortest decimal form.
        assert_eq!(Rating::from_number(9.2), Ok(Rating(92)));
        assert_eq!(Rating::from_number(10.0), Ok(Rating(100)));
        assert_eq!(Rating::from_number(-0.0), Ok(Rating(0)));
        for bad in [0.1 + 0.2, 9.25, 10.1, -0.1, f64::NAN, f64::INFINITY, 1e300] {
            assert!(Rating::from_number(bad).is_err(), "{bad}");
        }
        // What SQLite hands back for a NUMERIC 9.2 stored as a double.
        let noisy =
            BigDecimal::from_str("9.199999999999999289457264239899814128875732421875").unwrap();
        assert_eq!(Rating::from_decimal(&noisy), Some(Rating(92)));
    }

    #[test]
    fn stored_ratings_read_by_digits_as_by_the_general_path() {
        let mut values: Vec<String> = (0..=101)
            .flat_map(|tenths| {
                let (whole, tenth) = (tenths / 10, tenths % 10);
                [
                    format!("{whole}.{tenth}"),
                    format!("{whole}.{tenth}0"),
                    format!("{whole}.{tenth}4999"),
                    format!("{whole}.{tenth}5"),
                    format!("{whole}.{tenth}5000000000000000001"),
                    format!("{whole}.{tenth}999999999999999999"),
                ]
            })
            .collect();
        values.extend(
            [
                "0", "10", "1e1", "1E-1", "-0.0", "-0.04", "-3.2", "100", "1e30",
            ]
            .map(String::from),
        );
        values.push(format!("{}", 9.2f64));
        for raw in values {
            let value = BigDecimal::from_str(&raw).unwrap();
            assert_eq!(
                Rating::from_decimal(&value),
                Rating::from_decimal_exactly(&value),
                "{raw}"
            );
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
