//! Paging as the services take it: typed values, which web reads from the query string.

/// Largest accepted `offset`.
pub const MAX_OFFSET: i64 = 1_000_000_000;

/// A page size policy: `limit` when none is given, and the largest accepted.
#[derive(Debug, Clone, Copy)]
pub struct PageSizes {
    pub default: u32,
    pub max: u32,
}

/// `limit` and `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: u32,
    pub offset: i64,
}
