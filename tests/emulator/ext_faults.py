"""Faults on demand: make a chosen share of calls fail, or be slow, the way AWS does.

AWS: calls are throttled, answer 500/503, lose their connection, succeed on
the server while the caller never learns it (the response is lost), or are
just slow. keyfleet's retries, its "did my CreateAccessKey happen?" recovery
and its Lambda time budget need all of these.

moto 5.2.5: never fails on its own.

Switch: ``POST /_keyfleet/faults`` with ``{"seed": 7, "rules": [...]}``
replaces the rule set (and resets attempt numbers and counters),
``GET /_keyfleet/faults`` lists rules, counters and the log of injected faults,
``DELETE /_keyfleet/faults`` clears everything. A rule::

    {"service": "iam",                 # required: boto3 service name (iam, sqs,
                                       #   ses = SES v1, sesv2, s3, secretsmanager, ...)
     "action": "CreateAccessKey",      # optional: operation name, or a list of them
     "match": {"UserName": "alice"},   # optional: request parameters (see below)
     "account": "123456789012",        # optional: the caller's account
     "kind": "throttle",               # throttle | internal_error | unavailable |
                                       #   drop | do_then_drop | do_then_error | delay |
                                       #   conflict (s3 only)
     "share": 0.5,                     # optional, 0..1, default 1
     "first_attempts": 2,              # optional: only attempts 0..N-1 can fail
     "from_attempt": 1,                # optional: only attempts N.. can fail (the
                                       #   first N identical requests get through)
     "delay_ms": 300,                  # kind delay only, and required there: 0..60000
     "code": "...", "status": 500, "message": "..."}  # optional error overrides
                                                      #   (not with delay)

Only requests signed with SigV4 (an ``Authorization`` header or a presigned
``X-Amz-Credential``) are considered; ``/_keyfleet/`` never reaches this code.
Service = the credential scope's service (``ses`` with a ``/v2/`` path is
``sesv2``); action and parameters are resolved with moto's own router and
protocol parsers, so the query protocol (``Action=``), the JSON protocol
(``X-Amz-Target``) and REST protocols (method + path, S3 too) give the same
parameter names (S3 bodies are not read: Bucket/Key come from the path).
ext_calls (outermost) has already made and routed the request's ``_Call``
(``environ["keyfleet.call"]``); this module reuses it and only adds the
parameters.

``match``: every named top-level parameter must contain (anywhere in its
value: a string, a list, nested structures such as SES v2
``Destination.ToAddresses``) one of the given strings (a string or a list).
URLs are compared by path, so a QueueUrl matches whatever the host and port.

Decision: the first rule (in list order) whose filters match and whose draw
``h(seed, rule index, service, action, region, account, key params, attempt)``
(sha256 mapped to [0, 1)) is below ``share`` injects its fault. Key params are
UserName, QueueUrl (its path), QueueName, Destination, Destinations,
SecretId, Name, RoleName, RoleArn, FunctionName, StackSetName, Bucket, Key,
EmailIdentity and the parameters named in any rule's ``match``. ``attempt`` is
how many identical requests (same service, action, region, account and key
params) were seen before since the rules were set. Nothing depends on call
order or time, so the same seed and the same requests give the same
decisions, concurrently or not; only identical requests running at once share
attempt numbers between them.

Faults:
  throttle        the service's own throttling error (see ``_THROTTLE``):
                  IAM/STS/SES v1/CloudFormation ``Throttling`` (query XML,
                  400), SQS ``RequestThrottled`` (JSON with ``__type`` and
                  ``x-amzn-query-error``, or query XML; 400), SES v2 and Lambda
                  ``TooManyRequestsException`` (429), S3 ``SlowDown`` (503),
                  Organizations ``TooManyRequestsException``, other JSON
                  services ``ThrottlingException`` (400);
  internal_error  500 ``InternalFailure`` (S3 ``InternalError``);
  unavailable     503 ``ServiceUnavailable``;
  drop            the connection is closed without a response; moto never sees
                  the request;
  do_then_drop    moto executes the request (its effect happens), then the
                  connection is closed without a response;
  do_then_error   moto executes the request, then the caller gets a 500
                  ``InternalFailure`` (or ``code``/``status``) instead;
  delay           the request is held ``delay_ms`` milliseconds, then moto
                  executes it and the caller gets moto's real response, only
                  later (e.g. a slow IAM makes a Lambda function with a short
                  Timeout run out of time). The request is executed even when
                  the caller has given up meanwhile (its connection is gone),
                  as a slow request reaching AWS still is. Its log entry
                  carries ``delay_ms``.
  conflict        (service s3 only) HTTP 409 ``ConditionalRequestConflict``
                  (S3's ``<Error>`` XML), without acting, to a conditional
                  write: a PutObject or CompleteMultipartUpload carrying
                  ``If-None-Match`` or ``If-Match``, as S3 answers when a
                  concurrent conditional write to the same key is in
                  progress. Other requests (unconditional writes, reads)
                  never match such a rule. ``action`` defaults to both
                  actions and may name only them.
do_then_* rules must name exactly one action.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import threading
import time
import uuid
from http import HTTPStatus
from typing import Any, Callable
from urllib.parse import parse_qs, urlparse
from xml.sax.saxutils import escape

from control import ControlError

KINDS = ("throttle", "internal_error", "unavailable", "drop", "do_then_drop", "do_then_error",
         "delay", "conflict")
# kind conflict: S3 answers it to a conditional write (If-None-Match / If-Match)
# while another conditional write to the same key is in progress.
CONFLICT_ACTIONS = ("PutObject", "CompleteMultipartUpload")
_S3_CONFLICT = (
    "ConditionalRequestConflict",
    409,
    "A conflicting operation occurred. If using PutObject you can retry the request. If using "
    "multipart upload you should initiate another CreateMultipartUpload request and re-upload each part.",
)
MAX_DELAY_MS = 60_000
KEY_PARAMS = (
    "UserName",
    "QueueUrl",
    "QueueName",
    "Destination",
    "Destinations",
    "SecretId",
    "Name",
    "RoleName",
    "RoleArn",
    "FunctionName",
    "StackSetName",
    "Bucket",
    "Key",
    "EmailIdentity",
)
LOG_LIMIT = 1000

# service -> (code, status, message) for "throttle"
_THROTTLE = {
    "sqs": ("RequestThrottled", 400, "Request is throttled."),
    "sesv2": ("TooManyRequestsException", 429, "Too many requests have been made to the operation."),
    "lambda": ("TooManyRequestsException", 429, "Rate exceeded"),
    "s3": ("SlowDown", 503, "Please reduce your request rate."),
    "organizations": (
        "TooManyRequestsException",
        400,
        "You have sent too many requests in too short a period of time. "
        "The quota helps protect against denial-of-service attacks. Try again later.",
    ),
    "ses": ("Throttling", 400, "Maximum sending rate exceeded."),
    "ec2": ("RequestLimitExceeded", 503, "Request limit exceeded."),
}
_INTERNAL = ("InternalFailure", 500, "The request processing has failed because of an unknown error, exception or failure.")
_UNAVAILABLE = ("ServiceUnavailable", 503, "The request has failed due to a temporary failure of the server.")
_S3_INTERNAL = ("InternalError", 500, "We encountered an internal error. Please try again.")
_S3_UNAVAILABLE = ("ServiceUnavailable", 503, "Service is unable to handle request.")
_QUERY_NS = {"sqs": "http://queue.amazonaws.com/doc/2012-11-05/"}
_SIGNING_TO_SERVICE = {"monitoring": "cloudwatch", "states": "stepfunctions", "email": "ses"}

# The _Call of a request, once made (by ext_calls, which wraps this module's
# wrapper), so the request is resolved once.
CALL_ENVIRON_KEY = "keyfleet.call"

_lock = threading.Lock()
_state: dict[str, Any] = {}


def _reset(seed: Any = 0, rules: list[dict[str, Any]] | None = None) -> None:
    _state.clear()
    _state.update(
        seed=seed,
        rules=rules or [],
        matched=[0] * len(rules or []),
        injected=[0] * len(rules or []),
        by_kind={},
        attempts={},
        log=[],
        total=0,
    )


_reset()


# -- control endpoint ----------------------------------------------------------


def snapshot(body: Any = None) -> dict[str, Any]:
    with _lock:
        rules = [
            dict(rule, matched=_state["matched"][i], injected=_state["injected"][i])
            for i, rule in enumerate(_state["rules"])
        ]
        return {
            "seed": _state["seed"],
            "rules": rules,
            "injected": _state["total"],
            "by_kind": dict(_state["by_kind"]),
            "log": [dict(entry) for entry in _state["log"]],
        }


def clear(body: Any = None) -> dict[str, Any]:
    with _lock:
        count = len(_state["rules"])
        _reset()
    return {"ok": True, "cleared": count}


def _strings(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise ControlError(400, f"{what} must be a string or a non-empty list of strings")


def _validate(index: int, raw: Any) -> dict[str, Any]:
    where = f"rules[{index}]"
    if not isinstance(raw, dict):
        raise ControlError(400, f"{where} must be an object")
    known = {"service", "action", "match", "account", "kind", "share", "first_attempts", "from_attempt",
             "delay_ms", "code", "status", "message"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ControlError(400, f"{where}: unknown field(s) {unknown}")
    rule: dict[str, Any] = {}
    service = raw.get("service")
    if not isinstance(service, str) or not service:
        raise ControlError(400, f"{where}.service must be a service name (iam, sqs, sesv2, ...)")
    rule["service"] = service.lower()
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ControlError(400, f"{where}.kind must be one of {list(KINDS)}")
    rule["kind"] = kind
    if "action" in raw:
        rule["action"] = _strings(raw["action"], f"{where}.action")
    if kind.startswith("do_then_") and len(rule.get("action", [])) != 1:
        raise ControlError(400, f"{where}: {kind} needs exactly one action")
    if kind == "conflict":
        if rule["service"] != "s3":
            raise ControlError(400, f"{where}: kind conflict is S3's (service s3)")
        actions = rule.setdefault("action", list(CONFLICT_ACTIONS))
        if not set(actions) <= set(CONFLICT_ACTIONS):
            raise ControlError(400, f"{where}: kind conflict applies to {list(CONFLICT_ACTIONS)} only")
    if "match" in raw:
        match = raw["match"]
        if not isinstance(match, dict) or not match:
            raise ControlError(400, f"{where}.match must be a non-empty object")
        rule["match"] = {
            str(name): _strings(value, f"{where}.match.{name}") for name, value in match.items()
        }
    if "account" in raw:
        rule["account"] = _strings(raw["account"], f"{where}.account")
    share = raw.get("share", 1.0)
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
        raise ControlError(400, f"{where}.share must be a number from 0 to 1")
    rule["share"] = float(share)
    if "first_attempts" in raw:
        n = raw["first_attempts"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ControlError(400, f"{where}.first_attempts must be an integer >= 1")
        rule["first_attempts"] = n
    if "from_attempt" in raw:
        n = raw["from_attempt"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ControlError(400, f"{where}.from_attempt must be an integer >= 0")
        rule["from_attempt"] = n
    if kind == "delay":
        delay_ms = raw.get("delay_ms")
        if (isinstance(delay_ms, bool) or not isinstance(delay_ms, int)
                or not 0 <= delay_ms <= MAX_DELAY_MS):
            raise ControlError(
                400, f"{where}.delay_ms must be an integer from 0 to {MAX_DELAY_MS} (milliseconds)"
            )
        rule["delay_ms"] = delay_ms
        overrides = sorted({"code", "status", "message"} & set(raw))
        if overrides:
            raise ControlError(
                400, f"{where}: a delay answers with moto's own response, {overrides} do not apply"
            )
    elif "delay_ms" in raw:
        raise ControlError(400, f"{where}.delay_ms is only for kind delay")
    if "status" in raw:
        status = raw["status"]
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ControlError(400, f"{where}.status must be an HTTP status 400..599")
        rule["status"] = status
    for name in ("code", "message"):
        if name in raw:
            if not isinstance(raw[name], str) or not raw[name]:
                raise ControlError(400, f"{where}.{name} must be a non-empty string")
            rule[name] = raw[name]
    return rule


def set_from_request(body: dict[str, Any]) -> dict[str, Any]:
    rules_raw = body.get("rules")
    if not isinstance(rules_raw, list):
        raise ControlError(400, 'body must be {"seed": ..., "rules": [...]}')
    seed = body.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, (int, str)):
        raise ControlError(400, "seed must be an integer or a string")
    rules = [_validate(i, raw) for i, raw in enumerate(rules_raw)]
    with _lock:
        _reset(seed, rules)
    return dict(snapshot(), ok=True)


# -- deciding --------------------------------------------------------------------


def draw(seed: Any, rule_index: int, identity: list[Any], attempt: int) -> float:
    """The request's number in [0, 1) for one rule; the fault happens when < share."""
    text = json.dumps([seed, rule_index, identity, attempt], sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _norm(value: Any) -> Any:
    if isinstance(value, str):
        if value.startswith(("http://", "https://")):
            return urlparse(value).path or "/"
        return value
    if isinstance(value, dict):
        return {str(k): _norm(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return str(value)


def _leaves(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value] if isinstance(value, str) else []


def _scope(environ: dict[str, Any]) -> tuple[str, str, str] | None:
    """(access key, region, signing service) of a SigV4-signed request."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    credential = None
    if auth.startswith("AWS4-HMAC-SHA256"):
        for part in auth[len("AWS4-HMAC-SHA256"):].split(","):
            part = part.strip()
            if part.startswith("Credential="):
                credential = part[len("Credential="):]
    elif "X-Amz-Credential" in environ.get("QUERY_STRING", ""):
        credential = (parse_qs(environ["QUERY_STRING"]).get("X-Amz-Credential") or [None])[0]
    if not credential:
        return None
    parts = credential.split("/")
    if len(parts) != 5:
        return None
    return parts[0], parts[2], parts[3].lower()


def _service_model(service: str) -> Any:
    from moto.core.utils import get_service_model  # cached by moto

    try:
        return get_service_model(service)
    except Exception:
        return None


class _Call:
    """What the harness knows about one signed request."""

    def __init__(self, environ: dict[str, Any], scope: tuple[str, str, str]):
        access_key, self.region, signing = scope
        path = environ.get("PATH_INFO", "")
        service = _SIGNING_TO_SERVICE.get(signing, signing)
        if service == "ses" and path.startswith("/v2/"):
            service = "sesv2"
        self.service = service
        self.environ = environ
        self.target = environ.get("HTTP_X_AMZ_TARGET", "")
        self.method = environ.get("REQUEST_METHOD", "GET").upper()
        account = environ.get("HTTP_X_MOTO_ACCOUNT_ID")
        if not account:
            from moto.iam.models import get_account_id_from

            account = get_account_id_from(access_key)
        self.account = account
        self.action = ""
        self.params: dict[str, Any] = {}
        self.protocol = "query"
        self._route: tuple[Any, Any, Any] | None = None

    def _request(self, body: bytes) -> Any:
        from moto.core.request import Request

        env = dict(self.environ)
        env["wsgi.input"] = io.BytesIO(body)
        env["CONTENT_LENGTH"] = str(len(body))
        env.pop("wsgi.input_terminated", None)
        return Request(env)

    def _fallback_action(self, request: Any) -> str:
        return self.target.rsplit(".", 1)[-1] if self.target else (
            request.values.get("Action", "") or f"{self.method} {request.path}"
        )

    def needs_body_to_route(self) -> bool:
        """Whether the action is only in the body: query protocol (``Action=``)
        or a service moto has no model for; not JSON (``X-Amz-Target``), REST
        (method and path) or S3."""
        if self.target or self.service == "s3":
            return False
        model = _service_model(self.service)
        return model is None or model.protocol not in ("rest-json", "rest-xml")

    def route(self, body: bytes = b"") -> None:
        """Resolve the action only (moto's router, no parameter parsing), once.
        ``body`` matters only when ``needs_body_to_route()``. ext_calls counts
        every request with this; ``resolve`` reuses it."""
        if self._route is None:
            self._route_request(self._request(body))

    def _route_request(self, request: Any) -> None:
        from moto.core.routing import get_service_router

        model = _service_model(self.service)
        if self.target:
            self.protocol = "json"
        elif model is not None and model.protocol in ("rest-json", "rest-xml", "ec2"):
            self.protocol = model.protocol
        operation = uri_params = None
        if model is not None:
            try:
                operation, uri_params = get_service_router(self.service).match(request)
                self.action = operation.name
            except Exception:
                operation = uri_params = None
        if operation is None:
            # Unknown action or bad input: moto will answer it; the filters
            # still see whatever could be found.
            self.action = self._fallback_action(request)
        self._route = (model, operation, uri_params)

    def resolve(self, body: bytes) -> None:
        """The action (see ``route``) and the request's parameters."""
        from moto.core.parse import PROTOCOL_PARSERS
        from moto.core.request import determine_request_protocol

        request = self._request(body)
        if self._route is None:
            self._route_request(request)
        model, operation, uri_params = self._route
        if model is None:
            return
        if operation is not None:
            try:
                protocol = determine_request_protocol(model, request.content_type)
                parser = PROTOCOL_PARSERS[protocol](operation, map_type=dict)
                self.params = dict(
                    parser.parse(
                        {
                            "method": request.method,
                            "values": request.values,
                            "headers": request.headers,
                            "body": request.data,
                            "url_path": request.path,
                            "url_params": uri_params,
                        }
                    )
                )
            except Exception:
                pass  # bad input: moto will answer it
        if self.service == "sqs" and "QueueUrl" not in self.params and request.path.count("/") == 2:
            self.params["QueueUrl"] = request.path  # query protocol posted to the queue URL

    @property
    def conditional_write(self) -> bool:
        return bool(self.environ.get("HTTP_IF_NONE_MATCH") or self.environ.get("HTTP_IF_MATCH"))

    def matches(self, rule: dict[str, Any]) -> bool:
        if rule["service"] != self.service:
            return False
        if rule["kind"] == "conflict" and not self.conditional_write:
            return False
        if "action" in rule and self.action not in rule["action"]:
            return False
        if "account" in rule and self.account not in rule["account"]:
            return False
        for name, wanted in rule.get("match", {}).items():
            have = set(_leaves(_norm(self.params.get(name))))
            if not have & {_norm(w) for w in wanted}:
                return False
        return True

    def identity(self, extra: set[str]) -> list[Any]:
        names = sorted(set(KEY_PARAMS) | extra)
        key = {n: _norm(self.params[n]) for n in names if n in self.params}
        return [self.service, self.action, self.region, self.account, key]


def _decide(call: _Call) -> tuple[int, dict[str, Any], int] | None:
    """(rule index, rule, attempt) of the fault to inject, or None; counts."""
    with _lock:
        rules = _state["rules"]
        candidates = [(i, r) for i, r in enumerate(rules) if call.matches(r)]
        if not candidates:
            return None
        extra = {name for r in rules for name in r.get("match", {})}
        identity = call.identity(extra)
        ident_key = json.dumps(identity, sort_keys=True, separators=(",", ":"))
        attempt = _state["attempts"].get(ident_key, 0)
        _state["attempts"][ident_key] = attempt + 1
        chosen = None
        for i, rule in candidates:
            _state["matched"][i] += 1
            if chosen is not None:
                continue
            if "first_attempts" in rule and attempt >= rule["first_attempts"]:
                continue
            if attempt < rule.get("from_attempt", 0):
                continue
            if draw(_state["seed"], i, identity, attempt) < rule["share"]:
                chosen = (i, rule, attempt)
        if chosen is None:
            return None
        i, rule, attempt = chosen
        _state["injected"][i] += 1
        _state["total"] += 1
        _state["by_kind"][rule["kind"]] = _state["by_kind"].get(rule["kind"], 0) + 1
        entry = {
            "rule": i,
            "kind": rule["kind"],
            "service": call.service,
            "action": call.action,
            "region": call.region,
            "account": call.account,
            "key": identity[4],
            "attempt": attempt,
        }
        if rule["kind"] == "delay":
            entry["delay_ms"] = rule["delay_ms"]
        _state["log"].append(entry)
        del _state["log"][:-LOG_LIMIT]
        return chosen


# -- answering -------------------------------------------------------------------


def _error_triplet(call: _Call, rule: dict[str, Any]) -> tuple[str, int, str]:
    kind = rule["kind"]
    if kind == "throttle":
        if call.service in _THROTTLE:
            code, status, message = _THROTTLE[call.service]
        elif call.protocol in ("query", "ec2", "rest-xml"):
            code, status, message = "Throttling", 400, "Rate exceeded"
        else:
            code, status, message = "ThrottlingException", 400, "Rate exceeded"
    elif kind == "unavailable":
        code, status, message = _S3_UNAVAILABLE if call.service == "s3" else _UNAVAILABLE
    elif kind == "conflict":
        code, status, message = _S3_CONFLICT
    else:  # internal_error, do_then_error
        code, status, message = _S3_INTERNAL if call.service == "s3" else _INTERNAL
    return rule.get("code", code), rule.get("status", status), rule.get("message", message)


def _error_response(call: _Call, rule: dict[str, Any], start_response: Callable) -> list[bytes]:
    code, status, message = _error_triplet(call, rule)
    request_id = str(uuid.uuid4())
    fault = "Sender" if status < 500 else "Receiver"
    headers = [("x-amzn-RequestId", request_id)]
    if call.protocol == "json":
        qualified = code
        if call.service == "sqs":
            qualified = f"com.amazonaws.sqs#{code}"
            headers.append(("x-amzn-query-error", f"{code};{fault}"))
        version = "1.0" if call.service == "sqs" else "1.1"
        try:
            from moto.core.utils import get_service_model

            version = get_service_model(call.service).metadata.get("jsonVersion", version)
        except Exception:
            pass
        headers.append(("Content-Type", f"application/x-amz-json-{version}"))
        body = json.dumps({"__type": qualified, "message": message}).encode()
    elif call.protocol == "rest-json":
        headers += [("Content-Type", "application/json"), ("x-amzn-ErrorType", code)]
        body = json.dumps({"message": message}).encode()
    elif call.service == "s3":
        headers = [("x-amz-request-id", request_id[:16].upper()), ("x-amz-id-2", request_id),
                   ("Content-Type", "application/xml")]
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
            f"<RequestId>{request_id[:16].upper()}</RequestId><HostId>{request_id}</HostId></Error>"
        ).encode()
    elif call.protocol == "ec2":
        headers.append(("Content-Type", "text/xml"))
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Response><Errors><Error><Code>{escape(code)}</Code><Message>{escape(message)}"
            f"</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>"
        ).encode()
    else:  # query (and other rest-xml): ErrorResponse
        namespace = _QUERY_NS.get(call.service)
        if namespace is None:
            try:
                from moto.core.utils import get_service_model

                namespace = get_service_model(call.service).metadata.get("xmlNamespace")
            except Exception:
                namespace = None
        xmlns = f' xmlns="{escape(namespace)}"' if namespace else ""
        headers.append(("Content-Type", "text/xml"))
        body = (
            f"<ErrorResponse{xmlns}><Error><Type>{fault}</Type><Code>{escape(code)}</Code>"
            f"<Message>{escape(message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
    if call.method == "HEAD":
        body = b""
    headers.append(("Content-Length", str(len(body))))
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    start_response(f"{status} {reason}", headers)
    return [body]


def _drop(environ: dict[str, Any]) -> None:
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    # werkzeug treats ConnectionError as "client went away": no response, no log.
    raise ConnectionAbortedError("keyfleet fault injection: connection dropped")


def _read_body(environ: dict[str, Any]) -> bytes:
    stream = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body = stream.read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.pop("wsgi.input_terminated", None)
    return body


def handle(app: Callable, environ: dict[str, Any], start_response: Callable) -> Any:
    """WSGI wrapper around moto's dispatcher."""
    with _lock:
        services = {rule["service"] for rule in _state["rules"]}
    if not services:
        return app(environ, start_response)
    # ext_calls (outermost) has already made the _Call and routed it.
    call = environ.get(CALL_ENVIRON_KEY)
    if call is None:
        scope = _scope(environ)
        if scope is None:
            return app(environ, start_response)
        call = _Call(environ, scope)
    if call.service not in services:
        return app(environ, start_response)
    # S3 bodies can be large and are never needed: Bucket/Key come from the path.
    body = b"" if call.service == "s3" else _read_body(environ)
    call.resolve(body)
    chosen = _decide(call)
    if chosen is None:
        return app(environ, start_response)
    _, rule, _ = chosen
    kind = rule["kind"]
    if kind == "delay":
        time.sleep(rule["delay_ms"] / 1000.0)
        return app(environ, start_response)
    if kind == "drop":
        _drop(environ)
    if kind.startswith("do_then_"):
        result = app(environ, lambda status, headers, exc_info=None: (lambda data: None))
        try:
            for _ in result:
                pass
        finally:
            if hasattr(result, "close"):
                result.close()
        if kind == "do_then_drop":
            _drop(environ)
    return _error_response(call, rule, start_response)


def install() -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    if getattr(DomainDispatcherApplication, "_keyfleet_faults", False):
        return
    original = DomainDispatcherApplication.__call__

    def __call__(self, environ, start_response):  # type: ignore[no-untyped-def]
        return handle(lambda e, s: original(self, e, s), environ, start_response)

    DomainDispatcherApplication.__call__ = __call__  # type: ignore[method-assign]
    DomainDispatcherApplication._keyfleet_faults = True  # type: ignore[attr-defined]
