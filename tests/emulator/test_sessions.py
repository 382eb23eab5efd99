"""STS session credentials expire as AWS's do (ext_user_keys.py): a request
signed with an AssumeRole session whose expiration has passed is refused
before anything runs, in each protocol's words; ``POST /_keyfleet/sts/expire``
makes a session's time run out now. The shared harness: only the sessions
made here are expired, nothing global changes."""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from typing import Any, Callable

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from helpers import REGION, Emulator

ACCOUNT = "580000000058"
CALLER_ACCOUNT = "123456789012"  # moto's account for the admin ``testing`` keys
ADMIN = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"}, s3={"addressing_style": "path"})
EXPIRED = "The security token included in the request is expired"


def make_role(emu: Emulator, name: str) -> str:
    """A role of ACCOUNT whose trust policy lets the admin's account assume it; its ARN."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{CALLER_ACCOUNT}:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    iam = emu.client("iam", ACCOUNT)
    return iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]


def assume(emu: Emulator, role_arn: str, session: str) -> dict[str, Any]:
    sts = boto3.client("sts", endpoint_url=emu.endpoint, region_name=REGION, config=NO_RETRY, **ADMIN)
    creds = sts.assume_role(RoleArn=role_arn, RoleSessionName=session)["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA"), creds
    return creds


def session_client(emu: Emulator, service: str, creds: dict[str, Any]) -> Any:
    return boto3.client(
        service,
        endpoint_url=emu.endpoint,
        region_name=REGION,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        config=NO_RETRY,
    )


def refused(call: Callable[[], Any], code: str, status: int) -> str:
    """The call's error message, once its code and HTTP status are checked."""
    with pytest.raises(ClientError) as info:
        call()
    err = info.value.response
    assert (err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]) == (code, status), err
    return str(err["Error"]["Message"])


def raw_answers(client: Any) -> list[Any]:
    """The raw HTTP responses the client receives from now on (headers and
    body, which botocore's parsed error hides)."""
    answers: list[Any] = []
    client.meta.events.register("after-call", lambda http_response, **kwargs: answers.append(http_response))
    return answers


def expire(emu: Emulator, key: str) -> dict[str, Any]:
    status, body = emu.control("POST", "/_keyfleet/sts/expire", {"access_key_id": key})
    assert status == 200, body
    return body


def calls(emu: Emulator, creds: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    """One call per protocol, signed with the session."""
    c = lambda service: session_client(emu, service, creds)  # noqa: E731
    return {
        "sts": c("sts").get_caller_identity,  # query
        "iam": c("iam").list_users,  # query
        "sns": c("sns").list_topics,  # query
        "secretsmanager": c("secretsmanager").list_secrets,  # JSON
        "dynamodb": c("dynamodb").list_tables,  # JSON (Coral __type)
        "s3": c("s3").list_buckets,  # S3
        "lambda": c("lambda").list_functions,  # REST-JSON
        "sqs": c("sqs").list_queues,  # JSON, query-compatible
        "ec2": c("ec2").describe_vpcs,  # EC2
    }


def test_an_expired_session_is_refused_in_each_protocols_words(emu: Emulator) -> None:
    role = make_role(emu, "kf-sessions-expiring")
    creds = assume(emu, role, "expiring")
    other = assume(emu, role, "lasting")
    key = creds["AccessKeyId"]
    for service, call in calls(emu, creds).items():
        call()  # served while the session lasts
    identity = session_client(emu, "sts", creds).get_caller_identity()
    assert identity["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/kf-sessions-expiring/expiring"

    answer = expire(emu, key)
    assert (answer["ok"], answer["access_key_id"]) == (True, key)
    expiration = dt.datetime.strptime(answer["expiration"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
    assert expiration < creds["Expiration"]
    assert expiration < dt.datetime.now(dt.timezone.utc)

    session = calls(emu, creds)
    # Query protocol: 403 ExpiredToken.
    assert refused(session["sts"], "ExpiredToken", 403) == EXPIRED
    assert refused(session["iam"], "ExpiredToken", 403) == EXPIRED
    refused(session["sns"], "ExpiredToken", 403)
    # A chained AssumeRole is refused as well.
    sts = session_client(emu, "sts", creds)
    refused(lambda: sts.assume_role(RoleArn=role, RoleSessionName="chained"), "ExpiredToken", 403)
    # JSON protocol: 400 ExpiredTokenException (DynamoDB's __type in Coral's long form).
    assert refused(session["secretsmanager"], "ExpiredTokenException", 400) == EXPIRED
    ddb = session_client(emu, "dynamodb", creds)
    raw = raw_answers(ddb)
    assert refused(ddb.list_tables, "ExpiredTokenException", 400) == EXPIRED
    assert json.loads(raw[-1].content) == {"__type": "com.amazon.coral.service#ExpiredTokenException", "message": EXPIRED}
    # SQS over JSON is query-compatible: the query code, 403.
    sqs = session_client(emu, "sqs", creds)
    raw = raw_answers(sqs)
    assert refused(sqs.list_queues, "ExpiredToken", 403) == EXPIRED
    assert raw[-1].headers["x-amzn-query-error"] == "ExpiredToken;Sender"
    # REST-JSON: 403 ExpiredTokenException.
    assert refused(session["lambda"], "ExpiredTokenException", 403) == EXPIRED
    # S3: 400 ExpiredToken, its own message.
    assert refused(session["s3"], "ExpiredToken", 400) == "The provided token has expired."
    # EC2: 400 RequestExpired.
    assert refused(session["ec2"], "RequestExpired", 400) == "Request has expired."

    # The admin credentials and a session that has not expired still work.
    assert emu.client("sts").get_caller_identity()["Account"] == CALLER_ACCOUNT
    assert emu.client("iam", ACCOUNT).get_role(RoleName="kf-sessions-expiring")["Role"]["Arn"] == role
    for service, call in calls(emu, other).items():
        call()
    assert session_client(emu, "sts", other).get_caller_identity()["Arn"].endswith("/lasting")


def test_a_refused_request_runs_nothing(emu: Emulator) -> None:
    role = make_role(emu, "kf-sessions-nothing-runs")
    creds = assume(emu, role, "late")
    expire(emu, creds["AccessKeyId"])
    refused(lambda: session_client(emu, "sqs", creds).create_queue(QueueName="kf-sessions-late"), "ExpiredToken", 403)
    refused(lambda: session_client(emu, "iam", creds).create_user(UserName="kf-sessions-late"), "ExpiredToken", 403)
    admin_iam = emu.client("iam", ACCOUNT)
    assert "kf-sessions-late" not in [u["UserName"] for u in admin_iam.list_users()["Users"]]
    assert not emu.client("sqs", ACCOUNT).list_queues(QueueNamePrefix="kf-sessions-late").get("QueueUrls")


def test_the_expire_endpoint_knows_only_sessions(emu: Emulator) -> None:
    unknown = "ASIA" + uuid.uuid4().hex[:16].upper()
    status, body = emu.control("POST", "/_keyfleet/sts/expire", {"access_key_id": unknown})
    assert status == 404 and unknown in body["error"], body
    # The admin's key and an IAM user's key are no sessions either.
    assert emu.control("POST", "/_keyfleet/sts/expire", {"access_key_id": "testing"})[0] == 404
    iam = emu.client("iam", ACCOUNT)
    iam.create_user(UserName="kf-sessions-user")
    user_key = iam.create_access_key(UserName="kf-sessions-user")["AccessKey"]["AccessKeyId"]
    assert emu.control("POST", "/_keyfleet/sts/expire", {"access_key_id": user_key})[0] == 404
    assert emu.control("POST", "/_keyfleet/sts/expire", {})[0] == 400
    assert emu.control("POST", "/_keyfleet/sts/expire", {"access_key_id": 7})[0] == 400
    assert emu.control("POST", "/_keyfleet/sts/expire", {"access_key_id": unknown, "when": "now"})[0] == 400
    assert emu.control("GET", "/_keyfleet/sts/expire")[0] == 405
    # Expiring twice is fine: the time has run out either way.
    creds = assume(emu, make_role(emu, "kf-sessions-twice"), "twice")
    expire(emu, creds["AccessKeyId"])
    expire(emu, creds["AccessKeyId"])
    refused(session_client(emu, "sts", creds).get_caller_identity, "ExpiredToken", 403)


def test_a_short_session_expires_by_itself_when_motos_clock_passes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without sleeping: in this process, against moto's in-process mock,
    with moto's clock moved past a 900-second session's expiration. The
    harness's refusal (ext_user_keys.handle) reads the same clock."""
    from moto import mock_aws
    from moto.core import utils as moto_utils
    from werkzeug.test import EnvironBuilder

    import ext_user_keys
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    with mock_aws():
        sts = boto3.client("sts", region_name=REGION, **ADMIN)
        creds = sts.assume_role(
            RoleArn=f"arn:aws:iam::{ACCOUNT}:role/kf-sessions-short", RoleSessionName="short", DurationSeconds=900
        )["Credentials"]
        key = creds["AccessKeyId"]
        session = ext_user_keys.session_for(key)
        assert session is not None and session.session_name == "short"
        started = moto_utils.utcnow()
        assert dt.timedelta(seconds=899) < session.expiration - started <= dt.timedelta(seconds=900)

        def get_caller_identity() -> tuple[str, bytes, bool]:
            """The request as the harness's wrapper answers it: (status, body, reached moto)."""
            body = "Action=GetCallerIdentity&Version=2011-06-15"
            request = AWSRequest(
                method="POST", url="http://127.0.0.1/", data=body,
                headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
            )
            SigV4Auth(Credentials(key, creds["SecretAccessKey"], creds["SessionToken"]), "sts", REGION).add_auth(request)
            environ = EnvironBuilder(
                method="POST", path="/", headers=dict(request.headers), data=body.encode()
            ).get_environ()
            environ["wsgi.input"] = io.BytesIO(body.encode())
            reached: list[bool] = []
            answered: list[str] = []

            def moto_app(environ: dict[str, Any], start_response: Callable) -> list[bytes]:
                reached.append(True)
                start_response("200 OK", [])
                return [b"served"]

            chunks = ext_user_keys.handle(moto_app, environ, lambda status, headers: answered.append(status))
            return answered[0], b"".join(chunks), bool(reached)

        monkeypatch.setattr(moto_utils, "utcnow", lambda: session.expiration - dt.timedelta(seconds=1))
        assert not ext_user_keys.session_expired(key)
        assert get_caller_identity() == ("200 OK", b"served", True)
        monkeypatch.setattr(moto_utils, "utcnow", lambda: session.expiration + dt.timedelta(seconds=1))
        assert ext_user_keys.session_expired(key)
        status, body, reached = get_caller_identity()
        assert (status, reached) == ("403 Forbidden", False)
        assert b"<Code>ExpiredToken</Code>" in body and EXPIRED.encode() in body
        # A key moto never handed out is left alone, whatever the clock says.
        assert not ext_user_keys.session_expired("ASIA" + "X" * 16)
