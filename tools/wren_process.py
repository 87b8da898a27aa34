"""Starting the wren under test, for the tools that drive one
(tools/chaos.py, tools/soak.py): on a free port (`--port 0`), its stderr
appended to a log file, ready once the log names the port it listens on.
"""

import re
import subprocess
import time

START_TIMEOUT = 30.0  # seconds for wren to say where it listens
LISTENING = re.compile(r"listening on (https?)://127\.0\.0\.1:(\d+)")


class StartFailed(Exception):
    """wren exited, or said nothing, before listening; the message has the
    log's tail."""


def start(command, log_path, env=None):
    """Starts `command` (a wren with `--host 127.0.0.1 --port 0`), its
    stderr appended to `log_path`; returns (process, port, base URL) once
    the log, from where this start began, names the port."""
    with open(log_path, "a") as log:
        offset = log.tell()
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        with open(log_path, errors="replace") as log:
            log.seek(offset)
            match = LISTENING.search(log.read())
        if match:
            scheme, port = match.group(1), int(match.group(2))
            return process, port, f"{scheme}://127.0.0.1:{port}"
        if process.poll() is not None:
            raise StartFailed(f"wren exited with status {process.returncode} at start:\n{log_tail(log_path)}")
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise StartFailed(f"wren did not say it was listening within {START_TIMEOUT:g}s:\n{log_tail(log_path)}")


def log_tail(log_path, lines=15):
    """The log's last `lines` lines, indented for a report."""
    text = log_path.read_text(errors="replace").splitlines()
    return "\n".join("    " + line for line in text[-lines:])
