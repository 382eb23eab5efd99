"""IAM users' access keys are authenticated as AWS authenticates them, and
STS session credentials expire as AWS's do.

IAM users' access keys
----------------------

AWS: a request signed with an IAM user's access key (``AKIA...``, made by
IAM ``CreateAccessKey``) is served only while that key exists and is
``Active``, and only when it is signed with the key's secret. Otherwise the
request is refused before anything else happens (no action runs, the key's
last use does not change), in each protocol's words:

- query protocol (IAM, STS, SES v1, SNS, CloudFormation, SQS's query
  protocol): HTTP 403 ``InvalidClientTokenId`` "The security token included
  in the request is invalid."; a wrong secret 403 ``SignatureDoesNotMatch``
  "The request signature we calculated does not match the signature you
  provided. Check your AWS Secret Access Key and signing method. Consult
  the service documentation for details.";
- JSON protocol (Secrets Manager, DynamoDB, KMS, Organizations, ...): HTTP
  400 ``UnrecognizedClientException`` with the same message; a wrong secret
  400 ``InvalidSignatureException`` (DynamoDB's ``__type`` in Coral's long
  form, ``com.amazon.coral.service#...``);
- SQS over JSON (query-compatible): HTTP 403 with the query codes
  (``InvalidClientTokenId``, ``SignatureDoesNotMatch``) in
  ``x-amzn-query-error``, which the SDKs report;
- REST-JSON (Lambda, SES v2): HTTP 403 ``UnrecognizedClientException`` /
  ``InvalidSignatureException`` (``x-amzn-ErrorType``);
- S3: HTTP 403 ``InvalidAccessKeyId`` "The AWS Access Key Id you provided
  does not exist in our records."; a wrong secret 403
  ``SignatureDoesNotMatch`` "The request signature we calculated does not
  match the signature you provided. Check your key and signing method.";
- EC2: HTTP 401 ``AuthFailure`` for both.

AWS refuses an inactive key for ``sts:GetCallerIdentity`` too (no policy is
needed for it, but the key must be valid). Sources: moto's own
``moto/iam/access_control.py`` and ``moto/core/exceptions.py``, which mimic
AWS (``InvalidClientTokenId``, ``SignatureDoesNotMatch``, S3's
``InvalidAccessKeyId``); the JSON and REST-JSON answers as logged against
AWS in public issues: DynamoDB 400 ``UnrecognizedClientException``
(yegor256/s3auth#244), Cognito 400 ``{"__type":"UnrecognizedClientException",
...}`` (ArranJacques/laravel-aws-cognito-auth#25), SQS GetQueueUrl with the
Go SDK v2 (JSON) 403 ``InvalidClientTokenId``
(argoproj/notifications-engine#382), Lambda DeleteFunction 403
``UnrecognizedClientException`` (iann0036/iamlive#58). The JSON and
REST-JSON signature errors follow the same pattern (not taken from a
recording).

moto 5.2.5 (server mode, its own IAM checks off, as the harness runs it)
accepts any key: an inactive key, a deleted key or a wrong secret work as
well as the right one, and an inactive key's use even updates its
``LastUsed``.

Patch:

- **Which keys**: every access key IAM ``CreateAccessKey`` made (the API,
  or a template's ``AWS::IAM::AccessKey``) is remembered (key id ->
  account, partition) when moto makes it (``IAMBackend.create_access_key``
  is wrapped), and never forgotten, so a deleted key stays known as one.
  Every other key id — the test kit's admin credentials (``testing``, a
  12-digit account id as key id), STS ``ASIA`` session keys (only their
  expiry is checked, see below), anything else never made by
  CreateAccessKey — is left alone, exactly as before.
- **State** (``key_state``): the key as moto holds it now: in the account's
  ``access_keys`` and in its user's keys, the user still existing. A key
  DeleteAccessKey removed, or whose user DeleteUser removed (moto keeps the
  key object then), is ``deleted``; otherwise moto's ``Active`` or
  ``Inactive``.
- **Where**: a WSGI wrapper around moto's app (like ext_faults and
  ext_calls), so a refused request never reaches moto: nothing runs, the
  key's last use is not touched. It sits inside ext_calls (the refused
  request is counted, and ext_cloudtrail records it, as they record every
  attempt) and outside ext_faults (a fault rule never sees a refused key:
  AWS authenticates a request before it throttles or fails it). The refusal
  reuses the request's ``_Call`` (service, protocol) that ext_calls made,
  and ext_faults' error serialiser.
- **Signature** (``signature_matches``): for a request signed in the
  ``Authorization`` header, the SigV4 signature is computed again from the
  request exactly as it arrived (before moto or any extension rewrites
  anything): the method; the raw path (S3: as sent; other services:
  normalised and URI-encoded again, as SigV4 prescribes); the query string
  canonicalised; the headers the client named in ``SignedHeaders``, values
  trimmed; the payload hash: ``x-amz-content-sha256`` when sent (S3 always
  sends it: ``UNSIGNED-PAYLOAD``, ``STREAMING-...`` for chunked uploads, or
  the body's hash, so S3 bodies are never read), else the SHA-256 of the
  body (buffered for moto); the string to sign with ``X-Amz-Date`` and the
  credential scope; the key derived from the key's secret. A mismatch, or
  an ``Authorization`` header without ``SignedHeaders``/``Signature`` or a
  request without ``X-Amz-Date``, is refused with the signature error.
  Not checked: the per-chunk signatures of a streaming S3 upload, that an
  S3 body matches a declared ``x-amz-content-sha256`` (AWS's
  ``XAmzContentSHA256Mismatch``), the request time (AWS refuses one more
  than 15 minutes off, ``RequestTimeTooSkewed``/"Signature expired"),
  presigned URLs (``X-Amz-Credential``, or S3's older ``AWSAccessKeyId``,
  in the query) and S3's older ``Authorization: AWS <key>:<signature>``:
  for these the key's state is checked, the signature is not. Checked
  against boto3 (test_user_keys.py) and, once by hand, the Rust SDK
  (``keyfleet bootstrap`` signed with an IAM user's key: a dozen services,
  S3 uploads and a Lambda zip included, all accepted; a wrong secret
  refused).

STS session credentials expire
------------------------------

AWS: the temporary credentials STS ``AssumeRole`` hands out (an ``ASIA...``
access key id, its secret and a session token) are valid until the
``Expiration`` AssumeRole returned (``DurationSeconds`` later, default 3600
s). A request signed with them afterwards is refused before anything runs
(no action, whichever service; ``sts:GetCallerIdentity`` and a chained
AssumeRole too), in each protocol's words:

- query protocol (IAM, STS, SNS, CloudFormation, SES v1, SQS's query
  protocol): HTTP 403 ``ExpiredToken`` "The security token included in the
  request is expired";
- JSON protocol (Secrets Manager, DynamoDB, KMS, Organizations, CloudWatch
  Logs, ...): HTTP 400 ``ExpiredTokenException``, same message (DynamoDB's
  ``__type`` ``com.amazon.coral.service#ExpiredTokenException``);
- SQS over JSON (query-compatible): HTTP 403 with the query code
  ``ExpiredToken`` in ``x-amzn-query-error``;
- REST-JSON (Lambda, SES v2): HTTP 403 ``ExpiredTokenException``, same
  message (``x-amzn-ErrorType``);
- S3: HTTP 400 ``ExpiredToken`` "The provided token has expired.";
- EC2: HTTP 400 ``RequestExpired`` "Request has expired.".

Sources, as logged against AWS in public issues: IAM's 403 ``ErrorResponse``
(cfn-sphere/cfn-sphere#55), STS 403 (aws/aws-sdk-java-v2#1649), DynamoDB
400 (aws/aws-sdk-php#1307), Lambda 403 ``ExpiredTokenException``
(cloudquery/cq-provider-aws#1171), S3 400 ``<Error><Code>ExpiredToken``
(romange/helio#15, craftcms/aws-s3#182), EC2 400 ``RequestExpired``
(guardian/ssm-scala#60, aws/aws-sdk-go-v2#1674). SQS over JSON follows the
pattern of its other authentication errors (not taken from a recording).

moto 5.2.5 lacks the check: it stores each session (``AssumedRole`` in
``sts_backends[account][partition].assumed_roles``, with ``.expiration`` =
``utcnow()`` + duration, naive UTC) and returns its ``Expiration``, but
serves the session's requests for ever.

Patch:

- **Which keys**: an ``ASIA`` key id of a session moto made (looked up as
  ext_iam_enforce's ``_session_for`` does: the key's account from moto's
  ``get_account_id_from``, then that account's STS sessions;
  ``session_for``). Any other key id, an ``ASIA`` one moto never handed out
  included, is left alone as before.
- **Expired**: the session's ``expiration`` is past moto's clock
  (``moto.core.utils.utcnow()``, read on every request, so a session
  expires by itself once its time is up); refused with ``EXPIRED`` in the
  request's protocol, by the same WSGI wrapper and serialiser as a bad IAM
  user key (see **Where** above: counted by ext_calls, recorded by
  ext_cloudtrail, never seen by ext_faults, ext_iam_enforce or moto). The
  session token and the signature are not checked.
- **On demand**: ``POST /_keyfleet/sts/expire {"access_key_id": "ASIA..."}``
  (``expire_from_request``) makes that session's time run out now (its
  ``expiration`` set to ``utcnow()`` minus one second) and answers
  ``{"ok": true, "access_key_id", "expiration"}`` (ISO 8601 UTC); 400
  without an ``access_key_id``, 404 when no session has that key. The
  harness clock (``clock/advance``) leaves sessions alone, as before.

Access control for IAM users (which policy allows what) is
ext_iam_enforce's, with ``active_user`` telling it whose key signed a
request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import threading
from typing import Any, Callable
from urllib.parse import parse_qs, quote, unquote, urlsplit

import ext_faults
from control import ControlError

DELETED = "deleted"
INVALID_KEY = "invalid-key"
BAD_SIGNATURE = "bad-signature"
EXPIRED = "expired"  # an STS session's credentials, past their expiration

_TOKEN_MESSAGE = "The security token included in the request is invalid."
_EXPIRED_MESSAGE = "The security token included in the request is expired"
_SIGNATURE_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)
_S3_ERRORS = {
    INVALID_KEY: ("InvalidAccessKeyId", 403, "The AWS Access Key Id you provided does not exist in our records."),
    BAD_SIGNATURE: (
        "SignatureDoesNotMatch",
        403,
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
    ),
    EXPIRED: ("ExpiredToken", 400, "The provided token has expired."),
}
_QUERY_ERRORS = {
    INVALID_KEY: ("InvalidClientTokenId", 403, _TOKEN_MESSAGE),
    BAD_SIGNATURE: ("SignatureDoesNotMatch", 403, _SIGNATURE_MESSAGE),
    EXPIRED: ("ExpiredToken", 403, _EXPIRED_MESSAGE),
}
_JSON_ERRORS = {
    INVALID_KEY: ("UnrecognizedClientException", 400, _TOKEN_MESSAGE),
    BAD_SIGNATURE: ("InvalidSignatureException", 400, _SIGNATURE_MESSAGE),
    EXPIRED: ("ExpiredTokenException", 400, _EXPIRED_MESSAGE),
}
_EC2_AUTH_FAILURE = ("AuthFailure", 401, "AWS was not able to validate the provided access credentials")
_EC2_ERRORS = {
    INVALID_KEY: _EC2_AUTH_FAILURE,
    BAD_SIGNATURE: _EC2_AUTH_FAILURE,
    EXPIRED: ("RequestExpired", 400, "Request has expired."),
}

_AUTH_FIELD = re.compile(r"(Credential|SignedHeaders|Signature)=([^,\s]+)")

_lock = threading.Lock()
# Every key IAM CreateAccessKey made: key id -> (account, partition).
_keys: dict[str, tuple[str, str]] = {}


# -- the keys IAM made -------------------------------------------------------------


def remember(access_key_id: str, account: str, partition: str) -> None:
    with _lock:
        _keys[access_key_id] = (account, partition)


def is_user_key(access_key_id: str) -> bool:
    """Whether IAM CreateAccessKey made this key (whatever its state now)."""
    with _lock:
        return access_key_id in _keys


def key_state(access_key_id: str) -> tuple[str, Any, Any] | None:
    """``(state, user, key)`` of a key IAM made: state ``Active``,
    ``Inactive`` or ``deleted`` (user and key None then); None for any other
    key id, which this module leaves alone."""
    with _lock:
        owner = _keys.get(access_key_id)
    if owner is None:
        return None
    from moto.iam.models import iam_backends

    account, partition = owner
    try:
        backend = iam_backends[account][partition]
        key = backend.access_keys.get(access_key_id)
        user = backend.users.get(key.user_name) if key is not None and key.user_name else None
    except Exception:
        return DELETED, None, None
    if key is None or user is None or not any(k is key for k in list(user.access_keys)):
        # DeleteAccessKey, or DeleteUser (moto keeps the user's keys in the
        # account then), or a new user of the same name.
        return DELETED, None, None
    return str(key.status), user, key


def active_user(access_key_id: str) -> Any | None:
    """moto's IAM user whose active key this is, or None (another kind of
    key, or a key that is not active: such requests never reach moto)."""
    found = key_state(access_key_id)
    if found is None or found[0] != "Active":
        return None
    return found[1]


# -- STS sessions -----------------------------------------------------------------

SESSION_KEY_PREFIX = "ASIA"


def _moto_now() -> dt.datetime:
    """moto's clock (naive UTC), looked up on every call so a test may move it."""
    from moto.core import utils as moto_utils

    return moto_utils.utcnow()


def session_for(access_key_id: str) -> Any | None:
    """moto's ``AssumedRole`` whose ``ASIA`` key this is, or None (another
    key). Found as ext_iam_enforce's ``_session_for`` finds it: the key's
    account, then that account's sessions (every partition moto has made a
    backend for; none is created here)."""
    if not access_key_id.startswith(SESSION_KEY_PREFIX):
        return None
    from moto.iam.models import get_account_id_from
    from moto.sts.models import sts_backends

    account = get_account_id_from(access_key_id)
    per_partition = dict.get(sts_backends, account)
    if per_partition is None:
        return None
    for backend in list(per_partition.values()):
        for assumed in list(getattr(backend, "assumed_roles", [])):
            if assumed.access_key_id == access_key_id:
                return assumed
    return None


def session_expired(access_key_id: str) -> bool:
    """Whether this is the key of a session moto made whose expiration has
    passed on moto's clock."""
    assumed = session_for(access_key_id)
    if assumed is None or getattr(assumed, "expiration", None) is None:
        return False
    return bool(_moto_now() > assumed.expiration)


def _iso(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def expire(access_key_id: str) -> dict[str, Any]:
    """Make the session of this ``ASIA`` key expire now (a second ago)."""
    assumed = session_for(access_key_id)
    if assumed is None:
        raise ControlError(404, f"no STS session has the access key id {access_key_id!r}")
    assumed.expiration = _moto_now() - dt.timedelta(seconds=1)
    return {"ok": True, "access_key_id": access_key_id, "expiration": _iso(assumed.expiration)}


def expire_from_request(body: dict[str, Any]) -> dict[str, Any]:
    """``POST /_keyfleet/sts/expire {"access_key_id": "ASIA..."}``."""
    unknown = sorted(set(body) - {"access_key_id"})
    if unknown:
        raise ControlError(400, f"unknown fields: {unknown}")
    key = body.get("access_key_id")
    if not isinstance(key, str) or not key:
        raise ControlError(400, "access_key_id (a string) is required")
    return expire(key)


# -- the signature -------------------------------------------------------------------


def _auth_fields(environ: dict[str, Any]) -> dict[str, str]:
    return dict(_AUTH_FIELD.findall(environ.get("HTTP_AUTHORIZATION", "")))


def _raw_target(environ: dict[str, Any]) -> tuple[str, str]:
    """(path, query) as the client sent them, still percent-encoded."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not raw:
        path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")
        return quote(path, safe="/~"), environ.get("QUERY_STRING", "")
    if raw.startswith(("http://", "https://")):
        parts = urlsplit(raw)
        return parts.path or "/", parts.query
    path, _, query = raw.partition("?")
    return path or "/", query


def _canonical_uri(path: str, s3: bool) -> str:
    """S3 signs the path as sent; every other service its normalised form,
    URI-encoded once more (SigV4's double encoding)."""
    if s3:
        return path
    from botocore.utils import normalize_url_path

    return quote(normalize_url_path(path), safe="/~")


def _canonical_query(query: str) -> str:
    pairs = []
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append((quote(unquote(name), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _header(environ: dict[str, Any], name: str) -> str:
    if name == "content-type":
        value = environ.get("CONTENT_TYPE")
    elif name == "content-length":
        value = environ.get("CONTENT_LENGTH")
    else:
        value = environ.get("HTTP_" + name.upper().replace("-", "_"))
    return " ".join(str(value or "").split())


def _payload_hash(environ: dict[str, Any]) -> str:
    declared = environ.get("HTTP_X_AMZ_CONTENT_SHA256")
    if declared:
        return str(declared)
    return hashlib.sha256(ext_faults._read_body(environ)).hexdigest()


def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode("utf-8")
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def signature_matches(environ: dict[str, Any], secret: str) -> bool:
    """Whether the request's SigV4 ``Authorization`` signature is the one
    ``secret`` gives (see the module docstring); True for a request not
    signed in the header (presigned: not verified)."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if not auth.startswith("AWS4-HMAC-SHA256"):
        return True
    fields = _auth_fields(environ)
    credential = fields.get("Credential", "").split("/")
    amz_date = environ.get("HTTP_X_AMZ_DATE")
    if len(credential) != 5 or not fields.get("SignedHeaders") or not fields.get("Signature") or not amz_date:
        return False
    _, date, region, service, terminator = credential
    signed = fields["SignedHeaders"].lower().split(";")
    path, query = _raw_target(environ)
    canonical = "\n".join(
        [
            environ.get("REQUEST_METHOD", "GET").upper(),
            _canonical_uri(path, service == "s3"),
            _canonical_query(query),
            "".join(f"{name}:{_header(environ, name)}\n" for name in signed),
            ";".join(signed),
            _payload_hash(environ),
        ]
    )
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            f"{date}/{region}/{service}/{terminator}",
            hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
        ]
    )
    expected = hmac.new(_signing_key(secret, date, region, service), to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["Signature"].lower())


# -- the refusal --------------------------------------------------------------------


def error_for(call: Any, problem: str) -> tuple[str, int, str]:
    """(code, HTTP status, message) AWS answers for ``problem`` (INVALID_KEY,
    BAD_SIGNATURE or EXPIRED) in the request's protocol."""
    if call.service == "s3":
        return _S3_ERRORS[problem]
    if call.protocol == "ec2":
        return _EC2_ERRORS[problem]
    if call.protocol == "json" and call.service == "sqs":
        return _QUERY_ERRORS[problem]  # query-compatible: x-amzn-query-error carries it
    if call.protocol == "json":
        code, status, message = _JSON_ERRORS[problem]
        if call.service == "dynamodb":
            code = f"com.amazon.coral.service#{code}"
        return code, status, message
    if call.protocol == "rest-json":
        code, _, message = _JSON_ERRORS[problem]
        return code, 403, message
    return _QUERY_ERRORS[problem]


def _call_of(environ: dict[str, Any], scope: tuple[str, str, str]) -> Any:
    """The request's ``_Call`` (service, protocol), as ext_calls made it."""
    call = environ.get(ext_faults.CALL_ENVIRON_KEY)
    if call is None:
        call = ext_faults._Call(environ, scope)
        call.route(ext_faults._read_body(environ) if call.needs_body_to_route() else b"")
        environ[ext_faults.CALL_ENVIRON_KEY] = call
    return call


def _refuse(environ: dict[str, Any], scope: tuple[str, str, str], problem: str, start_response: Callable) -> list[bytes]:
    call = _call_of(environ, scope)
    code, status, message = error_for(call, problem)
    # ext_faults' serialiser, the error given as its overrides.
    error = {"kind": "refused", "code": code, "status": status, "message": message}
    return ext_faults._error_response(call, error, start_response)


def problem_with(environ: dict[str, Any], access_key_id: str) -> str | None:
    """INVALID_KEY, BAD_SIGNATURE (an IAM user's key), EXPIRED (an STS
    session's) or None (served as before)."""
    found = key_state(access_key_id)
    if found is None:
        return EXPIRED if session_expired(access_key_id) else None
    state, _, key = found
    if state != "Active":
        return INVALID_KEY
    if not signature_matches(environ, str(key.secret_access_key)):
        return BAD_SIGNATURE
    return None


def _scope(environ: dict[str, Any]) -> tuple[str, str, str] | None:
    """(access key, region, signing service) of a signed request: SigV4 (the
    ``Authorization`` header or a presigned URL), or S3's older presigned
    URLs (``AWSAccessKeyId=``, botocore's default for ``generate_presigned_url``)
    and ``Authorization: AWS <key>:<signature>``, which name no region."""
    scope = ext_faults._scope(environ)
    if scope is not None:
        return scope
    query = environ.get("QUERY_STRING", "")
    if "AWSAccessKeyId=" in query:
        key = (parse_qs(query).get("AWSAccessKeyId") or [""])[0]
        return (key, "us-east-1", "s3") if key else None
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if auth.startswith("AWS ") and ":" in auth:
        return auth[4:].split(":", 1)[0].strip(), "us-east-1", "s3"
    return None


def handle(app: Callable, environ: dict[str, Any], start_response: Callable) -> Any:
    """WSGI wrapper around moto's dispatcher (and ext_faults' wrapper of it)."""
    scope = _scope(environ)
    if scope is None or not (is_user_key(scope[0]) or scope[0].startswith(SESSION_KEY_PREFIX)):
        return app(environ, start_response)
    problem = problem_with(environ, scope[0])
    if problem is None:
        return app(environ, start_response)
    return _refuse(environ, scope, problem, start_response)


def install() -> None:
    from moto.iam.models import IAMBackend
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    if getattr(DomainDispatcherApplication, "_keyfleet_user_keys", False):
        return
    original_call = DomainDispatcherApplication.__call__

    def __call__(self, environ, start_response):  # type: ignore[no-untyped-def]
        return handle(lambda e, s: original_call(self, e, s), environ, start_response)

    DomainDispatcherApplication.__call__ = __call__  # type: ignore[method-assign]
    DomainDispatcherApplication._keyfleet_user_keys = True  # type: ignore[attr-defined]

    original_create = IAMBackend.create_access_key

    def create_access_key(self: Any, *args: Any, **kwargs: Any) -> Any:
        key = original_create(self, *args, **kwargs)
        remember(key.access_key_id, self.account_id, getattr(self, "partition", "aws"))
        return key

    IAMBackend.create_access_key = create_access_key  # type: ignore[method-assign]
