"""The persistent hash cache (issue point 4): a no-op run reads no file whose identity is
unchanged; same-size edits that keep the old mtime are still caught; ``--checksum`` reads all."""

from __future__ import annotations

import os

from thumbor_plugins.sync import S3Location, Syncer, SyncJob
from thumbor_plugins.sync._cache import HashCache, cache_file
from thumbor_plugins.sync._checksum import Hasher

from .conftest import BUCKET
from .test_sync import cache_dir, make_tree, run, summary  # noqa: F401 - fixtures


def syncer(s3, root, uid, cache_path, **job):
    """A Syncer as a new ``imgstack sync`` process builds it: the cache loaded from its file."""
    job = SyncJob("push", root, S3Location(BUCKET, f"{uid}/"), multipart_threshold=5 << 20, part_size=5 << 20, **job)
    return Syncer(job, s3, hasher=Hasher(HashCache.load(cache_path), verify=job.checksum))


def test_noop_run_reads_no_file_with_the_persistent_cache(s3, uid, tmp_path):
    big = os.urandom(11 << 20)  # multipart: its ETag costs a full read to recompute
    root = make_tree(tmp_path / "photos", {"big.avif": big, **{f"s/{i}.jpg": b"%d" % i for i in range(50)}})
    cache_path = tmp_path / "cache.json"
    first = syncer(s3, root, uid, cache_path)
    assert len(first.run().transferred) == 51
    second = syncer(s3, root, uid, cache_path)  # learns the multipart ETag: one read of big.avif
    assert second.run().unchanged == 51
    third = syncer(s3, root, uid, cache_path)
    outcome = third.run()
    assert outcome.unchanged == 51 and not outcome.transferred
    assert (third.hasher.bytes_read, third.hasher.files_hashed, third.checker.heads) == (0, 0, 0)

    forced = syncer(s3, root, uid, cache_path, checksum=True)
    assert forced.run().unchanged == 51
    assert forced.hasher.files_hashed == 51 and forced.hasher.bytes_read >= 2 * len(big)


def test_same_size_edit_keeping_the_old_mtime_is_caught(run, s3, uid, tmp_path, cache_dir, monkeypatch):  # noqa: F811 - fixtures imported from test_sync
    monkeypatch.setenv("IMGSTACK_SYNC_CACHE_DIR", str(cache_dir))  # for cache_file() here
    root = make_tree(tmp_path / "photos", {"a.jpg": b"original", "b.jpg": b"b"})
    dest = f"s3://{BUCKET}/{uid}/"
    assert run(root, dest).exit_code == 0
    assert cache_file(root).parent == cache_dir and cache_file(root).is_file()  # outside the folder
    assert summary(run(root, dest)) == "uploaded 0, deleted 0, unchanged 2, bytes 0"
    before = (root / "a.jpg").stat()
    (root / "a.jpg").write_bytes(b"ORIGINAL")
    os.utime(root / "a.jpg", ns=(before.st_atime_ns, before.st_mtime_ns))  # same size, same mtime
    result = run(root, dest, "-v")
    assert "upload 'a.jpg' (content, 8 bytes)" in result.stderr
    assert s3.get_object(Bucket=BUCKET, Key=f"{uid}/a.jpg")["Body"].read() == b"ORIGINAL"
    os.utime(root / "b.jpg")  # touched only: read again, not uploaded
    assert summary(run(root, dest)) == "uploaded 0, deleted 0, unchanged 2, bytes 0"


def test_a_corrupt_cache_is_ignored(run, s3, uid, tmp_path, cache_dir, monkeypatch):  # noqa: F811 - fixtures imported from test_sync
    monkeypatch.setenv("IMGSTACK_SYNC_CACHE_DIR", str(cache_dir))
    root = make_tree(tmp_path / "photos", {"a.jpg": b"a"})
    dest = f"s3://{BUCKET}/{uid}/"
    assert run(root, dest).exit_code == 0
    cache_file(root).write_text("{not json")
    assert summary(run(root, dest)) == "uploaded 0, deleted 0, unchanged 1, bytes 0"
