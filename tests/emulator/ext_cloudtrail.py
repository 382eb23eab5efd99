"""CloudTrail event history: LookupEvents answered from the requests the emulator served.

AWS: CloudTrail records every management event of an account, per Region,
in its **Event history** (no trail needed), and ``LookupEvents`` looks them
up: "Looks up management events or CloudTrail Insights events that are
captured by CloudTrail. You can look up events that occurred in a Region
within the last 90 days." (API reference, LookupEvents; botocore's
cloudtrail-2013-11-01 model). Sources for what follows:

* Request (JSON 1.1, ``X-Amz-Target:
  com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents``):
  ``LookupAttributes`` "Currently the list can contain only one item", keys
  ``EventId | EventName | ReadOnly | Username | ResourceType | ResourceName |
  EventSource | AccessKeyId``, ``AttributeValue`` at most 2000 characters
  ("'_', ' ', ',', '\\n' count as two characters"); ``StartTime`` "events
  that occur after or at", ``EndTime`` "before or at", "If the specified
  start time is after the specified end time, an error is returned";
  ``EventCategory`` (only ``insight``); ``MaxResults`` "Possible values are 1
  through 50. The default is 50."; ``NextToken`` "must be passed in with the
  same parameters that were specified in the original call".
* Response: ``Events`` "sorted by time. The most recent event is listed
  first", each ``EventId, EventName, ReadOnly`` (a string), ``AccessKeyId``
  ("If the request was made with temporary security credentials, this is
  the access key ID of the temporary credentials"), ``EventTime,
  EventSource, Username`` ("A user name or role name of the requester"),
  ``Resources`` (``ResourceType``, ``ResourceName``), ``CloudTrailEvent`` ("A
  JSON string that contains a representation of the event"); ``NextToken``
  absent on the last page.
* Errors (LookupEvents' list in the model, all HTTP 400: the model gives
  none a status): ``InvalidLookupAttributesException`` ("a lookup attribute
  is specified that is not valid"), ``InvalidTimeRangeException`` ("Either
  the start time occurs after the end time, or the time range is outside
  the range of possible values"), ``InvalidMaxResultsException``,
  ``InvalidNextTokenException`` ("A token that is not valid, or a token that
  was previously used in a request with different parameters"),
  ``InvalidEventCategoryException``; ``ThrottlingException`` ("thrown when
  the request rate exceeds the limit", a shape of the model, 400). The
  messages are the harness's own: no AWS response text for these was found.
* Throttling: "The rate of lookup requests is limited to two per second,
  per account, per Region. If this limit is exceeded, a throttling error
  occurs." (API reference, LookupEvents.)
* Only management events: "The CloudTrail Event history feature supports
  only management events" (User Guide, Logging management events); "The
  CloudTrail Event history doesn't record data events" (SQS Developer Guide,
  Logging Amazon SQS API calls using CloudTrail). Data events are S3
  object-level calls ("The PutObject API operation is an Amazon S3
  object-level API. It is recorded as a data event", API reference,
  DataResource), Lambda function and DynamoDB table data calls (the basic
  DataResource types), SQS message calls (SendMessage ...) and SNS Publish
  (aws-cli put-event-selectors example: "log Publish API calls on an SNS
  topic" as data events).
* Global services: since 2021-11-22 "CloudTrail's Lookup service within
  each region will only show global service events in us-east-1, as
  CloudFront, IAM, SignIn, and STS events occur in that region" (AWS notice,
  SummitRoute/aws_breaking_changes#51): IAM events are recorded in
  us-east-1.

moto 5.2.5: records nothing; ``CloudTrailResponse`` has no ``lookup_events``,
so LookupEvents fails with ``NotImplementedError: The lookup_events action
has not been implemented`` (HTTP 500).

Patch:

**Recording.** ext_calls (which sees every SigV4-signed request once,
outermost on moto's WSGI app) hands each request it counted to
``record`` (``ext_calls.add_observer``), with the resolved account (the
caller's: the account owning the access key, moto's lookup), service,
action and credential scope. A request is recorded unless it is a data
event (``DATA_EVENTS``: S3 actions on objects and multipart uploads; Lambda
Invoke; DynamoDB item reads and writes, PartiQL and transactions; SQS
Send/Receive/Delete/ChangeMessageVisibility(Batch), GetQueueAttributes,
GetQueueUrl, ListQueues, ListDeadLetterSourceQueues; SNS Publish,
PublishBatch). Whatever happens to the request next (moto's answer, an
error, a fault from ext_faults, an IAM refusal) it is recorded once per
attempt, as it arrived (no ``errorCode``). The hot path appends one small
tuple under a lock: (time, sequence number, access key id, action, event
source, region, source IP, user agent, identity), the identity (user, role
session or root) resolved once per access key and cached; EventId, the
CloudTrail JSON and everything else are built only when asked. Fields:

* ``EventSource``: ``<service>.amazonaws.com`` with the boto3 service name,
  except SES v1/v2 = ``ses``, CloudWatch = ``monitoring``, Step Functions =
  ``states``. ``EventName`` = the action moto's router found.
* ``AwsRegion``: the credential scope's region; IAM's always ``us-east-1``
  (a global service, see above).
* ``SourceIPAddress``: the **first address of ``X-Forwarded-For``** when the
  request has one (the client's, as a proxy chain lists it first), else the
  TCP peer (``REMOTE_ADDR``): CloudTrail reports the client's IP, and a test
  picks one with that header. ``UserAgent``: the ``User-Agent`` header (cut
  at 1000 characters; empty without one).
* ``AccessKeyId`` and ``userIdentity``: the SigV4 ``Credential=`` key. An IAM
  user's key: ``IAMUser``, ``Username`` = the user name. A temporary ``ASIA``
  key from AssumeRole: ``AssumedRole`` (with ``sessionContext.sessionIssuer``),
  ``Username`` = the role session name. A key moto does not know (e.g.
  ``testing``): ``Root``, ``Username`` = ``root``.
* ``ReadOnly``: ``"true"`` for actions starting Get, List, Describe, Head,
  Lookup, Search, Query, Scan, BatchGet, Select, Check, Simulate, Test,
  Validate, Estimate, Preview, Verify, View; ``"false"`` otherwise (a
  heuristic: AWS decides per API).
* ``Resources``: always ``[]`` (request parameters are not parsed on the hot
  path), so ``ResourceType``/``ResourceName`` lookups find nothing.
  ``CloudTrailEvent``: ``eventVersion, userIdentity, eventTime, eventSource,
  eventName, awsRegion, sourceIPAddress, userAgent, requestParameters`` (null),
  ``responseElements`` (null), ``requestID, eventID, readOnly`` (a boolean),
  ``eventType`` AwsApiCall, ``managementEvent`` true, ``recipientAccountId``,
  ``eventCategory`` Management.
* A LookupEvents call is itself recorded (AWS records it), but never appears
  in its own answer. Events show up at once (AWS takes minutes).

**Time.** ``EventTime`` is the emulator's time: the real UTC time the request
arrived, moved back by every ``POST /_keyfleet/clock/advance`` of its account
since (ext_clock calls ``age``): after ``{"days": 8}`` a request made now
looks 8 days old, as IAM keys look 8 days older, so "the last 7 days" no
longer holds it. "Now" for LookupEvents (the default EndTime, the 90-day
window) is the real time. Stored per event: the arrival time plus the
account's total advance at that moment; shown: that minus the account's
total advance now (an advance costs O(1)). EventTime has whole seconds, as
AWS returns it; StartTime/EndTime compare with it. Events older than 90 days
are not looked up.

**Memory.** At most ``PER_ACCOUNT_LIMIT`` (10,000) events per account (the
oldest go first) and ``TOTAL_LIMIT`` (400,000) in all: past that, every
account forgets its older half. A recorded event costs about 150 bytes
(repeated strings are shared).

**LookupEvents.** Only the caller's account (moto's account of the request)
and region (the credential scope's), newest first (time, then arrival
order). One lookup attribute at most (two or more, an unknown key, a value
empty or over 2000 counted characters: ``InvalidLookupAttributesException``);
matching is exact and case-sensitive (``ReadOnly``: ``true``/``false``).
``StartTime`` after ``EndTime``: ``InvalidTimeRangeException`` (equal is
allowed). ``MaxResults`` outside 1..50: ``InvalidMaxResultsException``.
``EventCategory`` other than ``insight``: ``InvalidEventCategoryException``;
``insight`` answers no events (no Insights here). ``NextToken``: an opaque
token carrying the last event's position and a digest of LookupAttributes,
StartTime, EndTime, EventCategory, account and region; a token that does not
decode, or comes with other parameters: ``InvalidNextTokenException``.
Timestamps are epoch seconds (what the JSON protocol sends), or ISO 8601
strings.

**Throttling**. Off by default; ``POST
/_keyfleet/cloudtrail/throttle {"rate": 2, "account": "..."?}`` turns it on
(``rate`` = lookups per second, ``null`` = off; without ``account`` for every
account, dropping their own settings). Each account and region has a bucket
of ``max(rate, 1)`` lookups, full at first, refilled at ``rate`` per second of
emulator time (``time.monotonic()`` plus the account's clock advances, so
``clock/advance`` refills it); a lookup needs one, else HTTP 400
``ThrottlingException`` "Rate exceeded" (ext_faults' wording), checked
before the parameters, nothing looked up. Why off: AWS's 2 per second measured in real time would
make a test's outcome depend on how fast the machine is (two quick pages
pass or not); a test that wants throttling sets a rate so low that no real
time between two requests refills it, e.g. ``1/3600``, and the second
lookup is refused however slow the machine, and accepted again after
advancing the clock an hour. ``{"rate": 2}`` is AWS's limit, for runs that
want it. ext_faults (``{"service": "cloudtrail", "action": "LookupEvents",
"kind": "throttle"}``) answers the same ``ThrottlingException``.

Control endpoints:

* ``GET /_keyfleet/cloudtrail[?account=ID][&access_key_id=KEY]`` ->
  ``{"events": [{"account", "region", "event_id", "event_time",
  "event_name", "event_source", "access_key_id", "username",
  "identity_type", "source_ip", "user_agent", "read_only"}, ...]}``, newest
  first, every event kept (also past 90 days), ``event_time`` in emulator
  time (RFC 3339 UTC, seconds).
* ``DELETE /_keyfleet/cloudtrail[?account=ID]`` -> ``{"ok": true, "cleared":
  N}``: forgets the events (of one account).
* ``POST /_keyfleet/cloudtrail/events {"access_key_id", "event_name",
  "event_source" | "service", "region"?, "source_ip"?, "user_agent"?,
  "when"?, "account"?, "secret_id"?}`` records an event as if the key had signed such a
  request (``region`` default us-east-1, ``source_ip`` 127.0.0.1,
  ``user_agent`` empty, ``when`` ISO 8601 in emulator time, default now,
  ``account`` default the key's owner): for a key used "from elsewhere".
  Answer ``{"ok": true, "event_id", "account", "username"}``.
* ``GET|POST|DELETE /_keyfleet/cloudtrail/throttle`` -> ``{"all_accounts":
  rate, "accounts": {ID: rate}}`` / set (see above) / off everywhere.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import math
import re
import threading
import time
import uuid
from collections import deque
from typing import Any

from control import ControlError

PER_ACCOUNT_LIMIT = 10_000
TOTAL_LIMIT = 400_000
RETENTION_SECONDS = 90 * 24 * 3600
MAX_RESULTS = 50
USER_AGENT_LIMIT = 1000
LOOKUP_KEYS = (
    "EventId",
    "EventName",
    "ReadOnly",
    "Username",
    "ResourceType",
    "ResourceName",
    "EventSource",
    "AccessKeyId",
)
_ACCOUNT = re.compile(r"^\d{12}$")

# (service, action) pairs that are data events: never in Event history.
_S3_DATA = {
    "CreateMultipartUpload",
    "UploadPart",
    "UploadPartCopy",
    "CompleteMultipartUpload",
    "AbortMultipartUpload",
    "ListParts",
    "ListMultipartUploads",
    "WriteGetObjectResponse",
}
DATA_EVENTS: dict[str, frozenset[str]] = {
    "lambda": frozenset({"Invoke", "InvokeAsync", "InvokeWithResponseStream"}),
    "dynamodb": frozenset(
        {
            "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan",
            "BatchGetItem", "BatchWriteItem", "TransactGetItems", "TransactWriteItems",
            "ExecuteStatement", "BatchExecuteStatement", "ExecuteTransaction",
        }
    ),
    "sqs": frozenset(
        {
            "SendMessage", "SendMessageBatch", "ReceiveMessage", "DeleteMessage",
            "DeleteMessageBatch", "ChangeMessageVisibility", "ChangeMessageVisibilityBatch",
            "GetQueueAttributes", "GetQueueUrl", "ListQueues", "ListDeadLetterSourceQueues",
        }
    ),
    "sns": frozenset({"Publish", "PublishBatch"}),
}
_EVENT_SOURCE_NAME = {"ses": "ses", "sesv2": "ses", "cloudwatch": "monitoring", "stepfunctions": "states"}
_READ_PREFIXES = (
    "Get", "List", "Describe", "Head", "Lookup", "Search", "Query", "Scan", "BatchGet",
    "Select", "Check", "Simulate", "Test", "Validate", "Estimate", "Preview", "Verify", "View",
)
SEQ_ENVIRON_KEY = "keyfleet.cloudtrail.seq"

_lock = threading.Lock()
# account -> deque of (stamp, seq, key, action, source, region, ip, agent, identity)
_events: dict[str, deque] = {}
_total = 0
_seq = 0
# clock/advance: seconds moved back, for every account and per account
_aged_all = 0.0
_aged: dict[str, float] = {}
# (account, key) -> identity tuple (type, username, arn, principal id, issuer)
_identities: dict[tuple[str, str], tuple[Any, ...]] = {}
_shared: dict[str, str] = {}  # repeated strings (IPs, user agents) kept once
_sources: dict[str, str] = {}
_ID_KEY = uuid.uuid4().bytes  # event ids: a keyed hash of the sequence number

# throttling: None = off
_rate_all: float | None = None
_rate_per_account: dict[str, float | None] = {}
_buckets: dict[tuple[str, str], tuple[float, float]] = {}  # (account, region) -> (tokens, stamp)

# index of each field in a stored event
_STAMP, _SEQ, _KEY, _ACTION, _SOURCE, _REGION, _IP, _AGENT, _IDENT, _PARAMS = range(10)


def _offset(account: str) -> float:
    return _aged_all + _aged.get(account, 0.0)


def _share(text: str) -> str:
    found = _shared.get(text)
    if found is None:
        if len(_shared) > 4096:
            _shared.clear()
        _shared[text] = found = text
    return found


def event_source(service: str) -> str:
    source = _sources.get(service)
    if source is None:
        source = _sources[service] = f"{_EVENT_SOURCE_NAME.get(service, service)}.amazonaws.com"
    return source


def is_data_event(service: str, action: str) -> bool:
    if service == "s3":
        return "Object" in action or action in _S3_DATA
    actions = DATA_EVENTS.get(service)
    return actions is not None and action in actions


def read_only(action: str) -> bool:
    return action.startswith(_READ_PREFIXES)


# -- identities ------------------------------------------------------------------


def _resolve_identity(account: str, key: str) -> tuple[Any, ...]:
    """(type, username, arn, principal id, issuer) of an access key in an account;
    issuer = (role arn, role id, role name) for an assumed role."""
    from moto.iam.models import iam_backends

    try:
        iam = iam_backends[account]["aws"] if account in iam_backends else None
        access_key = iam.access_keys.get(key) if iam is not None else None
        if access_key is not None and access_key.user_name:
            user = iam.users.get(access_key.user_name)
            if user is not None:
                return ("IAMUser", user.name, user.arn, user.id, None)
        if access_key is not None and access_key.role_arn:
            from moto.sts.models import sts_backends

            role_arn = access_key.role_arn
            role_name = role_arn.rsplit("/", 1)[-1]
            session = None
            if account in sts_backends:
                assumed = sts_backends[account]["aws"].get_assumed_role_from_access_key(key)
                session = assumed.session_name if assumed is not None else None
            session = session or "session"
            try:
                role_id = iam.get_role_by_arn(role_arn).id
            except Exception:
                role_id = "AROA" + hashlib.sha256(role_arn.encode()).hexdigest()[:17].upper()
            return (
                "AssumedRole",
                session,
                f"arn:aws:sts::{account}:assumed-role/{role_name}/{session}",
                f"{role_id}:{session}",
                (role_arn, role_id, role_name),
            )
    except Exception:
        pass
    return ("Root", "root", f"arn:aws:iam::{account}:root", account, None)


def _identity(account: str, key: str) -> tuple[Any, ...]:
    ident = _identities.get((account, key))
    if ident is None:
        ident = _resolve_identity(account, key)
        if len(_identities) > 100_000:
            _identities.clear()
        _identities[(account, key)] = ident
    return ident


# -- recording -------------------------------------------------------------------


def _source_ip(environ: dict[str, Any]) -> str:
    forwarded = environ.get("HTTP_X_FORWARDED_FOR")
    if forwarded:
        first = forwarded.split(",", 1)[0].strip()
        if first:
            return first
    return environ.get("REMOTE_ADDR") or ""


def _append(account: str, event: tuple[Any, ...]) -> None:
    """Store an event (under _lock)."""
    global _total
    events = _events.get(account)
    if events is None:
        events = _events[account] = deque(maxlen=PER_ACCOUNT_LIMIT)
    if len(events) < PER_ACCOUNT_LIMIT:
        _total += 1
    events.append(event)
    if _total > TOTAL_LIMIT:
        _total = 0
        for account_events in _events.values():
            for _ in range(len(account_events) // 2):
                account_events.popleft()
            _total += len(account_events)


# Secrets Manager calls whose event names the secret (AWS: the event's
# requestParameters holds the call's "secretId"); only these are kept, the
# rest of the events have requestParameters null as before.
SECRET_ID_ACTIONS = frozenset({"GetSecretValue", "DescribeSecret", "PutSecretValue", "GetResourcePolicy"})


def _request_parameters(environ: dict[str, Any], service: str, action: str) -> dict[str, Any] | None:
    """{"secretId": ...} of a Secrets Manager call that names a secret. The
    body is read once and put back for moto (a small JSON document)."""
    if service != "secretsmanager" or action not in SECRET_ID_ACTIONS:
        return None
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if not 0 < length <= 65536:
        return None
    import io

    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    try:
        secret_id = json.loads(body).get("SecretId")
    except (ValueError, AttributeError):
        return None
    return {"secretId": secret_id} if isinstance(secret_id, str) else None


def record(environ: dict[str, Any], access_key: str, call: Any) -> None:
    """ext_calls observer: record one signed request (see the module docstring)."""
    global _seq
    service, action = call.service, call.action
    if is_data_event(service, action):
        return
    account = call.account
    region = "us-east-1" if service == "iam" else call.region
    ip = _share(_source_ip(environ))
    agent = _share((environ.get("HTTP_USER_AGENT") or "")[:USER_AGENT_LIMIT])
    source = event_source(service)
    ident = _identities.get((account, access_key))
    if ident is None:
        ident = _identity(account, access_key)
    params = _request_parameters(environ, service, action)
    now = time.time()
    with _lock:
        _seq += 1
        seq = _seq
        _append(account, (now + _offset(account), seq, access_key, action, source, region, ip, agent, ident, params))
    if service == "cloudtrail" and action == "LookupEvents":
        environ[SEQ_ENVIRON_KEY] = seq


def age(days: float, account: str | None = None) -> int:
    """clock/advance: the events of ``account`` (or all) look ``days`` older, and
    their throttle buckets refill by as much; the number of events aged."""
    global _aged_all
    delta = dt.timedelta(days=days).total_seconds()
    with _lock:
        if account is None:
            _aged_all += delta
            return sum(len(events) for events in _events.values())
        _aged[account] = _aged.get(account, 0.0) + delta
        return len(_events.get(account, ()))


# -- events as AWS shows them -------------------------------------------------------


def _uuid(seq: int, salt: bytes) -> str:
    digest = hashlib.blake2b(seq.to_bytes(8, "big"), key=_ID_KEY, salt=salt, digest_size=16).digest()
    return str(uuid.UUID(bytes=digest, version=4))


def _event_id(seq: int) -> str:
    return _uuid(seq, b"event")


def _rfc3339(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _user_identity(account: str, key: str, ident: tuple[Any, ...], when: float) -> dict[str, Any]:
    kind, username, arn, principal, issuer = ident
    out: dict[str, Any] = {"type": kind, "principalId": principal, "arn": arn, "accountId": account,
                           "accessKeyId": key}
    if kind == "IAMUser":
        out["userName"] = username
    elif kind == "AssumedRole":
        role_arn, role_id, role_name = issuer
        out["sessionContext"] = {
            "sessionIssuer": {"type": "Role", "principalId": role_id, "arn": role_arn,
                              "accountId": account, "userName": role_name},
            "attributes": {"creationDate": _rfc3339(when), "mfaAuthenticated": "false"},
        }
    return out


def _shown_time(account: str, event: tuple[Any, ...]) -> float:
    """Emulator time of an event, whole seconds (under _lock or not: a float read)."""
    return float(math.floor(event[_STAMP] - _offset(account)))


def _lookup_event(account: str, event: tuple[Any, ...], when: float) -> dict[str, Any]:
    _, seq, key, action, source, region, ip, agent, ident, params = event
    event_id = _event_id(seq)
    ro = read_only(action)
    record_json = {
        "eventVersion": "1.08",
        "userIdentity": _user_identity(account, key, ident, when),
        "eventTime": _rfc3339(when),
        "eventSource": source,
        "eventName": action,
        "awsRegion": region,
        "sourceIPAddress": ip,
        "userAgent": agent,
        "requestParameters": params,
        "responseElements": None,
        "requestID": _uuid(seq, b"request"),
        "eventID": event_id,
        "readOnly": ro,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": account,
        "eventCategory": "Management",
    }
    return {
        "EventId": event_id,
        "EventName": action,
        "ReadOnly": "true" if ro else "false",
        "AccessKeyId": key,
        "EventTime": when,
        "EventSource": source,
        "Username": ident[1],
        "Resources": [],
        "CloudTrailEvent": json.dumps(record_json, separators=(",", ":")),
    }


def _matches(event: tuple[Any, ...], attribute: tuple[str, str] | None, account: str) -> bool:
    if attribute is None:
        return True
    name, value = attribute
    if name == "AccessKeyId":
        return event[_KEY] == value
    if name == "EventName":
        return event[_ACTION] == value
    if name == "EventSource":
        return event[_SOURCE] == value
    if name == "Username":
        return event[_IDENT][1] == value
    if name == "EventId":
        return _event_id(event[_SEQ]) == value
    if name == "ReadOnly":
        return ("true" if read_only(event[_ACTION]) else "false") == value
    return False  # ResourceType, ResourceName: no resources are recorded


# -- LookupEvents ------------------------------------------------------------------


class LookupRefused(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _time_param(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise LookupRefused("InvalidTimeRangeException", f"{name} is not a valid timestamp.")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            import ext_clock

            parsed = ext_clock.parse_time(value)
            return parsed.replace(tzinfo=dt.timezone.utc).timestamp()
        except ValueError:
            pass
    raise LookupRefused("InvalidTimeRangeException", f"{name} is not a valid timestamp.")


def _counted_length(value: str) -> int:
    return len(value) + sum(value.count(c) for c in ("_", " ", ",", "\n"))


def _attribute(params: dict[str, Any]) -> tuple[str, str] | None:
    attributes = params.get("LookupAttributes")
    if attributes is None or attributes == []:
        return None
    if not isinstance(attributes, list):
        raise LookupRefused("InvalidLookupAttributesException", "LookupAttributes must be a list.")
    if len(attributes) > 1:
        raise LookupRefused(
            "InvalidLookupAttributesException",
            f"You can specify only one lookup attribute; {len(attributes)} were given.",
        )
    item = attributes[0]
    key = item.get("AttributeKey") if isinstance(item, dict) else None
    value = item.get("AttributeValue") if isinstance(item, dict) else None
    if key not in LOOKUP_KEYS:
        raise LookupRefused(
            "InvalidLookupAttributesException",
            f"Lookup attribute key {key!r} is not valid; valid keys: {', '.join(LOOKUP_KEYS)}.",
        )
    if not isinstance(value, str) or not value or _counted_length(value) > 2000:
        raise LookupRefused(
            "InvalidLookupAttributesException",
            "Lookup attribute value must be 1 to 2000 characters ('_', ' ', ',' and newline count twice).",
        )
    return key, value


def _digest(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _encode_token(position: tuple[float, int], digest: str) -> str:
    raw = json.dumps({"p": [position[0], position[1]], "d": digest}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_token(token: Any, digest: str) -> tuple[float, int]:
    bad = LookupRefused("InvalidNextTokenException", "Invalid NextToken.")
    if not isinstance(token, str) or not token:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        stamp, seq = data["p"]
        given = data["d"]
        position = (float(stamp), int(seq))
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise bad from None
    if given != digest:
        raise LookupRefused(
            "InvalidNextTokenException",
            "The NextToken was issued for a request with different parameters.",
        )
    return position


def lookup(account: str, region: str, params: dict[str, Any], exclude_seq: int | None = None) -> dict[str, Any]:
    """LookupEvents for ``account`` in ``region`` (raises LookupRefused)."""
    _throttle(account, region)
    attribute = _attribute(params)
    start = _time_param(params.get("StartTime"), "StartTime")
    end = _time_param(params.get("EndTime"), "EndTime")
    if start is not None and end is not None and start > end:
        raise LookupRefused("InvalidTimeRangeException", "StartTime must not be after EndTime.")
    max_results = params.get("MaxResults")
    if max_results is None:
        max_results = MAX_RESULTS
    if isinstance(max_results, bool) or not isinstance(max_results, int) or not 1 <= max_results <= MAX_RESULTS:
        raise LookupRefused(
            "InvalidMaxResultsException",
            f"MaxResults {max_results!r} is not valid; specify 1 to {MAX_RESULTS}.",
        )
    category = params.get("EventCategory")
    if category is not None and category != "insight":
        raise LookupRefused(
            "InvalidEventCategoryException", f"Event category {category!r} is not valid; the valid value is insight."
        )
    digest = _digest(params.get("LookupAttributes"), params.get("StartTime"), params.get("EndTime"),
                     category, account, region)
    after = _decode_token(params["NextToken"], digest) if params.get("NextToken") is not None else None
    if category == "insight":
        return {"Events": []}

    now = time.time()
    low = max(now - RETENTION_SECONDS, start if start is not None else -math.inf)
    high = end if end is not None else now
    with _lock:
        offset = _offset(account)
        stored = list(_events.get(account, ()))
    found: list[tuple[float, int, tuple[Any, ...]]] = []
    for event in stored:
        if event[_REGION] != region or event[_SEQ] == exclude_seq:
            continue
        if attribute is not None and not _matches(event, attribute, account):
            continue
        shown = math.floor(event[_STAMP] - offset)
        if shown < low or shown > high:
            continue
        position = (event[_STAMP], event[_SEQ])
        if after is not None and position >= after:
            continue
        found.append((event[_STAMP], event[_SEQ], event))
    found.sort(key=lambda item: (item[0], item[1]), reverse=True)
    page = found[:max_results]
    answer: dict[str, Any] = {
        "Events": [
            _lookup_event(account, event, float(math.floor(stamp - offset))) for stamp, _, event in page
        ]
    }
    if len(found) > max_results:
        last = page[-1]
        answer["NextToken"] = _encode_token((last[0], last[1]), digest)
    return answer


# -- throttling ------------------------------------------------------------------


def _rate_of(account: str) -> float | None:
    return _rate_per_account[account] if account in _rate_per_account else _rate_all


def _throttle(account: str, region: str) -> None:
    with _lock:
        rate = _rate_of(account)
        if rate is None:
            return
        now = time.monotonic() + _offset(account)
        capacity = max(rate, 1.0)
        tokens, stamp = _buckets.get((account, region), (capacity, now))
        tokens = min(capacity, tokens + max(now - stamp, 0.0) * rate)
        if tokens < 1.0:
            _buckets[(account, region)] = (tokens, now)
            raise LookupRefused("ThrottlingException", "Rate exceeded")
        _buckets[(account, region)] = (tokens - 1.0, now)


def _rate_field(body: dict[str, Any]) -> float | None:
    if "rate" not in body:
        raise ControlError(400, '"rate" is required: lookups per second, or null (off), e.g. {"rate": 2}')
    rate = body["rate"]
    if rate is None:
        return None
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
        raise ControlError(400, '"rate" must be a number > 0 (lookups per second) or null (off)')
    return float(rate)


def _account_field(value: Any, name: str = "account") -> str | None:
    if value is not None and not (isinstance(value, str) and _ACCOUNT.match(value)):
        raise ControlError(400, f'"{name}" must be a 12-digit account id')
    return value


def throttle_snapshot(body: Any = None) -> dict[str, Any]:
    with _lock:
        return {"all_accounts": _rate_all, "accounts": dict(sorted(_rate_per_account.items()))}


def throttle_from_request(body: dict[str, Any]) -> dict[str, Any]:
    global _rate_all
    unknown = sorted(set(body) - {"rate", "account"})
    if unknown:
        raise ControlError(400, f"unknown fields: {unknown}")
    account = _account_field(body.get("account"))
    rate = _rate_field(body)
    with _lock:
        if account is None:
            _rate_all = rate
            _rate_per_account.clear()
            _buckets.clear()
        else:
            _rate_per_account[account] = rate
            for bucket in [b for b in _buckets if b[0] == account]:
                del _buckets[bucket]
    return {"ok": True, "account": account, "rate": rate}


def throttle_clear(query: dict[str, str]) -> dict[str, Any]:
    global _rate_all
    if query:
        raise ControlError(
            400, "DELETE /_keyfleet/cloudtrail/throttle takes no parameters: it turns throttling off everywhere"
        )
    with _lock:
        cleared = len(_rate_per_account) + (_rate_all is not None)
        _rate_all = None
        _rate_per_account.clear()
        _buckets.clear()
    return {"ok": True, "cleared": cleared}


# -- control endpoints -------------------------------------------------------------


def snapshot(query: dict[str, str]) -> dict[str, Any]:
    unknown = sorted(set(query) - {"account", "access_key_id"})
    if unknown:
        raise ControlError(400, f"unknown query parameter(s) {unknown}; only account=<12 digits>, access_key_id=<key>")
    account = _account_field(query.get("account"))
    key = query.get("access_key_id")
    with _lock:
        chosen = [(a, list(ev), _offset(a)) for a, ev in _events.items() if account is None or a == account]
    rows = []
    for account_id, events, offset in chosen:
        for event in events:
            if key is not None and event[_KEY] != key:
                continue
            rows.append((event[_STAMP] - offset, event[_SEQ], account_id, event))
    rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
    return {
        "events": [
            {
                "account": account_id,
                "region": event[_REGION],
                "event_id": _event_id(event[_SEQ]),
                "event_time": _rfc3339(shown),
                "event_name": event[_ACTION],
                "event_source": event[_SOURCE],
                "access_key_id": event[_KEY],
                "username": event[_IDENT][1],
                "identity_type": event[_IDENT][0],
                "source_ip": event[_IP],
                "user_agent": event[_AGENT],
                "read_only": read_only(event[_ACTION]),
            }
            for shown, _, account_id, event in rows
        ]
    }


def clear(query: dict[str, str]) -> dict[str, Any]:
    global _total
    unknown = sorted(set(query) - {"account"})
    if unknown:
        raise ControlError(400, f"unknown query parameter(s) {unknown}; only account=<12 digits>")
    account = _account_field(query.get("account"))
    with _lock:
        if account is None:
            cleared = _total
            _events.clear()
            _total = 0
        else:
            cleared = len(_events.pop(account, ()))
            _total -= cleared
    return {"ok": True, "cleared": cleared}


def record_from_request(body: dict[str, Any]) -> dict[str, Any]:
    global _seq
    known = {"access_key_id", "event_name", "event_source", "service", "region", "source_ip", "user_agent",
             "when", "account", "secret_id"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise ControlError(400, f"unknown fields: {unknown}")
    for name in ("access_key_id", "event_name"):
        if not isinstance(body.get(name), str) or not body[name]:
            raise ControlError(400, f'"{name}" is required (a non-empty string)')
    if ("event_source" in body) == ("service" in body):
        raise ControlError(400, 'give one of "event_source" (e.g. "s3.amazonaws.com") or "service" (e.g. "s3")')
    for name in ("event_source", "service", "region", "source_ip", "user_agent"):
        if name in body and not isinstance(body[name], str):
            raise ControlError(400, f'"{name}" must be a string')
    source = body.get("event_source") or event_source(body["service"])
    region = body.get("region") or "us-east-1"
    key = body["access_key_id"]
    account = _account_field(body.get("account"))
    if account is None:
        from moto.iam.models import get_account_id_from

        account = get_account_id_from(key)
    when = time.time()
    if body.get("when") is not None:
        if not isinstance(body["when"], str):
            raise ControlError(400, '"when" must be an ISO 8601 string')
        try:
            import ext_clock

            when = ext_clock.parse_time(body["when"]).replace(tzinfo=dt.timezone.utc).timestamp()
        except ValueError as exc:
            raise ControlError(400, f'"when" is not an ISO 8601 time: {exc}') from exc
    ident = _identity(account, key)
    with _lock:
        _seq += 1
        seq = _seq
        _append(
            account,
            (when + _offset(account), seq, key, body["event_name"], source, region,
             _share(body.get("source_ip") or "127.0.0.1"), _share((body.get("user_agent") or "")[:USER_AGENT_LIMIT]),
             ident, {"secretId": body["secret_id"]} if isinstance(body.get("secret_id"), str) else None),
        )
    return {"ok": True, "event_id": _event_id(seq), "account": account, "username": ident[1]}


# -- install -----------------------------------------------------------------------


def install() -> None:
    import ext_calls
    from moto.cloudtrail.responses import CloudTrailResponse
    from moto.core.exceptions import ServiceException

    if getattr(CloudTrailResponse, "_keyfleet_cloudtrail", False):
        return

    class CloudTrailError(ServiceException):
        """Defined here, not in moto, so moto serializes it with the request's
        service model (CloudTrail's shapes, all HTTP 400)."""

    def lookup_events(self: Any) -> str:
        params = {
            name: self._get_param(name)
            for name in ("LookupAttributes", "StartTime", "EndTime", "EventCategory", "MaxResults", "NextToken")
        }
        environ = getattr(getattr(self, "normalized_request", None), "environ", None) or {}
        try:
            answer = lookup(self.current_account, self.region, params, environ.get(SEQ_ENVIRON_KEY))
        except LookupRefused as exc:
            raise CloudTrailError(exc.code, exc.message) from None
        return json.dumps(answer)

    CloudTrailResponse.lookup_events = lookup_events  # type: ignore[attr-defined]
    CloudTrailResponse._keyfleet_cloudtrail = True  # type: ignore[attr-defined]
    ext_calls.add_observer(record)
