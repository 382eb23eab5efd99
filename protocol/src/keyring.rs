//! The coordinator's key ring: every private key whose sealed boxes it still
//! opens, newest first.
//!
//! Rotating the coordinator's key cannot be one step: agents in hundreds of
//! accounts move to a new public key through a StackSet update that takes
//! minutes to hours, and a result sealed to the previous key may still be on
//! the queue, in a member account's pending record, or redriven from the DLQ
//! later. So a rotation is three steps:
//!
//! 1. `keyfleet keygen` adds a new key at the front of the ring (the previous
//!    keys stay) and prints its public key and id;
//! 2. the agent StackSet's `CoordinatorPublicKey`/`CoordinatorKeyId`
//!    parameters move to it (Terraform, or `keyfleet bootstrap`);
//! 3. `keyfleet retire-key <id>` removes the previous key once no agent uses
//!    it. From then on a box sealed to it is refused by name
//!    ([`SealError::UnknownKeyId`]) and alerted, never opened.
//!
//! Stored form (one Secrets Manager secret): the keys' base64, one per line,
//! newest first. A secret holding a single key (what `keygen` wrote before
//! there was a ring) is a ring of one, so existing deployments keep working.
//! The ring never holds two copies of one key and never becomes empty.

use crate::seal::{self, Credential, PrivateKey, SealError, SealedCredential, Secret};

/// Why a ring could not be read or changed. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRingError {
    #[error("the key ring is empty: it holds no private key")]
    Empty,
    #[error("line {line} of the key ring is not a private key (base64 of 32 bytes)")]
    BadKey { line: usize },
    #[error("the key ring holds key `{0}` twice")]
    Duplicate(String),
    #[error("the key ring holds no key `{0}` (it holds {1})")]
    Unknown(String, String),
    #[error("key `{0}` is the ring's only key: add a new one with `keygen` before retiring it")]
    LastKey(String),
}

/// The coordinator's private keys, newest first. `Debug` prints only ids.
pub struct KeyRing {
    keys: Vec<PrivateKey>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyRing({})", self.ids().join(", "))
    }
}

impl KeyRing {
    /// A ring of one key.
    pub fn new(key: PrivateKey) -> Self {
        KeyRing { keys: vec![key] }
    }

    /// Reads the stored form (see the module doc). Blank lines and
    /// surrounding whitespace are ignored.
    pub fn parse(text: &str) -> Result<Self, KeyRingError> {
        let mut keys: Vec<PrivateKey> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let key =
                PrivateKey::from_base64(line).map_err(|_| KeyRingError::BadKey { line: i + 1 })?;
            if keys.iter().any(|k| k.key_id == key.key_id) {
                return Err(KeyRingError::Duplicate(key.key_id));
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(KeyRingError::Empty);
        }
        Ok(KeyRing { keys })
    }

    /// The stored form, for Secrets Manager.
    pub fn to_text(&self) -> Secret {
        let lines: Vec<String> = self
            .keys
            .iter()
            .map(|k| k.to_base64().expose().to_string())
            .collect();
        Secret::new(lines.join("\n"))
    }

    /// The newest key: the one agents should be sealing to.
    pub fn current(&self) -> &PrivateKey {
        &self.keys[0]
    }

    /// Key ids, newest first.
    pub fn ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.key_id.clone()).collect()
    }

    /// The key with this id, if the ring still holds it.
    pub fn get(&self, key_id: &str) -> Option<&PrivateKey> {
        self.keys.iter().find(|k| k.key_id == key_id)
    }

    /// Adds `key` as the newest. Adding a key the ring holds is refused.
    pub fn add(&mut self, key: PrivateKey) -> Result<(), KeyRingError> {
        if self.get(&key.key_id).is_some() {
            return Err(KeyRingError::Duplicate(key.key_id));
        }
        self.keys.insert(0, key);
        Ok(())
    }

    /// Removes the key `key_id`. The last key cannot be retired: a ring
    /// without keys would make every result undeliverable.
    pub fn retire(&mut self, key_id: &str) -> Result<(), KeyRingError> {
        let Some(i) = self.keys.iter().position(|k| k.key_id == key_id) else {
            return Err(KeyRingError::Unknown(
                key_id.to_string(),
                self.ids().join(", "),
            ));
        };
        if self.keys.len() == 1 {
            return Err(KeyRingError::LastKey(key_id.to_string()));
        }
        self.keys.remove(i);
        Ok(())
    }

    /// The key `key_id` names, or [`SealError::UnknownKeyId`] naming the
    /// ring's keys.
    pub fn key(&self, key_id: &str) -> Result<&PrivateKey, SealError> {
        self.get(key_id).ok_or_else(|| SealError::UnknownKeyId {
            found: key_id.to_string(),
            held: self.ids().join(", "),
        })
    }

    /// Opens a box with the key it names; a box for a key the ring does not
    /// hold (retired, or never ours) is [`SealError::UnknownKeyId`].
    pub fn open(
        &self,
        account_id: &str,
        sealed: &SealedCredential,
    ) -> Result<Credential, SealError> {
        seal::open(self.key(&sealed.key_id)?, account_id, sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn sealed_to(key: &PrivateKey, user: &str) -> SealedCredential {
        seal::seal(
            &key.public_key(),
            &Credential {
                account_id: "111111111111".into(),
                user_name: user.into(),
                access_key_id: "AKIAEXAMPLE123456789".into(),
                secret_access_key: Secret::new("a".repeat(40)),
                created: OffsetDateTime::UNIX_EPOCH,
            },
        )
        .expect("seal")
    }

    #[test]
    fn a_single_stored_key_is_a_ring_of_one() {
        let key = PrivateKey::generate();
        let ring = KeyRing::parse(key.to_base64().expose()).expect("ring");
        assert_eq!(ring.ids(), vec![key.key_id.clone()]);
        assert_eq!(ring.current().key_id, key.key_id);
    }

    #[test]
    fn a_ring_survives_its_stored_form_newest_first() {
        let old = PrivateKey::generate();
        let new = PrivateKey::generate();
        let (old_id, new_id) = (old.key_id.clone(), new.key_id.clone());
        let mut ring = KeyRing::new(old);
        ring.add(new).expect("add");
        let back = KeyRing::parse(ring.to_text().expose()).expect("parse");
        assert_eq!(back.ids(), vec![new_id.clone(), old_id]);
        assert_eq!(back.current().key_id, new_id);
    }

    #[test]
    fn boxes_sealed_to_any_key_of_the_ring_open_until_it_is_retired() {
        let old = PrivateKey::generate();
        let new = PrivateKey::generate();
        let to_old = sealed_to(&old, "alice");
        let to_new = sealed_to(&new, "bob");
        let old_id = old.key_id.clone();
        let mut ring = KeyRing::new(old);
        ring.add(new).expect("add");
        assert_eq!(
            ring.open("111111111111", &to_old)
                .expect("old opens")
                .user_name,
            "alice"
        );
        assert_eq!(
            ring.open("111111111111", &to_new)
                .expect("new opens")
                .user_name,
            "bob"
        );
        ring.retire(&old_id).expect("retire");
        match ring.open("111111111111", &to_old) {
            Err(SealError::UnknownKeyId { found, .. }) => assert_eq!(found, old_id),
            other => panic!("a box for a retired key must be refused by name, got {other:?}"),
        }
        assert!(ring.open("111111111111", &to_new).is_ok());
    }

    #[test]
    fn the_last_key_cannot_be_retired_and_unknown_ids_are_named() {
        let key = PrivateKey::generate();
        let id = key.key_id.clone();
        let mut ring = KeyRing::new(key);
        assert_eq!(ring.retire(&id), Err(KeyRingError::LastKey(id.clone())));
        match ring.retire("kf-0000000000000000") {
            Err(KeyRingError::Unknown(asked, held)) => {
                assert_eq!(asked, "kf-0000000000000000");
                assert_eq!(held, id);
            }
            other => panic!("expected Unknown, got {other:?}"),
        }
    }

    #[test]
    fn bad_stored_rings_are_refused_by_name_without_key_material() {
        let key = PrivateKey::generate();
        let b64 = key.to_base64().expose().to_string();
        assert_eq!(KeyRing::parse("").unwrap_err(), KeyRingError::Empty);
        assert_eq!(KeyRing::parse(" \n\n").unwrap_err(), KeyRingError::Empty);
        let err = KeyRing::parse(&format!("{b64}\nnot-a-key")).unwrap_err();
        assert_eq!(err, KeyRingError::BadKey { line: 2 });
        assert!(!err.to_string().contains(&b64));
        assert_eq!(
            KeyRing::parse(&format!("{b64}\n{b64}")).unwrap_err(),
            KeyRingError::Duplicate(key.key_id.clone())
        );
        let mut ring = KeyRing::new(PrivateKey::from_base64(&b64).expect("copy"));
        assert_eq!(
            ring.add(key),
            Err(KeyRingError::Duplicate(ring.ids()[0].clone()))
        );
        assert!(!format!("{ring:?}").contains(&b64));
    }
}
