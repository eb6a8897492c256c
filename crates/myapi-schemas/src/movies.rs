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
