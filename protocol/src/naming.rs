//! Names both sides derive from a user: the protected per-user record's
//! secret, `keyfleet/<user>`.
//!
//! Secrets Manager allows `[A-Za-z0-9/_+=.@-]` in names; IAM user names also
//! allow the comma. [`secret_name`] maps each comma to a slash (`a,b` ->
//! `keyfleet/a/b`): IAM user names never contain a slash, so the mapping is
//! collision-free and leaves every other name as it was. It lives here
//! because the agent writes the secret and the security team's API says
//! where a user's current key is kept; both must name it alike.

/// Name of a user's secret: `keyfleet/<user>`, each comma turned into a
/// slash (see the module doc).
pub fn secret_name(user: &str) -> String {
    format!("keyfleet/{}", user.replace(',', "/"))
}
