use serde::{Deserialize, Serialize};
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
    #[schema(example = "The Shawshank Redemption", min_length = 1, max_length = 500,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub title: String,
    /// Release year.
    #[schema(example = 1994, minimum = 1800, maximum = 3000)]
    pub released: i64,
    /// Rating from 0 to 10 with at most one decimal.
    #[schema(example = 9.2, minimum = 0, maximum = 10, multiple_of = 0.1)]
    pub rating: f64,
}

/// An RFC 7396 merge patch for a movie (`PATCH /movies/{movie_id}`,
/// `application/merge-patch+json`): the fields to change; absent ones stay as they are.
/// Every field is required, so `null` (remove) is refused.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoviePatch {
    /// Title: 1 to 500 characters, no control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, example = "The Shawshank Redemption", min_length = 1, max_length = 500,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub title: Option<String>,
    /// Release year.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, example = 1994, minimum = 1800, maximum = 3000)]
    pub released: Option<i64>,
    /// Rating from 0 to 10 with at most one decimal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, example = 9.3, minimum = 0, maximum = 10, multiple_of = 0.1)]
    pub rating: Option<f64>,
}
