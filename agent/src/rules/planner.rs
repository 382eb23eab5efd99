//! The planner: applies the rules (`rotation`, `deletion`, the
//! reactivation grace and the delivery of new keys) to a working copy of a
//! user's keys until nothing more is due, then lays the actions out in the
//! canonical order and picks the verdict (see "A plan runs the rules to a
//! fixed point" in the module doc of [`crate::rules`]).

use super::deletion::{inactive_expired, unused};
use super::reactivation::grace;
use super::rotation::{hard_limit, older_of_two_active, replacement, Pair, Single};
use super::thresholds::Rules;
use super::VERDICT_PRIORITY;
use keyfleet_protocol::{Action, KeyState, KeyStatus, Notice, Verdict};
use time::OffsetDateTime;

/// Where a new key's delivery stands (see [`Planner::delivery`]).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Delivery {
    Awaiting,
    /// Delivered, or not tracked: the key as the rules see it.
    Known(KeyState),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Removal {
    /// Inactive past its deletion date.
    Expired,
    /// Active and not used for `unused_delete_after`.
    Unused,
    /// Inactive, deleted to make room for a new key.
    Room,
}

/// A key during planning.
#[derive(Clone, Debug)]
struct Live {
    key: KeyState,
    /// Created by this plan (its id is a placeholder for the executor's).
    new: bool,
    /// Deactivated by this plan, with the replacement to name in the notice.
    deactivated: Option<Option<String>>,
}

/// Applies the rules to a working copy of the keys until nothing is due.
pub(super) struct Planner<'a> {
    rules: Rules<'a>,
    /// From the protected record: when keyfleet deactivated which key.
    recorded: &'a [(String, OffsetDateTime)],
    /// From the protected record: when the security team reactivated which
    /// key.
    reactivated: &'a [(String, OffsetDateTime)],
    deliverable: bool,
    /// From the job: the delivery of this user's new keys (see
    /// [`UserSnapshot::deliveries`](super::UserSnapshot::deliveries)).
    pub(super) deliveries: &'a [(String, Option<OffsetDateTime>)],
    /// Oldest first.
    live: Vec<Live>,
    deleted: Vec<(Live, Removal)>,
    created: bool,
    unreachable: bool,
}

impl<'a> Planner<'a> {
    pub(super) fn new(
        rules: Rules<'a>,
        keys: &[KeyState],
        recorded: &'a [(String, OffsetDateTime)],
        reactivated: &'a [(String, OffsetDateTime)],
        deliverable: bool,
    ) -> Self {
        let mut sorted = keys.to_vec();
        sorted.sort_by(|a, b| rules.order(a, b));
        let live = sorted
            .into_iter()
            .map(|key| Live {
                key,
                new: false,
                deactivated: None,
            })
            .collect();
        Planner {
            rules,
            recorded,
            reactivated,
            deliverable,
            deliveries: &[],
            live,
            deleted: Vec::new(),
            created: false,
            unreachable: false,
        }
    }

    /// Repeats `step` until it changes nothing. Each change removes a key,
    /// deactivates one, or creates the only new key, so this ends quickly;
    /// the bound is a safety net.
    pub(super) fn run(&mut self, step: impl Fn(&mut Self) -> bool) {
        for _ in 0..16 {
            if !step(self) {
                return;
            }
        }
    }

    fn active(&self) -> Vec<usize> {
        (0..self.live.len())
            .filter(|&i| self.live[i].key.status == KeyStatus::Active)
            .collect()
    }

    /// The youngest active key younger than the key at `at`.
    fn replacement(&self, at: usize) -> Option<&KeyState> {
        self.live[at + 1..]
            .iter()
            .rev()
            .map(|l| &l.key)
            .find(|k| k.status == KeyStatus::Active)
    }

    /// The id to name in a notice: none for a key this plan creates.
    fn notice_id(live: &Live) -> Option<String> {
        (!live.new).then(|| live.key.id.clone())
    }

    fn remove(&mut self, mut doomed: Vec<(usize, Removal)>) -> bool {
        doomed.sort_by_key(|&(i, _)| std::cmp::Reverse(i));
        let any = !doomed.is_empty();
        for (i, why) in doomed {
            let live = self.live.remove(i);
            self.deleted.push((live, why));
        }
        any
    }

    fn deactivate(&mut self, at: usize, replacement: Option<String>) {
        let live = &mut self.live[at];
        live.key.status = KeyStatus::Inactive;
        live.deactivated = Some(replacement);
    }

    /// When keyfleet recorded deactivating `key_id`, if it did.
    fn recorded(&self, key_id: &str) -> Option<OffsetDateTime> {
        self.recorded
            .iter()
            .filter(|(id, _)| id == key_id)
            .map(|(_, at)| (*at).min(self.rules.now))
            .max()
    }

    /// Where the delivery of `key` stands: `Awaiting` while the coordinator
    /// has not delivered it, else the key as the pair rule must see it, its
    /// creation moved to its delivery (the owner's notice period starts when
    /// the owner has the key).
    fn delivery(&self, key: &KeyState) -> Delivery {
        match self.deliveries.iter().find(|(id, _)| *id == key.id) {
            Some((_, None)) => Delivery::Awaiting,
            Some((_, Some(at))) if *at > key.created => Delivery::Known(KeyState {
                created: *at,
                ..key.clone()
            }),
            _ => Delivery::Known(key.clone()),
        }
    }

    /// [`older_of_two_active`] with the replacement's delivery applied.
    fn pair(&self, old: &KeyState, new: &KeyState) -> Pair {
        match self.delivery(new) {
            Delivery::Awaiting => Pair::AwaitingDelivery,
            Delivery::Known(new) => older_of_two_active(&self.rules, old, &new, self.grace(old)),
        }
    }

    /// The end of a reactivated key's grace, while it lasts: the security
    /// team switched it back on less than a notice period ago, so no rule
    /// deactivates or deletes it before then (see [`plan_reactivation`](super::plan_reactivation)).
    fn grace(&self, key: &KeyState) -> Option<OffsetDateTime> {
        grace(self.reactivated, key, self.rules.policy, self.rules.now).map(|(_, until)| until)
    }

    /// The key may be deleted in this run: it was not deactivated by this
    /// plan (never deactivate and delete one key in one run) and keyfleet
    /// did not deactivate it less than the recovery window ago.
    fn deletable(&self, at: usize) -> bool {
        let live = &self.live[at];
        live.deactivated.is_none() && !self.rules.recently_deactivated(self.recorded(&live.key.id))
    }

    /// Inactive keys past their deletion date, oldest first.
    fn expired(&self) -> Vec<(usize, Removal)> {
        (0..self.live.len())
            .filter(|&i| self.live[i].deactivated.is_none())
            .filter(|&i| {
                inactive_expired(
                    &self.rules,
                    &self.live[i].key,
                    self.replacement(i),
                    self.recorded(&self.live[i].key.id),
                )
            })
            // Not while its replacement awaits delivery: the owner may
            // still need it switched back on.
            .filter(|&i| {
                self.replacement(i)
                    .is_none_or(|k| self.delivery(k) != Delivery::Awaiting)
            })
            .map(|i| (i, Removal::Expired))
            .collect()
    }

    /// One round of the scheduled rules; true if it changed anything.
    pub(super) fn step(&mut self) -> bool {
        let r = self.rules;
        // Deletions first: they make room and never depend on a new key.
        let mut doomed = self.expired();
        doomed.extend(
            (0..self.live.len())
                .filter(|&i| {
                    unused(&r, &self.live[i].key)
                        && self.grace(&self.live[i].key).is_none()
                        // Unused because its owner does not have it yet.
                        && self.delivery(&self.live[i].key) != Delivery::Awaiting
                        && self
                            .replacement(i)
                            .is_none_or(|k| self.delivery(k) != Delivery::Awaiting)
                })
                .map(|i| (i, Removal::Unused)),
        );
        if self.remove(doomed) {
            return true;
        }
        // Then the older key of each active pair, on its date (or at once
        // on the evidence of a switch).
        let active = self.active();
        let due: Vec<(usize, Option<String>)> = active
            .windows(2)
            .filter(|w| {
                let (old, new) = (&self.live[w[0]].key, &self.live[w[1]].key);
                self.pair(old, new).deactivates()
            })
            .map(|w| (w[0], Self::notice_id(&self.live[w[1]])))
            .collect();
        if !due.is_empty() {
            for (at, replacement) in due {
                self.deactivate(at, replacement);
            }
            return true;
        }
        // Then the only active key: the hard limit, or its replacement.
        let &[at] = active.as_slice() else {
            return false;
        };
        let key = &self.live[at].key;
        if self.delivery(key) == Delivery::Awaiting {
            // Its owner does not have it yet: it is neither replaced again
            // nor switched off, and no older key makes room for it.
            return false;
        }
        let decision = hard_limit(&r, key, self.deliverable)
            .filter(|_| self.grace(key).is_none())
            .or_else(|| replacement(&r, key, self.deliverable));
        match decision {
            None => false,
            Some(Single::Unreachable) => {
                self.unreachable = true;
                false
            }
            Some(Single::DeactivateAlone { unreachable }) => {
                self.unreachable |= unreachable;
                self.deactivate(at, None);
                true
            }
            Some(Single::Replace) => {
                // Room for the new key: every other key is inactive here. A
                // key that may not be deleted yet (deactivated by this plan,
                // or recorded as deactivated within the recovery window)
                // makes the replacement wait for a later run.
                let room: Vec<usize> = (0..self.live.len()).filter(|&i| i != at).collect();
                if !room.iter().all(|&i| self.deletable(i)) {
                    return false;
                }
                self.remove(room.into_iter().map(|i| (i, Removal::Room)).collect());
                self.create();
                true
            }
        }
    }

    /// One round of clean-up; true if it changed anything.
    pub(super) fn cleanup_step(&mut self, no_email: bool) -> bool {
        let doomed = self.expired();
        if self.remove(doomed) {
            return true;
        }
        if !no_email {
            return false;
        }
        let r = self.rules;
        // A pair whose older key is used after the younger one was created
        // is mid-switch: both stay, so the older key keeps its replacement.
        let active = self.active();
        let spared: Vec<usize> = active
            .windows(2)
            .filter(|w| {
                let (old, new) = (&self.live[w[0]].key, &self.live[w[1]].key);
                r.used_after(old, new) && !r.hard_limit(old)
            })
            .flat_map(|w| [w[0], w[1]])
            .collect();
        let over_age: Vec<usize> = active
            .into_iter()
            .filter(|i| !spared.contains(i))
            .filter(|&i| r.age(&self.live[i].key) >= r.policy.deactivate_after)
            .filter(|&i| self.grace(&self.live[i].key).is_none())
            .filter(|&i| {
                self.delivery(&self.live[i].key) != Delivery::Awaiting
                    && self
                        .replacement(i)
                        .is_none_or(|k| self.delivery(k) != Delivery::Awaiting)
            })
            .collect();
        for &at in &over_age {
            self.deactivate(at, None);
        }
        !over_age.is_empty()
    }

    fn create(&mut self) {
        let id = (0..)
            .map(|n| format!("NEW{n}"))
            .find(|id| self.live.iter().all(|l| l.key.id != *id))
            .unwrap_or_default();
        self.live.push(Live {
            key: KeyState {
                id,
                status: KeyStatus::Active,
                created: self.rules.now,
                last_used: None,
                last_used_service: None,
                last_used_region: None,
            },
            new: true,
            deactivated: None,
        });
        self.created = true;
    }

    /// Lays the decisions out in the canonical order (see the module doc)
    /// and picks the verdict. Without `notify` (clean-up) no notices.
    pub(super) fn finish(mut self, notify: bool) -> (Verdict, Vec<Action>, Vec<(String, String)>) {
        let r = self.rules;
        let mut actions = Vec::new();
        let mut push = |action: Action, notice: Option<Notice>| {
            actions.push(action);
            if let Some(notice) = notice.filter(|_| notify) {
                actions.push(Action::Notify { notice });
            }
        };
        let deactivation = |live: &Live| {
            live.deactivated.clone().map(|replacement| {
                (
                    Action::Deactivate {
                        key_id: live.key.id.clone(),
                    },
                    Notice::Deactivated {
                        key_id: live.key.id.clone(),
                        replacement,
                    },
                )
            })
        };
        self.deleted.sort_by(|a, b| r.order(&a.0.key, &b.0.key));
        for (live, why) in &self.deleted {
            if let Some((action, notice)) = deactivation(live) {
                push(action, Some(notice));
            }
            let key_id = live.key.id.clone();
            let notice = match why {
                Removal::Expired | Removal::Room => Notice::Deleted {
                    key_id: key_id.clone(),
                },
                Removal::Unused => Notice::UnusedDeleted {
                    key_id: key_id.clone(),
                    last_used: live.key.last_used,
                },
            };
            push(Action::Delete { key_id }, Some(notice));
        }
        if self.created {
            push(Action::CreateKey, None);
        }
        for live in &self.live {
            if let Some((action, notice)) = deactivation(live) {
                push(action, Some(notice));
            }
        }
        // What remains: reminders about the active pair, if any.
        let (mut pending, mut still) = (false, false);
        let mut awaited = Vec::new();
        let active = self.active();
        for w in active.windows(2) {
            let (old, new) = (&self.live[w[0]].key, &self.live[w[1]]);
            if self.pair(old, &new.key) == Pair::AwaitingDelivery {
                // No reminder: its date is not known until the owner has
                // the new key. The report row says what is awaited.
                pending = true;
                awaited.push((old.id.clone(), new.key.id.clone()));
            }
        }
        for w in active.windows(2).filter(|_| notify) {
            let (old, new) = (&self.live[w[0]].key, &self.live[w[1]]);
            let replacement = Self::notice_id(new);
            let notice = match self.pair(old, &new.key) {
                // A cutover deactivates the key in `step`: the fixed point
                // leaves none to remind of.
                Pair::AwaitingDelivery | Pair::Cutover => continue,
                // Due and still active: only a key in use is spared.
                Pair::StillInUse | Pair::Deactivate => {
                    still = true;
                    Notice::StillInUse {
                        key_id: old.id.clone(),
                        last_used: old.last_used,
                        service: old.last_used_service.clone(),
                        region: old.last_used_region.clone(),
                        replacement,
                        used_from: Vec::new(),
                    }
                }
                Pair::Scheduled { on } => {
                    pending = true;
                    Notice::DeactivationScheduled {
                        key_id: old.id.clone(),
                        on,
                        replacement,
                    }
                }
            };
            actions.push(Action::Notify { notice });
        }
        let deactivated = self
            .deleted
            .iter()
            .map(|(l, _)| l)
            .chain(&self.live)
            .any(|l| l.deactivated.is_some());
        let happened = |v: &Verdict| match v {
            Verdict::Rotated => self.created,
            Verdict::Deactivated => deactivated,
            Verdict::StillInUse => still,
            Verdict::Unreachable => self.unreachable,
            Verdict::Cleaned => !self.deleted.is_empty(),
            Verdict::PendingDeactivation => pending,
            _ => true,
        };
        let verdict = VERDICT_PRIORITY
            .into_iter()
            .find(happened)
            .unwrap_or(Verdict::Compliant);
        (verdict, actions, awaited)
    }
}
