"""``imgstack sync`` that one bad file cannot stop (issue points 1 and 5), against the REAL S3 server.

The tests run as root, where ``chmod 000`` does not stop reading: unreadable files are made with
what root cannot read either (``/proc/self/mem`` at offset 0: EIO), or by replacing / removing a
file between the scan and the hashing, as another process would.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from thumbor_plugins.sync import S3Location, Syncer, SyncJob
from thumbor_plugins.sync._checksum import Hasher, LocalFile

from .conftest import BUCKET
from .test_sync import cache_dir, listing, make_tree, run, summary  # noqa: F401 - fixtures

UNREADABLE = "/proc/self/mem"  # a regular file of size 0 whose first byte cannot be read, even by root


def test_unreadable_files_are_reported_one_line_each_and_the_rest_syncs(run, s3, uid, tmp_path):  # noqa: F811 - fixtures imported from test_sync
    root = make_tree(tmp_path / "photos", {"a.jpg": b"aaa", "sub/b.jpg": b"bb"})
    (root / "locked.jpg").symlink_to(UNREADABLE)      # already in the bucket at the same size (0)
    (root / "new-locked.jpg").symlink_to(UNREADABLE)  # not in the bucket yet
    s3.put_object(Bucket=BUCKET, Key=f"{uid}/locked.jpg", Body=b"")
    s3.put_object(Bucket=BUCKET, Key=f"{uid}/extra.jpg", Body=b"x")
    dest = f"s3://{BUCKET}/{uid}/"

    dry = run(root, dest, "--delete", "--dry-run")
    assert dry.exit_code == 1, dry.output  # the real run would fail: the dry run says so
    assert "cannot read 'locked.jpg': Input/output error" in dry.stdout
    assert "cannot read 'new-locked.jpg': Input/output error" in dry.stdout
    assert "upload 'a.jpg' (new, 3 bytes)" in dry.stdout
    assert sorted(listing(s3, f"{uid}/")) == ["extra.jpg", "locked.jpg"]

    result = run(root, dest, "--delete")
    assert result.exit_code == 1, result.output
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed to ")]
    assert sorted(failed) == ["failed to read 'locked.jpg': Input/output error",
                              "failed to upload 'new-locked.jpg': Input/output error"]
    assert summary(result) == "uploaded 2, deleted 1, unchanged 0, bytes 5, failed 2"
    assert sorted(listing(s3, f"{uid}/")) == ["a.jpg", "locked.jpg", "sub/b.jpg"]  # locked.jpg kept


class RaceHasher(Hasher):
    """Does to ``victim``, just before hashing it, what another process could do at that moment."""

    def __init__(self, victim: Path, action) -> None:
        super().__init__()
        self.victim = victim
        self.action = action
        self.done = False

    def md5(self, file: LocalFile) -> str:
        if file.path == self.victim and not self.done:
            self.done = True
            self.action(self.victim)
        return super().md5(file)


def _to_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)  # opening it for reading would block forever


def _to_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _rewrite(path: Path) -> None:
    path.write_bytes(b"VICTIM!")  # same size, new content, new mtime


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("action", "message"), [
    (Path.unlink, "No such file or directory"),
    (_to_fifo, "not a regular file any more"),
    (_to_folder, "Is a directory"),
    (_rewrite, "changed since the scan"),
])
def test_file_vanishing_or_replaced_between_scan_and_hashing(s3, uid, tmp_path, action, message):
    root = make_tree(tmp_path / "photos", {"victim.jpg": b"victim!", "new.jpg": b"new"})
    s3.put_object(Bucket=BUCKET, Key=f"{uid}/victim.jpg", Body=b"victim?")  # same size: hashed
    job = SyncJob("push", root, S3Location(BUCKET, f"{uid}/"), delete=True)
    outcome = Syncer(job, s3, hasher=RaceHasher(root / "victim.jpg", action)).run()
    assert outcome.failures == [("victim.jpg", message)]
    assert outcome.transferred == ["new.jpg"] and outcome.deleted == []
    # a file that vanished is not deleted from the bucket in that run
    assert sorted(listing(s3, f"{uid}/")) == ["new.jpg", "victim.jpg"]


def test_files_renamed_during_the_run_fail_alone(run, s3, uid, tmp_path):  # noqa: F811 - fixtures imported from test_sync
    steady = {f"steady/{i}.jpg": b"s%03d" % i for i in range(20)}
    movers = {f"m{i}.jpg": b"moving %02d" % i for i in range(20)}
    root = make_tree(tmp_path / "photos", {**steady, **movers})
    dest = f"s3://{BUCKET}/{uid}/"
    for rel, data in movers.items():  # in the bucket at the same size: the planner hashes them
        s3.put_object(Bucket=BUCKET, Key=f"{uid}/{rel}", Body=data.upper())
    stop = threading.Event()

    def keep_renaming():  # another process renaming files back and forth, as fast as it can
        while not stop.is_set():
            for rel in movers:
                a, b = root / rel, root / (rel + ".part")
                for src, dst in ((a, b), (b, a)):
                    try:
                        os.rename(src, dst)
                    except FileNotFoundError:
                        pass

    renamer = threading.Thread(target=keep_renaming)
    renamer.start()
    try:
        for _ in range(6):
            result = run(root, dest)  # fails the test on a traceback
            assert result.exit_code in (0, 1), result.output
            for line in result.stderr.splitlines():
                if line.startswith("failed to "):
                    assert line.split("'")[1].removesuffix(".part") in movers, line
            assert set(steady) <= set(listing(s3, f"{uid}/"))
    finally:
        stop.set()
        renamer.join()
    for rel in movers:  # the renamed files are where they started: the next run syncs them all
        if not (root / rel).exists():
            os.rename(root / (rel + ".part"), root / rel)
    final = run(root, dest)
    assert final.exit_code == 0, final.output


def test_symlinked_folders_and_dangling_symlinks_get_one_notice_each(run, s3, uid, tmp_path):  # noqa: F811 - fixtures imported from test_sync
    elsewhere = make_tree(tmp_path / "elsewhere", {"x.jpg": b"x"})
    root = make_tree(tmp_path / "photos", {"a.jpg": b"a"})
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "dangling.jpg").symlink_to(tmp_path / "missing.jpg")
    os.mkfifo(root / "pipe")
    dest = f"s3://{BUCKET}/{uid}/"
    result = run(root, dest)
    assert result.exit_code == 0, result.output
    notices = sorted(line for line in result.stderr.splitlines() if line.startswith("notice: "))
    assert notices == [
        f"notice: skipping 'dangling.jpg': dangling symlink (to {str(tmp_path / 'missing.jpg')!r})",
        "notice: skipping 'linked': symlinked folder (see --follow-symlinks)",
        "notice: skipping 'loop': symlinked folder (see --follow-symlinks)",
        "notice: skipping 'pipe': not a regular file",
    ]
    assert sorted(listing(s3, f"{uid}/")) == ["a.jpg"]

    followed = run(root, dest, "--follow-symlinks")
    assert followed.exit_code == 0, followed.output
    assert "notice: skipping 'loop': symlink to a folder already synced (a loop?)" in followed.stderr
    assert sorted(listing(s3, f"{uid}/")) == ["a.jpg", "linked/x.jpg"]


def test_pull_sets_each_files_mtime_to_the_objects_last_modified(run, s3, uid, tmp_path):  # noqa: F811 - fixtures imported from test_sync
    for rel in ("a.jpg", "sub/b.jpg"):
        s3.put_object(Bucket=BUCKET, Key=f"{uid}/{rel}", Body=b"data")
    folder = tmp_path / "mirror"
    result = run(f"s3://{BUCKET}/{uid}/", folder)
    assert result.exit_code == 0, result.output
    for rel in ("a.jpg", "sub/b.jpg"):
        modified = s3.head_object(Bucket=BUCKET, Key=f"{uid}/{rel}")["LastModified"].timestamp()
        assert (folder / rel).stat().st_mtime == pytest.approx(modified, abs=1e-3)
