"""rundir's lock on a filesystem without flock: only EWOULDBLOCK (EAGAIN) means another process writes the
folder. SMB and exFAT mounts (macOS's external drives among them) answer ENOLCK, EOPNOTSUPP / ENOTSUP or
EINVAL: the run goes on without the one-writer check, and says so once (rundir.py's docstring)."""

from __future__ import annotations

import errno
import fcntl
import os

import pytest

from sdzero_mlx import rundir

UNSUPPORTED = sorted({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL})


@pytest.fixture
def flock_failing(monkeypatch):
    """fcntl.flock raising `code` on the lock attempt (LOCK_EX), as the mount would; unlock calls are counted."""
    real, calls = fcntl.flock, []

    def install(code: int):
        def flock(fd, op):
            calls.append(op)
            if op & fcntl.LOCK_EX:
                raise OSError(code, os.strerror(code))
            return real(fd, op)

        monkeypatch.setattr(fcntl, "flock", flock)
        return calls

    return install


@pytest.mark.parametrize("code", UNSUPPORTED, ids=[errno.errorcode[c] for c in UNSUPPORTED])
def test_a_filesystem_without_flock_is_not_called_busy(flock_failing, tmp_path, capsys, code):
    calls = flock_failing(code)
    run = tmp_path / "run"
    with rundir.RunDir(run).writing():
        with rundir.RunDir(run).writing():  # nested takes are free, as with a real lock
            pass
    err = capsys.readouterr().err
    assert err.count("warning:") == 1, err
    assert f"cannot lock {run}" in err and "does not support file locks" in err and "one command at a time" in err
    assert fcntl.LOCK_UN not in calls  # nothing was locked, so nothing is unlocked
    assert run.resolve() not in rundir._held and (run / rundir.LOCK).is_file()
    with rundir.RunDir(run).writing():  # taken again after the release: no error, no second warning for this folder
        pass
    assert "warning:" not in capsys.readouterr().err


def test_only_ewouldblock_means_another_writer(flock_failing, tmp_path):
    flock_failing(errno.EWOULDBLOCK)
    with pytest.raises(rundir.RunDirBusy, match="being written by another process"):
        rundir.lock_run_dir(tmp_path / "run")


def test_another_error_is_reported_as_itself(flock_failing, tmp_path):
    flock_failing(errno.EIO)
    with pytest.raises(OSError, match="Input/output error") as err:
        rundir.lock_run_dir(tmp_path / "run")
    assert not isinstance(err.value, rundir.RunDirBusy) and (tmp_path / "run").resolve() not in rundir._held
