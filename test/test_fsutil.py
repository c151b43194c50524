from pathlib import Path

import pytest

from pipeline.fsutil import atomic_write


def test_atomic_write_renames_on_success(tmp_path: Path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_write(target) as tmp:
        assert tmp.suffix == ".txt" and tmp != target
        tmp.write_text("done")
        assert not target.exists()
    assert target.read_text() == "done"
    assert list(target.parent.iterdir()) == [target]


def test_atomic_write_leaves_nothing_on_error(tmp_path: Path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_write_uses_umask_permissions(tmp_path: Path):
    import os

    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "p.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "p.txt").stat().st_mode & 0o777 == 0o644


def _holder(folder: Path, shared: bool = False):
    """A separate process that takes the folder lock and keeps it until killed; returns once it holds it."""
    import subprocess
    import sys

    code = ("import sys, time\nfrom pipeline.fsutil import folder_lock\n"
            f"with folder_lock({str(folder)!r}, shared={shared}):\n    print('held', flush=True)\n    time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_folder_lock_waits_for_another_process_and_survives_its_death(tmp_path: Path, caplog):
    """A held lock makes the next writer wait (with a message); a SIGKILLed holder's lock is released."""
    import logging
    import threading

    from pipeline.fsutil import folder_lock

    holder = _holder(tmp_path / "stage")
    acquired = threading.Event()

    def take():
        with folder_lock(tmp_path / "stage"):
            acquired.set()

    with caplog.at_level(logging.INFO, logger="pipeline"):
        waiter = threading.Thread(target=take)
        waiter.start()
        assert not acquired.wait(1.0), "the lock must not be granted while another process holds it"
        holder.kill()  # SIGKILL: no clean-up runs; the kernel drops the lock with the process
        holder.wait()
        waiter.join(30)
    assert acquired.is_set()
    assert "another run is writing" in caplog.text and str(tmp_path / "stage") in caplog.text
    assert list((tmp_path / "stage").iterdir()) == []  # the lock leaves no file behind


def test_shared_lock_is_a_no_op_for_a_missing_folder_and_waits_for_a_writer(tmp_path: Path):
    import threading

    from pipeline.fsutil import folder_lock

    with folder_lock(tmp_path / "absent", shared=True):
        pass
    assert not (tmp_path / "absent").exists()
    (tmp_path / "stage").mkdir()
    readers = _holder(tmp_path / "stage", shared=True)
    with folder_lock(tmp_path / "stage", shared=True):  # readers share
        pass
    done = threading.Event()

    def write():
        with folder_lock(tmp_path / "stage"):
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    assert not done.wait(1.0)  # a writer waits for the reader
    readers.kill()
    readers.wait()
    writer.join(30)
    assert done.is_set()


def test_a_waiter_follows_a_folder_removed_and_recreated_by_the_holder(tmp_path: Path):
    """The holder removes the (empty) folder while another waits: the waiter must end up holding the lock
    of the folder now at that path, not of the deleted one (else a third run could write there unlocked)."""
    import fcntl
    import os
    import threading
    import time

    from pipeline.fsutil import folder_lock, remove_if_empty

    folder = tmp_path / "stage"
    seen = []

    def wait_then_probe():
        with folder_lock(folder):
            probe = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)  # what a third run would lock
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                seen.append("free")
            except BlockingIOError:
                seen.append("held")
            finally:
                os.close(probe)

    with folder_lock(folder):
        waiter = threading.Thread(target=wait_then_probe)
        waiter.start()
        time.sleep(0.5)  # the waiter now blocks on this folder
        remove_if_empty(folder)
        assert not folder.exists()
    waiter.join(30)
    assert seen == ["held"]
