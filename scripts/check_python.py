"""Whether this Python can install sdzero-mlx: run by `make` before it creates the venv and calls pip.

    python3 scripts/check_python.py [GOAL]     silent (exit 0), or one line naming the fix (exit 1)

Without it pip fails deep inside: Apple's Python 3.9 (the Command Line Tools' `python3`) on
`requires-python`, and an x86-64 Python on a Mac (an Intel build, run under Rosetta on Apple silicon)
finds no MLX wheel, as MLX publishes macOS wheels for arm64 only. It runs under whatever interpreter
`make` was given, so it stays plain Python 3; the platform comes from sdzero_mlx/platform/facts.py,
which tests simulate.
"""

import os
import platform
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _minimum():
    """(major, minor) of pyproject.toml's requires-python (">=3.10")."""
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        found = re.search(r'requires-python\s*=\s*">=(\d+)\.(\d+)"', f.read())
    return int(found.group(1)), int(found.group(2))


MINIMUM = _minimum()


def _facts():
    """(system, machine, (major, minor)) from facts(); read directly where that module cannot load (Python < 3.7)."""
    sys.path.insert(0, ROOT)
    try:
        from sdzero_mlx.platform.facts import facts
    except (ImportError, SyntaxError):
        return sys.platform, platform.machine(), tuple(sys.version_info[:2])
    f = facts()
    return f.system, f.machine, f.python


def _apple(executable):
    """Whether this is the Python of Apple's Command Line Tools or Xcode (/usr/bin/python3 runs it)."""
    return executable.startswith("/usr/bin/") or "CommandLineTools" in executable or "Xcode" in executable


def problem(goal, executable):
    """One line saying why `make GOAL` cannot install with this Python and what to run instead, or None."""
    system, machine, python = _facts()
    if tuple(python) < MINIMUM:
        whose = " (Apple's, from the Command Line Tools)" if system == "darwin" and _apple(executable) else ""
        return ("error: sdzero-mlx needs Python >= %d.%d, but %s is Python %d.%d%s. Install Python 3.12 (python.org, or "
                "Homebrew on a Mac: brew install python@3.12) and run: make %s PYTHON=python3.12"
                % (MINIMUM + (executable,) + tuple(python) + (whose, goal)))
    if system == "darwin" and machine != "arm64":
        arch = "x86-64" if machine == "x86_64" else machine
        return ("error: %s is an %s Python (an Intel build, or run under Rosetta on Apple silicon), and MLX publishes "
                "macOS wheels for arm64 only, so pip would find none. Install an arm64 Python (python.org's universal2 "
                "installer, or Homebrew in /opt/homebrew) and run: make %s PYTHON=/opt/homebrew/bin/python3.12"
                % (executable, arch, goal))
    return None


def main():
    goal = sys.argv[1] if len(sys.argv) > 1 else "setup"
    text = problem(goal, sys.executable)
    if text:
        sys.stderr.write(text + "\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
