"""IAM clock, key use and the credential report.

AWS: access keys age with wall-clock time; GetAccessKeyLastUsed reports when,
where (region) and with which service a key was last used; the credential
report (GenerateCredentialReport, then GetCredentialReport) is a CSV snapshot
taken at generation time, with a ``<root_account>`` row first and, per access
key, ``access_key_N_last_used_date/_region/_service``.

moto 5.2.5 lacks:
  * any way to make time pass, so rules about 80/90/100-day old keys cannot be
    exercised;
  * a way to say "this key was used from eu-west-1 for s3" (it only records
    use of a key that signs a request to moto itself);
  * a faithful credential report: it is built at *Get* time, not Generate
    time; ``GeneratedTime`` is a constant (2015-02-02T20:02:02Z); the
    last_used_region/service columns are always ``not_supported``; there is no
    root row; users without a password show ``password_last_changed`` as their
    creation time.

Added:
  * ``POST /_keyfleet/clock/advance {"days": N, "account": "..."?}`` subtracts N
    days (fractional allowed, N >= 0) from the creation time and last-used time
    of every IAM user access key, in every account (or only the given one).
    User creation and password-last-used times age by the same amount, so a
    key is never older than its user. Temporary (STS) keys are left alone.
    The SES send log and send-rate buckets age by the same amount in the same
    accounts (ext_ses_quota.py), so a day advanced is a day of SES quota
    passed; the answer's ``ses_sends_aged`` counts the logged sends moved.
    The CloudTrail events recorded so far (ext_cloudtrail.py) look N days
    older too and the accounts' LookupEvents throttle buckets refill by as
    much; ``cloudtrail_events_aged`` counts the events moved.
  * ``POST /_keyfleet/iam/key-used {"account", "access_key_id", "when"?,
    "service", "region"}`` sets a key's last use (``when`` is ISO 8601, default
    now) as GetAccessKeyLastUsed and the credential report show it.
  * GenerateCredentialReport takes a snapshot of the report right away.
    GetCredentialReport returns that snapshot and its real generation time;
    before the first GenerateCredentialReport it fails with ReportNotPresent,
    as in AWS. The CSV follows AWS's format (see ``build_report``).

AWS: a credential report is rebuilt at most every 4 hours. While the last
report is younger than that, GenerateCredentialReport answers ``COMPLETE``
without rebuilding, and GetCredentialReport keeps returning the old snapshot
(keys created, deleted or used since are not in it). The first generation
answers ``STARTED`` ("No report exists. Starting a new report generation
task"); while a generation runs, GenerateCredentialReport answers
``INPROGRESS`` and GetCredentialReport fails with ``ReportInProgress``
(HTTP 404 in the IAM model), so callers poll.

moto 5.2.5 (and this module before): the report was rebuilt on every
GenerateCredentialReport, and never in progress.

Patch:
  * GenerateCredentialReport rebuilds only when there is no report, when the
    report is 4 hours old (real time), or when the harness clock moved for
    the account since it was built (``clock/advance`` with ``days`` > 0:
    the jump stands for the hours passing); otherwise it answers
    ``COMPLETE`` and the old snapshot stays (``key-used`` and IAM changes
    alone do not refresh it, as in AWS).
  * ``POST /_keyfleet/iam/credential-report {"in_progress": N, "account":
    "..."?}`` (account default 123456789012; N >= 0, 0 cancels) makes the
    account's next N GenerateCredentialReport calls answer ``STARTED`` (the
    first) then ``INPROGRESS``, and GetCredentialReport fail with
    ``ReportInProgress`` from the first of them until the generation
    completes: the call after the N-th rebuilds the report and answers
    ``COMPLETE``. ``GET`` of the same path shows each account's state.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from typing import Any, Iterable

import ext_cloudtrail
import ext_ses_quota
from control import ControlError

DATE_FORMAT = "%Y-%m-%dT%H:%M:%S+00:00"
REPORT_MAX_AGE = dt.timedelta(hours=4)
DEFAULT_ACCOUNT = "123456789012"
REPORT_HEADER = (
    "user,arn,user_creation_time,password_enabled,password_last_used,"
    "password_last_changed,password_next_rotation,mfa_active,"
    "access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,"
    "access_key_1_last_used_region,access_key_1_last_used_service,"
    "access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,"
    "access_key_2_last_used_region,access_key_2_last_used_service,"
    "cert_1_active,cert_1_last_rotated,cert_2_active,cert_2_last_rotated"
)

_lock = threading.Lock()


def _utcnow() -> dt.datetime:
    # moto keeps naive UTC datetimes.
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _iam_backends(account: str | None) -> Iterable[tuple[str, Any]]:
    from moto.iam.models import iam_backends

    for account_id, per_partition in list(iam_backends.items()):
        if account is not None and account_id != account:
            continue
        for backend in list(per_partition.values()):
            yield account_id, backend


def _last_used_time(last_used: Any) -> dt.datetime | None:
    if last_used is None:
        return None
    if isinstance(last_used, dt.datetime):
        return last_used
    return last_used.timestamp


def _set_last_used(key: Any, when: dt.datetime, service: str, region: str) -> None:
    from moto.iam.models import AccessKeyLastUsed

    key.last_used = AccessKeyLastUsed(timestamp=when, service=service, region=region)


# -- clock -------------------------------------------------------------------


def advance(days: float, account: str | None = None) -> dict[str, Any]:
    delta = dt.timedelta(days=days)
    keys = users = 0
    accounts = set()
    with _lock:
        for account_id, backend in _iam_backends(account):
            if days > 0:
                backend.keyfleet_clock_moved = True  # the next report is rebuilt
            for user in list(backend.users.values()):
                accounts.add(account_id)
                users += 1
                user.create_date = user.create_date - delta
                if getattr(user, "password_last_used", None):
                    user.password_last_used = user.password_last_used - delta
                for key in list(user.access_keys):
                    keys += 1
                    key.create_date = key.create_date - delta
                    last = key.last_used
                    if isinstance(last, dt.datetime):
                        key.last_used = last - delta
                    elif last is not None:
                        _set_last_used(key, last.timestamp - delta, last.service, last.region)
    ses_sends = ext_ses_quota.age(days, account)
    cloudtrail_events = ext_cloudtrail.age(days, account)
    return {
        "ok": True,
        "days": days,
        "accounts": sorted(accounts),
        "users_aged": users,
        "keys_aged": keys,
        "ses_sends_aged": ses_sends,
        "cloudtrail_events_aged": cloudtrail_events,
    }


def advance_from_request(body: dict[str, Any]) -> dict[str, Any]:
    days = body.get("days")
    if isinstance(days, bool) or not isinstance(days, (int, float)):
        raise ControlError(400, '"days" must be a number, e.g. {"days": 80}')
    if days < 0 or days != days or days == float("inf"):
        raise ControlError(400, '"days" must be finite and >= 0 (the clock only goes forward)')
    account = body.get("account")
    if account is not None and not (isinstance(account, str) and re.fullmatch(r"\d{12}", account)):
        raise ControlError(400, '"account" must be a 12-digit account id')
    return advance(float(days), account)


# -- key used ----------------------------------------------------------------


def parse_time(value: str) -> dt.datetime:
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError("a time zone is required (e.g. 2026-01-02T03:04:05Z)")
    return parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)


def key_used(
    access_key_id: str,
    service: str,
    region: str,
    when: dt.datetime | None = None,
    account: str | None = None,
) -> dict[str, Any]:
    when = when or _utcnow()
    with _lock:
        for account_id, backend in _iam_backends(account):
            for user in list(backend.users.values()):
                for key in user.access_keys:
                    if key.access_key_id == access_key_id:
                        _set_last_used(key, when, service, region)
                        return {
                            "ok": True,
                            "account": account_id,
                            "user": user.name,
                            "access_key_id": access_key_id,
                            "last_used": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                            "service": service,
                            "region": region,
                        }
    where = f"account {account}" if account else "any account"
    raise ControlError(404, f"no IAM user access key {access_key_id} in {where}")


def key_used_from_request(body: dict[str, Any]) -> dict[str, Any]:
    key_id = body.get("access_key_id")
    service = body.get("service")
    region = body.get("region")
    account = body.get("account")
    for name, value in (("access_key_id", key_id), ("service", service), ("region", region)):
        if not isinstance(value, str) or not value:
            raise ControlError(400, f'"{name}" is required (a non-empty string)')
    if account is not None and not (isinstance(account, str) and re.fullmatch(r"\d{12}", account)):
        raise ControlError(400, '"account" must be a 12-digit account id')
    when = None
    if body.get("when") is not None:
        if not isinstance(body["when"], str):
            raise ControlError(400, '"when" must be an ISO 8601 string')
        try:
            when = parse_time(body["when"])
        except ValueError as exc:
            raise ControlError(400, f'"when" is not an ISO 8601 time: {exc}') from exc
    return key_used(key_id, service, region, when, account)


# -- credential report -------------------------------------------------------


def _fmt(value: dt.datetime | None, missing: str = "N/A") -> str:
    return value.strftime(DATE_FORMAT) if value else missing


def _key_columns(key: Any | None) -> list[str]:
    if key is None:
        return ["false", "N/A", "N/A", "N/A", "N/A"]
    used = _last_used_time(key.last_used)
    region = getattr(key.last_used, "region", None) if used else None
    service = getattr(key.last_used, "service", None) if used else None
    return [
        "true" if key.status == "Active" else "false",
        _fmt(key.create_date),
        _fmt(used),
        region or "N/A",
        service or "N/A",
    ]


def _cert_columns(cert: Any | None) -> list[str]:
    if cert is None:
        return ["false", "N/A"]
    return ["true" if cert.status == "Active" else "false", _fmt(getattr(cert, "upload_date", None))]


def build_report(backend: Any) -> str:
    """The credential report CSV of one account, in AWS's format.

    One ``<root_account>`` row first (its creation time is the oldest user
    creation time in the account, or now; no password or key information is
    kept for the root user in the emulator), then one row per IAM user.
    Dates are ISO 8601 with ``+00:00``; absent values are ``N/A``; a password
    never used is ``no_information``. Key 1 is the older key.
    """
    users = list(backend.users.values())
    root_created = min([u.create_date for u in users] + [_utcnow()])
    partition = getattr(backend, "partition", "aws")
    rows = [
        REPORT_HEADER,
        ",".join(
            [
                "<root_account>",
                f"arn:{partition}:iam::{backend.account_id}:root",
                _fmt(root_created),
                "not_supported",
                "no_information",
                "not_supported",
                "not_supported",
                "false",
                *_key_columns(None),
                *_key_columns(None),
                *_cert_columns(None),
                *_cert_columns(None),
            ]
        ),
    ]
    for user in users:
        has_password = bool(getattr(user, "password", None))
        if has_password:
            password = [
                "true",
                _fmt(getattr(user, "password_last_used", None), "no_information"),
                _fmt(user.create_date),
                "N/A",
            ]
        else:
            password = ["false", "N/A", "N/A", "N/A"]
        keys = sorted(user.access_keys, key=lambda k: k.create_date)[:2]
        keys += [None] * (2 - len(keys))
        certs = list(getattr(user, "signing_certificates", {}).values())[:2]
        certs += [None] * (2 - len(certs))
        rows.append(
            ",".join(
                [
                    user.name,
                    user.arn,
                    _fmt(user.create_date),
                    *password,
                    "true" if len(user.mfa_devices) else "false",
                    *_key_columns(keys[0]),
                    *_key_columns(keys[1]),
                    *_cert_columns(certs[0]),
                    *_cert_columns(certs[1]),
                ]
            )
        )
    return "\n".join(rows) + "\n"


# -- credential report: generation state -------------------------------------------

# account -> Generate calls still to answer STARTED/INPROGRESS
_in_progress: dict[str, int] = {}
# account -> a generation is running (GetCredentialReport: ReportInProgress)
_generating: set[str] = set()


def credential_report_from_request(body: dict[str, Any]) -> dict[str, Any]:
    unknown = set(body) - {"in_progress", "account"}
    if unknown:
        raise ControlError(400, f"unknown fields: {sorted(unknown)}")
    n = body.get("in_progress")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ControlError(400, '"in_progress" must be an integer >= 0, e.g. {"in_progress": 2}')
    account = body.get("account", DEFAULT_ACCOUNT)
    if not (isinstance(account, str) and re.fullmatch(r"\d{12}", account)):
        raise ControlError(400, '"account" must be a 12-digit account id')
    with _lock:
        if n:
            _in_progress[account] = n
        else:
            _in_progress.pop(account, None)
            _generating.discard(account)
    return {"ok": True, "account": account, "in_progress": n}


def credential_report_state(body: Any = None) -> dict[str, Any]:
    with _lock:
        accounts = sorted(set(_in_progress) | _generating)
        return {
            "accounts": {
                a: {"in_progress": _in_progress.get(a, 0), "generating": a in _generating} for a in accounts
            }
        }


def _generate(backend: Any) -> dict[str, str]:
    """GenerateCredentialReport's answer; builds the report when due."""
    account = backend.account_id
    with _lock:
        pending = _in_progress.get(account, 0)
        if pending:
            _in_progress[account] = pending - 1
            if account not in _generating:
                _generating.add(account)
                return {
                    "State": "STARTED",
                    "Description": "No report exists. Starting a new report generation task",
                }
            return {"State": "INPROGRESS"}
        snapshot = getattr(backend, "keyfleet_report", None)
        was_generating = account in _generating
        due = (
            was_generating
            or snapshot is None
            or getattr(backend, "keyfleet_clock_moved", False)
            or _utcnow() - snapshot[1] >= REPORT_MAX_AGE
        )
        _generating.discard(account)
        if not due:
            return {"State": "COMPLETE"}
        first = snapshot is None and not was_generating
        backend.credential_report = True
        backend.keyfleet_report = (build_report(backend), _utcnow())
        backend.keyfleet_clock_moved = False
        if first:  # as moto (and AWS) answer the very first request
            return {
                "State": "STARTED",
                "Description": "No report exists. Starting a new report generation task",
            }
        return {"State": "COMPLETE"}


def install() -> None:
    from moto.core.responses import ActionResult
    from moto.iam.exceptions import IAMException, ReportNotPresentException
    from moto.iam.models import IAMBackend
    from moto.iam.responses import IamResponse

    class ReportInProgress(IAMException):
        code = "ReportInProgress"

    def generate_report(self: Any) -> None:
        _generate(self)

    def get_credential_report(self: Any) -> str:
        with _lock:
            if self.account_id in _generating:
                raise ReportInProgress("Report generation in progress")
        snapshot = getattr(self, "keyfleet_report", None)
        if snapshot is None:
            raise ReportNotPresentException("Credential report not present")
        return snapshot[0]

    def generate_credential_report_response(self: Any) -> ActionResult:
        return ActionResult(_generate(self.backend))

    def get_credential_report_response(self: Any) -> ActionResult:
        content = self.backend.get_credential_report()
        generated = self.backend.keyfleet_report[1]
        return ActionResult(
            {
                "Content": content,
                "ReportFormat": "text/csv",
                "GeneratedTime": generated.replace(microsecond=0),
            }
        )

    IAMBackend.generate_report = generate_report  # type: ignore[method-assign]
    IAMBackend.get_credential_report = get_credential_report  # type: ignore[method-assign]
    IamResponse.generate_credential_report = generate_credential_report_response  # type: ignore[method-assign]
    IamResponse.get_credential_report = get_credential_report_response  # type: ignore[method-assign]
