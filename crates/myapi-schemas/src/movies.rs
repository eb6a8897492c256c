use serde::de::{self, Unexpected, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// A movie as the `movies` service returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MovieSchema {
    /// Movie id.
    #[schema(example = 1, minimum = 1)]
    pub movie_id: i32,
    /// Title.
    #[schema(example = "The Shawshank Redemption")]
    pub title: String,
    /// Release year.
    #[schema(example = 1994)]
    pub released: i32,
    /// Rating from 0 to 10 with one decimal, as stored.
    #[schema(example = 9.2, minimum = 0, maximum = 10)]
    pub rating: f64,
}

/// A movie as a client writes it: the body of `POST /movies/` and `PUT /movies/{movie_id}`.
/// The id is not part of it: the server assigns it, and the path names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MovieInput {
    /// Title: 1 to 500 characters, no control characters.
    #[schema(
        example = "The Shawshank Redemption",
        min_length = 1,
        max_length = 500,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub title: String,
    /// Release year.
    #[serde(deserialize_with = "integer")]
    #[schema(example = 1994, minimum = 1800, maximum = 3000)]
    pub released: i64,
    /// Rating from 0 to 10 with at most one decimal.
    #[schema(example = 9.2, minimum = 0, maximum = 10, multiple_of = 0.1)]
    pub rating: f64,
}

/// An RFC 7396 merge patch for a movie (`PATCH /movies/{movie_id}`,
/// `application/merge-patch+json`): the fields to change; absent ones stay as they are.
/// A movie needs all its fields, so `null` (which removes one) is refused.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoviePatch {
    /// Title: 1 to 500 characters, no control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        nullable = false,
        example = "The Shawshank Redemption",
        min_length = 1,
        max_length = 500,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub title: Option<String>,
    /// Release year.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some_integer"
    )]
    #[schema(nullable = false, example = 1994, minimum = 1800, maximum = 3000)]
    pub released: Option<i64>,
    /// Rating from 0 to 10 with at most one decimal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        nullable = false,
        example = 9.3,
        minimum = 0,
        maximum = 10,
        multiple_of = 0.1
    )]
    pub rating: Option<f64>,
}

/// An integer as JSON Schema counts one: `1994`, or a number with no fraction (`1994.0`).
pub fn integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    struct Integer;

    impl Visitor<'_> for Integer {
        type Value = i64;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an integer")
        }

        fn visit_i64<E: de::Error>(self, value: i64) -> Result<i64, E> {
            Ok(value)
        }

        fn visit_u64<E: de::Error>(self, value: u64) -> Result<i64, E> {
            i64::try_from(value).map_err(|_| E::invalid_value(Unexpected::Unsigned(value), &self))
        }

        fn visit_f64<E: de::Error>(self, value: f64) -> Result<i64, E> {
            integral(value).ok_or_else(|| E::invalid_value(Unexpected::Float(value), &self))
        }
    }

    deserializer.deserialize_any(Integer)
}

fn some_integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    integer(deserializer).map(Some)
}

/// `value` as an `i64` if it is a whole number in range.
pub fn integral(value: f64) -> Option<i64> {
    // -2^63 is exact as an f64; 2^63 (`i64::MAX as f64`) is already out of range.
    let (min, max) = (i64::MIN as f64, i64::MAX as f64);
    (value.fract() == 0.0 && value >= min && value < max).then_some(value as i64)
}
