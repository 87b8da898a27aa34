"""API conformance: schemathesis and REDbot against a live wren.

Starts the given wren binary on a free port with an admin account, makes
an API key (`wren keys create`), signs in, and puts one file, one image and
one event in place so that routes with parameters have something to find.
Then:

- schemathesis runs every operation of `GET /openapi.json`, once with the
  admin's bearer token and once with the API key, checking that no answer
  is a 5xx and that every answer's status, content type, headers and body
  conform to the document. `POST /api/logout` runs last, alone, with a
  token of its own: it revokes the token it is called with.
- REDbot checks every GET route (signed in where the route needs it) and
  fails on any note at level WARN or BAD.

    .venv-api/bin/python tools/check_api.py target/debug/wren [DOCS_ASSETS]

Prints what each step found; exits 1 if any failed.
"""

import configparser
import json
import os
import random
import shutil
import socket
import subprocess
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

import requests
import thor
from redbot.resource import HttpResource
from redbot.resource.fetch import RedFetcher, RedHttpClient

ADMIN = ("admin", "admin-password-for-checks")
#: The checks that say the server keeps its document's word.
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)
#: Examples per operation and phase: enough to reach every branch the
#: document describes, small enough for CI.
MAX_EXAMPLES = "25"


def png(size: int) -> bytes:
    """A size x size PNG of noise: big enough (a few KB) that REDbot's range
    check asks for part of it, not all."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\0" + random.Random(row).randbytes(size * 4) for row in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(binary: str, data: str, port: int, assets: str | None) -> subprocess.Popen:
    args = [binary, "--port", str(port), "--data-dir", data]
    args += ["--admin", f"{ADMIN[0]}:{ADMIN[1]}"]
    if assets:
        args += ["--docs-assets", assets]
    server = subprocess.Popen(args, stderr=open(Path(data) / "wren.log", "w"))
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/status", timeout=1).ok:
                return server
        except requests.ConnectionError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("wren did not start")


def sign_in(base: str) -> str:
    answer = requests.post(
        f"{base}/api/sign_in", json={"login": ADMIN[0], "password": ADMIN[1]}, timeout=10
    )
    answer.raise_for_status()
    return answer.json()["token"]


def seed(base: str, token: str) -> dict:
    """Something for each parameterized GET route to find."""
    auth = {"Authorization": f"Bearer {token}"}
    text = b"".join(b"line %d of a file to check\n" % n for n in range(200))
    requests.put(f"{base}/api/file/check.txt", data=text, headers=auth, timeout=10).raise_for_status()
    image = requests.post(
        f"{base}/api/v1/images", files={"image": ("noise.png", png(32), "image/png")}, headers=auth, timeout=10
    )
    image.raise_for_status()
    event = {"type": "deposit", "amount": "42.00", "user_id": 1, "time": 1000}
    requests.post(f"{base}/event", json=event, timeout=10).raise_for_status()
    return {
        "seller_available": "3",
        "month": "june",
        "customer_visiting_website": "120",
        "user_id": "1",
        "key": "check.txt",
        "id": image.json()["id"],
        "file": "swagger-ui.css",
    }


def schemathesis(base: str, header: str, *extra: str) -> bool:
    binary = Path(sys.executable).parent / "schemathesis"
    command = [str(binary), "run", f"{base}/openapi.json", "-H", header]
    command += ["--checks", CHECKS, "--max-examples", MAX_EXAMPLES, "--seed", "1"]
    command += ["--phases", "examples,coverage,fuzzing", *extra]
    print("$", " ".join(command).replace(header, header.split(":")[0] + ": …"), flush=True)
    return subprocess.run(command).returncode == 0


def redbot_notes(url: str, headers: list) -> list:
    # REDbot's fetchers share one HTTP client, which drops its pooled
    # connections only when the first event loop stops. Each check here
    # runs a loop of its own, so from the third on a check would reuse
    # connections the stopped loop no longer watches and wait out the
    # client's 60-second read timeout. A client per check starts clean.
    RedFetcher.client = RedHttpClient()
    config = configparser.ConfigParser()
    config.read_dict({"redbot": {"enable_local_access": "True"}})
    resource = HttpResource(config["redbot"])
    resource.set_request(url, headers=headers)

    @thor.events.on(resource)
    def check_done() -> None:
        thor.stop()

    resource.check()
    thor.run()
    return [
        (note.level.name, note.summary % note.vars if note.vars else note.summary)
        for note in resource.response.notes
    ]


def redbot(base: str, token: str, values: dict, assets: str | None) -> bool:
    spec = requests.get(f"{base}/openapi.json", timeout=10).json()
    ok = True
    for path, item in spec["paths"].items():
        operation = item.get("get")
        if operation is None or (path == "/docs/assets/{file}" and not assets):
            continue
        url = base + path.format(**values)
        headers = [("Authorization", f"Bearer {token}")] if operation.get("security") else []
        bad = [(level, summary) for level, summary in redbot_notes(url, headers) if level in ("WARN", "BAD")]
        print(f"redbot GET {path}: {'ok' if not bad else bad}", flush=True)
        ok = ok and not bad
    return ok


def main() -> int:
    binary = sys.argv[1]
    assets = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("WREN_TEST_DOCS_ASSETS")
    data = tempfile.mkdtemp(prefix="wren-api-check-")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start(binary, data, port, assets)
    try:
        key = subprocess.check_output(
            [binary, "keys", "create", "--data-dir", data, "--name", "checker",
             "--scope", "events,alerts,files", "--account", ADMIN[0]],
            text=True,
        ).strip()
        token = sign_in(base)
        values = seed(base, token)
        results = {
            "schemathesis with a token": schemathesis(
                base, f"Authorization: Bearer {token}", "--exclude-path", "/api/logout"
            ),
            "schemathesis with an API key": schemathesis(
                base, f"X-API-Key: {key}", "--exclude-path", "/api/logout"
            ),
            "redbot": redbot(base, token, values, assets),
            "schemathesis on logout": schemathesis(
                base, f"Authorization: Bearer {sign_in(base)}", "--include-path", "/api/logout"
            ),
        }
    finally:
        server.terminate()
        server.wait(timeout=20)
    for what, passed in results.items():
        print(f"api check: {what}: {'passed' if passed else 'FAILED'}")
    if all(results.values()):
        shutil.rmtree(data, ignore_errors=True)
        return 0
    print(f"api check: wren's log is in {data}/wren.log")
    return 1


if __name__ == "__main__":
    sys.exit(main())
