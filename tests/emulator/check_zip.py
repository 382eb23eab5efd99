#!/usr/bin/env python3
"""Open a keyfleet credentials zip with pyzipper, an AES zip reader
independent of the Rust zip crate, and print what it holds.

Usage: check_zip.py ZIP (PASSWORD | --password-file FILE)

Prints each entry's name, sizes, AES strength and vendor version (AE-1/AE-2),
then its content with the secret access key masked. Exits non-zero if the
archive does not open, an entry is not AES-256 AE-2, or the password is wrong.

Needs pyzipper (python3 -m venv /tmp/pz && /tmp/pz/bin/pip install pyzipper).
"""

import re
import sys

import pyzipper


def mask(text: str) -> str:
    # Secret access keys are 40 characters of base64; show the first 4 only.
    return re.sub(r"(?<![A-Za-z0-9/+])([A-Za-z0-9/+]{4})[A-Za-z0-9/+]{36}(?![A-Za-z0-9/+=])",
                  r"\1" + "*" * 36, text)


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[2] == "--password-file":
        with open(argv[3], "rb") as f:
            password = f.read().strip()
    elif len(argv) == 3:
        password = argv[2].encode()
    else:
        print(__doc__, file=sys.stderr)
        return 2
    path = argv[1]
    ok = True
    with pyzipper.AESZipFile(path) as zf:
        zf.setpassword(password)
        for info in zf.infolist():
            strength = getattr(info, "wz_aes_strength", None)
            version = getattr(info, "wz_aes_version", None)
            print(f"== {info.filename}: {info.file_size} bytes "
                  f"(compressed {info.compress_size}, method {info.compress_type}, "
                  f"AES strength {strength}, AE-{version}, crc {info.CRC:#010x})")
            if strength != 3:
                print(f"!! {info.filename} is not AES-256", file=sys.stderr)
                ok = False
            if version != 2:
                print(f"!! {info.filename} is not AE-2", file=sys.stderr)
                ok = False
            data = zf.read(info.filename)
            print(mask(data.decode("utf-8")), end="" if data.endswith(b"\n") else "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
