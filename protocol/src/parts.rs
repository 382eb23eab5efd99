//! Splitting a large AccountResult into parts under the SQS message limit,
//! and putting them back together.
//!
//! An account with thousands of users produces a result far larger than one
//! SQS message (256 KiB). Each part repeats the small header (run, account,
//! token, status, counters) and carries a slice of the users and sealed
//! credentials; a credential always travels in the same part as its user so
//! a lost part never separates a key from the user it belongs to.

use crate::messages::{AccountResult, UserReport};
use crate::seal::SealedCredential;

/// SQS's limit is 262,144 bytes; keep a margin for attributes and encoding.
pub const DEFAULT_MAX_PART_BYTES: usize = 240 * 1024;

/// Why parts could not be reassembled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartsError {
    #[error("no parts given")]
    Empty,
    #[error("part {part} of {parts} is missing")]
    Missing { part: u32, parts: u32 },
    #[error("parts disagree on `{0}`")]
    Inconsistent(&'static str),
    #[error("part {0} appears twice with different content")]
    Conflict(u32),
    #[error("user `{0}` appears in more than one part")]
    DuplicateUser(String),
    #[error("a single user's entry is larger than the part limit ({0} bytes)")]
    TooLarge(usize),
}

fn size_of<T: serde::Serialize>(v: &T) -> usize {
    serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX)
}

/// Splits `result` so that every encoded part is at most `max_bytes`.
/// Returns a single part (1/1) when it already fits.
pub fn split(result: AccountResult, max_bytes: usize) -> Result<Vec<AccountResult>, PartsError> {
    if size_of(&result) <= max_bytes {
        let mut r = result;
        r.part = 1;
        r.parts = 1;
        return Ok(vec![r]);
    }
    let mut header = result.clone();
    header.users.clear();
    header.sealed.clear();
    header.part = 999_999;
    header.parts = 999_999;
    let header_size = size_of(&header);

    // Group each user with its sealed credentials.
    let mut sealed = result.sealed;
    let groups: Vec<(UserReport, Vec<SealedCredential>)> = result
        .users
        .into_iter()
        .map(|u| {
            let (mine, rest): (Vec<_>, Vec<_>) =
                sealed.drain(..).partition(|s| s.user_name == u.user_name);
            sealed = rest;
            (u, mine)
        })
        .collect();
    // Credentials without a user entry (should not happen) travel alone.
    let orphans = sealed;

    let mut chunks: Vec<(Vec<UserReport>, Vec<SealedCredential>)> = vec![(vec![], vec![])];
    let mut used = header_size;
    for (u, s) in groups {
        // +2 for the separating commas in the two arrays.
        let sz = size_of(&u) + s.iter().map(|x| size_of(x) + 1).sum::<usize>() + 2;
        if header_size + sz > max_bytes {
            return Err(PartsError::TooLarge(sz));
        }
        if used + sz > max_bytes {
            chunks.push((vec![], vec![]));
            used = header_size;
        }
        let last = chunks.last_mut().expect("chunks is never empty");
        last.0.push(u);
        last.1.extend(s);
        used += sz;
    }
    for s in orphans {
        let sz = size_of(&s) + 1;
        if used + sz > max_bytes {
            chunks.push((vec![], vec![]));
            used = header_size;
        }
        chunks.last_mut().expect("chunks is never empty").1.push(s);
        used += sz;
    }
    let parts = chunks.len() as u32;
    Ok(chunks
        .into_iter()
        .enumerate()
        .map(|(i, (users, sealed))| {
            let mut p = header.clone();
            p.part = i as u32 + 1;
            p.parts = parts;
            p.users = users;
            p.sealed = sealed;
            p
        })
        .collect())
}

/// Reassembles parts (any order, duplicates allowed if identical).
pub fn reassemble(mut parts: Vec<AccountResult>) -> Result<AccountResult, PartsError> {
    let first = parts.first().ok_or(PartsError::Empty)?;
    let n = first.parts;
    for p in &parts {
        if p.parts != n {
            return Err(PartsError::Inconsistent("parts"));
        }
        if p.run_id != first.run_id {
            return Err(PartsError::Inconsistent("run_id"));
        }
        if p.account_id != first.account_id {
            return Err(PartsError::Inconsistent("account_id"));
        }
        if p.token != first.token {
            return Err(PartsError::Inconsistent("token"));
        }
        if p.status != first.status {
            return Err(PartsError::Inconsistent("status"));
        }
        if p.dry_run != first.dry_run {
            return Err(PartsError::Inconsistent("dry_run"));
        }
        if p.as_of != first.as_of {
            return Err(PartsError::Inconsistent("as_of"));
        }
    }
    parts.sort_by_key(|p| p.part);
    let mut out: Vec<AccountResult> = Vec::with_capacity(n as usize);
    for p in parts {
        match out.last() {
            Some(prev) if prev.part == p.part => {
                if *prev != p {
                    return Err(PartsError::Conflict(p.part));
                }
            }
            _ => out.push(p),
        }
    }
    for (i, p) in out.iter().enumerate() {
        if p.part != i as u32 + 1 {
            return Err(PartsError::Missing {
                part: i as u32 + 1,
                parts: n,
            });
        }
    }
    if out.len() as u32 != n {
        return Err(PartsError::Missing {
            part: out.len() as u32 + 1,
            parts: n,
        });
    }
    let mut iter = out.into_iter();
    let mut whole = iter.next().ok_or(PartsError::Empty)?;
    let mut seen: std::collections::BTreeSet<String> =
        whole.users.iter().map(|u| u.user_name.clone()).collect();
    for p in iter {
        for u in &p.users {
            if !seen.insert(u.user_name.clone()) {
                return Err(PartsError::DuplicateUser(u.user_name.clone()));
            }
        }
        whole.users.extend(p.users);
        whole.sealed.extend(p.sealed);
    }
    whole.part = 1;
    whole.parts = 1;
    Ok(whole)
}
