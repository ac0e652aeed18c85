"""Unit tests of ``thumbor_plugins.sync``: planner, content checks, deletion policy, exclusion
rules, locations. No S3 here (see test_sync.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import thumbor_plugins.sync as sync
from thumbor_plugins.sync import (
    Checker,
    DeletePolicy,
    Hasher,
    IgnoreRules,
    LocalFile,
    Outcome,
    Refused,
    RemoteObject,
    S3Location,
    content_type,
    make_plan,
)
from thumbor_plugins.sync._checksum import MiB


def test_public_api_is_pinned():
    assert sorted(sync.__all__) == sorted(
        ["DEFAULT_JOBS", "DEFAULT_MULTIPART_THRESHOLD", "DEFAULT_PART_SIZE", "IGNORE_FILE", "MD5_METADATA",
         "Change", "Checker", "DeletePolicy", "FileChanged", "HashCache", "Hasher", "IgnoreRules", "LocalFile",
         "Outcome", "Plan", "Refused", "RemoteError", "RemoteObject", "Reporter", "S3Location", "ScanReport",
         "SyncError", "SyncJob", "Syncer", "Watcher", "content_type", "list_remote", "make_plan", "scan_local"])


def local(rel: str, size: int) -> LocalFile:
    return LocalFile(rel, Path("/nonexistent") / rel, size)


def remote(rel: str, size: int, etag: str = "0" * 32) -> RemoteObject:
    return RemoteObject(rel, "p/" + rel, size, etag)


# -- planner --------------------------------------------------------------------------------------

def test_push_plan_new_changed_unchanged_and_extra():
    loc = {"new.jpg": local("new.jpg", 1), "same.jpg": local("same.jpg", 2), "changed.jpg": local("changed.jpg", 3)}
    rem = {"same.jpg": remote("same.jpg", 2), "changed.jpg": remote("changed.jpg", 4),
           "extra.jpg": remote("extra.jpg", 5)}
    seen = []

    def differs(local, remote_):
        seen.append(local.rel)
        return None if local.size == remote_.size else "size"

    plan = make_plan("push", loc, rem, delete=True, differs=differs)
    assert sorted(seen) == ["changed.jpg", "same.jpg"]  # only paths on both sides are compared
    assert [(c.rel, c.reason) for c in plan.transfers] == [("changed.jpg", "size"), ("new.jpg", "new")]
    assert [(c.rel, c.reason) for c in plan.deletions] == [("extra.jpg", "extra")]
    assert (plan.unchanged, plan.source_count, plan.dest_count, plan.transfer_bytes) == (1, 3, 3, 4)


def test_without_delete_extras_are_kept():
    plan = make_plan("push", {}, {"x": remote("x", 1)}, delete=False, differs=lambda local, remote_: None)
    assert plan.deletions == () and plan.empty


def test_pull_plan_is_the_mirror():
    loc = {"extra.jpg": local("extra.jpg", 1), "same.jpg": local("same.jpg", 2)}
    rem = {"same.jpg": remote("same.jpg", 2), "new.jpg": remote("new.jpg", 7)}
    plan = make_plan("pull", loc, rem, delete=True, differs=lambda local, remote_: None)
    assert [(c.rel, c.size) for c in plan.transfers] == [("new.jpg", 7)]
    assert [c.rel for c in plan.deletions] == ["extra.jpg"]
    assert (plan.source_count, plan.dest_count) == (2, 2)


def test_plan_lines_for_dry_run():
    plan = make_plan("push", {"a b.jpg": local("a b.jpg", 3)}, {"old": remote("old", 1)}, delete=True,
                     differs=lambda local, remote_: None)
    assert list(plan.lines("./photos", "s3://images/p/")) == [
        "upload 'a b.jpg' (new, 3 bytes)", "delete 'old' (not in ./photos)"]


def test_summary_line():
    outcome = Outcome("push", transferred=["a", "b"], deleted=["c"], unchanged=7, bytes=1234)
    assert outcome.summary() == "uploaded 2, deleted 1, unchanged 7, bytes 1234"
    outcome.failures.append(("d", "boom"))
    assert outcome.summary().endswith(", failed 1") and not outcome.ok
    assert Outcome("pull").summary() == "downloaded 0, deleted 0, unchanged 0, bytes 0"


# -- content checks -------------------------------------------------------------------------------

def write(path: Path, data: bytes) -> LocalFile:
    path.write_bytes(data)
    stat = path.stat()
    return LocalFile(path.name, path, stat.st_size, stat.st_mtime_ns)


def multipart_etag(data: bytes, part: int) -> str:
    parts = [data[i:i + part] for i in range(0, len(data), part)]
    return hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + f"-{len(parts)}"


def no_head(obj):
    raise AssertionError("no HEAD expected")


def test_size_difference_needs_no_hashing(tmp_path):
    hasher = Hasher()
    file = write(tmp_path / "a", b"hello")
    assert Checker(hasher, no_head).differs(file, remote("a", 6, hashlib.md5(b"hello!").hexdigest())) == "size"
    assert hasher.files_hashed == 0


def test_plain_etag_is_compared_to_the_local_md5(tmp_path):
    hasher = Hasher()
    file = write(tmp_path / "a", b"hello")
    checker = Checker(hasher, no_head)
    assert checker.differs(file, remote("a", 5, hashlib.md5(b"hello").hexdigest())) is None
    assert checker.differs(file, remote("a", 5, hashlib.md5(b"jello").hexdigest())) == "content"
    assert hasher.files_hashed == 1  # cached by (path, size, mtime)


@pytest.mark.parametrize("part", [5 * MiB, 8 * MiB, 3 * MiB])
def test_multipart_etag_recomputed_locally_without_a_head(tmp_path, part):
    # 5 and 8 MiB are common part sizes; 3 MiB is the even split (size/parts rounded up to a MiB)
    data = bytes(range(256)) * (9 * MiB // 256) + b"tail"
    file = write(tmp_path / "big", data)
    assert Checker(Hasher(), no_head).differs(file, remote("big", len(data), multipart_etag(data, part))) is None


def test_single_part_multipart_etag(tmp_path):
    file = write(tmp_path / "one", b"x" * 1000)
    assert Checker(Hasher(), no_head).differs(file, remote("one", 1000, multipart_etag(b"x" * 1000, 5 * MiB))) is None


def test_unknown_part_size_falls_back_to_the_stored_md5(tmp_path):
    data = b"y" * (6 * MiB + 5)
    file = write(tmp_path / "odd", data)
    etag = multipart_etag(data, 5 * MiB + 512 * 1024)  # no common part size, not an even split
    heads = []

    def stored(obj):
        heads.append(obj.key)
        return hashlib.md5(data).hexdigest()

    checker = Checker(Hasher(), stored)
    assert checker.differs(file, remote("odd", len(data), etag)) is None
    assert heads == ["p/odd"]
    assert Checker(Hasher(), lambda obj: None).differs(file, remote("odd", len(data), etag)) == "unverified"
    assert Checker(Hasher(), lambda obj: "f" * 32).differs(file, remote("odd", len(data), etag)) == "content"


# -- deletion policy ------------------------------------------------------------------------------

def plan_with(deletions: int, dest: int, source: int = 5):
    rem = {f"d{i}": remote(f"d{i}", 1) for i in range(dest)}
    loc = {f"d{i}": local(f"d{i}", 1) for i in range(dest - deletions)}
    loc.update({f"s{i}": local(f"s{i}", 1) for i in range(max(0, source - len(loc)))})
    return make_plan("push", loc, rem, delete=True, differs=lambda local, remote_: None)


@pytest.mark.parametrize(("deletions", "dest", "refused"), [
    (10, 12, False),   # 83% but not more than 10
    (11, 12, True),    # more than 10 and more than 50%
    (11, 30, False),   # more than 10 but 37%
    (0, 0, False),
])
def test_default_limit(deletions, dest, refused):
    plan = plan_with(deletions, dest)
    if refused:
        with pytest.raises(Refused, match="refusing to delete 11 of 12"):
            DeletePolicy().check(plan, "src", "dst")
    else:
        DeletePolicy().check(plan, "src", "dst")


def test_empty_source_refuses_any_deletion_unless_forced():
    plan = make_plan("push", {}, {"a": remote("a", 1)}, delete=True, differs=lambda local, remote_: None)
    with pytest.raises(Refused, match="src is empty"):
        DeletePolicy().check(plan, "src", "dst")
    DeletePolicy(force=True).check(plan, "src", "dst")


def test_max_delete_count_and_percent():
    plan = plan_with(3, 10)
    DeletePolicy.parse("3").check(plan, "s", "d")
    with pytest.raises(Refused, match="--max-delete 2"):
        DeletePolicy.parse("2").check(plan, "s", "d")
    DeletePolicy.parse("30%").check(plan, "s", "d")
    with pytest.raises(Refused, match="--max-delete 25%"):
        DeletePolicy.parse("25%").check(plan, "s", "d")
    DeletePolicy.parse("0", force=True).check(plan, "s", "d")
    for bad in ("", "x", "-1", "1.5", "%"):
        with pytest.raises(Refused):
            DeletePolicy.parse(bad)


# -- exclusion rules ------------------------------------------------------------------------------

RULES = IgnoreRules(["# a comment", "", "*.tmp", "!keep.tmp", "raw/", "/top.jpg", "docs/**/*.pdf", "cache"])


@pytest.mark.parametrize(("rel", "ignored"), [
    ("a.tmp", True), ("deep/er/a.tmp", True), ("keep.tmp", False), ("deep/keep.tmp", False),
    ("raw/x.jpg", True), ("a/raw/x.jpg", True), ("raw", False),  # raw/ matches folders only
    ("top.jpg", True), ("sub/top.jpg", False),                   # a slash anchors
    ("docs/a.pdf", True), ("docs/x/y/a.pdf", True), ("other/docs/a.pdf", False),
    ("cache", True), ("cache/x.jpg", True), ("a/cache/x", True),
    ("# a comment", False), ("photo.jpg", False), ("été/photo 1.jpg", False),
    (".imgstackignore", True), ("sub/.imgstackignore", False), ("a.jpg.imgstack-tmp", True),
])
def test_ignore_rules(rel, ignored):
    assert RULES.ignored(rel) is ignored


def test_ignore_globs_classes_and_escapes():
    rules = IgnoreRules(["img[0-9].jpg", "[!a]*.png", "\\#literal", "?.gif"], implicit=False)
    assert rules.ignored("img3.jpg") and not rules.ignored("imgx.jpg")
    assert rules.ignored("b.png") and not rules.ignored("a.png")
    assert rules.ignored("#literal") and rules.ignored("x.gif") and not rules.ignored("xx.gif")


def test_ignore_file_then_excludes(tmp_path):
    (tmp_path / ".imgstackignore").write_text("*.psd\n!keep.psd\n", encoding="utf-8")
    rules = IgnoreRules.for_folder(tmp_path, ["keep.psd"])
    assert rules.ignored("a.psd") and rules.ignored("keep.psd")  # --exclude comes last: wins
    assert not IgnoreRules.for_folder(tmp_path).ignored("keep.psd")


# -- locations and content types ------------------------------------------------------------------

@pytest.mark.parametrize(("text", "bucket", "prefix"), [
    ("s3://images", "images", ""), ("s3://images/", "images", ""), ("s3://images/a/b", "images", "a/b/"),
    ("s3://images/a/b/", "images", "a/b/"), ("s3://images/été 1/", "images", "été 1/"),
])
def test_location_parse(text, bucket, prefix):
    assert S3Location.parse(text) == S3Location(bucket, prefix)


@pytest.mark.parametrize("bad", ["images/a", "s3://", "s3://ab/x", "s3://images/a/../b", "s3://images/a//b"])
def test_location_refuses(bad):
    with pytest.raises(Refused):
        S3Location.parse(bad)


def test_keys_map_to_safe_relative_paths_only():
    loc = S3Location("images", "p/")
    assert loc.key("a b/ü.jpg") == "p/a b/ü.jpg" and loc.rel("p/a b/ü.jpg") == "a b/ü.jpg"
    for key in ("p/", "p/dir/", "p//x", "p/../x", "p/./x", "q/x", "px"):
        assert loc.rel(key) is None, key


@pytest.mark.parametrize(("name", "expected"), [
    ("a.webp", "image/webp"), ("a.AVIF", "image/avif"), ("a.jpg", "image/jpeg"), ("x#y?.png", "image/png"),
    ("a.heic", "image/heic"), ("a.svg", "image/svg+xml"), ("a.json", "application/json"),
    ("a.tar.gz", "application/gzip"), ("noext", "application/octet-stream"),
])
def test_content_type(name, expected):
    assert content_type(name) == expected


@pytest.mark.parametrize(("rel", "safe"), [
    ("a.jpg", True), ("sub/dir/a b+1%.jpg", True), ("2024-01-01T10:00.jpg", True), ("写真/猫.jpg", True),
    ("../evil.jpg", False), ("a/../../evil.jpg", False), ("..\\..\\evil.jpg", False), ("a\\b.jpg", False),
    ("C:evil.jpg", False), ("sub/D:\\x.jpg", False), ("c:/x.jpg", False), ("/etc/passwd", False),
    ("a//b.jpg", False), ("a/", False), ("a\x00b", False), ("a\x01b", False), ("", False), (".", False),
])
def test_pull_paths_are_safe_on_every_os(rel: str, safe: bool) -> None:
    from thumbor_plugins.sync._location import rel_is_safe

    assert rel_is_safe(rel) is safe


# -- per-file failures and the quiet rule (no I/O) ------------------------------------------------

def test_a_file_that_cannot_be_read_is_skipped_alone():
    loc = {"ok.jpg": local("ok.jpg", 1), "gone.jpg": local("gone.jpg", 2)}
    rem = {"ok.jpg": remote("ok.jpg", 1), "gone.jpg": remote("gone.jpg", 2), "extra.jpg": remote("extra.jpg", 3)}

    def differs(local, remote_):
        if local.rel == "gone.jpg":
            raise FileNotFoundError(2, "No such file or directory", str(local.path))
        return None

    plan = make_plan("push", loc, rem, delete=True, differs=differs)
    assert [(c.rel, c.reason) for c in plan.skipped] == [("gone.jpg", "No such file or directory")]
    assert plan.transfers == () and [c.rel for c in plan.deletions] == ["extra.jpg"]  # not gone.jpg
    assert plan.unchanged == 1
    assert list(plan.lines("src", "dst"))[-1] == "cannot read 'gone.jpg': No such file or directory"


def test_quiet_rule_holds_a_file_until_size_and_mtime_stay_put():
    from thumbor_plugins.sync._watch import QuietRule

    now = {"wall": 1000.0, "mono": 50.0}
    rule = QuietRule(1.0, wall=lambda: now["wall"], clock=lambda: now["mono"])

    def seen(size, mtime):
        return LocalFile("f.jpg", Path("/x/f.jpg"), size, int(mtime * 1e9))

    rule.begin()
    assert rule(seen(10, 999.8)) is True and rule.due == pytest.approx(50.8)  # written 0.2 s ago
    rule.end()
    now["wall"], now["mono"] = 1000.9, 50.9
    rule.begin()
    assert rule(seen(20, 1000.85)) is True  # still growing
    rule.end()
    now["wall"], now["mono"] = 1002.0, 52.0
    rule.begin()
    assert rule(seen(20, 1000.85)) is False  # quiet for more than a second
    rule.end()
    # an mtime in the future (skewed clock): settled once this rule saw it unchanged for 1 s
    rule.begin()
    assert rule(seen(30, 5000.0)) is True
    rule.end()
    now["mono"] += 1.5
    rule.begin()
    assert rule(seen(30, 5000.0)) is False
