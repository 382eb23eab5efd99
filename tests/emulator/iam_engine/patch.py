"""Fixes one defect of @cloud-copilot/iam-simulate 0.1.173 after `npm ci`.

The engine recognises a context key with a variable part only when the
variable follows a ``/`` (``aws:PrincipalTag/team``). KMS names it after a
colon, ``kms:EncryptionContext:<key>``, so every encryption-context value
was dropped as "not applicable to the action" and a condition on it never
matched (an Allow on ``kms:EncryptionContext:aws:s3:arn`` denied). This
applies the two-line fix to the installed files (ESM and CommonJS builds)
and fails, naming the file, when the text it fixes is not there (a new
engine version: check whether the fix is still needed, then drop it or
update it). ``test_iam_enforce.py::test_engine_reads_kms_encryption_context``
holds the behaviour.
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node_modules", "@cloud-copilot", "iam-simulate", "dist")
MARK = "keyfleet: kms:EncryptionContext"

FIXES = {
    os.path.join("simulation_engine", "simulationEngine.js"): (
        """    const firstSlashIndex = lowerCaseKey.indexOf('/');
    if (firstSlashIndex === -1) {
        return false;
    }
    const prefix = lowerCaseKey.slice(0, firstSlashIndex + 1);""",
        """    const firstSlashIndex = lowerCaseKey.indexOf('/');
    // keyfleet: kms:EncryptionContext:<key> names its variable after a colon.
    const colonPrefix = 'kms:encryptioncontext:';
    if (firstSlashIndex === -1 && !lowerCaseKey.startsWith(colonPrefix)) {
        return false;
    }
    const prefix = firstSlashIndex === -1 ? colonPrefix : lowerCaseKey.slice(0, firstSlashIndex + 1);""",
    ),
    os.path.join("context_keys", "contextKeys.js"): (
        """    const slashIndex = specKey.indexOf('/');
    if (slashIndex === -1) {
        return specKey;
    }""",
        """    const slashIndex = specKey.indexOf('/');
    // keyfleet: kms:EncryptionContext:<key> names its variable after a colon.
    const colonPrefix = 'kms:EncryptionContext:';
    if (slashIndex === -1 && specKey.startsWith(colonPrefix)) {
        return colonPrefix + actualKey.slice(colonPrefix.length);
    }
    if (slashIndex === -1) {
        return specKey;
    }""",
    ),
}


def main() -> int:
    for build in ("esm", "cjs"):
        for relative, (old, new) in FIXES.items():
            path = os.path.join(ROOT, build, relative)
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
            if MARK in text:
                continue
            if text.count(old) != 1:
                print(f"iam_engine/patch.py: the text to fix is not in {path}: is this another engine version?", file=sys.stderr)
                return 1
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text.replace(old, new))
    return 0


if __name__ == "__main__":
    sys.exit(main())
