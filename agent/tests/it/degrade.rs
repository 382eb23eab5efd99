//! An agent never sends what the coordinator would refuse. A value AWS
//! writes in a shape the protocol does not expect, in a field that only
//! informs the report (here a last-used region and service of a user with
//! nothing due), is left out with a note on that user; the result, with
//! the new key of another user, passes the coordinator's validator as sent.

use crate::fixture::*;
use keyfleet_protocol::{AccountResult, Policy, Validate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unexpected_last_used_value_is_left_out_and_the_result_is_sent_valid() {
    let mut acct = new_account().await;
    acct.populate(&[
        user("due-owner", vec![key(85, true, Some(1))]),
        user("quiet-owner", vec![key(10, true, Some(1))]),
    ])
    .await;
    let quiet_key = acct.created["quiet-owner"][0].clone();
    emu()
        .mark_key_used(
            &acct.account_id,
            &quiet_key,
            None,
            "Not Supported",
            "aws-global",
        )
        .expect("mark the key used");
    let job = acct.job(Policy::default());
    let returned = deliver(&acct.agent, &job).await.expect("agent run");

    // The message as it is on the queue, before any decoding: exactly what
    // the coordinator's validator sees.
    let out = acct
        .sqs_central
        .receive_message()
        .queue_url(&acct.results_queue_url)
        .max_number_of_messages(10)
        .send()
        .await
        .expect("ReceiveMessage");
    let bodies: Vec<&str> = out.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies.len(), 1, "one part");
    let sent: AccountResult = serde_json::from_str(bodies[0]).expect("a result");
    sent.validate()
        .expect("the result as sent passes the validator");
    assert_eq!(
        sent.users, returned.users,
        "what is returned is what is sent"
    );

    let quiet = sent
        .users
        .iter()
        .find(|u| u.user_name == "quiet-owner")
        .expect("the quiet user");
    assert_eq!(quiet.keys[0].last_used_region, None);
    assert_eq!(quiet.keys[0].last_used_service, None);
    let note = quiet.note.as_deref().unwrap_or_default();
    assert!(
        note.contains("last-used region `aws-global`") && note.contains("`Not Supported`"),
        "{note}"
    );
    // The other user's new key is there and opens.
    assert_eq!(sent.sealed.len(), 1, "{:?}", sent.sealed);
    assert_eq!(sent.sealed[0].user_name, "due-owner");
    assert_eq!(acct.open(&sent.sealed[0]).len(), 40);
}
