"""Request counter: how many AWS calls reached the emulator, by caller account,
service and action, and how many request bytes, by account and service.

AWS: bills (and throttles) every request it receives, an attempt that fails
included. keyfleet prints what running it costs from the calls it makes.

moto 5.2.5: counts nothing.

Every SigV4-signed request (an ``Authorization`` header or a presigned
``X-Amz-Credential``) that reaches the server is counted once, whatever
happens to it next: answered by moto, refused by IAM enforcement
(ext_iam_enforce, inside moto's handler), or failed, dropped or delayed by a
fault (ext_faults, which this wraps). Service, account and action are
resolved by ext_faults' ``_Call`` (credential scope, ``ses`` + ``/v2/`` =
``sesv2``, moto's own account lookup and router); only the router runs, no
parameter parsing, and the body is read (and buffered for moto) only for the
query protocol, where the action is in the body. ext_faults reuses that
``_Call`` (``environ["keyfleet.call"]``). Unsigned requests are not counted;
``/_keyfleet/`` requests never reach moto's app, so they are not either.
Request bytes are the request's ``Content-Length`` (0 without one).

Observers: ``add_observer(fn)`` has ``fn(environ, access_key, call)`` called
for every request counted, after counting and before moto sees it (the
access key id of the SigV4 credential, the resolved ``_Call``); an observer's
exception is logged and changes nothing. ext_cloudtrail records CloudTrail
events this way, so a request is resolved once for both.

Switch: always on. ``GET /_keyfleet/calls[?account=<id>]`` ->
``{"since": "<RFC 3339 UTC of the last reset>", "calls": [{"account",
"service", "action", "count"}, ...], "bytes": [{"account", "service",
"request_bytes"}, ...]}``, sorted; ``DELETE /_keyfleet/calls`` resets the
counts and ``since``.
"""

from __future__ import annotations

import logging
import re
import threading
from datetime import datetime, timezone
from typing import Any, Callable

import ext_faults
from control import ControlError

_ACCOUNT = re.compile(r"^\d{12}$")

_lock = threading.Lock()
_calls: dict[tuple[str, str, str], int] = {}
_bytes: dict[tuple[str, str], int] = {}
_since = ""
_observers: list[Callable[[dict[str, Any], str, Any], None]] = []


def add_observer(observer: Callable[[dict[str, Any], str, Any], None]) -> None:
    """Call ``observer(environ, access_key, call)`` for every request counted."""
    if observer not in _observers:
        _observers.append(observer)


def _now() -> str:
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _reset() -> int:
    """Forget every count (under _lock); the number of requests forgotten."""
    global _since
    forgotten = sum(_calls.values())
    _calls.clear()
    _bytes.clear()
    _since = _now()
    return forgotten


with _lock:
    _reset()


# -- control endpoint ----------------------------------------------------------


def snapshot(query: dict[str, str]) -> dict[str, Any]:
    unknown = sorted(set(query) - {"account"})
    if unknown:
        raise ControlError(400, f"unknown query parameter(s) {unknown}; only account=<12 digits>")
    account = query.get("account")
    if account is not None and not _ACCOUNT.match(account):
        raise ControlError(400, f"account must be 12 digits, not {account!r}")
    with _lock:
        calls = sorted(_calls.items())
        sizes = sorted(_bytes.items())
        since = _since
    return {
        "since": since,
        "calls": [
            {"account": a, "service": s, "action": x, "count": n}
            for (a, s, x), n in calls
            if account is None or a == account
        ],
        "bytes": [
            {"account": a, "service": s, "request_bytes": n}
            for (a, s), n in sizes
            if account is None or a == account
        ],
    }


def clear(query: dict[str, str]) -> dict[str, Any]:
    if query:
        raise ControlError(400, "DELETE /_keyfleet/calls takes no parameters: it resets every account")
    with _lock:
        forgotten = _reset()
        since = _since
    return {"ok": True, "cleared": forgotten, "since": since}


# -- counting --------------------------------------------------------------------


def _content_length(environ: dict[str, Any]) -> int:
    try:
        return max(int(environ.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        return 0


def _count(environ: dict[str, Any]) -> None:
    scope = ext_faults._scope(environ)
    if scope is None:
        return
    size = _content_length(environ)  # before the body is buffered
    call = ext_faults._Call(environ, scope)
    call.route(ext_faults._read_body(environ) if call.needs_body_to_route() else b"")
    environ[ext_faults.CALL_ENVIRON_KEY] = call
    with _lock:
        key = (call.account, call.service, call.action)
        _calls[key] = _calls.get(key, 0) + 1
        _bytes[key[:2]] = _bytes.get(key[:2], 0) + size
    for observer in _observers:
        try:
            observer(environ, scope[0], call)
        except Exception:  # an observer must never change an answer
            logging.getLogger("keyfleet.calls").exception("observer %r failed", observer)


def handle(app: Callable, environ: dict[str, Any], start_response: Callable) -> Any:
    """WSGI wrapper around moto's dispatcher (and ext_faults' wrapper of it)."""
    if not environ.get("PATH_INFO", "").startswith("/_keyfleet/"):
        try:
            _count(environ)
        except Exception:  # counting must never change an answer
            logging.getLogger("keyfleet.calls").exception("could not count a request")
    return app(environ, start_response)


def install() -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    if getattr(DomainDispatcherApplication, "_keyfleet_calls", False):
        return
    original = DomainDispatcherApplication.__call__

    def __call__(self, environ, start_response):  # type: ignore[no-untyped-def]
        return handle(lambda e, s: original(self, e, s), environ, start_response)

    DomainDispatcherApplication.__call__ = __call__  # type: ignore[method-assign]
    DomainDispatcherApplication._keyfleet_calls = True  # type: ignore[attr-defined]
