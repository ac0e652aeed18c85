"""``imgstack sync`` against the REAL S3 server (SeaweedFS), through the CLI."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from thumbor_plugins.cli import main
from thumbor_plugins.urls import Signer, verify_request

from .conftest import BUCKET

KEY = "sync-test-key"


def sync_env(s3_server, **overrides) -> dict:
    env = {
        "AWS_ENDPOINT_URL": s3_server.endpoint_url,
        "AWS_ENDPOINT_URL_S3": None,
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_REGION": "us-east-1",
        "SECURITY_KEY": None,
        "IMGSTACK_URL": None,
        "IMGSTACK_SIGNATURE_ALGORITHM": None,
        "IMGSTACK_SYNC_MULTIPART_THRESHOLD": None,
        "IMGSTACK_SYNC_PART_SIZE": None,
    }
    env.update(overrides)
    return env


@pytest.fixture
def cache_dir(tmp_path_factory) -> Path:
    """This test's hash cache folder (never the user's)."""
    return tmp_path_factory.mktemp("sync-cache")


@pytest.fixture
def run(s3_server, cache_dir):
    def run(*args, **env):
        env = {"IMGSTACK_SYNC_CACHE_DIR": str(cache_dir), **env}
        result = CliRunner().invoke(main, ["sync", *map(str, args)], env=sync_env(s3_server, **env))
        assert "Traceback" not in result.output
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result
    return run


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root.joinpath(*rel.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def listing(s3, prefix: str) -> dict[str, dict]:
    objects = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", ()):
            objects[item["Key"][len(prefix):]] = item
    return objects


def summary(result) -> str:
    return result.stderr.strip().splitlines()[-1]


FILES = {"a.jpg": b"jpeg bytes", "sub/b.webp": b"webp bytes!", "sub/deep/c.avif": b"avif", "notes.txt": b"text"}


def test_first_sync_uploads_all_then_nothing(run, s3, uid, tmp_path):
    root = make_tree(tmp_path / "photos", FILES)
    dest = f"s3://{BUCKET}/{uid}/"
    first = run(root, dest)
    assert first.exit_code == 0, first.output
    assert summary(first) == f"uploaded 4, deleted 0, unchanged 0, bytes {sum(map(len, FILES.values()))}"
    objects = listing(s3, f"{uid}/")
    assert sorted(objects) == sorted(FILES)
    for rel, data in FILES.items():
        head = s3.head_object(Bucket=BUCKET, Key=f"{uid}/{rel}")
        assert head["Metadata"]["md5"] == hashlib.md5(data).hexdigest()
        assert head["ContentLength"] == len(data)
    types = {rel: s3.head_object(Bucket=BUCKET, Key=f"{uid}/{rel}")["ContentType"] for rel in FILES}
    assert types == {"a.jpg": "image/jpeg", "sub/b.webp": "image/webp", "sub/deep/c.avif": "image/avif",
                     "notes.txt": "text/plain"}

    time.sleep(1.1)  # LastModified has one-second resolution
    second = run(root, dest)
    assert second.exit_code == 0, second.output
    assert summary(second) == "uploaded 0, deleted 0, unchanged 4, bytes 0"
    after = listing(s3, f"{uid}/")
    assert {k: v["LastModified"] for k, v in after.items()} == {k: v["LastModified"] for k, v in objects.items()}


def test_one_changed_file_one_upload(run, s3, uid, tmp_path):
    root = make_tree(tmp_path / "photos", FILES)
    dest = f"s3://{BUCKET}/{uid}"
    assert run(root, dest).exit_code == 0
    before = listing(s3, f"{uid}/")
    time.sleep(1.1)
    (root / "a.jpg").write_bytes(b"JPEG BYTES")  # same size, other content
    result = run(root, dest, "-v")
    assert result.exit_code == 0, result.output
    assert "upload 'a.jpg' (content, 10 bytes)" in result.stderr
    assert summary(result) == "uploaded 1, deleted 0, unchanged 3, bytes 10"
    after = listing(s3, f"{uid}/")
    assert [k for k in after if after[k]["LastModified"] != before[k]["LastModified"]] == ["a.jpg"]
    assert s3.get_object(Bucket=BUCKET, Key=f"{uid}/a.jpg")["Body"].read() == b"JPEG BYTES"

    (root / "notes.txt").write_bytes(b"longer text")
    result = run(root, dest, "-v")
    assert "upload 'notes.txt' (size, 11 bytes)" in result.stderr
    assert summary(result) == "uploaded 1, deleted 0, unchanged 3, bytes 11"


def test_delete_removes_only_the_extra_objects(run, s3, uid, tmp_path):
    root = make_tree(tmp_path / "photos", FILES)
    for key in (f"{uid}/old.jpg", f"{uid}/sub/gone.png", f"{uid}-sibling/keep.jpg", f"{uid}/dir/"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    kept = run(root, f"s3://{BUCKET}/{uid}/")  # without --delete: extras stay
    assert kept.exit_code == 0 and summary(kept).startswith("uploaded 4, deleted 0,")
    assert {"old.jpg", "sub/gone.png"} <= set(listing(s3, f"{uid}/"))

    result = run(root, f"s3://{BUCKET}/{uid}/", "--delete", "-v")
    assert result.exit_code == 0, result.output
    assert summary(result) == "uploaded 0, deleted 2, unchanged 4, bytes 0"
    # the folder marker is not a file: left alone; the sibling prefix is outside the sync
    assert sorted(listing(s3, f"{uid}/")) == sorted([*FILES, "dir/"])
    assert listing(s3, f"{uid}-sibling/")


def test_refuses_a_missing_source_folder(run, s3, uid, tmp_path):
    s3.put_object(Bucket=BUCKET, Key=f"{uid}/a.jpg", Body=b"x")
    for extra in ((), ("--delete",), ("--delete", "--force")):
        result = run(tmp_path / "not-mounted", f"s3://{BUCKET}/{uid}/", *extra)
        assert result.exit_code == 2, result.output
        assert "does not exist" in result.stderr
    assert list(listing(s3, f"{uid}/")) == ["a.jpg"]


def test_refuses_to_delete_everything_from_an_empty_folder_unless_forced(run, s3, uid, tmp_path):
    s3.put_object(Bucket=BUCKET, Key=f"{uid}/a.jpg", Body=b"x")
    empty = tmp_path / "mountpoint"
    empty.mkdir()
    result = run(empty, f"s3://{BUCKET}/{uid}/", "--delete")
    assert result.exit_code == 2, result.output
    assert "is empty: refusing to delete all 1 entries" in result.stderr
    assert list(listing(s3, f"{uid}/")) == ["a.jpg"]
    assert run(empty, f"s3://{BUCKET}/{uid}/").exit_code == 0  # without --delete nothing to do
    forced = run(empty, f"s3://{BUCKET}/{uid}/", "--delete", "--force")
    assert forced.exit_code == 0, forced.output
    assert listing(s3, f"{uid}/") == {}


def test_refuses_too_many_deletions(run, s3, uid, tmp_path):
    for i in range(15):
        s3.put_object(Bucket=BUCKET, Key=f"{uid}/{i:02}.jpg", Body=b"x")
    root = make_tree(tmp_path / "photos", {f"{i:02}.jpg": b"x" for i in range(3)})
    dest = f"s3://{BUCKET}/{uid}/"
    result = run(root, dest, "--delete")
    assert result.exit_code == 2, result.output
    assert "refusing to delete 12 of 15 entries" in result.stderr and "--max-delete" in result.stderr
    assert len(listing(s3, f"{uid}/")) == 15
    assert run(root, dest, "--delete", "--max-delete", "50%").exit_code == 2
    assert run(root, dest, "--delete", "--max-delete", "11").exit_code == 2
    result = run(root, dest, "--delete", "--max-delete", "12")
    assert result.exit_code == 0, result.output
    assert sorted(listing(s3, f"{uid}/")) == ["00.jpg", "01.jpg", "02.jpg"]


def test_dry_run_changes_nothing(run, s3, uid, tmp_path):
    root = make_tree(tmp_path / "photos", {"new.jpg": b"new", "same.jpg": b"same"})
    s3.put_object(Bucket=BUCKET, Key=f"{uid}/same.jpg", Body=b"same")
    s3.put_object(Bucket=BUCKET, Key=f"{uid}/extra.jpg", Body=b"extra")
    before = listing(s3, f"{uid}/")
    result = run(root, f"s3://{BUCKET}/{uid}/", "--delete", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["upload 'new.jpg' (new, 3 bytes)", f"delete 'extra.jpg' (not in {root})"]
    assert summary(result) == "would upload 1, would delete 1, unchanged 1, bytes 3 (dry run: nothing changed)"
    assert listing(s3, f"{uid}/") == before


UNICODE = {"été/photo 1.jpg": b"1", "日本語 ファイル.png": b"22", "a+b&c#d=e%20f.jpg": b"333",
           "  leading and trailing spaces  .jpg": b"4444", "e\u0301te\u0301.jpg": b"nfd"}


def test_unicode_and_spaces_are_kept_exactly_both_ways(run, s3, uid, tmp_path):
    root = make_tree(tmp_path / "photos", UNICODE)
    assert run(root, f"s3://{BUCKET}/{uid}/").exit_code == 0
    assert sorted(listing(s3, f"{uid}/")) == sorted(UNICODE)  # no normalisation, no escaping
    assert s3.get_object(Bucket=BUCKET, Key=f"{uid}/été/photo 1.jpg")["Body"].read() == b"1"
    back = tmp_path / "back"
    result = run(f"s3://{BUCKET}/{uid}/", back)
    assert result.exit_code == 0, result.output
    got = {p.relative_to(back).as_posix(): p.read_bytes() for p in back.rglob("*") if p.is_file()}
    assert got == UNICODE
    assert summary(run(root, f"s3://{BUCKET}/{uid}/")).startswith("uploaded 0,")


def test_pull_downloads_what_the_folder_lacks_or_differs(run, s3, uid, tmp_path):
    for rel, data in FILES.items():
        s3.put_object(Bucket=BUCKET, Key=f"{uid}/{rel}", Body=data)
    folder = tmp_path / "mirror"
    first = run(f"s3://{BUCKET}/{uid}/", folder)
    assert first.exit_code == 0, first.output
    assert summary(first) == f"downloaded 4, deleted 0, unchanged 0, bytes {sum(map(len, FILES.values()))}"
    assert {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == FILES

    assert summary(run(f"s3://{BUCKET}/{uid}/", folder)) == "downloaded 0, deleted 0, unchanged 4, bytes 0"
    (folder / "a.jpg").write_bytes(b"jpeg BYTES")  # same size, local edit: the bucket wins
    make_tree(folder, {"local-only.jpg": b"L", "x/y/z.jpg": b"Z"})
    kept = run(f"s3://{BUCKET}/{uid}/", folder)
    assert summary(kept) == "downloaded 1, deleted 0, unchanged 3, bytes 10"
    assert (folder / "a.jpg").read_bytes() == b"jpeg bytes" and (folder / "local-only.jpg").exists()
    pruned = run(f"s3://{BUCKET}/{uid}/", folder, "--delete")
    assert pruned.exit_code == 0, pruned.output
    assert summary(pruned) == "downloaded 0, deleted 2, unchanged 4, bytes 0"
    assert not (folder / "local-only.jpg").exists() and not (folder / "x").exists()  # empty folders pruned
    assert not list(folder.rglob("*.imgstack-tmp"))


def test_should_not_write_through_a_symlinked_folder_in_the_destination(run, s3, uid, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / "photos").symlink_to(outside, target_is_directory=True)
    (folder / "trap.jpg.imgstack-tmp").symlink_to(outside / "planted")  # a temp name, pre-planted
    s3.put_object(Bucket=BUCKET, Key=f"{uid}/photos/passwd", Body=b"owned")
    s3.put_object(Bucket=BUCKET, Key=f"{uid}/trap.jpg", Body=b"fine")
    result = run(f"s3://{BUCKET}/{uid}/", folder)
    assert result.exit_code == 1, result.output  # that one file failed, reported; the rest synced
    assert "photos/passwd" in result.output + result.stderr
    assert list(outside.iterdir()) == []
    assert (folder / "trap.jpg").read_bytes() == b"fine" and not (outside / "planted").exists()
    assert oct((folder / "trap.jpg").stat().st_mode & 0o777) == oct(0o666 & ~current_umask())


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# (keys with a backslash: SeaweedFS stores them with a slash, so rel_is_safe's unit test covers them)
@pytest.mark.parametrize("key", ["C:evil.jpg", "sub/D:evil.jpg", "a\x01b.jpg"])
def test_should_skip_keys_that_are_no_safe_path_on_some_os(run, s3, uid, tmp_path, key):
    s3.put_object(Bucket=BUCKET, Key=f"{uid}/{key}", Body=b"x")
    s3.put_object(Bucket=BUCKET, Key=f"{uid}/ok.jpg", Body=b"ok")
    folder = tmp_path / "mirror"
    result = run(f"s3://{BUCKET}/{uid}/", folder)
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == ["ok.jpg"]
    assert not list(tmp_path.glob("*evil*"))


def test_pull_refuses_to_delete_when_the_prefix_is_empty(run, uid, tmp_path):
    folder = make_tree(tmp_path / "mirror", {"precious.jpg": b"p"})
    result = run(f"s3://{BUCKET}/{uid}-nothing-here/", folder, "--delete")
    assert result.exit_code == 2, result.output
    assert "is empty" in result.stderr
    assert (folder / "precious.jpg").exists()


def test_exclude_and_imgstackignore(run, s3, uid, tmp_path):
    root = make_tree(tmp_path / "photos", {
        "a.jpg": b"a", "b.tmp": b"b", "keep.tmp": b"k", "raw/c.jpg": b"c", "sub/raw/d.jpg": b"d",
        "e.psd": b"e", "sub/f.jpg": b"f",
        ".imgstackignore": b"# scratch files\n*.tmp\n!keep.tmp\nraw/\n",
    })
    s3.put_object(Bucket=BUCKET, Key=f"{uid}/old.psd", Body=b"remote, excluded: must survive --delete")
    result = run(root, f"s3://{BUCKET}/{uid}/", "--exclude", "*.psd", "--delete")
    assert result.exit_code == 0, result.output
    assert sorted(listing(s3, f"{uid}/")) == ["a.jpg", "keep.tmp", "old.psd", "sub/f.jpg"]


def test_multipart_upload_is_recognised_on_the_next_sync(run, s3, uid, tmp_path):
    data = os.urandom(6 * 1024 * 1024 + 7)
    root = make_tree(tmp_path / "big", {"big.avif": data, "small.jpg": b"s"})
    dest = f"s3://{BUCKET}/{uid}/"
    first = run(root, dest, "--multipart-threshold", "5MiB", "--part-size", "5MiB")
    assert first.exit_code == 0, first.output
    head = s3.head_object(Bucket=BUCKET, Key=f"{uid}/big.avif")
    assert head["ETag"].strip('"').endswith("-2")  # really multipart
    assert head["Metadata"]["md5"] == hashlib.md5(data).hexdigest()
    assert head["ContentType"] == "image/avif"
    second = run(root, dest, IMGSTACK_SYNC_MULTIPART_THRESHOLD="5MiB")
    assert summary(second) == "uploaded 0, deleted 0, unchanged 2, bytes 0"

    # another uploader's part size we cannot guess: our stored MD5 (one HEAD) decides
    from boto3.s3.transfer import TransferConfig
    odd = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024 + 512 * 1024)
    s3.upload_file(str(root / "big.avif"), BUCKET, f"{uid}/big.avif", Config=odd,
                   ExtraArgs={"Metadata": {"md5": hashlib.md5(data).hexdigest()}})
    assert summary(run(root, dest)) == "uploaded 0, deleted 0, unchanged 2, bytes 0"
    s3.upload_file(str(root / "big.avif"), BUCKET, f"{uid}/big.avif", Config=odd)  # no stored MD5
    # same ETag as the object verified just before: the hash cache knows it is this file's content
    assert summary(run(root, dest)) == "uploaded 0, deleted 0, unchanged 2, bytes 0"
    # without the cache (--checksum), nothing can verify it: uploaded to be safe
    assert summary(run(root, dest, "--checksum")) == f"uploaded 1, deleted 0, unchanged 1, bytes {len(data)}"


def test_multipart_download(run, s3, uid, tmp_path):
    data = os.urandom(6 * 1024 * 1024 + 3)
    root = make_tree(tmp_path / "big", {"big.jpg": data})
    assert run(root, f"s3://{BUCKET}/{uid}/", "--multipart-threshold", "5MiB").exit_code == 0
    folder = tmp_path / "mirror"
    result = run(f"s3://{BUCKET}/{uid}/", folder, "--multipart-threshold", "5MiB")
    assert result.exit_code == 0, result.output
    assert (folder / "big.jpg").read_bytes() == data
    assert summary(run(f"s3://{BUCKET}/{uid}/", folder)).startswith("downloaded 0,")


def test_bad_credentials_are_a_clear_error(run, uid, tmp_path):
    root = make_tree(tmp_path / "photos", {"a.jpg": b"a"})
    result = run(root, f"s3://{BUCKET}/{uid}/", AWS_SECRET_ACCESS_KEY="wrong-secret")
    assert result.exit_code == 3, result.output
    assert "refused the credentials" in result.stderr and "AWS_SECRET_ACCESS_KEY" in result.stderr
    result = run(root, f"s3://{BUCKET}/{uid}/", AWS_ACCESS_KEY_ID="nobody")
    assert result.exit_code == 3 and "AWS_ACCESS_KEY_ID" in result.stderr


def test_missing_bucket_is_a_clear_error(run, tmp_path):
    root = make_tree(tmp_path / "photos", {"a.jpg": b"a"})
    for args in ((root, "s3://no-such-bucket/x/"), ("s3://no-such-bucket/x/", tmp_path / "out")):
        result = run(*args)
        assert result.exit_code == 3, result.output
        assert "bucket 'no-such-bucket' does not exist" in result.stderr


def test_unreachable_endpoint_is_a_clear_error(run, tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run(make_tree(tmp_path / "p", {"a": b"a"}), "s3://images/x/", "--endpoint-url", f"http://127.0.0.1:{port}")
    assert result.exit_code == 4, result.output  # unreachable (4), not misconfigured (3): worth a retry
    assert "cannot reach S3" in result.stderr


def test_usage_errors(run, tmp_path):
    assert run(tmp_path, tmp_path).exit_code == 2
    assert run("s3://images/a/", "s3://images/b/").exit_code == 2
    assert run(tmp_path, "s3://images/a/", "--print-urls").exit_code == 2  # no key
    assert run("s3://images/a/", tmp_path, "--watch").exit_code == 2
    assert run(tmp_path, "s3://images/a/", "--max-delete", "lots").exit_code == 2


def test_print_urls_prints_verifiable_signed_urls(run, uid, tmp_path):
    root = make_tree(tmp_path / "photos", {"été/a b.jpg": b"a", "c.webp": b"c", "notes.txt": b"not an image"})
    result = run(root, f"s3://{BUCKET}/{uid}/", "--print-urls", "--size", "300x200", "--expires", "3600",
                 SECURITY_KEY=KEY, IMGSTACK_URL="https://img.example.com")
    assert result.exit_code == 0, result.output
    urls = result.stdout.splitlines()
    assert len(urls) == 2
    images = set()
    for url in urls:
        assert url.startswith("https://img.example.com/")
        params = verify_request(url.removeprefix("https://img.example.com"), signer=Signer([KEY]), now=time.time())
        assert (params.width, params.height) == (300, 200) and 0 < params.expires_at - time.time() <= 3600
        images.add(params.image)
    assert images == {f"{BUCKET}/{uid}/%C3%A9t%C3%A9/a%20b.jpg", f"{BUCKET}/{uid}/c.webp"}
    again = run(root, f"s3://{BUCKET}/{uid}/", "--print-urls", "--key", KEY)
    assert again.stdout == ""  # nothing uploaded, nothing printed


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def start_watch(s3_server, tmp_path: Path, *args, **env_overrides) -> subprocess.Popen:
    """``imgstack sync ... --watch`` in its own process; stdout and stderr go to
    ``tmp_path/stdout.log`` and ``tmp_path/stderr.log``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IMGSTACK_"))}
    env.update({k: v for k, v in sync_env(s3_server, **env_overrides).items() if v is not None})
    env["IMGSTACK_SYNC_CACHE_DIR"] = str(tmp_path / "sync-cache")
    with open(tmp_path / "stdout.log", "wb") as out, open(tmp_path / "stderr.log", "wb") as err:
        return subprocess.Popen([sys.executable, "-c", "from thumbor_plugins.cli import main; main()", "sync",
                                 *map(str, args), "--watch"], env=env, stdout=out, stderr=err)


def stop_watch(proc: subprocess.Popen, stop_signal=signal.SIGTERM) -> int:
    try:
        proc.send_signal(stop_signal)
        return proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_watch_uploads_changes_and_stops_cleanly(s3_server, s3, uid, tmp_path, stop_signal):
    root = make_tree(tmp_path / "watched", {"first.jpg": b"1"})
    stderr = tmp_path / "stderr.log"
    proc = start_watch(s3_server, tmp_path, root, f"s3://{BUCKET}/{uid}/", "--debounce", "200", "--delete")
    try:
        wait_for(lambda: "watching" in stderr.read_text(), 30, "the watcher to start")
        # (written just now: uploaded once quiet for the debounce interval, not necessarily at start)
        wait_for(lambda: list(listing(s3, f"{uid}/")) == ["first.jpg"], 20, "the first file")
        make_tree(root, {"dropped/new file.jpg": b"new"})
        wait_for(lambda: "dropped/new file.jpg" in listing(s3, f"{uid}/"), 20, "the dropped file in the bucket")
        (root / "first.jpg").unlink()
        wait_for(lambda: "first.jpg" not in listing(s3, f"{uid}/"), 20, "the deletion")
        proc.send_signal(stop_signal)
        assert proc.wait(timeout=15) == 0, stderr.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = stderr.read_text()
    assert "stopped watching" in log and "Traceback" not in log
