"""platform/facts.py: the one place platform questions are answered, and its simulation for tests."""

import os
import platform
import re
import sys

from sdzero_mlx.platform.facts import facts, simulated


def test_facts_read_this_machine():
    f = facts()
    assert f.linux == sys.platform.startswith("linux")
    assert f.euid == os.geteuid()
    assert f.root == (os.geteuid() == 0)
    assert f.python == tuple(sys.version_info[:2])


def test_simulated_answers_inside_the_block_and_restores_after():
    real = facts()
    with simulated(system="darwin", machine="arm64", euid=501) as mac:
        assert facts() == mac
        assert facts().macos and not facts().linux and not facts().root
        assert facts().machine == "arm64"
        with simulated(euid=0):  # nested: changes only what it names
            assert facts().macos and facts().root
        assert not facts().root
    assert facts() == real


def test_the_kernel_release_decides_how_rlimit_nproc_counts():
    """Linux >= 5.14 counts RLIMIT_NPROC per user namespace (the sandbox's per-run limit); before, per user."""
    if facts().linux:
        major, minor = platform.release().split(".")[:2]
        assert facts().kernel == (int(major), int(re.match(r"\d+", minor)[0]))
    with simulated(system="linux", kernel=(5, 13)):
        assert not facts().nproc_per_user_namespace
    with simulated(system="linux", kernel=(5, 14)):
        assert facts().nproc_per_user_namespace
    with simulated(system="darwin", kernel=(0, 0)):
        assert not facts().nproc_per_user_namespace
