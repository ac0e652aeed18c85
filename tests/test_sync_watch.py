"""``imgstack sync --watch`` (issue points 2 and 3): only complete files, one upload each; retries
after an S3 outage; a periodic full reconcile. Real S3 servers, the CLI in its own process."""

from __future__ import annotations

import os
import time

import pytest

from thumbor_plugins import embedded

from .conftest import BUCKET
from .test_sync import KEY, listing, make_tree, start_watch, stop_watch, wait_for


@pytest.mark.timeout(90)
def test_watch_uploads_a_slowly_written_file_once(s3_server, s3, uid, tmp_path):
    root = tmp_path / "watched"
    root.mkdir()
    stderr, stdout = tmp_path / "stderr.log", tmp_path / "stdout.log"
    proc = start_watch(s3_server, tmp_path, root, f"s3://{BUCKET}/{uid}/", "--debounce", "1000", "-v",
                       "--print-urls", SECURITY_KEY=KEY, IMGSTACK_URL="https://img.example.com")
    try:
        wait_for(lambda: "watching" in stderr.read_text(), 30, "the watcher to start")
        data = os.urandom(3 * 1024 * 1024)
        chunk = len(data) // 16
        with open(root / "slow.jpg", "wb") as out:  # 16 chunks over ~3.5 s, as a slow camera upload
            for i in range(16):
                out.write(data[i * chunk:(i + 1) * chunk])
                out.flush()
                time.sleep(0.22)
        wait_for(lambda: "slow.jpg" in listing(s3, f"{uid}/"), 20, "the finished file in the bucket")
        time.sleep(2.5)  # a second upload would come within this
        assert stop_watch(proc) == 0, stderr.read_text()
    finally:
        if proc.poll() is None:
            stop_watch(proc)
    assert s3.get_object(Bucket=BUCKET, Key=f"{uid}/slow.jpg")["Body"].read() == data
    log = stderr.read_text()
    assert log.count("upload 'slow.jpg'") == 1, log
    urls = stdout.read_text().splitlines()
    assert len(urls) == 1 and urls[0].startswith("https://img.example.com/"), urls


@pytest.mark.timeout(150)
def test_watch_retries_after_an_s3_outage_and_reconciles(s3, uid, tmp_path):
    data_dir, port = tmp_path / "own-s3", embedded.free_port(with_grpc=True)
    server = embedded.start_s3(data_dir, s3_port=port)
    proc = None
    try:
        embedded.ensure_buckets(server.endpoint_url, server.access_key, server.secret_key, [BUCKET])
        own = server
        from thumbor_plugins.s3.settings import S3Settings
        from thumbor_plugins.s3.sync import client

        def own_client():
            return client(S3Settings(endpoint_url=own.endpoint_url, access_key=own.access_key,
                                     secret_key=own.secret_key))

        root = make_tree(tmp_path / "watched", {"before.jpg": b"before"})
        os.utime(root / "before.jpg", (time.time() - 60, time.time() - 60))
        stderr = tmp_path / "stderr.log"
        proc = start_watch(server, tmp_path, root, f"s3://{BUCKET}/{uid}/", "--debounce", "300",
                           "--reconcile", "3")
        wait_for(lambda: "watching" in stderr.read_text(), 30, "the watcher to start")
        assert list(listing(own_client(), f"{uid}/")) == ["before.jpg"]

        server.stop()  # S3 only: the watcher keeps running
        make_tree(root, {"during outage.jpg": b"added while S3 was down"})
        wait_for(lambda: "cannot reach S3" in stderr.read_text(), 30, "a failed attempt")
        time.sleep(2)
        server = own = embedded.start_s3(data_dir, s3_port=port)
        wait_for(lambda: "during outage.jpg" in listing(own_client(), f"{uid}/"), 30,
                 "the file added during the outage, after S3 came back")

        # no local event at all: the periodic reconcile puts back an object removed by someone else
        own_client().delete_object(Bucket=BUCKET, Key=f"{uid}/before.jpg")
        wait_for(lambda: "before.jpg" in listing(own_client(), f"{uid}/"), 20, "the reconcile")
        assert stop_watch(proc) == 0, stderr.read_text()
        assert "Traceback" not in stderr.read_text()
    finally:
        if proc is not None and proc.poll() is None:
            stop_watch(proc)
        server.stop()
