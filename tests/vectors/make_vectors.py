"""Regenerate signatures.json from tools independent of thumbor_plugins.urls:
SHA1 by libthumbor (the signer Thumbor itself validates with), SHA256 by the openssl CLI.

    .venv/bin/python tests/vectors/make_vectors.py

Never compute expected values with our own Signer: a known-answer test must not grade itself.
"""

import base64
import json
import pathlib
import subprocess

from libthumbor.url_signers.base64_hmac_sha1 import UrlSigner

CASES = [  # (key, path)
    ("my-security-key", "300x200/smart/images/a.jpg"),
    ("my-security-key", "images/a%20b.jpg"),
    ("my-security-key", "fit-in/300x200/filters:format(webp):quality(80)/images/a%2Bb.png"),
    ("my-security-key", "300x200/filters:expires(1767225600)/images/a.jpg"),
    ("my-security-key", "300x200/filters:quality(80):expires(1767225600):v(3f2a)/images/a.jpg"),
    ("my-security-key", "10x20:300x400/-300x-200/left/top/smart/images/a.jpg"),
    ("my-security-key", "images/%E3%83%97%E3%83%AD%E3%83%95%E3%82%A3%E3%83%BC%E3%83%AB%20%E7%94%BB%E5%83%8F%2B1.png"),
    ("my-security-key", "images/プロフィール 画像+1.png"),
    ("another key/with:odd=chars", "adaptive-full-fit-in/0x0/filters:fill(ff0000):watermark(w.png,10,10,50)/b/k.jpg"),
    ("ключ-ユーティーエフ8", "debug/meta/trim:top-left:10/origx/b/k.jpg"),
    ("k", "x"),
]
HERE = pathlib.Path(__file__).parent


def sha1(key: str, path: str) -> str:
    # UrlSigner encodes str keys as UTF-8, like Thumbor's server (CryptoURL uses latin-1).
    return UrlSigner(key).signature(path).decode("ascii")


def sha256(key: str, path: str) -> str:
    digest = subprocess.run(
        ["openssl", "dgst", "-sha256", "-hmac", key, "-binary"],
        input=path.encode("utf-8"), capture_output=True, check=True,
    ).stdout
    return base64.urlsafe_b64encode(digest).decode("ascii")  # encoding only, the HMAC is openssl's


vectors = [
    {"key": key, "path": path, "algorithm": name, "signature": fn(key, path)}
    for key, path in CASES
    for name, fn in (("sha1", sha1), ("sha256", sha256))
]
(HERE / "signatures.json").write_text(json.dumps(vectors, indent=2, ensure_ascii=False) + "\n")
print(f"wrote {len(vectors)} vectors")
