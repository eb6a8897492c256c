//! The keys access tokens are signed and verified with: one key (`MYAPI_TOKEN_KEY`) or a
//! `kid:key` list (`MYAPI_TOKEN_KEYS`), each checked for length and predictability.

use std::str::FromStr;

use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};

use crate::secrets::{Secret, hex, random_bytes, random_secret};

/// Shortest accepted HS256 key: the hash size (RFC 7518 §3.2).
const MIN_TOKEN_KEY_BYTES: usize = 32;

/// Least a key's [entropy bound](entropy_bound_bits) may be, in bits.
const MIN_TOKEN_KEY_BITS: f64 = 128.0;

/// The key `deploy/myapi.env.example` ships (a test checks that they agree): long and varied
/// enough to pass the other checks, and public.
pub(crate) const PLACEHOLDER_TOKEN_KEY: &str = "CHANGE-ME-to-32-or-more-random-bytes";

/// How the README makes a key; error messages suggest it.
const KEY_RECIPE: &str = "head -c 32 /dev/urandom | base64";

/// One HS256 key of at least 32 bytes, whose [entropy bound](entropy_bound_bits) reaches
/// 128 bits, and which is not the shipped placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenKey(Secret);

/// `key.len() × log2(distinct bytes of key)`: the entropy of the key had each byte been drawn
/// at random from the bytes it uses. A key below the floor surely carries less than that; one
/// above may still be guessable (a phrase), so this refuses only the plainly weak: repeats,
/// short alphabets, short keys. Random bytes in base64 or hex pass with a wide margin.
fn entropy_bound_bits(key: &[u8]) -> f64 {
    let mut seen = [false; 256];
    for &byte in key {
        seen[usize::from(byte)] = true;
    }
    let distinct = seen.iter().filter(|&&seen| seen).count();
    key.len() as f64 * (distinct as f64).log2()
}

impl TokenKey {
    pub fn as_bytes(&self) -> &[u8] {
        self.0.expose().as_bytes()
    }

    /// The kid of a single key (`MYAPI_TOKEN_KEY`): the first 8 hex digits of its SHA-256,
    /// so the key can move into `MYAPI_TOKEN_KEYS` under the same kid. It reveals no more
    /// about the key than any token signed with it does.
    pub fn derived_kid(&self) -> String {
        hex(&Sha256::digest(self.as_bytes())[..4])
    }
}

impl TryFrom<String> for TokenKey {
    type Error = KeyError;

    fn try_from(key: String) -> Result<Self, KeyError> {
        if key.len() < MIN_TOKEN_KEY_BYTES {
            return Err(KeyError::TooShort);
        }
        if key == PLACEHOLDER_TOKEN_KEY {
            return Err(KeyError::Placeholder);
        }
        if entropy_bound_bits(key.as_bytes()) < MIN_TOKEN_KEY_BITS {
            return Err(KeyError::Predictable);
        }
        Ok(Self(Secret::new(key)))
    }
}

/// The keys tokens are signed and verified with, each under its JWS `kid`: the first signs,
/// all verify. Kids are unique and non-empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenKeys {
    signing: (String, TokenKey),
    verifying_only: Vec<(String, TokenKey)>,
}

impl TokenKeys {
    /// `keys` in order, the first signing.
    pub fn new(keys: Vec<(String, TokenKey)>) -> Result<Self, TokenKeyError> {
        for (index, (kid, _)) in keys.iter().enumerate() {
            if kid.is_empty() {
                return Err(TokenKeyError::EmptyKid { entry: index + 1 });
            }
            if let Some(first) = keys[..index].iter().position(|(seen, _)| seen == kid) {
                return Err(TokenKeyError::RepeatedKid {
                    entry: index + 1,
                    first: first + 1,
                });
            }
        }
        let mut keys = keys.into_iter();
        let signing = keys.next().ok_or(TokenKeyError::NoKeys)?;
        Ok(Self {
            signing,
            verifying_only: keys.collect(),
        })
    }

    /// A random key under a random kid, for a process that was given none.
    pub fn random() -> Self {
        Self {
            signing: (
                hex(&random_bytes::<4>()),
                TokenKey(Secret::new(random_secret())),
            ),
            verifying_only: Vec::new(),
        }
    }

    /// The kid and key new tokens are signed with.
    pub fn signing(&self) -> (&str, &TokenKey) {
        (&self.signing.0, &self.signing.1)
    }

    /// Every kid and key, the signing one first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &TokenKey)> {
        std::iter::once(&self.signing)
            .chain(&self.verifying_only)
            .map(|(kid, key)| (kid.as_str(), key))
    }

    /// Reads `token_key` (`MYAPI_TOKEN_KEY`) and `token_keys` (`MYAPI_TOKEN_KEYS`), of which
    /// at most one may be set. Errors name the variable and never quote a key.
    pub(crate) fn from_settings<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Self>, D::Error> {
        #[derive(Deserialize)]
        struct Variables {
            token_key: Option<String>,
            token_keys: Option<String>,
        }
        let error = |message: String| serde::de::Error::custom(message);
        let Variables {
            token_key,
            token_keys,
        } = Variables::deserialize(deserializer)?;
        match (token_key, token_keys) {
            (Some(key), Some(_)) => Err(error(format!(
                "token_keys (MYAPI_TOKEN_KEYS): cannot be combined with token_key \
                 (MYAPI_TOKEN_KEY); set only one (that key's kid is {})",
                TokenKey(Secret::new(key)).derived_kid()
            ))),
            (Some(key), None) => TokenKey::try_from(key)
                .map(|key| Some(key.into()))
                .map_err(|e| error(format!("token_key (MYAPI_TOKEN_KEY): {e}"))),
            (None, Some(list)) => list
                .parse()
                .map(Some)
                .map_err(|e| error(format!("token_keys (MYAPI_TOKEN_KEYS): {e}"))),
            (None, None) => Ok(None),
        }
    }
}

/// A single key (`MYAPI_TOKEN_KEY`) signs and verifies under its [derived kid](TokenKey::derived_kid).
impl From<TokenKey> for TokenKeys {
    fn from(key: TokenKey) -> Self {
        Self {
            signing: (key.derived_kid(), key),
            verifying_only: Vec::new(),
        }
    }
}

/// `MYAPI_TOKEN_KEYS`: comma-separated `kid:key` entries, each split at its first `:` (so a
/// key may contain `:` but neither a kid nor a key may contain `,`). Blanks around an entry
/// and empty entries are ignored.
impl FromStr for TokenKeys {
    type Err = TokenKeyError;

    fn from_str(list: &str) -> Result<Self, TokenKeyError> {
        let keys = list
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .enumerate()
            .map(|(index, entry)| {
                let entry_number = index + 1;
                let (kid, key) = entry.split_once(':').ok_or(TokenKeyError::NotKidKey {
                    entry: entry_number,
                })?;
                let key = TokenKey::try_from(key.to_owned()).map_err(|problem| {
                    TokenKeyError::BadKey {
                        entry: entry_number,
                        problem,
                    }
                })?;
                Ok((kid.to_owned(), key))
            })
            .collect::<Result<Vec<_>, TokenKeyError>>()?;
        Self::new(keys)
    }
}

/// Why one key was refused; the key is never quoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("must be at least 32 bytes")]
    TooShort,
    #[error(
        "is too predictable: its length times log2 of its number of distinct bytes must be at \
         least 128; make one with `{KEY_RECIPE}`"
    )]
    Predictable,
    #[error(
        "is the placeholder of deploy/myapi.env.example, which is public; make one with \
         `{KEY_RECIPE}`"
    )]
    Placeholder,
}

/// Why a token key setting was refused. Entries are numbered from 1 and never quoted: a
/// malformed one may well be a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenKeyError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("lists no kid:key entry")]
    NoKeys,
    #[error("entry {entry} is not kid:key")]
    NotKidKey { entry: usize },
    #[error("entry {entry} has an empty kid")]
    EmptyKid { entry: usize },
    #[error("entry {entry}: the key {problem}")]
    BadKey {
        entry: usize,
        #[source]
        problem: KeyError,
    },
    #[error("entry {entry} repeats the kid of entry {first}")]
    RepeatedKid { entry: usize, first: usize },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key that passes every check, told apart from others by its first character.
    fn good_key(tag: char) -> String {
        format!("{tag}-0123456789abcdefghijklmnopqrstuv")
    }

    fn kids(keys: &TokenKeys) -> Vec<&str> {
        keys.iter().map(|(kid, _)| kid).collect()
    }

    #[test]
    fn short_token_key_is_refused() {
        let key = good_key('k');
        assert_eq!(
            TokenKey::try_from(key[..31].to_owned()),
            Err(KeyError::TooShort)
        );
        assert!(TokenKey::try_from(key[..32].to_owned()).is_ok());
    }

    #[test]
    fn a_key_needs_an_entropy_bound_of_128_bits() {
        for (key, bits) in [
            ("k".repeat(64), 0.0),
            ("ab".repeat(64), 128.0),
            ("ab".repeat(63) + "a", 127.0),
            ("0123456789abcdef".repeat(2), 128.0),
            ("0123456789abcde".repeat(3)[..32].to_owned(), 125.02),
        ] {
            let bound = entropy_bound_bits(key.as_bytes());
            assert!((bound - bits).abs() < 0.01, "{key}: {bound}");
            let expected = if bits >= 128.0 {
                Ok(())
            } else {
                Err(KeyError::Predictable)
            };
            assert_eq!(TokenKey::try_from(key.clone()).map(drop), expected, "{key}");
        }
        for weak in ["password".repeat(4), "1234".repeat(10), "aAaA".repeat(16)] {
            assert_eq!(
                TokenKey::try_from(weak.clone()),
                Err(KeyError::Predictable),
                "{weak}"
            );
        }
    }

    /// The recipes the README and the deployment kit give, and the keys the tests use.
    #[test]
    fn generated_keys_pass() {
        for _ in 0..2000 {
            let bytes: [u8; 48] = random_bytes();
            use base64::Engine;
            let standard = base64::engine::general_purpose::STANDARD;
            for key in [
                standard.encode(&bytes[..32]),
                standard.encode(bytes),
                hex(&bytes[..32]),
            ] {
                assert!(TokenKey::try_from(key.clone()).is_ok(), "{key}");
            }
        }
        for key in [
            "test-token-key-0123456789abcdef-0123456789",
            "new-token-key-fedcba9876543210-fedcba9876",
            "bench-token-key-0123456789abcdef-0123456789",
        ] {
            assert!(TokenKey::try_from(key.to_owned()).is_ok(), "{key}");
        }
    }

    #[test]
    fn the_placeholder_of_the_example_environment_is_refused() {
        let example = include_str!("../../../../deploy/myapi.env.example");
        let keys = example
            .lines()
            .find_map(|line| line.strip_prefix("MYAPI_TOKEN_KEYS="))
            .unwrap()
            .trim_matches('\'');
        let (_, key) = keys.split_once(':').unwrap();
        assert_eq!(key, PLACEHOLDER_TOKEN_KEY);
        assert_eq!(
            keys.parse::<TokenKeys>(),
            Err(TokenKeyError::BadKey {
                entry: 1,
                problem: KeyError::Placeholder
            })
        );
        assert_eq!(
            TokenKey::try_from(key.to_owned()),
            Err(KeyError::Placeholder)
        );
    }

    #[test]
    fn a_single_key_signs_under_the_start_of_its_sha256() {
        // printf %s k-0123456789abcdefghijklmnopqrstuv | sha256sum | cut -c1-8
        let key = TokenKey::try_from(good_key('k')).unwrap();
        assert_eq!(key.derived_kid(), "e2411d63");
        let keys = TokenKeys::from(key);
        assert_eq!(kids(&keys), ["e2411d63"]);
        assert_eq!(keys.signing().1.as_bytes(), good_key('k').as_bytes());
    }

    #[test]
    fn token_keys_entries_split_at_their_first_colon_and_the_first_signs() {
        let with_colons = format!("a:b:{}", good_key('c'));
        let keys: TokenKeys = format!(" 2025-06:{}, old:{with_colons} ,", good_key('n'))
            .parse()
            .unwrap();
        assert_eq!(kids(&keys), ["2025-06", "old"]);
        assert_eq!(keys.signing().0, "2025-06");
        let (_, old) = keys.iter().nth(1).unwrap();
        assert_eq!(old.as_bytes(), with_colons.as_bytes());
    }

    #[test]
    fn bad_token_keys_entries_are_refused_without_quoting_them() {
        let key = good_key('k');
        let other = good_key('o');
        for (list, expected) in [
            (String::new(), TokenKeyError::NoKeys),
            (" , ".to_owned(), TokenKeyError::NoKeys),
            (key.clone(), TokenKeyError::NotKidKey { entry: 1 }),
            (
                format!("a:{key},:{other}"),
                TokenKeyError::EmptyKid { entry: 2 },
            ),
            (
                format!("a:{key},b:short"),
                TokenKeyError::BadKey {
                    entry: 2,
                    problem: KeyError::TooShort,
                },
            ),
            (
                format!("a:{key},b:{}", "b".repeat(40)),
                TokenKeyError::BadKey {
                    entry: 2,
                    problem: KeyError::Predictable,
                },
            ),
            // A key written before its kid: the kid is the key, and neither is quoted.
            (
                format!("{key}:a"),
                TokenKeyError::BadKey {
                    entry: 1,
                    problem: KeyError::TooShort,
                },
            ),
            (
                format!("a:{key},b:{other},a:{other}"),
                TokenKeyError::RepeatedKid { entry: 3, first: 1 },
            ),
        ] {
            let error = list.parse::<TokenKeys>().unwrap_err();
            assert_eq!(error, expected, "{list}");
            let message = error.to_string();
            assert!(!message.contains("0123456789"), "{message}");
        }
    }

    #[test]
    fn a_random_key_set_has_one_fresh_key() {
        let (first, second) = (TokenKeys::random(), TokenKeys::random());
        assert_ne!(first, second);
        let (kid, key) = first.signing();
        assert_eq!(kid.len(), 8);
        assert!(key.as_bytes().len() >= MIN_TOKEN_KEY_BYTES);
        assert_eq!(first.iter().count(), 1);
    }
}
