"""Deploy terraform/templates/agent.yaml through a service-managed StackSet in
the AWS emulator (tests/emulator) and check that every member account gets an
agent, including accounts that join the organization afterwards.

This file needs boto3, which lives in the emulator's venv. Run from the
repository root with either command:

    terraform/tests/.venv/bin/python -m pytest terraform/tests -q
        (re-runs this file under tests/emulator/.venv/bin/python)
    tests/emulator/.venv/bin/python -m pytest terraform/tests/test_stackset_deploy.py -q

The harness is started once per module on a free port and stopped at the end
(it also exits by itself when this process dies).
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "terraform" / "templates" / "agent.yaml"
EMULATOR = ROOT / "tests" / "emulator"
EMULATOR_PYTHON = EMULATOR / ".venv" / "bin" / "python"
REGION = "us-east-1"

try:
    import boto3
except ImportError:  # the terraform/tests venv: delegate to the emulator's
    boto3 = None


if boto3 is None:

    def test_stackset_deploy_in_the_emulator_venv():
        if not (EMULATOR / "harness.py").is_file():
            pytest.skip("tests/emulator/harness.py is not there yet")
        subprocess.run(["bash", str(EMULATOR / "bootstrap.sh")], check=True, timeout=900)
        result = subprocess.run(
            [str(EMULATOR_PYTHON), "-m", "pytest", str(Path(__file__)), "-q", "-p", "no:cacheprovider"],
            cwd=ROOT, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]

else:

    MANAGEMENT = "900000000501"
    PUBLIC_KEY = base64.b64encode(bytes(range(32))).decode()

    class Emulator:
        def __init__(self, port: int):
            self.endpoint = f"http://127.0.0.1:{port}"
            self._creds: dict[str, dict[str, str]] = {}

        def credentials(self, account: str) -> dict[str, str]:
            # The emulator runs every call signed with credentials from
            # AssumeRole in the role's account (see tests/emulator/README.md).
            if account not in self._creds:
                sts = boto3.client(
                    "sts", endpoint_url=self.endpoint, region_name=REGION,
                    aws_access_key_id="testing", aws_secret_access_key="testing")
                creds = sts.assume_role(
                    RoleArn=f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole",
                    RoleSessionName="keyfleet-terraform-test")["Credentials"]
                self._creds[account] = {
                    "aws_access_key_id": creds["AccessKeyId"],
                    "aws_secret_access_key": creds["SecretAccessKey"],
                    "aws_session_token": creds["SessionToken"],
                }
            return self._creds[account]

        def client(self, service: str, account: str) -> Any:
            return boto3.client(
                service, endpoint_url=self.endpoint, region_name=REGION, **self.credentials(account))

    @pytest.fixture(scope="module")
    def emu():
        with tempfile.TemporaryDirectory() as tmp:
            ready = Path(tmp) / "port"
            with open(Path(tmp) / "stderr", "wb") as stderr:
                proc = subprocess.Popen(
                    [sys.executable, str(EMULATOR / "harness.py"), "--port", "0",
                     "--ready-file", str(ready), "--parent-pid", str(os.getpid())],
                    stdout=subprocess.DEVNULL, stderr=stderr)
            try:
                deadline = time.monotonic() + 60
                while not ready.exists():
                    if proc.poll() is not None or time.monotonic() > deadline:
                        pytest.fail("emulator did not start:\n" + (Path(tmp) / "stderr").read_text()[-3000:])
                    time.sleep(0.1)
                yield Emulator(int(ready.read_text().strip()))
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def agent_zip() -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("bootstrap", "#!/bin/sh\n")
        return buf.getvalue()

    def agent_in(emu: Emulator, account: str) -> dict[str, Any] | None:
        """What the StackSet created in an account, or None when nothing."""
        iam = emu.client("iam", account)
        sqs = emu.client("sqs", account)
        lam = emu.client("lambda", account)
        roles = {r["RoleName"] for r in iam.list_roles()["Roles"]}
        queues = {u.rsplit("/", 1)[1]: u for u in sqs.list_queues().get("QueueUrls", [])}
        functions = {f["FunctionName"]: f for f in lam.list_functions()["Functions"]}
        parts = ("keyfleet-agent" in roles, "keyfleet-jobs" in queues, "keyfleet-agent" in functions)
        if not any(parts):
            return None
        assert all(parts), f"{account}: partial agent (role, queue, function) = {parts}"
        jobs = sqs.get_queue_attributes(QueueUrl=queues["keyfleet-jobs"], AttributeNames=["All"])["Attributes"]
        return {
            "role_policies": iam.list_role_policies(RoleName="keyfleet-agent")["PolicyNames"],
            "queues": sorted(q for q in queues if q.startswith("keyfleet-jobs")),
            "jobs": jobs,
            "function": lam.get_function_configuration(FunctionName="keyfleet-agent"),
            "mappings": lam.list_event_source_mappings(FunctionName="keyfleet-agent")["EventSourceMappings"],
        }

    @pytest.fixture(scope="module")
    def fleet(emu: Emulator) -> dict[str, Any]:
        org = emu.client("organizations", MANAGEMENT)
        org.create_organization(FeatureSet="ALL")
        root = org.list_roots()["Roots"][0]["Id"]
        ous = {}
        ous["infrastructure"] = org.create_organizational_unit(ParentId=root, Name="infrastructure")
        ous["workloads"] = org.create_organizational_unit(ParentId=root, Name="workloads")
        ous = {k: v["OrganizationalUnit"]["Id"] for k, v in ous.items()}
        ous["prod"] = org.create_organizational_unit(
            ParentId=ous["workloads"], Name="prod")["OrganizationalUnit"]["Id"]

        def new_account(name: str, parent: str | None) -> str:
            account = org.create_account(AccountName=name, Email=f"{name}@example.com")[
                "CreateAccountStatus"]["AccountId"]
            if parent is not None:
                org.move_account(AccountId=account, SourceParentId=root, DestinationParentId=parent)
            return account

        accounts = {
            "provisioning": new_account("provisioning", ous["infrastructure"]),
            "app": new_account("app", ous["workloads"]),
            "app-prod": new_account("app-prod", ous["prod"]),
            "stray": new_account("stray", None),
        }

        # The provisioning account's side: code bucket and results queue.
        provisioning = accounts["provisioning"]
        s3 = emu.client("s3", provisioning)
        s3.create_bucket(Bucket="keyfleet-code-test")
        s3.put_object(Bucket="keyfleet-code-test", Key="keyfleet/agent.zip", Body=agent_zip())
        sqs = emu.client("sqs", provisioning)
        results_url = sqs.create_queue(QueueName="keyfleet-results")["QueueUrl"]
        results_arn = sqs.get_queue_attributes(
            QueueUrl=results_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        coordinator_role = f"arn:aws:iam::{provisioning}:role/keyfleet-coordinator"

        parameters = {
            "CodeS3Bucket": "keyfleet-code-test",
            "CodeS3Key": "keyfleet/agent.zip",
            "CoordinatorRoleArn": coordinator_role,
            "ResultsQueueUrl": results_url,
            "ResultsQueueArn": results_arn,
            "CoordinatorPublicKey": PUBLIC_KEY,
            "CoordinatorKeyId": "k-2026-01",
            "LogLevel": "info,keyfleet_agent=debug",
        }
        cfn = emu.client("cloudformation", MANAGEMENT)
        cfn.create_stack_set(
            StackSetName="keyfleet-agent",
            TemplateBody=TEMPLATE.read_text(),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            PermissionModel="SERVICE_MANAGED",
            AutoDeployment={"Enabled": True, "RetainStacksOnAccountRemoval": False},
            Capabilities=["CAPABILITY_NAMED_IAM"],
        )
        cfn.create_stack_instances(
            StackSetName="keyfleet-agent",
            DeploymentTargets={"OrganizationalUnitIds": [root]},
            Regions=[REGION],
        )
        return {"org": org, "cfn": cfn, "root": root, "ous": ous, "accounts": accounts,
                "parameters": parameters, "new_account": new_account}

    def assert_agent(found: dict[str, Any] | None, fleet: dict[str, Any], account: str) -> None:
        assert found is not None, f"{account} has no agent"
        params = fleet["parameters"]
        assert found["role_policies"] == ["keyfleet-agent"]
        assert found["queues"] == ["keyfleet-jobs", "keyfleet-jobs-dlq"]
        jobs = found["jobs"]
        assert jobs["VisibilityTimeout"] == "1800"  # 6 x the default 300 s timeout
        redrive = json.loads(jobs["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"] == f"arn:aws:sqs:{REGION}:{account}:keyfleet-jobs-dlq"
        assert int(redrive["maxReceiveCount"]) == 3
        fn = found["function"]
        assert fn["Runtime"] == "provided.al2023"
        assert fn["Handler"] == "bootstrap"
        assert fn["Role"] == f"arn:aws:iam::{account}:role/keyfleet-agent"
        assert fn["Environment"]["Variables"] == {
            "KEYFLEET_RESULTS_QUEUE_URL": params["ResultsQueueUrl"],
            "KEYFLEET_COORDINATOR_PUBLIC_KEY": params["CoordinatorPublicKey"],
            "KEYFLEET_COORDINATOR_KEY_ID": params["CoordinatorKeyId"],
            "KEYFLEET_COORDINATOR_ROLE_ARN": params["CoordinatorRoleArn"],
            "RUST_LOG": params["LogLevel"],
        }
        (mapping,) = found["mappings"]
        assert mapping["EventSourceArn"] == jobs["QueueArn"]
        assert mapping["BatchSize"] == 1

    def test_every_member_account_gets_an_agent(emu, fleet):
        for name, account in fleet["accounts"].items():
            assert_agent(agent_in(emu, account), fleet, account)

    def test_the_management_account_gets_none(emu, fleet):
        assert agent_in(emu, MANAGEMENT) is None

    def test_stack_set_is_service_managed_with_auto_deployment(fleet):
        described = fleet["cfn"].describe_stack_set(StackSetName="keyfleet-agent")["StackSet"]
        assert described["PermissionModel"] == "SERVICE_MANAGED"
        assert described["AutoDeployment"] == {"Enabled": True, "RetainStacksOnAccountRemoval": False}
        assert described["OrganizationalUnitIds"] == [fleet["root"]]
        instances = fleet["cfn"].list_stack_instances(StackSetName="keyfleet-agent")["Summaries"]
        assert sorted(i["Account"] for i in instances) == sorted(fleet["accounts"].values())
        assert {i["Region"] for i in instances} == {REGION}

    def test_a_new_account_gets_an_agent_and_keeps_it_when_moved(emu, fleet):
        late = fleet["new_account"]("late", None)
        assert_agent(agent_in(emu, late), fleet, late)
        fleet["org"].move_account(
            AccountId=late, SourceParentId=fleet["root"], DestinationParentId=fleet["ous"]["prod"])
        assert_agent(agent_in(emu, late), fleet, late)
        latest = fleet["new_account"]("latest", fleet["ous"]["workloads"])
        assert_agent(agent_in(emu, latest), fleet, latest)

    def test_an_account_leaving_the_organization_loses_its_agent(emu, fleet):
        leaving = fleet["new_account"]("leaving", fleet["ous"]["workloads"])
        assert agent_in(emu, leaving) is not None
        fleet["org"].remove_account_from_organization(AccountId=leaving)
        assert agent_in(emu, leaving) is None

    # ----------------------------------------------------------------------
    # The queue policies as deployed, with the emulator's policy engine
    # deciding: each statement refuses whom it should, and a widened policy
    # lets the same callers through (so the refusals are the policies', not
    # an accident of the set-up).
    # ----------------------------------------------------------------------

    RESULTS_POLICY = ROOT / "terraform" / "modules" / "coordinator" / "policies" / "results-queue.json.tftpl"
    OUTSIDER = "900000000999"  # an account in no organization
    WIDE_OPEN = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sqs:SendMessage", "Resource": "*"}]}

    def render(template: str, values: dict[str, str]) -> str:
        for name, value in values.items():
            template = template.replace("${" + name + "}", value)
        assert "${" not in template, template
        return template

    def role_sqs(emu: Emulator, account: str, role: str, policy: dict[str, Any]) -> Any:
        admin = emu.client("iam", account)
        trust = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}
        try:
            admin.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))
        except admin.exceptions.EntityAlreadyExistsException:
            pass
        admin.put_role_policy(RoleName=role, PolicyName="test", PolicyDocument=json.dumps(policy))
        sts = boto3.client("sts", endpoint_url=emu.endpoint, region_name=REGION,
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/{role}",
                                RoleSessionName="policy-test")["Credentials"]
        return boto3.client("sqs", endpoint_url=emu.endpoint, region_name=REGION,
                            aws_access_key_id=creds["AccessKeyId"],
                            aws_secret_access_key=creds["SecretAccessKey"],
                            aws_session_token=creds["SessionToken"])

    SEND_ANY = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}]}
    ADMIN = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}

    @pytest.fixture
    def enforced(emu: Emulator, fleet: dict[str, Any]):
        patterns = ["keyfleet-agent*", "keyfleet-coordinator*", "intruder-*"]
        post = lambda body: urllib_post(emu, "/_keyfleet/iam/enforce", body)  # noqa: E731
        post({"enabled": True, "role_name_patterns": patterns})
        try:
            yield fleet
        finally:
            post({"enabled": False, "role_name_patterns": [
                "keyfleet-agent*", "keyfleet-coordinator*", "keyfleet-org-reader*", "keyfleet-api*"]})

    def urllib_post(emu: Emulator, path: str, body: dict[str, Any]) -> None:
        import urllib.request

        request = urllib.request.Request(emu.endpoint + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200

    def refused(call) -> str:
        from botocore.exceptions import ClientError

        with pytest.raises(ClientError) as info:
            call()
        assert info.value.response["Error"]["Code"] == "AccessDenied", info.value.response
        return info.value.response["Error"]["Message"]

    def set_policy(emu: Emulator, account: str, url: str, policy: str) -> None:
        emu.client("sqs", account).set_queue_attributes(QueueUrl=url, Attributes={"Policy": policy})

    def test_only_the_coordinator_role_sends_jobs(emu, enforced):
        fleet = enforced
        member = fleet["accounts"]["app"]
        provisioning = fleet["accounts"]["provisioning"]
        jobs = emu.client("sqs", member).get_queue_url(QueueName="keyfleet-jobs")["QueueUrl"]
        deployed = emu.client("sqs", member).get_queue_attributes(
            QueueUrl=jobs, AttributeNames=["Policy"])["Attributes"]["Policy"]
        coordinator = role_sqs(emu, provisioning, "keyfleet-coordinator", SEND_ANY)
        lookalike = role_sqs(emu, provisioning, "intruder-coordinator", SEND_ANY)
        member_admin = role_sqs(emu, member, "intruder-admin", ADMIN)
        coordinator.send_message(QueueUrl=jobs, MessageBody="{}")
        # AllowCoordinatorSend names the role: its account's other roles are not admitted.
        assert "resource-based policy" in refused(lambda: lookalike.send_message(QueueUrl=jobs, MessageBody="{}"))
        # DenySendFromAnyoneElse: not even an administrator of the queue's own account.
        assert refused(lambda: member_admin.send_message(QueueUrl=jobs, MessageBody="{}")).endswith(
            "with an explicit deny in a resource-based policy")
        # Widened, the same callers get through: the refusals are the policy's.
        try:
            set_policy(emu, member, jobs, json.dumps(WIDE_OPEN))
            lookalike.send_message(QueueUrl=jobs, MessageBody="{}")
            member_admin.send_message(QueueUrl=jobs, MessageBody="{}")
        finally:
            set_policy(emu, member, jobs, deployed)

    def test_only_agents_of_the_organization_send_results(emu, enforced):
        fleet = enforced
        provisioning = fleet["accounts"]["provisioning"]
        member = fleet["accounts"]["app"]
        results = fleet["parameters"]["ResultsQueueUrl"]
        org_id = fleet["org"].describe_organization()["Organization"]["Id"]
        policy = render(RESULTS_POLICY.read_text(), {
            "partition": "aws", "queue_arn": fleet["parameters"]["ResultsQueueArn"], "organization_id": org_id})
        set_policy(emu, provisioning, results, policy)
        # The deployed agent role of a member account (the template's own grant).
        agent = role_sqs(emu, member, "keyfleet-agent", {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": fleet["parameters"]["ResultsQueueArn"]}]})
        agent.send_message(QueueUrl=results, MessageBody="{}")
        # Another role of an organization account: DenySendFromNonAgentPrincipals.
        other = role_sqs(emu, member, "intruder-reporter", SEND_ANY)
        assert refused(lambda: other.send_message(QueueUrl=results, MessageBody="{}")).endswith(
            "with an explicit deny in a resource-based policy")
        # A keyfleet-agent role outside the organization: DenySendFromOutsideOrganization.
        outsider = role_sqs(emu, OUTSIDER, "keyfleet-agent", SEND_ANY)
        assert refused(lambda: outsider.send_message(QueueUrl=results, MessageBody="{}")).endswith(
            "with an explicit deny in a resource-based policy")
        decisions = json.loads(urllib_get(emu, "/_keyfleet/iam/decisions"))["decisions"]
        outside = [d for d in decisions if d["account"] == OUTSIDER][-1]
        assert "aws:PrincipalOrgID" not in outside["context"] and outside["decided_by"] == "resource"
        try:
            set_policy(emu, provisioning, results, json.dumps(WIDE_OPEN))
            other.send_message(QueueUrl=results, MessageBody="{}")
            outsider.send_message(QueueUrl=results, MessageBody="{}")
        finally:
            set_policy(emu, provisioning, results, policy)

    def urllib_get(emu: Emulator, path: str) -> str:
        import urllib.request

        with urllib.request.urlopen(emu.endpoint + path, timeout=30) as response:
            return response.read().decode()
