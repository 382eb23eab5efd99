//! The file `keyfleet credential-process` keeps its keys in: the key it
//! last obtained for one IAM user and the one before it, readable by the
//! user alone (mode 0600 in a 0700 directory, written whole to a
//! temporary file and renamed, so a crash never leaves half a key).
//!
//! The previous key is kept because a key just created may take a few
//! seconds to be accepted everywhere (IAM is eventually consistent): if
//! the current key is refused, the previous one is tried before the user
//! is asked to act.

use keyfleet_protocol::Secret;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// An access key pair, in the names AWS's own credential files use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPair {
    #[serde(rename = "AccessKeyId")]
    pub access_key_id: String,
    #[serde(rename = "SecretAccessKey")]
    pub secret_access_key: Secret,
}

/// What the file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stored {
    /// The format's version.
    pub v: u32,
    /// The IAM user the keys belong to.
    pub user: String,
    /// The Region of the user's delivery secret (the agent's), given at
    /// `--init`.
    pub region: String,
    pub current: KeyPair,
    #[serde(default)]
    pub previous: Option<KeyPair>,
}

impl Stored {
    pub fn new(user: &str, region: &str, current: KeyPair) -> Stored {
        Stored {
            v: 1,
            user: user.into(),
            region: region.into(),
            current,
            previous: None,
        }
    }

    /// `next` becomes the current key, the current one the previous; the
    /// same key again changes nothing.
    pub fn advance(&mut self, next: KeyPair) -> bool {
        if next.access_key_id == self.current.access_key_id {
            return false;
        }
        self.previous = Some(std::mem::replace(&mut self.current, next));
        true
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no key is stored for {user} at {path}")]
    Missing { user: String, path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a keyfleet credential-process file ({reason})")]
    Malformed { path: PathBuf, reason: String },
    #[error("{path} holds the keys of {found}, not of {user}")]
    OtherUser {
        path: PathBuf,
        found: String,
        user: String,
    },
    #[error("{path} can be read by others (mode {mode:o}): make it `chmod 600`, then run again")]
    Exposed { path: PathBuf, mode: u32 },
    #[error("{dir} can be written by others (mode {mode:o}): keep the keys in a directory only you can write (`chmod 700`, or --store elsewhere)")]
    OpenDirectory { dir: PathBuf, mode: u32 },
}

/// `$XDG_CONFIG_HOME/keyfleet/credential-process/<user>.json`, or under
/// `~/.config` when that is unset.
pub fn default_path(user: &str) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(
        base.join("keyfleet")
            .join("credential-process")
            .join(format!("{user}.json")),
    )
}

/// Reads the file for `user`; refuses one others can read (a key there
/// may already have leaked: the user should know, not be served it).
pub fn load(path: &Path, user: &str) -> Result<Stored, StoreError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::Missing {
                user: user.into(),
                path: path.into(),
            })
        }
        Err(source) => {
            return Err(StoreError::Io {
                path: path.into(),
                source,
            })
        }
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|source| StoreError::Io {
                path: path.into(),
                source,
            })?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(StoreError::Exposed {
                path: path.into(),
                mode,
            });
        }
    }
    // Where, not what: serde_json's message can quote a value (a key).
    let stored: Stored = serde_json::from_slice(&bytes).map_err(|e| StoreError::Malformed {
        path: path.into(),
        reason: format!(
            "{:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ),
    })?;
    if stored.user != user {
        return Err(StoreError::OtherUser {
            path: path.into(),
            found: stored.user,
            user: user.into(),
        });
    }
    Ok(stored)
}

/// Writes `stored` to `path` whole: a new temporary file only the user can
/// read (created exclusively, never one that was there), renamed over the
/// old one. Refuses a directory others can write: they could swap the file.
pub fn save(path: &Path, stored: &Stored) -> Result<(), StoreError> {
    let io = |source| StoreError::Io {
        path: path.into(),
        source,
    };
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(&dir).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o022 != 0 {
            return Err(StoreError::OpenDirectory { dir, mode });
        }
    }
    let mut temp = tempfile::Builder::new();
    temp.prefix(".keyfleet-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        temp.permissions(std::fs::Permissions::from_mode(0o600));
    }
    let mut file = temp.tempfile_in(&dir).map_err(io)?;
    let body = serde_json::to_vec_pretty(stored).expect("a key pair serializes");
    file.write_all(&body).map_err(io)?;
    file.as_file().sync_all().map_err(io)?;
    file.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(id: &str) -> KeyPair {
        KeyPair {
            access_key_id: id.into(),
            secret_access_key: Secret::new(format!("secret-of-{id}")),
        }
    }

    #[test]
    fn a_saved_file_loads_back_and_only_its_owner_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deep/er/alice.json");
        let mut stored = Stored::new("alice", "eu-west-1", pair("AKIA1"));
        assert!(stored.advance(pair("AKIA2")));
        save(&path, &stored).unwrap();
        assert_eq!(load(&path, "alice").unwrap(), stored);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(path.parent().unwrap()), 0o700);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = load(&path, "alice").unwrap_err().to_string();
            assert!(
                err.contains("mode 644") && err.contains("chmod 600"),
                "{err}"
            );
        }
    }

    #[test]
    fn advancing_keeps_one_previous_key_and_the_same_key_changes_nothing() {
        let mut stored = Stored::new("alice", "eu-west-1", pair("AKIA1"));
        assert!(!stored.advance(pair("AKIA1")));
        assert_eq!(stored.previous, None);
        assert!(stored.advance(pair("AKIA2")));
        assert!(stored.advance(pair("AKIA3")));
        assert_eq!(stored.current.access_key_id, "AKIA3");
        assert_eq!(stored.previous.unwrap().access_key_id, "AKIA2");
    }

    #[test]
    fn a_missing_malformed_or_other_users_file_is_named_and_no_secret_is_shown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alice.json");
        let err = load(&path, "alice").unwrap_err();
        assert!(matches!(err, StoreError::Missing { .. }), "{err}");
        save(&path, &Stored::new("bob", "eu-west-1", pair("AKIA1"))).unwrap();
        let err = load(&path, "alice").unwrap_err().to_string();
        assert!(err.contains("keys of bob, not of alice"), "{err}");
        assert!(!err.contains("secret-of"), "{err}");
        save(&path, &Stored::new("alice", "eu-west-1", pair("AKIA1"))).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("\"v\"", "\"version\"")).unwrap();
        let err = load(&path, "alice").unwrap_err().to_string();
        assert!(
            err.contains("not a keyfleet credential-process file"),
            "{err}"
        );
        assert!(!err.contains("secret-of"), "{err}");
    }

    #[test]
    fn a_debug_print_never_shows_the_secret() {
        let stored = Stored::new("alice", "eu-west-1", pair("AKIA1"));
        assert!(!format!("{stored:?}").contains("secret-of"));
    }
}

#[cfg(all(test, unix))]
mod unix_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_directory_others_can_write_is_refused_before_any_key_is_written() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let path = dir.path().join("alice.json");
        let pair = KeyPair {
            access_key_id: "AKIA1".into(),
            secret_access_key: Secret::new("secret-of-AKIA1"),
        };
        let err = save(&path, &Stored::new("alice", "eu-west-1", pair)).unwrap_err();
        assert!(
            matches!(err, StoreError::OpenDirectory { mode: 0o777, .. }),
            "{err}"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "nothing written"
        );
    }
}
