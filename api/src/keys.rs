//! API keys: what a caller without AWS credentials sends in
//! `Authorization: Bearer <key>` (and what the dashboard's login form takes),
//! and what the API keeps of it (only a hash).
//!
//! A key is `kfk_` followed by 32 bytes from the OS generator in unpadded
//! base64url (47 characters in all); the prefix makes a leaked key easy to
//! recognize (secret scanners, logs). The API stores an [`ApiKeyEntry`]:
//! the key's id (who it belongs to; what logs name), the hex SHA-256 of the
//! whole key string, and its scopes. A key lives nowhere else: in
//! particular never as an API Gateway API key, whose value API Gateway
//! hands to anyone allowed `apigateway:GET` (see [`crate::auth`]).
//!
//! **Why an unsalted SHA-256 is the right hash.** Salts and slow hashes
//! (bcrypt, scrypt, Argon2) protect low-entropy secrets such as passwords
//! from guessing once their hashes leak. A key here carries 256 bits from
//! the OS generator: no dictionary holds it, and guessing is hopeless at
//! any hash speed, so a plain SHA-256 is preimage-resistant enough and costs
//! one fast hash per request (a slow hash would instead make every request
//! slow and invite denial of service). The same reasoning is behind the job
//! tokens' hashes in the run manifest. A hash is not a key: presenting it
//! opens nothing ([`KeySet::verify`] hashes what it is given).
//!
//! **Comparison.** [`KeySet::verify`] hashes the presented key once and
//! compares the digest with every entry's, in constant time and without
//! stopping at a match, so the time taken says neither whether nor where a
//! key matched.

use crate::principals::PrincipalEntry;
use rand::TryRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// The prefix of every key keyfleet makes.
pub const PREFIX: &str = "kfk_";

/// What a key may do: `read` for every GET, `rotate` for the two POSTs
/// (emergency rotation and reactivation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Read,
    Rotate,
}

impl Scope {
    pub const ALL: [Scope; 2] = [Scope::Read, Scope::Rotate];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Rotate => "rotate",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Scope, KeyError> {
        Scope::ALL
            .into_iter()
            .find(|c| c.as_str() == s.trim())
            .ok_or_else(|| KeyError::Scope(s.to_string()))
    }
}

/// A key as the API stores it: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// Who holds the key (`[A-Za-z0-9._-]{1,64}`); logs name it.
    pub id: String,
    /// Hex SHA-256 of the key string (prefix included).
    pub sha256: String,
    pub scopes: Vec<Scope>,
}

impl ApiKeyEntry {
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// A key entry or key list that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("API key id `{0}` must be 1-64 of [A-Za-z0-9._-]")]
    Id(String),
    #[error("API key `{0}`: sha256 must be 64 hex digits")]
    Hash(String),
    #[error("API key `{0}` has no scope (give read, rotate or both)")]
    NoScope(String),
    #[error("unknown scope `{0}` (known: read, rotate)")]
    Scope(String),
    #[error("API key id `{0}` is listed twice")]
    DuplicateId(String),
    #[error("API keys `{0}` and `{1}` have the same hash")]
    DuplicateHash(String, String),
    #[error("the API key list is not JSON of the documented shape: {0}")]
    Json(String),
    #[error(
        "principal `{0}` must be the ARN of an IAM role or user \
         (arn:aws:iam::<account>:role/<name> or :user/<name>); a role's sessions are matched through the role's ARN"
    )]
    PrincipalArn(String),
    #[error("principal `{0}` has no scope (give read, rotate or both)")]
    PrincipalNoScope(String),
    #[error("principals `{0}` and `{1}` are the same IAM principal")]
    DuplicatePrincipal(String, String),
}

/// Hex SHA-256 of a key string.
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new key for `id` with `scopes`: the plaintext, to hand over once, and
/// the entry to store. Panics only if the OS random generator is missing.
pub fn generate(id: &str, scopes: &[Scope]) -> (String, ApiKeyEntry) {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the OS random generator is available");
    let key = format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let mut scopes = scopes.to_vec();
    scopes.sort();
    scopes.dedup();
    let entry = ApiKeyEntry {
        id: id.to_string(),
        sha256: hash(&key),
        scopes,
    };
    (key, entry)
}

/// The keys the API accepts.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    entries: Vec<(ApiKeyEntry, [u8; 32])>,
}

impl KeySet {
    /// Checks every entry (id, hash, scopes) and refuses duplicates.
    pub fn new(entries: Vec<ApiKeyEntry>) -> Result<KeySet, KeyError> {
        let mut out: Vec<(ApiKeyEntry, [u8; 32])> = Vec::with_capacity(entries.len());
        for mut e in entries {
            if !keyfleet_protocol::is_key_ring_id(&e.id) {
                return Err(KeyError::Id(e.id));
            }
            e.sha256 = e.sha256.to_ascii_lowercase();
            let digest: [u8; 32] = hex::decode(&e.sha256)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| KeyError::Hash(e.id.clone()))?;
            if e.scopes.is_empty() {
                return Err(KeyError::NoScope(e.id));
            }
            if let Some((other, _)) = out.iter().find(|(o, _)| o.id == e.id) {
                return Err(KeyError::DuplicateId(other.id.clone()));
            }
            if let Some((other, _)) = out.iter().find(|(_, d)| *d == digest) {
                return Err(KeyError::DuplicateHash(other.id.clone(), e.id));
            }
            out.push((e, digest));
        }
        Ok(KeySet { entries: out })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry `id`.
    pub fn get(&self, id: &str) -> Option<&ApiKeyEntry> {
        self.entries.iter().map(|(e, _)| e).find(|e| e.id == id)
    }

    /// The entry whose hash is the presented key's, comparing against
    /// every entry in constant time (see the module doc).
    pub fn verify(&self, presented: &str) -> Option<&ApiKeyEntry> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = 0usize;
        let mut any = 0u8;
        for (i, (_, stored)) in self.entries.iter().enumerate() {
            let eq = ct_eq(&digest, stored);
            // All ones when equal, all zeros otherwise: select without a branch.
            let mask = (eq as usize).wrapping_neg();
            found = (found & !mask) | (i & mask);
            any |= eq;
        }
        if std::hint::black_box(any) == 1 {
            self.entries.get(found).map(|(e, _)| e)
        } else {
            None
        }
    }
}

/// 1 when equal, 0 otherwise, looking at every byte.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> u8 {
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    let diff = std::hint::black_box(diff);
    // 1 iff diff == 0.
    (((diff as u16).wrapping_sub(1) >> 8) & 1) as u8
}

/// What the keys secret holds: the JSON list of key entries (the first
/// format, still read), or an object
/// `{"keys": [...], "principals": [...], "session_key": "<64 hex>"}`, every
/// member optional: `principals` maps IAM principals to scopes for `/v1`
/// behind API Gateway ([`crate::principals`]), and `session_key` signs the
/// dashboard's session cookies (so that every Lambda instance accepts the
/// sessions of the others).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysDocument {
    pub keys: Vec<ApiKeyEntry>,
    pub principals: Vec<PrincipalEntry>,
    pub session_key: Option<[u8; 32]>,
}

/// Parses the keys secret (see [`KeysDocument`]).
pub fn parse_keys_document(text: &str) -> Result<KeysDocument, KeyError> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Doc {
        List(Vec<ApiKeyEntry>),
        Object {
            #[serde(default)]
            keys: Vec<ApiKeyEntry>,
            #[serde(default)]
            principals: Vec<PrincipalEntry>,
            #[serde(default)]
            session_key: Option<String>,
        },
    }
    let doc: Doc = serde_json::from_str(text).map_err(|e| KeyError::Json(e.to_string()))?;
    Ok(match doc {
        Doc::List(keys) => KeysDocument {
            keys,
            principals: Vec::new(),
            session_key: None,
        },
        Doc::Object {
            keys,
            principals,
            session_key,
        } => KeysDocument {
            keys,
            principals,
            session_key: session_key
                .map(|s| {
                    hex::decode(s.trim())
                        .ok()
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(|| KeyError::Json("session_key must be 64 hex digits".into()))
                })
                .transpose()?,
        },
    })
}

/// Why the keys secret gave no keys.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("reading the API keys in {secret}: {error}")]
    Read { secret: String, error: String },
    #[error("the API keys in {secret}")]
    Keys {
        secret: String,
        #[source]
        error: KeyError,
    },
}

/// Reads and parses the keys secret (see [`KeysDocument`]): the API's
/// Lambda and `keyfleet serve` (`[api] keys_secret`, which takes only its
/// keys) both read it here.
pub async fn read_keys_secret(
    sdk: &aws_config::SdkConfig,
    secret: &str,
) -> Result<KeysDocument, SecretError> {
    let out = aws_sdk_secretsmanager::Client::new(sdk)
        .get_secret_value()
        .secret_id(secret)
        .send()
        .await
        .map_err(|e| SecretError::Read {
            secret: secret.to_string(),
            error: aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
        })?;
    parse_keys_document(out.secret_string().unwrap_or_default()).map_err(|error| {
        SecretError::Keys {
            secret: secret.to_string(),
            error,
        }
    })
}

/// Parses `read,rotate`.
pub fn parse_scopes(s: &str) -> Result<Vec<Scope>, KeyError> {
    let scopes: Vec<Scope> = s
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    if scopes.is_empty() {
        return Err(KeyError::Scope(s.to_string()));
    }
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_prefixed_high_entropy_and_stored_as_their_hash() {
        let (key, entry) = generate("alice", &[Scope::Rotate, Scope::Read, Scope::Read]);
        assert!(key.starts_with("kfk_"), "{key}");
        assert_eq!(key.len(), 4 + 43);
        assert_eq!(entry.sha256, hash(&key));
        assert_eq!(entry.scopes, [Scope::Read, Scope::Rotate]);
        assert!(!entry.sha256.contains(&key[4..]));
        let (other, _) = generate("alice", &[Scope::Read]);
        assert_ne!(key, other);
    }

    #[test]
    fn verify_finds_the_matching_entry_and_nothing_else() {
        let (a, ea) = generate("a", &[Scope::Read]);
        let (b, eb) = generate("b", &[Scope::Read, Scope::Rotate]);
        let (c, ec) = generate("c", &[Scope::Rotate]);
        let set = KeySet::new(vec![ea, eb, ec]).unwrap();
        assert_eq!(set.verify(&a).unwrap().id, "a");
        assert_eq!(set.verify(&b).unwrap().id, "b");
        assert_eq!(set.verify(&c).unwrap().id, "c");
        assert!(set.verify("").is_none());
        assert!(set.verify(&a[..a.len() - 1]).is_none());
        assert!(set.verify(&format!("{a}x")).is_none());
        // The hash itself is not a key.
        assert!(set.verify(&hash(&a)).is_none());
        assert!(KeySet::default().verify(&a).is_none());
    }

    #[test]
    fn constant_time_equality_is_exact() {
        let x = [7u8; 32];
        let mut y = x;
        assert_eq!(ct_eq(&x, &y), 1);
        for i in 0..32 {
            for bit in 0..8 {
                y = x;
                y[i] ^= 1 << bit;
                assert_eq!(ct_eq(&x, &y), 0, "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn scopes_say_what_a_key_may_do() {
        let (_, e) = generate("r", &[Scope::Read]);
        assert!(e.allows(Scope::Read) && !e.allows(Scope::Rotate));
        assert_eq!(parse_scopes("read, rotate").unwrap(), Scope::ALL);
        assert!(parse_scopes("read,admin").is_err());
        assert!(parse_scopes("").is_err());
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["scopes"], serde_json::json!(["read"]));
    }

    #[test]
    fn bad_entries_are_refused_by_name() {
        let (_, good) = generate("ok", &[Scope::Read]);
        let bad_id = ApiKeyEntry {
            id: "has space".into(),
            ..good.clone()
        };
        assert!(matches!(KeySet::new(vec![bad_id]), Err(KeyError::Id(_))));
        let bad_hash = ApiKeyEntry {
            sha256: "abc".into(),
            ..good.clone()
        };
        assert!(matches!(
            KeySet::new(vec![bad_hash]),
            Err(KeyError::Hash(_))
        ));
        let no_scope = ApiKeyEntry {
            scopes: vec![],
            ..good.clone()
        };
        assert!(matches!(
            KeySet::new(vec![no_scope]),
            Err(KeyError::NoScope(_))
        ));
        assert!(matches!(
            KeySet::new(vec![good.clone(), good.clone()]),
            Err(KeyError::DuplicateId(_))
        ));
        let same_hash = ApiKeyEntry {
            id: "other".into(),
            ..good.clone()
        };
        assert!(matches!(
            KeySet::new(vec![good.clone(), same_hash]),
            Err(KeyError::DuplicateHash(..))
        ));
        // Upper-case hex is accepted and normalized.
        let upper = ApiKeyEntry {
            sha256: good.sha256.to_ascii_uppercase(),
            ..good
        };
        assert_eq!(KeySet::new(vec![upper]).unwrap().len(), 1);
    }

    #[test]
    fn the_keys_secret_is_a_list_or_an_object_with_a_session_key() {
        let (_, e) = generate("a", &[Scope::Read]);
        let list = serde_json::to_string(&vec![e.clone()]).unwrap();
        let doc = parse_keys_document(&list).unwrap();
        assert_eq!(doc.keys, vec![e.clone()]);
        assert_eq!(doc.session_key, None);
        assert!(doc.principals.is_empty());
        let obj = serde_json::json!({"keys": [e], "session_key": "11".repeat(32)}).to_string();
        let doc = parse_keys_document(&obj).unwrap();
        assert_eq!(doc.session_key, Some([0x11; 32]));
        assert!(parse_keys_document("{\"keys\": [], \"session_key\": \"zz\"}").is_err());
        assert!(parse_keys_document("[{\"id\": \"a\"}]").is_err());
    }

    #[test]
    fn the_object_form_may_map_iam_principals_to_scopes() {
        let (_, e) = generate("a", &[Scope::Read]);
        let obj = serde_json::json!({
            "principals": [{"arn": "arn:aws:iam::111122223333:role/SecurityAuditors", "scopes": ["read"]}],
            "keys": [e],
        })
        .to_string();
        let doc = parse_keys_document(&obj).unwrap();
        assert_eq!(doc.keys, vec![e]);
        assert_eq!(
            doc.principals,
            vec![PrincipalEntry {
                arn: "arn:aws:iam::111122223333:role/SecurityAuditors".into(),
                scopes: vec![Scope::Read],
            }]
        );
        // Principals alone; an unknown field of an entry is refused.
        let only = r#"{"principals": [{"arn": "arn:aws:iam::111122223333:user/a", "scopes": ["rotate"]}]}"#;
        let doc = parse_keys_document(only).unwrap();
        assert!(doc.keys.is_empty() && doc.principals.len() == 1);
        let typo =
            r#"{"principals": [{"arn": "arn:aws:iam::111122223333:user/a", "scope": ["read"]}]}"#;
        assert!(parse_keys_document(typo).is_err());
    }
}
