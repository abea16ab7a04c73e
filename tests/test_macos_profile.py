"""The macOS sandbox-exec profiles (platform/macos_sandbox.py), checked as text and as parsed SBPL: deny by
default, no network rule, exactly the reads, writes and programs each run needs, by their real paths.
They have never been enforced by a real Mac here (docs/testing.md)."""

from __future__ import annotations

import os
import re

import pytest

from sdzero_mlx.platform import macos_sandbox as mac

FRAMEWORK = "/Library/Frameworks/Python.framework/Versions/3.12"
PY = mac.python_paths(f"{FRAMEWORK}/bin/python3.12", FRAMEWORK, "Python")
UV = mac.python_paths("/Users/ann/.local/share/uv/python/cpython-3.12-macos-aarch64-none/bin/python3.12",
                      "/Users/ann/.local/share/uv/python/cpython-3.12-macos-aarch64-none", "")
JOB = "/private/var/folders/x1/abc/T/sdzero-code-1/job3"
CLT = mac.Toolchain("/Library/Developer/CommandLineTools/usr/bin/clang++",
                    "/Library/Developer/CommandLineTools/SDKs/MacOSX.sdk", "/Library/Developer/CommandLineTools")


def parse(text: str) -> list:
    """SBPL (an s-expression per line here) -> nested lists of atoms; strings keep their quotes off."""
    tokens = re.findall(r'\(|\)|"(?:[^"\\]|\\.)*"|[^\s()]+', text)
    stack: list[list] = [[]]
    for tok in tokens:
        if tok == "(":
            stack.append([])
        elif tok == ")":
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(tok[1:-1].replace('\\"', '"').replace("\\\\", "\\") if tok.startswith('"') else tok)
    assert len(stack) == 1, "unbalanced parentheses"
    return stack[0]


def rules(text: str) -> dict[str, list[tuple]]:
    """{operation: [(filter, value), ...]} of the allow rules; asserts the profile's frame on the way."""
    forms = parse(text)
    assert forms[:2] == [["version", "1"], ["deny", "default"]]
    allowed: dict[str, list[tuple]] = {}
    for form in forms[2:]:
        assert form[0] == "allow", f"only allow rules follow the default deny: {form}"
        allowed.setdefault(form[1], []).extend(tuple(f) for f in form[2:])
    return allowed


def values(filters, kind: str) -> set[str]:
    return {f[1] for f in filters if f[0] == kind}


def test_a_python_run_reads_the_interpreter_system_libraries_and_its_job_only():
    allowed = rules(mac.profile(mac.python_run(PY, JOB, JOB + "/w")))
    assert values(allowed["file-read*"], "subpath") == {FRAMEWORK, JOB, *mac.SYSTEM_READS}
    assert values(allowed["file-read*"], "literal") == {*PY.executables, *mac.DEVICES_READ}
    assert {f[0] for f in allowed["file-read*"]} == {"subpath", "literal"}
    assert values(allowed["file-map-executable"], "subpath") == {FRAMEWORK, *mac.SYSTEM_CODE}
    # metadata (stat, realpath) only on the way to what it may read: "/", "/Users", ... never a folder's contents
    assert {f[0] for f in allowed["file-read-metadata"]} == {"literal"}
    assert "/private/var/folders/x1/abc/T" in values(allowed["file-read-metadata"], "literal")


def test_a_python_run_writes_only_its_working_folder_and_dev_null():
    allowed = rules(mac.profile(mac.python_run(PY, JOB, JOB + "/w")))
    assert sorted(allowed["file-write*"]) == [("literal", "/dev/null"), ("subpath", JOB + "/w")]
    assert [op for op in allowed if "write" in op] == ["file-write*"]


def test_a_python_run_may_exec_the_interpreter_and_python_app_but_not_fork():
    """python.org's bin/python3.12 re-executes Resources/Python.app/Contents/MacOS/Python."""
    allowed = rules(mac.profile(mac.python_run(PY, JOB, JOB + "/w")))
    assert allowed["process-exec"] == [("literal", f"{FRAMEWORK}/bin/python3.12"),
                                       ("literal", f"{FRAMEWORK}/Resources/Python.app/Contents/MacOS/Python")]
    assert "process-fork" not in allowed
    assert rules(mac.profile(mac.python_run(UV, JOB, JOB + "/w")))["process-exec"] == [("literal", UV.executables[0])]


def test_no_profile_has_a_network_rule():
    for allowed in (mac.python_run(PY, JOB, JOB + "/w"), mac.program_run(JOB + "/w/prog", JOB, JOB + "/w"),
                    mac.compile_run(CLT, JOB, JOB + "/w")):
        text = mac.profile(allowed)
        assert "network" not in text and "mach-lookup" not in text
        assert not any(op.startswith(("network", "mach", "ipc", "iokit")) for op in rules(text))


def test_signals_and_process_information_reach_only_the_run_itself():
    allowed = rules(mac.profile(mac.python_run(PY, JOB, JOB + "/w")))
    assert allowed["signal"] == [("target", "self")] and allowed["process-info*"] == [("target", "self")]
    assert not any(f[1].startswith("kern.proc") for f in allowed["sysctl-read"])  # kern.proc*, kern.procargs2: others' arguments


def test_a_compiled_program_may_exec_only_itself():
    allowed = rules(mac.profile(mac.program_run(JOB + "/w/prog", JOB, JOB + "/w")))
    assert allowed["process-exec"] == [("literal", JOB + "/w/prog")]
    assert values(allowed["file-read*"], "subpath") == {JOB, *mac.SYSTEM_READS}
    assert "process-fork" not in allowed


def test_the_compile_profile_opens_the_toolchain_and_sdk_and_may_fork():
    allowed = rules(mac.profile(mac.compile_run(CLT, JOB, JOB + "/w")))
    assert allowed["process-fork"] == []
    assert allowed["process-exec"] == [("literal", CLT.clang), ("subpath", CLT.developer_folder)]
    assert values(allowed["file-read*"], "subpath") == {CLT.developer_folder, JOB, *mac.SYSTEM_READS}
    assert CLT.developer_folder in values(allowed["file-map-executable"], "subpath")
    assert sorted(allowed["file-write*"]) == [("literal", "/dev/null"), ("subpath", JOB + "/w")]
    xcode = mac.Toolchain("/Applications/Xcode.app/Contents/Developer/Toolchains/XcodeDefault.xctoolchain/usr/bin/clang++",
                          "/Library/Developer/SDKs/MacOSX15.sdk", "/Applications/Xcode.app/Contents/Developer")
    reads = values(rules(mac.profile(mac.compile_run(xcode, JOB, JOB + "/w")))["file-read*"], "subpath")
    assert reads == {xcode.developer_folder, "/Library/Developer/SDKs/MacOSX15.sdk", JOB, *mac.SYSTEM_READS}


def test_paths_are_named_by_their_real_path(tmp_path):
    """/var/folders is /private/var/folders on a Mac: a rule on the symlinked path would match nothing."""
    real = tmp_path / "real" / "job0"
    (real / "w").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    allowed = rules(mac.profile(mac.python_run(PY, str(tmp_path / "link" / "job0"), str(tmp_path / "link" / "job0" / "w"))))
    assert str(real) in values(allowed["file-read*"], "subpath")
    assert ("subpath", str(real / "w")) in allowed["file-write*"]
    assert not any("link" in f[1] for op in allowed.values() for f in op if len(f) > 1)


def test_the_users_home_and_the_data_volume_are_not_readable():
    allowed = rules(mac.profile(mac.python_run(UV, JOB, JOB + "/w")))
    reads = values(allowed["file-read*"], "subpath")
    assert not any(r == "/Users" or r == "/Users/ann" or r.startswith("/System/Volumes/Data") for r in reads)
    # the uv install under ~ is readable, ~ itself only as a step on the way (metadata of the folder, not its files)
    assert UV.prefix in reads and "/Users/ann" in values(allowed["file-read-metadata"], "literal")


def test_quotes_in_paths_cannot_end_a_string():
    allowed = rules(mac.profile(mac.python_run(PY, '/tmp/a"b', '/tmp/a"b/w')))
    assert ("subpath", os.path.realpath('/tmp/a"b/w')) in allowed["file-write*"]


def test_a_profile_without_a_program_is_refused():
    with pytest.raises(ValueError, match="needs the program it runs"):
        mac.Allowed((), (), (), (), (), fork=False)
