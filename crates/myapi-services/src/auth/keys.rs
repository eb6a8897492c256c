//! The keys access tokens are signed and verified with: HS256 secrets, one
//! (`MYAPI_TOKEN_KEY`) or a `kid:key` list (`MYAPI_TOKEN_KEYS`), each checked for length and
//! predictability; and Ed25519 PEM files (`MYAPI_TOKEN_KEY_FILES`), whose public halves are
//! published so that other services verify tokens without holding a secret.

use std::fs;
use std::path::Path;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};

use crate::secrets::{Secret, hex, random_bytes};

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

/// A key a token names by its JWS `kid`. The algorithm is the key's, never the token's: a
/// token whose `alg` differs from its key's is refused, so the published Ed25519 key can
/// never serve as an HMAC secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwsKey {
    /// An HS256 secret: signs and verifies, and is never published.
    Hs256(TokenKey),
    /// An Ed25519 private key: signs (EdDSA) and verifies; its public half is published.
    Ed25519(Box<SigningKey>),
    /// An Ed25519 public key: verifies and is published. Listed ahead of the private key
    /// being deployed, it lets every instance accept that key's tokens before any signs.
    Ed25519Public(VerifyingKey),
}

/// How long verifiers may cache `/.well-known/jwks.json`, in seconds: a new key must be
/// published at least this long before it signs.
pub const JWKS_MAX_AGE_SECS: u32 = 300;

/// The PKCS#8 v1 encoding of an Ed25519 private key is these 16 bytes, then the 32-byte
/// seed (RFC 8410 §7); `jsonwebtoken` takes signing keys in that form.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

impl JwsKey {
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Hs256(_) => Algorithm::HS256,
            Self::Ed25519(_) | Self::Ed25519Public(_) => Algorithm::EdDSA,
        }
    }

    pub fn can_sign(&self) -> bool {
        !matches!(self, Self::Ed25519Public(_))
    }

    /// The key others may see; `None` for a secret.
    pub fn public_key(&self) -> Option<VerifyingKey> {
        match self {
            Self::Hs256(_) => None,
            Self::Ed25519(key) => Some(key.verifying_key()),
            Self::Ed25519Public(key) => Some(*key),
        }
    }

    /// `None` for a public key.
    pub fn encoding_key(&self) -> Option<EncodingKey> {
        match self {
            Self::Hs256(key) => Some(EncodingKey::from_secret(key.as_bytes())),
            Self::Ed25519(key) => {
                let der = [&PKCS8_ED25519_PREFIX[..], key.as_bytes()].concat();
                Some(EncodingKey::from_ed_der(&der))
            }
            Self::Ed25519Public(_) => None,
        }
    }

    pub fn decoding_key(&self) -> DecodingKey {
        match self {
            Self::Hs256(key) => DecodingKey::from_secret(key.as_bytes()),
            Self::Ed25519(key) => DecodingKey::from_ed_der(key.verifying_key().as_bytes()),
            Self::Ed25519Public(key) => DecodingKey::from_ed_der(key.as_bytes()),
        }
    }

    /// The secret bytes other keys are derived from; `None` for a public key.
    pub(crate) fn secret_bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Hs256(key) => Some(key.as_bytes()),
            Self::Ed25519(key) => Some(key.as_bytes()),
            Self::Ed25519Public(_) => None,
        }
    }

    /// Reads an Ed25519 key from a PEM file: a PKCS#8 private key (`BEGIN PRIVATE KEY`,
    /// which `myapi-cli generate-key` and `openssl genpkey -algorithm ed25519` write) that
    /// other users can neither read nor change, or a public key (`BEGIN PUBLIC KEY`) that
    /// only its owner can change (whoever can swap it can sign tokens this server accepts).
    /// The mode checked is that of the file read, opened once.
    pub fn read_file(path: &Path) -> Result<Self, KeyFileError> {
        use std::io::Read;
        let mut file = fs::File::open(path).map_err(KeyFileError::Unreadable)?;
        let mode = file_mode(&file)?;
        let mut pem = String::new();
        file.read_to_string(&mut pem)
            .map_err(KeyFileError::Unreadable)?;
        let (key, refused_bits) = if let Ok(key) = SigningKey::from_pkcs8_pem(&pem) {
            (Self::Ed25519(Box::new(key)), 0o027)
        } else if let Ok(key) = VerifyingKey::from_public_key_pem(&pem) {
            (Self::Ed25519Public(key), 0o022)
        } else {
            return Err(KeyFileError::NotEd25519);
        };
        match mode {
            Some(mode) if mode & refused_bits != 0 => Err(KeyFileError::OpenToOthers {
                mode: mode & 0o777,
                private: key.can_sign(),
            }),
            _ => Ok(key),
        }
    }
}

/// The permission bits of `file`; `None` where there are none (not Unix).
fn file_mode(file: &fs::File) -> Result<Option<u32>, KeyFileError> {
    let metadata = file.metadata().map_err(KeyFileError::Unreadable)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Ok(Some(metadata.permissions().mode()))
    }
    #[cfg(not(unix))]
    {
        let _ = metadata;
        Ok(None)
    }
}

impl From<TokenKey> for JwsKey {
    fn from(key: TokenKey) -> Self {
        Self::Hs256(key)
    }
}

/// The key's RFC 7638 thumbprint: base64url of the SHA-256 of its JWK's required members,
/// in order. The kid of a key file listed without one, so that every instance and every
/// verifier derive the same kid from the key alone.
pub fn thumbprint(key: &VerifyingKey) -> String {
    let x = URL_SAFE_NO_PAD.encode(key.as_bytes());
    let members = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(members))
}

/// A new random Ed25519 key, as `myapi-cli generate-key` and a process with no keys make.
pub fn generate_ed25519() -> SigningKey {
    SigningKey::from_bytes(&random_bytes())
}

/// Writes a new Ed25519 key to `path` (PKCS#8 PEM, mode 0600) and its public half to
/// `path` + `.pub` (for instances that should accept the key before it signs), never over
/// an existing file. Returns the key's kid, its [thumbprint].
pub fn write_new_key(path: &Path) -> Result<String, KeyFileError> {
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
    let key = generate_ed25519();
    let public = key.verifying_key();
    fn encoding_failed<E: std::error::Error + Send + Sync + 'static>(error: E) -> KeyFileError {
        KeyFileError::Unwritable(std::io::Error::new(std::io::ErrorKind::InvalidData, error))
    }
    let private_pem = key.to_pkcs8_pem(LineEnding::LF).map_err(encoding_failed)?;
    let public_pem = public
        .to_public_key_pem(LineEnding::LF)
        .map_err(encoding_failed)?;
    let mut public_name = path.file_name().unwrap_or_default().to_owned();
    public_name.push(".pub");
    let public_path = path.with_file_name(public_name);
    if public_path.exists() {
        return Err(KeyFileError::Unwritable(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} exists", public_path.display()),
        )));
    }
    write_new_file(path, private_pem.as_bytes(), 0o600)?;
    if let Err(error) = write_new_file(&public_path, public_pem.as_bytes(), 0o644) {
        let _ = fs::remove_file(path);
        return Err(error);
    }
    Ok(thumbprint(&public))
}

fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeyFileError> {
    use std::io::Write;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    options
        .open(path)
        .and_then(|mut file| file.write_all(contents).and_then(|()| file.sync_all()))
        .map_err(KeyFileError::Unwritable)
}

/// The keys tokens are signed and verified with, each under its JWS `kid`: one signs, all
/// verify. Kids are unique and non-empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenKeys {
    signing: (String, JwsKey),
    verifying_only: Vec<(String, JwsKey)>,
}

impl TokenKeys {
    /// `keys` in order: the first that can sign (not a public key) signs.
    pub fn new(keys: Vec<(String, JwsKey)>) -> Result<Self, TokenKeyError> {
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
        let mut keys = keys;
        let signer = keys.iter().position(|(_, key)| key.can_sign());
        let signing = match signer {
            Some(index) => keys.remove(index),
            None if keys.is_empty() => return Err(TokenKeyError::NoKeys),
            None => return Err(TokenKeyError::NoSigningKey),
        };
        Ok(Self {
            signing,
            verifying_only: keys,
        })
    }

    /// A random Ed25519 key under its thumbprint, for a process that was given none.
    pub fn random() -> Self {
        let key = generate_ed25519();
        Self {
            signing: (
                thumbprint(&key.verifying_key()),
                JwsKey::Ed25519(Box::new(key)),
            ),
            verifying_only: Vec::new(),
        }
    }

    /// The kid and key new tokens are signed with.
    pub fn signing(&self) -> (&str, &JwsKey) {
        (&self.signing.0, &self.signing.1)
    }

    /// Every kid and key, the signing one first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &JwsKey)> {
        std::iter::once(&self.signing)
            .chain(&self.verifying_only)
            .map(|(kid, key)| (kid.as_str(), key))
    }

    /// Reads `token_key` (`MYAPI_TOKEN_KEY`) or `token_keys` (`MYAPI_TOKEN_KEYS`), at most one
    /// of them, and `token_key_files` (`MYAPI_TOKEN_KEY_FILES`). With a private key file,
    /// that file signs and the secrets only verify: tokens issued under them stay valid
    /// until they expire. Errors name the variable and never quote a key.
    pub(crate) fn from_settings<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Self>, D::Error> {
        #[derive(Deserialize)]
        struct Variables {
            token_key: Option<String>,
            token_keys: Option<String>,
            token_key_files: Option<String>,
        }
        let error = |message: String| serde::de::Error::custom(message);
        let Variables {
            token_key,
            token_keys,
            token_key_files,
        } = Variables::deserialize(deserializer)?;
        let secrets = match (token_key, token_keys) {
            (Some(key), Some(_)) => {
                return Err(error(format!(
                    "token_keys (MYAPI_TOKEN_KEYS): cannot be combined with token_key \
                     (MYAPI_TOKEN_KEY); set only one (that key's kid is {})",
                    TokenKey(Secret::new(key)).derived_kid()
                )));
            }
            (Some(key), None) => TokenKey::try_from(key)
                .map(|key| Some(key.into()))
                .map_err(|e| error(format!("token_key (MYAPI_TOKEN_KEY): {e}")))?,
            (None, Some(list)) => list
                .parse()
                .map(Some)
                .map_err(|e| error(format!("token_keys (MYAPI_TOKEN_KEYS): {e}")))?,
            (None, None) => None,
        };
        let Some(files) = token_key_files.filter(|list| !list.trim().is_empty()) else {
            return Ok(secrets);
        };
        let files_error =
            |e: TokenKeyError| error(format!("token_key_files (MYAPI_TOKEN_KEY_FILES): {e}"));
        let mut keys = read_key_files(&files).map_err(files_error)?;
        let secrets = secrets.map(|secrets| {
            secrets
                .iter()
                .map(|(kid, key)| (kid.to_owned(), key.clone()))
                .collect::<Vec<_>>()
        });
        for (kid, _) in secrets.iter().flatten() {
            if keys.iter().any(|(file_kid, _)| file_kid == kid) {
                return Err(files_error(TokenKeyError::SharedKid { kid: kid.clone() }));
            }
        }
        keys.extend(secrets.into_iter().flatten());
        Self::new(keys).map(Some).map_err(files_error)
    }
}

/// `MYAPI_TOKEN_KEY_FILES`: comma-separated `kid:path` entries, each split at its first `:`,
/// or bare paths, which take their key's [thumbprint] as kid. Kids are checked by
/// [`TokenKeys::new`] once the secrets have joined.
fn read_key_files(list: &str) -> Result<Vec<(String, JwsKey)>, TokenKeyError> {
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .enumerate()
        .map(|(index, entry)| {
            let (kid, path) = match entry.split_once(':') {
                Some((kid, path)) => (Some(kid), path),
                None => (None, entry),
            };
            let key = JwsKey::read_file(Path::new(path)).map_err(|problem| {
                // A path that names no file may be a secret set in the wrong variable.
                let exists = fs::symlink_metadata(path).is_ok();
                TokenKeyError::BadFile {
                    entry: index + 1,
                    path: if exists {
                        format!(" ({path})")
                    } else {
                        String::new()
                    },
                    problem: problem.to_string(),
                }
            })?;
            let kid = match (kid, &key) {
                (Some(kid), _) => kid.to_owned(),
                (None, JwsKey::Ed25519(private)) => thumbprint(&private.verifying_key()),
                (None, JwsKey::Ed25519Public(public)) => thumbprint(public),
                (None, JwsKey::Hs256(_)) => return Err(TokenKeyError::NoKeys),
            };
            Ok((kid, key))
        })
        .collect()
}

/// A single key (`MYAPI_TOKEN_KEY`) signs and verifies under its [derived kid](TokenKey::derived_kid).
impl From<TokenKey> for TokenKeys {
    fn from(key: TokenKey) -> Self {
        Self {
            signing: (key.derived_kid(), key.into()),
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
                Ok((kid.to_owned(), key.into()))
            })
            .collect::<Result<Vec<_>, TokenKeyError>>()?;
        Self::new(keys)
    }
}

/// Why a key file was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot be read: {0}")]
    Unreadable(#[source] std::io::Error),
    #[error("cannot be written: {0}")]
    Unwritable(#[source] std::io::Error),
    #[error(
        "holds no Ed25519 key in PEM: expected a PKCS#8 private key (BEGIN PRIVATE KEY) or \
         a public key (BEGIN PUBLIC KEY); make one with `myapi-cli generate-key PATH`"
    )]
    NotEd25519,
    #[error(
        "is {} (mode 0{mode:o}); `chmod {}` it",
        if *private { "a private key other users can access or its group can change" }
        else { "a public key others than its owner can change" },
        if *private { "600" } else { "644" }
    )]
    OpenToOthers { mode: u32, private: bool },
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
    #[error("entry {entry}{path} {problem}")]
    BadFile {
        entry: usize,
        /// ` (PATH)`, or nothing for a path naming no file: that may be a secret.
        path: String,
        problem: String,
    },
    #[error("the kid {kid} names both a key file and a MYAPI_TOKEN_KEY(S) secret")]
    SharedKid { kid: String },
    #[error("lists only public keys: a private key file or MYAPI_TOKEN_KEY(S) must sign tokens")]
    NoSigningKey,
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
        assert_eq!(
            keys.signing().1.secret_bytes(),
            Some(good_key('k').as_bytes())
        );
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
        assert_eq!(old.secret_bytes(), Some(with_colons.as_bytes()));
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
    fn a_random_key_set_has_one_fresh_ed25519_key_under_its_thumbprint() {
        let (first, second) = (TokenKeys::random(), TokenKeys::random());
        assert_ne!(first, second);
        let (kid, key) = first.signing();
        assert_eq!(key.algorithm(), Algorithm::EdDSA);
        assert_eq!(kid, thumbprint(&key.public_key().unwrap()));
        assert_eq!(first.iter().count(), 1);
    }

    /// RFC 8037 appendix A.1 and A.3: a private key, its public half and its thumbprint.
    #[test]
    fn the_thumbprint_is_rfc_7638s() {
        let d = URL_SAFE_NO_PAD
            .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
            .unwrap();
        let key = SigningKey::from_bytes(&d.try_into().unwrap());
        assert_eq!(
            URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()),
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        );
        assert_eq!(
            thumbprint(&key.verifying_key()),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn the_signing_key_is_given_to_jsonwebtoken_as_pkcs8() {
        let key = generate_ed25519();
        let ours = JwsKey::Ed25519(Box::new(key.clone()));
        let encoding = ours.encoding_key().unwrap();
        assert_eq!(SigningKey::from_pkcs8_der(encoding.inner()).unwrap(), key);
        let header = jsonwebtoken::Header::new(Algorithm::EdDSA);
        let token = jsonwebtoken::encode(&header, &serde_json::json!({}), &encoding).unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        let decoding = ours.decoding_key();
        jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).unwrap();
    }

    fn write_key(dir: &Path, name: &str, pem: &str, mode: u32) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        fs::write(&path, pem).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn key_files_hold_a_private_key_kept_from_others_or_a_public_key() {
        use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
        use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
        let dir = tempfile::tempdir().unwrap();
        let key = generate_ed25519();
        let private = key.to_pkcs8_pem(LineEnding::LF).unwrap();
        let public = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        for mode in [0o600, 0o400, 0o640] {
            let path = write_key(dir.path(), "private.pem", &private, mode);
            let read = JwsKey::read_file(&path).unwrap();
            assert_eq!(read, JwsKey::Ed25519(Box::new(key.clone())), "{mode:o}");
        }
        for mode in [0o644, 0o604, 0o602, 0o660] {
            let path = write_key(dir.path(), "private.pem", &private, mode);
            assert!(matches!(
                JwsKey::read_file(&path),
                Err(KeyFileError::OpenToOthers { mode: m, private: true }) if m == mode
            ));
        }
        for mode in [0o644, 0o444, 0o600] {
            let path = write_key(dir.path(), "public.pem", &public, mode);
            assert_eq!(
                JwsKey::read_file(&path).unwrap(),
                JwsKey::Ed25519Public(key.verifying_key())
            );
        }
        for mode in [0o664, 0o646] {
            let path = write_key(dir.path(), "public.pem", &public, mode);
            assert!(matches!(
                JwsKey::read_file(&path),
                Err(KeyFileError::OpenToOthers { mode: m, private: false }) if m == mode
            ));
        }
        let path = write_key(dir.path(), "secret.pem", &good_key('k'), 0o600);
        assert!(matches!(
            JwsKey::read_file(&path),
            Err(KeyFileError::NotEd25519)
        ));
        assert!(matches!(
            JwsKey::read_file(&dir.path().join("missing.pem")),
            Err(KeyFileError::Unreadable(_))
        ));
    }

    #[test]
    fn a_written_key_reads_back_under_the_kid_it_was_given() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.pem");
        let kid = write_new_key(&path).unwrap();
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        let public_path = dir.path().join("token.pem.pub");
        let (private, public) = (
            JwsKey::read_file(&path).unwrap(),
            JwsKey::read_file(&public_path).unwrap(),
        );
        assert_eq!(private.public_key(), public.public_key());
        assert_eq!(kid, thumbprint(&public.public_key().unwrap()));
        assert!(!public.can_sign());
        assert!(matches!(
            write_new_key(&path),
            Err(KeyFileError::Unwritable(e)) if e.kind() == std::io::ErrorKind::AlreadyExists
        ));
        assert_eq!(JwsKey::read_file(&path).unwrap(), private, "left as it was");
    }

    #[test]
    fn a_private_key_file_signs_ahead_of_secrets_and_public_keys_only_verify() {
        let secret = || JwsKey::from(TokenKey::try_from(good_key('k')).unwrap());
        let private = JwsKey::Ed25519(Box::new(generate_ed25519()));
        let public = JwsKey::Ed25519Public(generate_ed25519().verifying_key());
        let keys = TokenKeys::new(vec![
            ("next".into(), public.clone()),
            ("now".into(), private.clone()),
            ("old".into(), secret()),
        ])
        .unwrap();
        assert_eq!(keys.signing(), ("now", &private));
        assert_eq!(kids(&keys), ["now", "next", "old"]);
        let keys = TokenKeys::new(vec![
            ("next".into(), public.clone()),
            ("old".into(), secret()),
        ]);
        assert_eq!(keys.unwrap().signing().0, "old");
        assert_eq!(
            TokenKeys::new(vec![("next".into(), public)]),
            Err(TokenKeyError::NoSigningKey)
        );
    }
}
