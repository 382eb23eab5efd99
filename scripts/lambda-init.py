#!/usr/bin/env python3
"""Measure a Lambda bootstrap's init time: from process start to its first
request for work (`GET /2018-06-01/runtime/invocation/next`), which is what
Lambda bills as Init Duration.

A fake Runtime API on 127.0.0.1 answers nothing; the bootstrap is started N
times with the environment Lambda gives it and killed once it has asked for
its first event. Prints min / median / max in milliseconds.

Usage: scripts/lambda-init.py BOOTSTRAP [--runs N] [--env KEY=VALUE ...]
Example (agent; the coordinator public key is any valid one):
  scripts/lambda-init.py target/lambda/agent/bootstrap \
      --env KEYFLEET_COORDINATOR_PUBLIC_KEY=$(python3 -c 'import base64,os;print(base64.b64encode(os.urandom(32)).decode())')
"""

import argparse
import http.server
import os
import statistics
import subprocess
import threading
import time

first_request = threading.Event()


class Api(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server naming)
        if self.path.endswith("/runtime/invocation/next"):
            first_request.set()
        # Never answer: the bootstrap waits; the measurement is done.
        time.sleep(5)

    def log_message(self, *args):
        pass


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--env", action="append", default=[])
    a = ap.parse_args()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Api)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{server.server_address[1]}",
        "AWS_LAMBDA_FUNCTION_NAME": "keyfleet-measure",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/keyfleet-measure",
        "AWS_LAMBDA_LOG_STREAM_NAME": "measure",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "example",
        "AWS_SESSION_TOKEN": "example",
    }
    for kv in a.env:
        k, _, v = kv.partition("=")
        env[k] = v

    times = []
    for _ in range(a.runs):
        first_request.clear()
        start = time.perf_counter()
        p = subprocess.Popen([a.bootstrap], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        ok = first_request.wait(timeout=10)
        elapsed = (time.perf_counter() - start) * 1000
        p.kill()
        _, err = p.communicate()
        if not ok:
            print(f"bootstrap never asked for work; stderr:\n{err.decode(errors='replace')}")
            return 1
        times.append(elapsed)
    print(f"init (process start -> first /next), {a.runs} runs: "
          f"min {min(times):.1f} ms, median {statistics.median(times):.1f} ms, max {max(times):.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
