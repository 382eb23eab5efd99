//! A result degrades, it never vanishes: a value AWS writes in a shape the
//! protocol does not expect, in a field that only informs the report (a
//! last-used service and region of a user with nothing due), costs a note
//! on that user, never the account. Through the deployed Lambdas, the
//! account's due user gets the new key in the first run and the account is
//! reported ok.

use crate::common::*;
use crate::mails::kinds_for;
use keyfleet_testkit::seed::{self, key, user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_the_protocol_does_not_expect_costs_a_note_not_the_account() {
    let cli = deployment().await;
    let account = create_account("cli-odd-value").await;
    let iam = iam_of(&account).await;
    let created = seed::populate(
        emu(),
        &iam,
        &account,
        &[
            user("odd-due", vec![key(85, true, Some(1))]),
            user("odd-quiet", vec![key(10, true, Some(1))]),
        ],
    )
    .await
    .expect("seed");
    emu()
        .mark_key_used(
            &account,
            &created["odd-quiet"][0],
            None,
            "Not Supported",
            "aws-global",
        )
        .expect("mark the key used");

    let out = cli.run(&["run", "--accounts", &account]);
    let report = cli.report(&run_id_in(&out));
    let acct = &report["accounts"][0];
    assert_eq!(acct["state"], "ok", "{acct}");
    let by = |name: &str| {
        acct["users"]
            .as_array()
            .expect("users")
            .iter()
            .find(|u| u["user_name"] == name)
            .unwrap_or_else(|| panic!("{name} in {acct}"))
            .clone()
    };
    assert_eq!(by("odd-due")["verdict"], "rotated", "{acct}");
    let note = by("odd-quiet")["note"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        note.contains("left out of the report")
            && note.contains("`aws-global`")
            && note.contains("`Not Supported`"),
        "{note}"
    );
    let kinds = kinds_for(
        &emu().outbox().expect("outbox"),
        &account,
        "owner-odd-due@example.com",
    );
    assert_eq!(
        kinds.iter().filter(|k| *k == "new_key").count(),
        1,
        "the new key reached its owner in run 1: {kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| *k == "password").count(),
        1,
        "{kinds:?}"
    );
}
