//! The report's users as JSON Lines (`report.jsonl`): one line per user,
//! the user's line as the protocol's [`UserReport`] serializes it, with
//! the run and the account it belongs to. Written one account at a time
//! beside the summary (`report.json`), for tools that read a large run
//! without holding it (`jq`, Athena, a SIEM).

use keyfleet_protocol::messages::UserReport;
use keyfleet_protocol::report::{AccountReport, AccountState, RunReport};
use serde::Serialize;

/// One line of `report.jsonl`.
#[derive(Serialize)]
struct Line<'a> {
    run_id: &'a str,
    account_id: &'a str,
    account_name: &'a str,
    account_state: AccountState,
    #[serde(flatten)]
    user: &'a UserReport,
}

/// One account's lines, `account` holding its users (none for an account
/// without users: the summary says why).
pub fn jsonl_account(report: &RunReport, account: &AccountReport) -> Vec<u8> {
    let mut out = Vec::new();
    for user in &account.users {
        let line = Line {
            run_id: &report.run_id,
            account_id: &account.account_id,
            account_name: &account.name,
            account_state: account.state,
            user,
        };
        // Plain structs with string keys: serialization cannot fail.
        serde_json::to_writer(&mut out, &line).expect("a user line always serializes");
        out.push(b'\n');
    }
    out
}
