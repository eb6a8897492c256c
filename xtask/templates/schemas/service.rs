use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One of `__NAME__`, as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct __TYPE__Schema {
    #[schema(example = 1, minimum = 1)]
    pub __ID__: i32,
    pub name: String,
}
