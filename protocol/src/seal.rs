//! HPKE sealing of new credentials to the coordinator (RFC 9180, base mode,
//! DHKEM(X25519, HKDF-SHA256) + HKDF-SHA256 + AES-256-GCM).
//!
//! The agent seals each new key pair to the coordinator's public key, which
//! it takes from its own configuration (never from the job, so a forged job
//! cannot redirect credentials). The associated data binds the box to the
//! account, user and access key id: a box moved to another user's entry
//! fails to open. It is deliberately not bound to the run: the agent keeps
//! the box in the member account's Secrets Manager until its delivery is
//! confirmed and may send it again in a later run after a crash; the
//! coordinator's ledger makes that second delivery a no-op. Secrets are wrapped in [`Secret`], whose `Debug` prints
//! nothing.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use serde::{Deserialize, Serialize};
use std::fmt;
use time::OffsetDateTime;

type Kem = X25519HkdfSha256;
const INFO: &[u8] = b"keyfleet/v1 credential";

/// A string that must never be printed. `Debug` and `Display` redact it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The plain value, for the few places that must use it (IAM response,
    /// sealing, zip). Call sites are easy to audit by this name.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}
impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A new access key pair, as sealed inside a [`SealedCredential`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub account_id: String,
    pub user_name: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
}

/// A credential sealed to the coordinator. Public fields are not secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedCredential {
    pub user_name: String,
    pub access_key_id: String,
    /// Which coordinator key can open it.
    pub key_id: String,
    /// Base64 HPKE encapsulated key.
    pub enc: String,
    /// Base64 AES-256-GCM ciphertext of the JSON credential.
    pub ciphertext: String,
}

/// Why sealing or opening failed. Never carries plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("public key is not a base64 32-byte X25519 key")]
    BadPublicKey,
    #[error("private key is not a base64 32-byte X25519 key")]
    BadPrivateKey,
    #[error(
        "sealed credential was made for key id `{found}`, this coordinator holds `{expected}`"
    )]
    WrongKeyId { expected: String, found: String },
    /// The box names a key the coordinator's ring does not hold: retired,
    /// or never the coordinator's.
    #[error("sealed credential was made for key id `{found}`, which the coordinator's key ring does not hold (it holds {held})")]
    UnknownKeyId { found: String, held: String },
    #[error("sealed credential field `{0}` is not valid base64")]
    BadEncoding(&'static str),
    #[error(
        "sealed credential did not open: wrong key, or the bytes or their binding were altered"
    )]
    OpenFailed,
    #[error("sealed credential opened but its content is not a credential for {0}")]
    Mismatch(&'static str),
    /// The box holds something other than an AWS secret access key: what a
    /// compromised member account would seal to put its own text into the
    /// zip mailed from the organization's sender.
    #[error("sealed credential opened but its secret is not an AWS secret access key (40 of [A-Za-z0-9/+])")]
    NotASecretKey,
    #[error("sealing failed")]
    SealFailed,
}

/// The coordinator's public key as agents are configured with it.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub key_id: String,
    key: <Kem as hpke::Kem>::PublicKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_id)
    }
}

/// The coordinator's private key. `Debug` prints only the key id.
pub struct PrivateKey {
    pub key_id: String,
    key: <Kem as hpke::Kem>::PrivateKey,
    public: <Kem as hpke::Kem>::PublicKey,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({}, <redacted>)", self.key_id)
    }
}

/// Key id derived from the public key: `kf-` + first 8 bytes of SHA-256, hex.
/// Deriving it means a configuration cannot pair a key with the wrong id.
fn derive_key_id(pk: &<Kem as hpke::Kem>::PublicKey) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(pk.to_bytes());
    format!("kf-{}", hex::encode(&d[..8]))
}

impl PublicKey {
    /// From base64 of the 32 raw bytes.
    pub fn from_base64(s: &str) -> Result<Self, SealError> {
        let bytes = B64.decode(s.trim()).map_err(|_| SealError::BadPublicKey)?;
        let key = <Kem as hpke::Kem>::PublicKey::from_bytes(&bytes)
            .map_err(|_| SealError::BadPublicKey)?;
        Ok(PublicKey {
            key_id: derive_key_id(&key),
            key,
        })
    }
    pub fn to_base64(&self) -> String {
        B64.encode(self.key.to_bytes())
    }
}

impl PrivateKey {
    /// A new key pair from the OS generator.
    pub fn generate() -> Self {
        let (key, public) = Kem::gen_keypair(&mut os_rng());
        PrivateKey {
            key_id: derive_key_id(&public),
            key,
            public,
        }
    }
    /// From base64 of the 32 raw bytes.
    pub fn from_base64(s: &str) -> Result<Self, SealError> {
        let bytes = B64.decode(s.trim()).map_err(|_| SealError::BadPrivateKey)?;
        let key = <Kem as hpke::Kem>::PrivateKey::from_bytes(&bytes)
            .map_err(|_| SealError::BadPrivateKey)?;
        let public = Kem::sk_to_pk(&key);
        Ok(PrivateKey {
            key_id: derive_key_id(&public),
            key,
            public,
        })
    }
    /// Base64 of the raw private key, for storing in Secrets Manager.
    pub fn to_base64(&self) -> Secret {
        Secret(B64.encode(self.key.to_bytes()))
    }
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            key_id: self.key_id.clone(),
            key: self.public.clone(),
        }
    }
}

/// The OS generator, as the infallible RNG hpke expects.
fn os_rng() -> rand::rand_core::UnwrapErr<rand::rngs::OsRng> {
    use rand::TryRngCore;
    rand::rngs::OsRng.unwrap_err()
}

fn aad(account_id: &str, user: &str, access_key_id: &str) -> Vec<u8> {
    format!("keyfleet/v1\n{account_id}\n{user}\n{access_key_id}").into_bytes()
}

/// HPKE single-shot seal to `pk`: (base64 encapsulated key, base64
/// ciphertext). The one sealing step every box shares.
fn hpke_seal(
    pk: &PublicKey,
    info: &[u8],
    plaintext: &[u8],
    aad: &[u8],
) -> Result<(String, String), SealError> {
    let (enc, ct) = hpke::single_shot_seal::<AesGcm256, HkdfSha256, Kem, _>(
        &OpModeS::Base,
        &pk.key,
        info,
        plaintext,
        aad,
        &mut os_rng(),
    )
    .map_err(|_| SealError::SealFailed)?;
    Ok((B64.encode(enc.to_bytes()), B64.encode(ct)))
}

/// The opening step every box shares: the key id must be `sk`'s, then the
/// base64 fields decode and the HPKE box opens with `info` and `aad`.
fn hpke_open(
    sk: &PrivateKey,
    key_id: &str,
    enc: &str,
    ciphertext: &str,
    info: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, SealError> {
    if key_id != sk.key_id {
        return Err(SealError::WrongKeyId {
            expected: sk.key_id.clone(),
            found: key_id.to_string(),
        });
    }
    let enc = B64.decode(enc).map_err(|_| SealError::BadEncoding("enc"))?;
    let ct = B64
        .decode(ciphertext)
        .map_err(|_| SealError::BadEncoding("ciphertext"))?;
    let enc =
        <Kem as hpke::Kem>::EncappedKey::from_bytes(&enc).map_err(|_| SealError::OpenFailed)?;
    hpke::single_shot_open::<AesGcm256, HkdfSha256, Kem>(
        &OpModeR::Base,
        &sk.key,
        &enc,
        info,
        &ct,
        aad,
    )
    .map_err(|_| SealError::OpenFailed)
}

/// Seals `cred` for the coordinator.
pub fn seal(pk: &PublicKey, cred: &Credential) -> Result<SealedCredential, SealError> {
    let plaintext = serde_json::to_vec(cred).map_err(|_| SealError::SealFailed)?;
    let aad = aad(&cred.account_id, &cred.user_name, &cred.access_key_id);
    let (enc, ciphertext) = hpke_seal(pk, INFO, &plaintext, &aad)?;
    Ok(SealedCredential {
        user_name: cred.user_name.clone(),
        access_key_id: cred.access_key_id.clone(),
        key_id: pk.key_id.clone(),
        enc,
        ciphertext,
    })
}

const SECRET_INFO: &[u8] = b"keyfleet/v1 coordinator secret";

/// A secret the coordinator sealed to itself, bound to a context (the zip
/// password kept with the zip's ledger claim, so that a password email
/// sent again carries the password of the zip already sent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    /// Which coordinator key can open it.
    pub key_id: String,
    /// Base64 HPKE encapsulated key.
    pub enc: String,
    /// Base64 AES-256-GCM ciphertext.
    pub ciphertext: String,
}

/// Seals `secret` to `pk`, bound to `context` (it opens only with the same
/// context).
pub fn seal_secret(
    pk: &PublicKey,
    context: &str,
    secret: &Secret,
) -> Result<SealedSecret, SealError> {
    let (enc, ciphertext) = hpke_seal(
        pk,
        SECRET_INFO,
        secret.expose().as_bytes(),
        context.as_bytes(),
    )?;
    Ok(SealedSecret {
        key_id: pk.key_id.clone(),
        enc,
        ciphertext,
    })
}

/// Opens what [`seal_secret`] sealed with the same `context`.
pub fn open_secret(
    sk: &PrivateKey,
    context: &str,
    sealed: &SealedSecret,
) -> Result<Secret, SealError> {
    let pt = hpke_open(
        sk,
        &sealed.key_id,
        &sealed.enc,
        &sealed.ciphertext,
        SECRET_INFO,
        context.as_bytes(),
    )?;
    String::from_utf8(pt)
        .map(Secret::new)
        .map_err(|_| SealError::Mismatch("a text secret"))
}

/// Opens a sealed credential from `account_id`, checking that its content
/// matches the public fields it travelled with.
pub fn open(
    sk: &PrivateKey,
    account_id: &str,
    sealed: &SealedCredential,
) -> Result<Credential, SealError> {
    let aad = aad(account_id, &sealed.user_name, &sealed.access_key_id);
    let pt = hpke_open(
        sk,
        &sealed.key_id,
        &sealed.enc,
        &sealed.ciphertext,
        INFO,
        &aad,
    )?;
    let cred: Credential =
        serde_json::from_slice(&pt).map_err(|_| SealError::Mismatch("this box"))?;
    if cred.account_id != account_id {
        return Err(SealError::Mismatch("this account"));
    }
    if cred.user_name != sealed.user_name || cred.access_key_id != sealed.access_key_id {
        return Err(SealError::Mismatch("this user and key"));
    }
    if !crate::validate::is_secret_access_key(cred.secret_access_key.expose()) {
        return Err(SealError::NotASecretKey);
    }
    Ok(cred)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_context() {
        let sk = PrivateKey::generate();
        let pw = Secret::new("correct horse battery staple");
        let sealed = seal_secret(&sk.public_key(), "ledger/a/b/c/new_key", &pw).expect("seal");
        assert!(!sealed.ciphertext.contains("horse"));
        let back = open_secret(&sk, "ledger/a/b/c/new_key", &sealed).expect("open");
        assert_eq!(back.expose(), pw.expose());
        assert_eq!(
            open_secret(&sk, "ledger/a/b/OTHER/new_key", &sealed).unwrap_err(),
            SealError::OpenFailed
        );
        assert!(matches!(
            open_secret(&PrivateKey::generate(), "ledger/a/b/c/new_key", &sealed),
            Err(SealError::WrongKeyId { .. })
        ));
    }

    use super::*;

    fn cred() -> Credential {
        Credential {
            account_id: "111122223333".into(),
            user_name: "alice+ci@example.com".into(),
            access_key_id: "AKIAEXAMPLE123456789".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            created: time::macros::datetime!(2026-01-01 00:00 UTC),
        }
    }

    #[test]
    fn seal_then_open_round_trips() {
        let sk = PrivateKey::generate();
        let sealed = seal(&sk.public_key(), &cred()).unwrap();
        assert_eq!(sealed.key_id, sk.key_id);
        assert!(!sealed.ciphertext.contains("wJalr"));
        let back = open(&sk, "111122223333", &sealed).unwrap();
        assert_eq!(back, cred());
    }

    #[test]
    fn a_box_holding_anything_but_a_secret_key_is_refused() {
        let sk = PrivateKey::generate();
        for text in [
            "Your key expired: log in at https://evil.example\n[default]",
            "",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKE\n",
        ] {
            let mut c = cred();
            c.secret_access_key = Secret::new(text);
            let sealed = seal(&sk.public_key(), &c).unwrap();
            assert_eq!(
                open(&sk, "111122223333", &sealed),
                Err(SealError::NotASecretKey),
                "{text:?}"
            );
        }
    }

    #[test]
    fn keys_round_trip_through_base64_with_same_id() {
        let sk = PrivateKey::generate();
        let sk2 = PrivateKey::from_base64(sk.to_base64().expose()).unwrap();
        assert_eq!(sk2.key_id, sk.key_id);
        let pk = PublicKey::from_base64(&sk.public_key().to_base64()).unwrap();
        assert_eq!(pk.key_id, sk.key_id);
        assert!(!format!("{sk:?}").contains(sk.to_base64().expose()));
    }

    #[test]
    fn wrong_key_fails_cleanly() {
        let sk = PrivateKey::generate();
        let other = PrivateKey::generate();
        let sealed = seal(&sk.public_key(), &cred()).unwrap();
        assert!(matches!(
            open(&other, "111122223333", &sealed),
            Err(SealError::WrongKeyId { .. })
        ));
        // Same key id claimed, but a different key: open fails.
        let mut forged = sealed.clone();
        forged.key_id = other.key_id.clone();
        assert_eq!(
            open(&other, "111122223333", &forged),
            Err(SealError::OpenFailed)
        );
    }

    #[test]
    fn tampered_bytes_and_moved_boxes_fail() {
        let sk = PrivateKey::generate();
        let sealed = seal(&sk.public_key(), &cred()).unwrap();
        let mut ct = B64.decode(&sealed.ciphertext).unwrap();
        ct[3] ^= 1;
        let tampered = SealedCredential {
            ciphertext: B64.encode(ct),
            ..sealed.clone()
        };
        assert_eq!(
            open(&sk, "111122223333", &tampered),
            Err(SealError::OpenFailed)
        );
        let moved = SealedCredential {
            user_name: "mallory".into(),
            ..sealed.clone()
        };
        assert_eq!(
            open(&sk, "111122223333", &moved),
            Err(SealError::OpenFailed)
        );
        assert_eq!(
            open(&sk, "444455556666", &sealed),
            Err(SealError::OpenFailed)
        );
        let bad = SealedCredential {
            enc: "not base64!".into(),
            ..sealed
        };
        assert_eq!(
            open(&sk, "111122223333", &bad),
            Err(SealError::BadEncoding("enc"))
        );
        assert_eq!(
            PublicKey::from_base64("AAAA").unwrap_err(),
            SealError::BadPublicKey
        );
    }

    #[test]
    fn secret_debug_is_redacted() {
        let c = cred();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("wJalr"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
    }
}
