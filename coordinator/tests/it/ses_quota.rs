//! SES's daily quota reached in the middle of a run: what has no room
//! waits (its claim released, the account pending, not a failed attempt),
//! the report and an alert say so, the security team's summary still goes
//! out (owner mail keeps room for it), sweeps on the same day send nothing
//! and never give up, and the next day's sweep sends the rest: every owner
//! gets each email exactly once, and the password opens the zip.

use crate::emails::assert_password_opens_zip;
use crate::fleet::*;
use keyfleet_coordinator::{Intake, PendingMail, PENDING_MAIL_PREFIX};
use std::collections::BTreeMap;

fn sent_by_kind(run_id: &str) -> BTreeMap<(String, String), usize> {
    let mut sent = BTreeMap::new();
    for m in emails_of_run(run_id) {
        let label = match m.kind.as_str() {
            "digest" => format!("digest: {}", m.tells().join(", ")),
            kind => kind.to_string(),
        };
        *sent.entry((m.to[0].clone(), label)).or_default() += 1;
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_the_daily_quota_is_mailed_the_next_day_each_email_once() {
    let (member, users) = normal_member("ses-quota").await;
    let ses_account = create_member("ses-quota-sender").await.id;
    let central = Central::new(Setup {
        ses_account: Some(ses_account.clone()),
        ..Setup::default()
    })
    .await;
    // The run has five emails: the rotated user's zip and password, two
    // owners' digests, and the summary. SES's day has room for three.
    emu()
        .set_ses_quota(Some(3), None, Some(&ses_account))
        .expect("set the SES quota");
    let run_id = central.start_run_on(&[&member.id]).await;
    member.run_agent(&central.public_key).await;
    let intakes = central.intake_until_finalized().await;
    assert!(
        matches!(
            intakes.last(),
            Some(Intake::Accepted {
                finalized: true,
                ..
            })
        ),
        "taken in and finalized though mail waits: {intakes:?}"
    );

    // Day one: three emails went out, the summary among them (owner mail
    // kept room for it); the rest waits.
    let owners = [&users.rotate, &users.pending, &users.unused].map(|u| owner_address(u));
    let day1 = sent_by_kind(&run_id);
    assert_eq!(day1.values().sum::<usize>(), 3, "{day1:?}");
    assert_eq!(
        day1.get(&(central.security_team.clone(), "summary".to_string())),
        Some(&1),
        "{day1:?}"
    );
    assert!(
        day1.values().all(|n| *n == 1),
        "nothing sent twice: {day1:?}"
    );
    // A zip is never sent without room for its password.
    let zip = (owners[0].clone(), "new_key".to_string());
    let password = (owners[0].clone(), "password".to_string());
    assert_eq!(
        day1.contains_key(&zip),
        day1.contains_key(&password),
        "{day1:?}"
    );

    // The report says so, and an alert.
    let report = central
        .coordinator
        .report(&run_id)
        .await
        .expect("report")
        .expect("finalized");
    assert_eq!(report.mail_waiting.len(), 1, "{:?}", report.mail_waiting);
    assert_eq!(report.mail_waiting[0].account_id, member.id);
    assert!(
        report.mail_waiting[0]
            .reason
            .contains("daily sending quota"),
        "{:?}",
        report.mail_waiting[0]
    );
    let alerts = central.alerts(1).await;
    assert!(
        alerts
            .iter()
            .any(|(subject, text)| subject.contains("owner emails wait")
                && text.contains(&member.id)),
        "{alerts:?}"
    );

    // Sweeps the same day, more of them than the attempts before giving
    // up: nothing sent, still pending, never given up (a deferral is not a
    // failed attempt).
    let pending = format!("{PENDING_MAIL_PREFIX}{run_id}/{}", member.id);
    for _ in 0..4 {
        let retry = central
            .coordinator
            .resend_pending_mail()
            .await
            .expect("sweep");
        assert_eq!(retry.pending, vec![format!("{run_id}/{}", member.id)]);
        assert!(retry.gave_up.is_empty(), "{retry:?}");
    }
    assert_eq!(sent_by_kind(&run_id), day1, "nothing more on day one");
    let record: PendingMail =
        serde_json::from_slice(&central.object(&pending).await.expect("pending record"))
            .expect("pending record parses");
    assert_eq!(record.attempts, 0, "{record:?}");
    assert_eq!(record.deferred, 5, "{record:?}");

    // The next day: the sweep sends the rest, each email once.
    emu()
        .advance_clock(1.0, Some(&ses_account))
        .expect("a day passes");
    let retry = central
        .coordinator
        .resend_pending_mail()
        .await
        .expect("sweep");
    assert_eq!(retry.sent, vec![format!("{run_id}/{}", member.id)]);
    assert!(central.object(&pending).await.is_none(), "record cleared");
    let expected: BTreeMap<(String, String), usize> = [
        (owners[0].clone(), "new_key"),
        (owners[0].clone(), "password"),
        (owners[1].clone(), "digest: deactivation_scheduled"),
        (owners[2].clone(), "digest: unused_deleted"),
        (central.security_team.clone(), "summary"),
    ]
    .into_iter()
    .map(|(to, kind)| ((to, kind.to_string()), 1))
    .collect();
    assert_eq!(sent_by_kind(&run_id), expected);

    // The password opens the zip, whichever day each went out.
    assert_password_opens_zip(&emails_of_run(&run_id), &owners[0]);
}
