//! Query parameters as clients send them, parsed into typed values with every error named,
//! so a 422 lists them all. Shared by every service that reads a query string.

use std::ops::RangeInclusive;

use crate::{InvalidField, ServiceError};

/// Query parameters as sent, in order.
pub type QueryPairs = [(String, String)];

/// Largest accepted `offset`.
pub const MAX_OFFSET: i64 = 1_000_000_000;

/// The one value of `name`; sent twice is an error, since picking either would be a guess.
pub(crate) fn optional<'a>(
    pairs: &'a QueryPairs,
    name: &str,
) -> Result<Option<&'a str>, InvalidField> {
    let mut values = pairs.iter().filter(|(key, _)| key == name);
    let first = values.next().map(|(_, value)| value.as_str());
    match values.next() {
        Some(_) => Err(InvalidField::new(name, "must be given once")),
        None => Ok(first),
    }
}

pub(crate) fn required<'a>(pairs: &'a QueryPairs, name: &str) -> Result<&'a str, InvalidField> {
    optional(pairs, name)?.ok_or_else(|| InvalidField::new(name, "is required"))
}

/// An integer within `range`, converted to the type the caller holds it in.
pub(crate) fn integer<T: TryFrom<i64>>(
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

impl Page {
    pub fn parse(pairs: &QueryPairs, sizes: PageSizes) -> Result<Self, ServiceError> {
        let limit = optional(pairs, "limit").and_then(|raw| match raw {
            None => Ok(sizes.default),
            Some(raw) => integer("limit", raw, 1..=i64::from(sizes.max)),
        });
        let offset = optional(pairs, "offset").and_then(|raw| match raw {
            None => Ok(0),
            Some(raw) => integer("offset", raw, 0..=MAX_OFFSET),
        });
        match (limit, offset) {
            (Ok(limit), Ok(offset)) => Ok(Self { limit, offset }),
            (limit, offset) => Err(ServiceError::Invalid(
                [limit.err(), offset.err()].into_iter().flatten().collect(),
            )),
        }
    }
}
