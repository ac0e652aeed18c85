"""``imgstack doctor``: check a running deployment from the outside.

Each check prints one ``PASS``/``FAIL``/``SKIP`` line with the reason; the exit status is 0 only
when no check failed, else 1 (``SKIP`` is a check turned off by a flag, or one whose prerequisite
failed — that prerequisite's failure already makes the run fail). An S3 configuration that cannot
be used at all (an unknown ``--profile``) exits 3 before any check (:mod:`.exits`).

What it needs: the Thumbor URL, the signing key (``SECURITY_KEY``), S3 credentials that may write
to the originals bucket (the standard ``AWS_*`` variables or the flags), to upload a tiny test
image under ``_doctor/`` and delete it afterwards. HTTP calls use the standard library (no extra
dependency); S3 calls go through :mod:`thumbor_plugins.s3`.
"""

from __future__ import annotations

import functools
import io
import json
import secrets
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import click

from thumbor_plugins.s3 import AccessDenied, NoCredentials, NotFound, Unavailable
from thumbor_plugins.s3.sync import list_prefix, translate

from .exits import Exit
from .options import JsonCommand, emit, json_option, open_s3, s3_options, say, signing_options

_DEFAULT_KEYS = {"", "MY_SECURE_KEY"}
DOCTOR_PREFIX = "_doctor/"


@dataclass
class Result:
    name: str
    status: str  # PASS | FAIL | SKIP
    detail: str

    def __str__(self) -> str:
        return f"{self.status}  {self.name}: {self.detail}"


class Failed(Exception):
    """A check failed; the message is the reason printed."""


class Skipped(Exception):
    """A check did not run; the message says why."""


@dataclass
class Http:
    status: int
    headers: dict[str, str]
    body: bytes


def http(method: str, url: str, *, timeout: float, headers: dict[str, str] | None = None,
         body: bytes | None = None) -> Http:
    """One HTTP request; any status is an answer, only a transport failure raises ``Failed``."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - operator's URL
            return Http(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as error:
        try:
            return Http(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())
        finally:
            error.close()
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise Failed(f"no answer from {url}: {reason}") from None


def _short(data: bytes, limit: int = 160) -> str:
    text = data.decode("utf-8", "replace").strip().replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."


def tiny_png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 40, 40)).save(buffer, "PNG")
    return buffer.getvalue()


@dataclass
class Doctor:
    url: str
    key: str | None
    algorithm: str
    settings: Any  # S3Settings
    bucket: str
    derived_bucket: str
    events_token: str | None
    skip_events: bool
    timeout: float
    results: list[Result] = field(default_factory=list)
    _client: Any = None
    _signed_url: str | None = None
    _test_key: str | None = None

    # -- running -------------------------------------------------------------------------
    def check(self, name: str, function: Callable[[], str], *, needs: tuple[str, ...] = ()) -> bool:
        failed = [n for n in needs if not self.passed(n)]
        try:
            if failed:
                raise Skipped("not run: " + ", ".join(failed) + " did not pass")
            detail = function()
        except Skipped as skip:
            self.results.append(Result(name, "SKIP", str(skip)))
            return False
        except Failed as failure:
            self.results.append(Result(name, "FAIL", str(failure)))
            return False
        except Exception as error:  # noqa: BLE001 - a check must report, not crash the doctor
            self.results.append(Result(name, "FAIL", f"unexpected error: {type(error).__name__}: {error}"))
            return False
        self.results.append(Result(name, "PASS", detail))
        return True

    def passed(self, name: str) -> bool:
        return any(r.name == name and r.status == "PASS" for r in self.results)

    @property
    def ok(self) -> bool:
        return all(r.status != "FAIL" for r in self.results)

    def counts(self) -> dict[str, int]:
        passed = sum(r.status == "PASS" for r in self.results)
        failed = sum(r.status == "FAIL" for r in self.results)
        return {"passed": passed, "failed": failed, "skipped": len(self.results) - passed - failed}

    def run(self, echo: Callable[[str], None] = click.echo) -> bool:
        def step(name: str, function: Callable[[], str], **kwargs: Any) -> None:
            self.check(name, function, **kwargs)
            echo(str(self.results[-1]))

        step("config", self.check_config)
        step("s3", self.check_s3)
        for bucket in (self.bucket, self.derived_bucket):
            step(f"bucket {bucket}", functools.partial(self.check_bucket, bucket), needs=("s3",))
        step("thumbor /healthcheck", self.check_liveness)
        step("thumbor /healthcheck/ready", self.check_readiness)
        try:
            step("signed URL renders", self.check_render,
                 needs=("config", f"bucket {self.bucket}", "thumbor /healthcheck"))
            for bucket in (self.bucket, self.derived_bucket):
                step(f"bucket {bucket} is private", functools.partial(self.check_private, bucket),
                     needs=(f"bucket {bucket}",))
        finally:
            self.cleanup()
        step("wrong signature is refused", self.check_wrong_signature, needs=("signed URL renders",))
        step("events endpoint refuses a wrong token", self.check_events, needs=("thumbor /healthcheck",))
        echo("{passed} passed, {failed} failed, {skipped} skipped".format(**self.counts()))
        return self.ok

    # -- S3 --------------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            from thumbor_plugins.s3.sync import client

            self._client = client(self.settings)
        return self._client

    def _s3_error(self, error: Exception) -> str:
        return str(translate(error)) or type(error).__name__

    def check_config(self) -> str:
        if not self.key:
            raise Failed("no signing key: set SECURITY_KEY or pass --key")
        if self.key in _DEFAULT_KEYS:
            raise Failed("the key is Thumbor's default MY_SECURE_KEY: set a long random SECURITY_KEY")
        detail = f"signing key set ({len(self.key)} characters, {self.algorithm})"
        if len(self.key) < 16:
            detail += "; short: use at least 32 random characters"
        return detail

    def check_s3(self) -> str:
        endpoint = self.client.meta.endpoint_url
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as error:  # noqa: BLE001 - sorted by the S3 module
            reason = translate(error)
            if (isinstance(reason, Unavailable) and not reason.code) or isinstance(reason, NoCredentials):
                raise Failed(f"S3 at {endpoint} unreachable: {self._s3_error(error)}") from None
            # S3 answered: whether the bucket is usable is the next check's business
        return f"S3 answers at {endpoint}"

    def check_bucket(self, bucket: str) -> str:
        try:
            self.client.head_bucket(Bucket=bucket)
        except Exception as error:  # noqa: BLE001 - sorted by the S3 module
            reason = translate(error)
            if isinstance(reason, NotFound):
                raise Failed(f"bucket {bucket!r} does not exist (create it, or name it with a flag)") from None
            if isinstance(reason, AccessDenied):
                raise Failed(f"credentials refused for bucket {bucket!r} ({reason.code or reason})") from None
            raise Failed(f"bucket {bucket!r}: {self._s3_error(error)}") from None
        return "exists, credentials accepted"

    def check_private(self, bucket: str) -> str:
        endpoint = self.client.meta.endpoint_url.rstrip("/")
        answer = http("GET", f"{endpoint}/{bucket}/", timeout=self.timeout)
        if answer.status < 400:
            raise Failed(f"anonymous listing of {bucket!r} answered {answer.status}: anyone can list it "
                         "(remove the public/anonymous policy)")
        if answer.status not in (401, 403):
            raise Failed(f"anonymous listing answered {answer.status}, expected 403: {_short(answer.body)}")
        detail = f"anonymous listing refused ({answer.status})"
        if bucket == self.bucket and self._test_key is not None:
            read = http("GET", f"{endpoint}/{bucket}/{quote(self._test_key)}", timeout=self.timeout)
            if read.status < 400:
                raise Failed(f"anonymous read of an object in {bucket!r} answered {read.status}: "
                             "originals are public (remove the anonymous download policy)")
            detail += f", anonymous object read refused ({read.status})"
        return detail

    # -- Thumbor ---------------------------------------------------------------------------
    def check_liveness(self) -> str:
        answer = http("GET", f"{self.url}/healthcheck", timeout=self.timeout)
        if answer.status != 200:
            raise Failed(f"answered {answer.status}: {_short(answer.body)}")
        return "200"

    def check_readiness(self) -> str:
        answer = http("GET", f"{self.url}/healthcheck/ready", timeout=self.timeout)
        if answer.status == 404:
            raise Failed("404: this Thumbor has no readiness route (imgstack's handler list not configured?)")
        if answer.status != 200:
            try:
                reason = json.loads(answer.body).get("reason") or _short(answer.body)
            except ValueError:
                reason = _short(answer.body)
            raise Failed(f"answered {answer.status}: {reason}")
        return "200 (S3 buckets reachable from Thumbor)"

    def check_render(self) -> str:
        from thumbor_plugins.urls import build_url

        key = f"{DOCTOR_PREFIX}{secrets.token_hex(8)}.png"
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=tiny_png(), ContentType="image/png")
        except Exception as error:  # noqa: BLE001 - any S3 failure is the reason printed
            raise Failed(f"cannot upload the test image to {self.bucket}/{key}: {self._s3_error(error)}") from None
        self._test_key = key
        url = build_url(f"{self.bucket}/{key}", key=self.key or "", base=self.url, width=8, height=8,
                        expires_in=60, algorithm=self.algorithm)
        self._signed_url = url
        answer = http("GET", url, timeout=self.timeout, headers={"Accept": "image/webp,image/*"})
        content_type = answer.headers.get("content-type", "")
        if answer.status == 403:
            raise Failed("the signed test URL was refused (403): the key (or --algorithm) does not match the "
                         "server's SECURITY_KEY / IMGSTACK_SIGNATURE_ALGORITHM")
        if answer.status != 200 or not content_type.startswith("image/"):
            raise Failed(f"GET of the signed test URL answered {answer.status} {content_type}: {_short(answer.body)}")
        return f"200 {content_type}, {len(answer.body)} bytes"

    def check_wrong_signature(self) -> str:
        url = self._signed_url or ""
        prefix = self.url + "/"
        signature, _, rest = url[len(prefix):].partition("/")
        wrong = signature[::-1] if signature[::-1] != signature else "A" * len(signature)
        answer = http("GET", f"{prefix}{wrong}/{rest}", timeout=self.timeout)
        if answer.status != 403:
            raise Failed(f"a tampered signature answered {answer.status}, expected 403")
        return "403"

    def check_events(self) -> str:
        if self.skip_events:
            raise Skipped("--skip-events")
        wrong = "doctor-wrong-" + secrets.token_hex(8)
        if wrong == self.events_token:  # pragma: no cover - astronomically unlikely
            wrong += "x"
        answer = http("POST", f"{self.url}/events/minio", timeout=self.timeout, body=b'{"Records":[]}',
                      headers={"Authorization": f"Bearer {wrong}", "Content-Type": "application/json"})
        if answer.status == 401:
            return "401"
        if answer.status in (404, 405):
            raise Failed(f"answered {answer.status}: the events endpoint is off (set IMGSTACK_EVENTS_TOKEN on the "
                         "server to enable it, or pass --skip-events if it is off on purpose)")
        if answer.status < 300:
            raise Failed(f"a wrong token was ACCEPTED ({answer.status}): anyone can trigger purges")
        raise Failed(f"answered {answer.status}, expected 401: {_short(answer.body)}")

    def cleanup(self) -> None:
        """Delete the test original and, best effort, its results (written after the response)."""
        if self._test_key is None:
            return
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._test_key)
        except Exception:  # noqa: BLE001, S110 - best effort; the key is under _doctor/
            pass
        prefix = f"{self.bucket}/{self._test_key}/"
        deadline = time.monotonic() + 2.0
        while self.passed("signed URL renders"):
            try:
                found = list(list_prefix(self.client, self.derived_bucket, prefix))
                for item in found:
                    self.client.delete_object(Bucket=self.derived_bucket, Key=item.key)
            except Exception:  # noqa: BLE001 - best effort
                break
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.2)


@click.command("doctor", cls=JsonCommand)
@click.option("--url", required=True, envvar="IMGSTACK_URL", show_envvar=True, metavar="THUMBOR_URL",
              help="The Thumbor service, e.g. https://img.example.com")
@signing_options
@s3_options
@click.option("--region", default=None, help="S3 region (default: AWS_REGION, else the profile's).")
@click.option("--bucket", default="images", show_default=True, help="Originals bucket.")
@click.option("--derived-bucket", default="images-derived", show_default=True, help="Results bucket.")
@click.option("--events-token", envvar="IMGSTACK_EVENTS_TOKEN", show_envvar=True,
              help="The events token (only used to be sure the wrong token sent differs from it).")
@click.option("--skip-events", is_flag=True, help="Do not check POST /events/minio (endpoint off on purpose).")
@click.option("--timeout", type=click.FloatRange(min=0.5), default=15.0, show_default=True,
              help="Seconds per HTTP request.")
@json_option
def command(url: str, key: str | None, algorithm: str, endpoint_url: str | None, access_key: str | None,
            secret_key: str | None, profile: str | None, region: str | None, bucket: str, derived_bucket: str,
            events_token: str | None, skip_events: bool, timeout: float, as_json: bool) -> None:
    """Check a deployment from the outside: config, S3 and its buckets (existing, private),
    Thumbor's health, a signed URL rendering, a wrong signature refused, the events endpoint
    refusing a wrong token. Exit 0 only when every check passes."""
    from thumbor_plugins.s3.settings import S3Settings

    flags: dict[str, Any] = {"endpoint_url": endpoint_url, "access_key": access_key, "secret_key": secret_key,
                             "region": region, "profile": profile}
    doctor = Doctor(url=url.rstrip("/"), key=key, algorithm=algorithm, settings=S3Settings.from_env(**flags),
                    bucket=bucket, derived_bucket=derived_bucket, events_token=events_token,
                    skip_events=skip_events, timeout=timeout, _client=open_s3(**flags))
    say(f"imgstack doctor: {doctor.url}", as_json=as_json)
    code = Exit.OK if doctor.run(echo=lambda line: say(line, as_json=as_json)) else Exit.FAILED
    if as_json:
        checks = [{"name": r.name, "status": r.status.lower(), "detail": r.detail} for r in doctor.results]
        emit("doctor", code, url=doctor.url, checks=checks, **doctor.counts())
    sys.exit(int(code))
