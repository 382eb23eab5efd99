//! IAM principals the API accepts on `/v1` behind API Gateway, and their
//! scopes.
//!
//! API Gateway checks the SigV4 signature of every `/v1` request (the
//! methods' authorization is `AWS_IAM`) and hands the function the
//! caller's ARN in the event's request context (`identity.userArn`); see
//! [`crate::auth`] for why this, and not API Gateway's API keys, is how
//! `/v1` is authorized. Being signed proves only *who* calls; *what* they
//! may do is what the keys secret says, in its `principals` list:
//!
//! ```json
//! {"principals": [{"arn": "arn:aws:iam::111122223333:role/SecurityAuditors", "scopes": ["read"]}],
//!  "keys": [...]}
//! ```
//!
//! An entry names an IAM **role** or **user** by its ARN. A role's callers
//! arrive as assumed-role sessions, `arn:aws:sts::<account>:assumed-role/
//! <role name>/<session>`, which carry the role's name but not its path,
//! so an entry matches on partition, account, kind and name and ignores
//! the path: role and user names are unique in an account whatever their
//! path, and IAM keeps them unique regardless of case, so the name is
//! compared without case too. Nothing else is accepted as an entry (not
//! the account root, not a session ARN, no wildcard), so an entry always
//! stands for one principal an administrator can look up; a caller that
//! is none of a listed role's sessions or a listed user (the root user, a
//! federated user, an unlisted role) is refused with 403.

use crate::keys::{KeyError, Scope};
use serde::{Deserialize, Serialize};

/// A principal the API accepts, as the keys secret lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalEntry {
    /// `arn:<partition>:iam::<account>:role/[<path>/]<name>` or `...:user/...`.
    pub arn: String,
    pub scopes: Vec<Scope>,
}

impl PrincipalEntry {
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Role,
    User,
}

/// What an entry and a caller are compared on (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    partition: String,
    account: String,
    kind: Kind,
    /// Lower case: IAM names are unique regardless of case.
    name: String,
}

/// `arn`, `<partition>`, `<service>`, `` (no region), `<account>`, `<resource>`.
fn split(arn: &str) -> Option<(&str, &str, &str, &str)> {
    let mut parts = arn.splitn(6, ':');
    let (prefix, partition, service, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let partition_ok = partition
        .strip_prefix("aws")
        .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_lowercase() || c == '-'));
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    (prefix == "arn" && partition_ok && region.is_empty() && account_ok)
        .then_some((partition, service, account, resource))
}

/// An IAM role or user name: 1-64 of `[A-Za-z0-9+=,.@_-]`.
fn is_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

fn identity(partition: &str, account: &str, kind: Kind, name: &str) -> Identity {
    Identity {
        partition: partition.to_string(),
        account: account.to_string(),
        kind,
        name: name.to_ascii_lowercase(),
    }
}

/// The identity an entry's ARN names: an IAM role or user, path allowed.
fn configured(arn: &str) -> Option<Identity> {
    let (partition, service, account, resource) = split(arn)?;
    if service != "iam" {
        return None;
    }
    let (kind, rest) = match resource.split_once('/')? {
        ("role", rest) => (Kind::Role, rest),
        ("user", rest) => (Kind::User, rest),
        _ => return None,
    };
    let mut segments: Vec<&str> = rest.split('/').collect();
    let name = segments.pop()?;
    // Path segments, if any, are non-empty (`role/a/b/Name`).
    if !is_name(name) || segments.iter().any(|s| s.is_empty()) {
        return None;
    }
    Some(identity(partition, account, kind, name))
}

/// The identity of a caller API Gateway verified: an assumed-role session
/// stands for its role, an IAM user for itself; anything else for nobody.
fn calling(arn: &str) -> Option<Identity> {
    let (partition, service, account, resource) = split(arn)?;
    match service {
        "sts" => {
            let mut parts = resource.splitn(3, '/');
            let (kind, role, session) = (parts.next()?, parts.next()?, parts.next()?);
            (kind == "assumed-role" && is_name(role) && !session.is_empty())
                .then(|| identity(partition, account, Kind::Role, role))
        }
        "iam" => configured(arn).filter(|i| i.kind == Kind::User),
        _ => None,
    }
}

/// The principals the API accepts.
#[derive(Debug, Clone, Default)]
pub struct PrincipalSet {
    entries: Vec<(PrincipalEntry, Identity)>,
}

impl PrincipalSet {
    /// Checks every entry (ARN, scopes) and refuses two entries for the
    /// same principal (which scopes would win would be a guess).
    pub fn new(entries: Vec<PrincipalEntry>) -> Result<PrincipalSet, KeyError> {
        let mut out: Vec<(PrincipalEntry, Identity)> = Vec::with_capacity(entries.len());
        for mut e in entries {
            e.arn = e.arn.trim().to_string();
            let id = configured(&e.arn).ok_or_else(|| KeyError::PrincipalArn(e.arn.clone()))?;
            if e.scopes.is_empty() {
                return Err(KeyError::PrincipalNoScope(e.arn));
            }
            if let Some((other, _)) = out.iter().find(|(_, i)| *i == id) {
                return Err(KeyError::DuplicatePrincipal(other.arn.clone(), e.arn));
            }
            e.scopes.sort();
            e.scopes.dedup();
            out.push((e, id));
        }
        Ok(PrincipalSet { entries: out })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry standing for `caller_arn` (API Gateway's
    /// `identity.userArn`), if one does.
    pub fn lookup(&self, caller_arn: &str) -> Option<&PrincipalEntry> {
        let id = calling(caller_arn.trim())?;
        self.entries.iter().find(|(_, i)| *i == id).map(|(e, _)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(arn: &str, scopes: &[Scope]) -> PrincipalEntry {
        PrincipalEntry {
            arn: arn.into(),
            scopes: scopes.to_vec(),
        }
    }

    #[test]
    fn an_assumed_role_session_stands_for_its_role_whatever_the_path() {
        let set = PrincipalSet::new(vec![
            entry(
                "arn:aws:iam::111122223333:role/SecurityAuditors",
                &[Scope::Read],
            ),
            entry(
                "arn:aws:iam::111122223333:role/team/sec/Responders",
                &[Scope::Read, Scope::Rotate],
            ),
            entry("arn:aws:iam::111122223333:user/ops/alice", &[Scope::Read]),
        ])
        .unwrap();
        let auditor = set
            .lookup("arn:aws:sts::111122223333:assumed-role/SecurityAuditors/jane@example.com")
            .unwrap();
        assert_eq!(auditor.scopes, [Scope::Read]);
        assert!(!auditor.allows(Scope::Rotate));
        // The session ARN has no path; the entry's role has one.
        let responder = set
            .lookup("arn:aws:sts::111122223333:assumed-role/Responders/pager")
            .unwrap();
        assert!(responder.allows(Scope::Rotate));
        // IAM names are unique regardless of case.
        assert!(set
            .lookup("arn:aws:sts::111122223333:assumed-role/securityauditors/x")
            .is_some());
        assert_eq!(
            set.lookup("arn:aws:iam::111122223333:user/ops/alice")
                .unwrap()
                .arn,
            "arn:aws:iam::111122223333:user/ops/alice"
        );
    }

    #[test]
    fn anyone_else_is_nobody() {
        let set = PrincipalSet::new(vec![
            entry(
                "arn:aws:iam::111122223333:role/SecurityAuditors",
                &[Scope::Read],
            ),
            entry("arn:aws:iam::111122223333:user/alice", &[Scope::Read]),
        ])
        .unwrap();
        for caller in [
            // Another role, the same role name in another account or partition.
            "arn:aws:sts::111122223333:assumed-role/Admins/x",
            "arn:aws:sts::444455556666:assumed-role/SecurityAuditors/x",
            "arn:aws-cn:sts::111122223333:assumed-role/SecurityAuditors/x",
            // A role named like the user, a user named like the role.
            "arn:aws:sts::111122223333:assumed-role/alice/x",
            "arn:aws:iam::111122223333:user/SecurityAuditors",
            // The root user, a federated user, a role ARN (never a caller),
            // a session without a name, garbage.
            "arn:aws:iam::111122223333:root",
            "arn:aws:sts::111122223333:federated-user/alice",
            "arn:aws:iam::111122223333:role/SecurityAuditors",
            "arn:aws:sts::111122223333:assumed-role/SecurityAuditors/",
            "arn:aws:sts::111122223333:assumed-role/SecurityAuditors",
            "SecurityAuditors",
            "",
        ] {
            assert!(set.lookup(caller).is_none(), "{caller}");
        }
    }

    #[test]
    fn entries_name_one_role_or_user_each() {
        for bad in [
            "arn:aws:iam::111122223333:root",
            "arn:aws:sts::111122223333:assumed-role/SecurityAuditors/x",
            "arn:aws:iam::111122223333:role/*",
            "arn:aws:iam::111122223333:role/",
            "arn:aws:iam::111122223333:role//Name",
            "arn:aws:iam::11112222333:role/Name",
            "arn:aws:iam:us-east-1:111122223333:role/Name",
            "arn:aws:iam::111122223333:group/Name",
            "arn:aws:s3:::bucket",
            "role/Name",
        ] {
            assert!(
                matches!(
                    PrincipalSet::new(vec![entry(bad, &[Scope::Read])]),
                    Err(KeyError::PrincipalArn(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            PrincipalSet::new(vec![entry("arn:aws:iam::111122223333:role/R", &[])]),
            Err(KeyError::PrincipalNoScope(_))
        ));
        // The same role twice, even under another path or case.
        assert!(matches!(
            PrincipalSet::new(vec![
                entry("arn:aws:iam::111122223333:role/R", &[Scope::Read]),
                entry("arn:aws:iam::111122223333:role/p/r", &[Scope::Rotate]),
            ]),
            Err(KeyError::DuplicatePrincipal(..))
        ));
        // A role and a user of the same name are two principals.
        let set = PrincipalSet::new(vec![
            entry("arn:aws:iam::111122223333:role/ops", &[Scope::Read]),
            entry("arn:aws:iam::111122223333:user/ops", &[Scope::Rotate]),
        ])
        .unwrap();
        assert_eq!(set.len(), 2);
        assert!(set
            .lookup("arn:aws-us-gov:sts::111122223333:assumed-role/ops/x")
            .is_none());
    }
}
