"""GNU timeout's job for a machine without it (macOS): run a command, stop it and its children after a limit.

    python3 scripts/timeout.py SECONDS COMMAND [ARG...]

Exit status: the command's, or 124 when the limit passed (as GNU timeout). The command runs in its own
process group, which gets SIGTERM at the limit and SIGKILL 5 s later, so a `bash -c` step's children
stop with it. scripts/gpu_check.sh uses it when neither `timeout` nor Homebrew's `gtimeout` is found.
"""

import os
import signal
import subprocess
import sys


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: timeout.py SECONDS COMMAND [ARG...]")
    limit, command = float(sys.argv[1]), sys.argv[2:]
    child = subprocess.Popen(command, start_new_session=True)
    try:
        sys.exit(child.wait(timeout=limit))
    except subprocess.TimeoutExpired:
        stop(child)
        sys.exit(124)
    except KeyboardInterrupt:  # its own session does not get the terminal's Ctrl-C: pass it on
        stop(child)
        sys.exit(130)


def stop(child):
    """SIGTERM to the command's process group, SIGKILL to what is left of it 5 s later (or once it ended)."""
    try:
        os.killpg(child.pid, signal.SIGTERM)
    except ProcessLookupError:  # it ended just now
        return
    try:
        child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:  # the whole group is gone
        pass


if __name__ == "__main__":
    main()
