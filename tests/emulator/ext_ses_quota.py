"""SES: the account's sending quota (24 hours) and maximum send rate, enforced.

AWS: every account has, per region, a sending quota (``Max24HourSend``: the
emails it may send in a rolling 24 hours; sandbox 200) and a maximum send rate
(``MaxSendRate``, per second; sandbox 1). "Quotas are based on the number of
recipients, rather than on the number of messages" and "are for each AWS
Region" (docs.aws.amazon.com/ses/latest/dg/quotas.html). A send is accepted
while the recipients sent in the last 24 hours are fewer than the quota, even
if its own recipients then go past it (AWS CLI ``get-send-quota`` example:
"As long as the total number of emails that you have sent is less than your
quota, your send request will be accepted"); the rate works the same way: "You
can send an email to multiple recipients as long as you have at least one
email left before you reach your sending rate limit. Then, you have to wait
until you build up the corresponding amount of sending rate quota before you
can send again ... one email per second ... an email with 10 recipients once
every 10 seconds" (awsdocs/amazon-ses-developer-guide,
doc-source/reach-sending-limits.md). An email beyond a limit is dropped, not
queued (docs.aws.amazon.com/ses/latest/dg/manage-sending-quotas-errors.html).
The refusal, by API:

* SES v2 ``SendEmail``, maximum send rate: HTTP 429
  ``TooManyRequestsException`` "Maximum sending rate exceeded." -- a real
  response logged in github.com/pm-pmaas/etailors_amazon_ses/issues/117
  (``POST .../v2/email/outbound-emails`` -> ``429 Too Many Requests``
  ``{"message":"Maximum sending rate exceeded."}``), also
  alphagov/notifications-api PR #4310 ("the class is actually
  TooManyRequestsException"); 429 is the status of that shape in the sesv2
  service model.
* SES v2 ``SendEmail``, 24-hour quota: HTTP 400 ``LimitExceededException``
  "Daily message quota exceeded." -- the v2 model lists LimitExceededException
  (400) among SendEmail's errors, and client code that handles SES v2 maps the
  daily quota to it; no response logged from AWS itself was found (the
  developer guide names the messages only, under "ThrottlingException").
* SES v1 (query API: ``SendEmail``, ``SendRawEmail``, ``SendTemplatedEmail``,
  ``SendBulkTemplatedEmail``): HTTP 400 ``Throttling`` (``<Type>Sender``) with
  "Maximum sending rate exceeded." or "Daily message quota exceeded." -- a
  real response in github.com/awsdocs/amazon-ses-developer-guide/issues/60
  and the developer guide's "Throttling error with one of the following
  messages".

``sesv2 GetAccount`` answers ``SendQuota`` {Max24HourSend, MaxSendRate,
SentLast24Hours} with ``ProductionAccessEnabled``, ``SendingEnabled``,
``EnforcementStatus``; v1 ``GetSendQuota`` the same three numbers.
"A value of -1 signifies an unlimited quota" (SendQuota.Max24HourSend).

moto 5.2.5: enforces no quota and no rate. v2 ``GetAccount`` is not routed at
all (its ``/v2/.*$`` catch-all is not a valid werkzeug rule, so
``GET /v2/email/account`` answers an HTML 404). v1 ``GetSendQuota`` answers
the constants 200 and 1 and, as SentLast24Hours, every recipient ever sent.
v1 and v2 sends share one backend per account and region
(``SESV2Backend.core_backend`` is the v1 ``SESBackend``), as in AWS.

Patch: every send above (v2 ``SendEmail``; v1 ``SendEmail``, ``SendRawEmail``,
``SendTemplatedEmail``, ``SendBulkTemplatedEmail``) is wrapped outside
ext_ses's outbox wrapper: the quota is checked first (before moto's own
checks, e.g. the verified sender), a refused send never reaches moto, the
outbox or the send log; a send moto accepts is logged as (time, recipients)
for its account and region. Recipients are the envelope recipients ext_ses
records (Destination, else the To/Cc/Bcc headers of raw content; at least
1). Limits are checked in this order:

1. 24-hour quota: the recipients logged in the last 24 hours (emulator time,
   see below) must be fewer than ``max_24_hour_send``.
2. Send rate: a bucket of ``max(max_send_rate, 1)`` emails, full at first,
   refilled at ``max_send_rate`` per second of emulator time; a send needs at
   least 1 email in it and takes its recipients out (it may go below zero,
   as AWS's "wait until you build up the corresponding amount").

Emulator time: the send log and the bucket keep ``time.monotonic()`` stamps,
and ``POST /_keyfleet/clock/advance`` (ext_clock.py) moves them back by the
days it advances, in the account named or in all, as it ages IAM keys: after
``{"days": 1}`` the day's sends leave SentLast24Hours and the bucket has
refilled. **Rate limits are tested without timing luck** by a rate so low
that no real time between two requests could refill it, e.g. 1/3600 (one
email an hour): the second send is refused however slow the machine, and
accepted after advancing the clock an hour. A test never relies on a send
being refused (or accepted) because it came within (or after) one real
second.

Configuration (``/_keyfleet/ses/quota``): default unlimited everywhere, so
nothing changes for tests that do not ask; GetAccount then answers -1 for
both numbers (AWS documents -1 as unlimited for Max24HourSend; the harness
uses it for MaxSendRate as well). Limits apply to an account in every
region; each region counts its own sends, as in AWS.

* ``POST {"max_24_hour_send": N|null, "max_send_rate": R|null, "account":
  "..."?}`` sets both limits (a missing one is null = unlimited) for the
  account, or without ``account`` for every account (dropping the accounts'
  own settings). ``{"sandbox": true, "account"?}`` is short for 200 and 1.
  The bucket of each account concerned starts full again; the send log
  stays.
* ``GET`` shows the settings and each account and region's sends.
* ``DELETE`` makes every account unlimited again; ``DELETE ?account=ID``
  drops only that account's own setting (it then follows the all-accounts
  one). The send log stays.

ProductionAccessEnabled is always true: the harness has no sandbox (moto
needs no verified recipients), ``sandbox`` only sets the sandbox's numbers.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from control import ControlError

DAY_SECONDS = 24 * 60 * 60
SANDBOX_24_HOUR_SEND = 200
SANDBOX_SEND_RATE = 1.0
DAILY_QUOTA_MESSAGE = "Daily message quota exceeded."
SEND_RATE_MESSAGE = "Maximum sending rate exceeded."

_lock = threading.Lock()


@dataclass(frozen=True)
class Quota:
    max_24_hour_send: int | None = None  # None = unlimited
    max_send_rate: float | None = None  # emails per second; None = unlimited

    def as_json(self) -> dict[str, Any]:
        return {"max_24_hour_send": self.max_24_hour_send, "max_send_rate": self.max_send_rate}


@dataclass
class _Sending:
    """One account's sends in one region."""

    log: list[tuple[float, int]] = field(default_factory=list)  # (when, recipients), oldest first
    tokens: float | None = None  # the rate bucket; None = full
    stamp: float = 0.0  # when tokens was computed


UNLIMITED = Quota()
_all_accounts = UNLIMITED
_per_account: dict[str, Quota] = {}
_sending: dict[tuple[str, str], _Sending] = {}


def _now() -> float:
    return time.monotonic()


def quota_of(account: str) -> Quota:
    return _per_account.get(account, _all_accounts)


def _sent_last_24_hours(sending: _Sending, now: float) -> int:
    sending.log = [(when, n) for when, n in sending.log if when > now - DAY_SECONDS]
    return sum(n for _, n in sending.log)


def _tokens(sending: _Sending, rate: float, now: float) -> float:
    capacity = max(rate, 1.0)
    if sending.tokens is None:
        return capacity
    return min(capacity, sending.tokens + (now - sending.stamp) * rate)


# -- sends -------------------------------------------------------------------


class Refused(Exception):
    def __init__(self, daily: bool):
        super().__init__(DAILY_QUOTA_MESSAGE if daily else SEND_RATE_MESSAGE)
        self.daily = daily


def admit(account: str, region: str) -> None:
    """Raise Refused if the account may not send now in the region."""
    quota = quota_of(account)
    sending = _sending.get((account, region), _Sending())
    now = _now()
    limit = quota.max_24_hour_send
    if limit is not None and _sent_last_24_hours(sending, now) >= limit:
        raise Refused(daily=True)
    rate = quota.max_send_rate
    if rate is not None and _tokens(sending, rate, now) < 1:
        raise Refused(daily=False)


def count(account: str, region: str, recipients: int) -> None:
    """Log an accepted send of ``recipients`` emails."""
    sending = _sending.setdefault((account, region), _Sending())
    now = _now()
    sending.log.append((now, recipients))
    rate = quota_of(account).max_send_rate
    if rate is not None:
        sending.tokens = _tokens(sending, rate, now) - recipients
        sending.stamp = now


def send_quota(account: str, region: str) -> dict[str, float]:
    """SendQuota as GetAccount (and v1 GetSendQuota) answers it."""
    with _lock:
        quota = quota_of(account)
        sending = _sending.get((account, region), _Sending())
        sent = _sent_last_24_hours(sending, _now())
    return {
        "Max24HourSend": float(-1 if quota.max_24_hour_send is None else quota.max_24_hour_send),
        "MaxSendRate": float(-1 if quota.max_send_rate is None else quota.max_send_rate),
        "SentLast24Hours": float(sent),
    }


def age(days: float, account: str | None = None) -> int:
    """Move the send log and rate buckets ``days`` back (clock/advance); the
    number of logged sends aged."""
    delta = dt.timedelta(days=days).total_seconds()
    aged = 0
    with _lock:
        for (account_id, _region), sending in _sending.items():
            if account is not None and account_id != account:
                continue
            sending.log = [(when - delta, n) for when, n in sending.log]
            sending.stamp -= delta
            aged += len(sending.log)
    return aged


# -- control endpoint --------------------------------------------------------


def _account_field(value: Any) -> str | None:
    if value is not None and not (isinstance(value, str) and re.fullmatch(r"\d{12}", value)):
        raise ControlError(400, '"account" must be a 12-digit account id')
    return value


def _quota_from(body: dict[str, Any]) -> Quota:
    if body.get("sandbox") is not None:
        if body["sandbox"] is not True:
            raise ControlError(400, '"sandbox" must be true (or absent)')
        if body.get("max_24_hour_send") is not None or body.get("max_send_rate") is not None:
            raise ControlError(400, '"sandbox" sets both limits; give it alone')
        return Quota(SANDBOX_24_HOUR_SEND, SANDBOX_SEND_RATE)
    daily = body.get("max_24_hour_send")
    if daily is not None and (isinstance(daily, bool) or not isinstance(daily, int) or daily < 0):
        raise ControlError(400, '"max_24_hour_send" must be an integer >= 0 or null (unlimited)')
    rate = body.get("max_send_rate")
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0
    ):
        raise ControlError(400, '"max_send_rate" must be a number > 0 (emails per second) or null (unlimited)')
    return Quota(daily, None if rate is None else float(rate))


def _refill(account: str | None) -> None:
    for (account_id, _region), sending in _sending.items():
        if account is None or account_id == account:
            sending.tokens = None


def set_from_request(body: dict[str, Any]) -> dict[str, Any]:
    global _all_accounts
    unknown = set(body) - {"max_24_hour_send", "max_send_rate", "account", "sandbox"}
    if unknown:
        raise ControlError(400, f"unknown fields: {sorted(unknown)}")
    account = _account_field(body.get("account"))
    quota = _quota_from(body)
    with _lock:
        if account is None:
            _all_accounts = quota
            _per_account.clear()
        else:
            _per_account[account] = quota
        _refill(account)
    return {"ok": True, "account": account, **quota.as_json()}


def snapshot(body: Any = None) -> dict[str, Any]:
    with _lock:
        now = _now()
        return {
            "all_accounts": _all_accounts.as_json(),
            "accounts": {a: q.as_json() for a, q in sorted(_per_account.items())},
            "sending": [
                {"account": a, "region": r, "sent_last_24_hours": _sent_last_24_hours(s, now)}
                for (a, r), s in sorted(_sending.items())
            ],
        }


def clear(body: dict[str, Any]) -> dict[str, Any]:
    global _all_accounts
    unknown = set(body or {}) - {"account"}
    if unknown:
        raise ControlError(400, f"unknown query parameters: {sorted(unknown)}")
    account = _account_field((body or {}).get("account"))
    with _lock:
        if account is None:
            cleared = len(_per_account) + (_all_accounts != UNLIMITED)
            _all_accounts = UNLIMITED
            _per_account.clear()
        else:
            cleared = int(_per_account.pop(account, None) is not None)
        _refill(account)
    return {"ok": True, "cleared": cleared}


# -- recipients of a request -------------------------------------------------


def _v2_recipients(response: Any) -> int:
    import ext_ses

    params = json.loads(response.body or "{}")
    found = ext_ses._destinations(params.get("Destination"))
    raw = (params.get("Content") or {}).get("Raw")
    if not found and raw:
        try:
            found = ext_ses._header_recipients(base64.b64decode(raw.get("Data") or ""))
        except ValueError:
            found = []
    return max(len(found), 1)


def _v1_recipients(response: Any, action: str) -> int:
    import ext_ses

    if action == "SendRawEmail":
        found = list(response._get_param("Destinations", []) or [])
        if not found:
            raw = response._get_param("RawMessage.Data")
            raw = raw if isinstance(raw, bytes) else str(raw or "").encode("utf-8")
            found = ext_ses._header_recipients(raw)
        return max(len(found), 1)
    if action == "SendBulkTemplatedEmail":
        entries = response._get_param("Destinations", []) or []
        return max(sum(len(ext_ses._destinations(e.get("Destination"))) for e in entries), 1)
    return max(len(ext_ses._destinations(response._get_param("Destination", {}))), 1)


# -- install -----------------------------------------------------------------


def install() -> None:
    import warnings

    from moto.core.exceptions import ServiceException
    from moto.core.responses import ActionResult
    from moto.ses.responses import EmailResponse
    from moto.sesv2 import urls as sesv2_urls
    from moto.sesv2.responses import SESV2Response

    class LimitExceededException(ServiceException):  # SES v2, 400
        code = "LimitExceededException"

    class TooManyRequestsException(ServiceException):  # SES v2, 429
        code = "TooManyRequestsException"

    class Throttling(ServiceException):  # SES v1, 400 (Sender)
        code = "Throttling"

    # A common error, not a shape of the SES v1 model: moto serializes it
    # as 400 Sender all the same, with a warning on every refusal.
    warnings.filterwarnings("ignore", message=r"Exception\(Throttling\) with code Throttling")

    def guarded(inner: Any, recipients: Any, refusal: Any) -> Any:
        def send(self: Any) -> Any:
            account, region = self.current_account, self.region
            with _lock:
                try:
                    admit(account, region)
                except Refused as refused:
                    raise refusal(refused) from None
                n = recipients(self)  # before moto, which may rewrite the parameters
                result = inner(self)
                count(account, region, n)
            return result

        return send

    def v2_refusal(refused: Refused) -> ServiceException:
        if refused.daily:
            return LimitExceededException(DAILY_QUOTA_MESSAGE)
        return TooManyRequestsException(SEND_RATE_MESSAGE)

    def v1_refusal(refused: Refused) -> ServiceException:
        return Throttling(str(refused))

    SESV2Response.send_email = guarded(  # type: ignore[method-assign]
        SESV2Response.send_email, _v2_recipients, v2_refusal
    )
    for action, name in (
        ("SendEmail", "send_email"),
        ("SendRawEmail", "send_raw_email"),
        ("SendTemplatedEmail", "send_templated_email"),
        ("SendBulkTemplatedEmail", "send_bulk_templated_email"),
    ):
        setattr(
            EmailResponse,
            name,
            guarded(getattr(EmailResponse, name), lambda self, a=action: _v1_recipients(self, a), v1_refusal),
        )

    def get_account(self: Any) -> tuple[str, dict[str, str]]:
        body = json.dumps(
            {
                "DedicatedIpAutoWarmupEnabled": False,
                "EnforcementStatus": "HEALTHY",
                "ProductionAccessEnabled": True,
                "SendQuota": send_quota(self.current_account, self.region),
                "SendingEnabled": True,
                "SuppressionAttributes": {"SuppressedReasons": []},
            }
        )
        return body, {"Content-Type": "application/json"}

    def get_send_quota(self: Any) -> ActionResult:
        return ActionResult(send_quota(self.current_account, self.region))

    SESV2Response.get_account = get_account  # type: ignore[attr-defined]
    EmailResponse.get_send_quota = get_send_quota  # type: ignore[method-assign]
    # moto's "{0}/v2/.*$" never matches (see above): route GetAccount.
    sesv2_urls.url_paths["{0}/v2/email/account$"] = SESV2Response.dispatch
