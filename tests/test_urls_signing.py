"""Signer against fixed known-answer vectors (made by libthumbor and openssl, see vectors/)."""

import json
import pathlib

import pytest

from thumbor_plugins.urls import Signer

VECTORS = json.loads((pathlib.Path(__file__).parent / "vectors" / "signatures.json").read_text("utf-8"))


def test_vectors_cover_both_algorithms():
    assert len(VECTORS) >= 10
    assert {v["algorithm"] for v in VECTORS} == {"sha1", "sha256"}


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"{v['algorithm']}:{v['path']}")
def test_sign_matches_vector(vector):
    assert Signer([vector["key"]], vector["algorithm"]).sign(vector["path"]) == vector["signature"]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"{v['algorithm']}:{v['path']}")
def test_verify_accepts_vector(vector):
    assert Signer([vector["key"]], vector["algorithm"]).verify(vector["signature"], vector["path"])


def test_bytes_and_str_keys_agree():
    vector = VECTORS[0]
    assert Signer([vector["key"].encode()], vector["algorithm"]).sign(vector["path"]) == vector["signature"]


@pytest.mark.parametrize("vector", [v for v in VECTORS if v["algorithm"] == "sha1"][:3])
def test_should_reject_sha1_signature_in_sha256_mode(vector):
    assert not Signer([vector["key"]], "sha256").verify(vector["signature"], vector["path"])


def test_rotated_key_still_verifies():
    old = Signer(["old-key"])
    path = "300x200/images/a.jpg"
    rotated = Signer(["new-key", "old-key"])
    assert rotated.verify(old.sign(path), path)
    assert rotated.sign(path) == Signer(["new-key"]).sign(path)  # the first key signs


@pytest.mark.parametrize("junk", [
    "", "=", "not base64!", "é" * 28, "\ud800" * 28, None, b"bytes", 42, "A" * 10_000,
])
def test_verify_never_raises_on_junk(junk):
    assert Signer(["k"]).verify(junk, "a.jpg") is False


def test_verify_never_raises_on_unencodable_path():
    assert Signer(["k"]).verify(Signer(["k"]).sign("a.jpg"), "\udc80.jpg") is False


@pytest.mark.parametrize(("keys", "algorithm"), [
    ([], "sha1"), ([""], "sha1"), (["k", b""], "sha1"), (["k"], "md5"), (["k"], "SHA1"),
])
def test_bad_configuration_is_refused(keys, algorithm):
    with pytest.raises(ValueError):
        Signer(keys, algorithm)


@pytest.mark.parametrize("keys", ["secret", b"secret", [None], [5]])
def test_key_of_wrong_type_is_refused(keys):
    with pytest.raises(TypeError):
        Signer(keys)


def test_repr_hides_keys():
    assert "secret" not in repr(Signer(["secret"]))
