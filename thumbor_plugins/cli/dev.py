"""``imgstack dev``: the whole service on one machine, without Docker.

Starts a real S3 server (SeaweedFS) unless ``--s3-endpoint-url`` names an existing one, creates the
buckets, starts Thumbor with ``config/thumbor.conf``, and prints exactly one ``READY {json}`` line
when everything answers. SIGINT/SIGTERM stop every child process.

The embedded S3 server sends every put, overwrite, delete and rename in the originals bucket to
Thumbor's ``/events/seaweedfs`` (behind ``IMGSTACK_EVENTS_TOKEN``), so variants are made at upload
and purged at overwrite and delete, as MinIO's webhook does in compose.

Ports are stable: the ones chosen are kept in ``<data dir>/ports.json`` and reused by the next run
(first run: 8888 and 9000 when free), so printed links and ``AWS_ENDPOINT_URL`` keep working.
``--port``/``--s3-port`` win; 0 means "pick a free one".

Exit codes (:mod:`.exits`): 0 after Ctrl-C/SIGTERM, 5 when a service did not start or stopped,
3 or 4 when the S3 server of ``--s3-endpoint-url`` refuses the credentials or cannot be reached.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click

from thumbor_plugins import embedded

from .exits import Exit, exit_for

SAMPLES = {
    "samples/portrait.jpg": "800px-Katherine_Maher.jpg",
    "samples/alpha.png": "PNG_transparency_demonstration_1.png",
}


def _upload_samples(endpoint: str, access_key: str, secret_key: str, bucket: str) -> list[str]:
    import thumbor

    from thumbor_plugins.s3.settings import S3Settings
    from thumbor_plugins.s3.sync import client as s3_client

    fixtures = Path(thumbor.__file__).parent / "fixtures" / "filters"
    client = s3_client(S3Settings(endpoint_url=endpoint, access_key=access_key, secret_key=secret_key))
    keys = []
    for key, name in SAMPLES.items():
        path = fixtures / name
        if not path.exists():
            continue
        content_type = "image/png" if name.endswith(".png") else "image/jpeg"
        client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes(), ContentType=content_type)
        keys.append(key)
    return keys


@dataclass(frozen=True)
class Ports:
    """The ports of one run: Thumbor's, and the embedded S3 server's (None: an external S3)."""

    thumbor: int
    s3: int | None
    FILE = "ports.json"
    DEFAULTS = {"thumbor": 8888, "s3": 9000}

    @classmethod
    def choose(cls, data_dir: Path, host: str, thumbor: int | None, s3: int | None, *, with_s3: bool) -> Ports:
        """A flag wins (0: any free port); else the last run's port; else the default when free;
        else any free port. ``with_s3`` False: no embedded S3 server."""
        try:
            saved = json.loads((data_dir / cls.FILE).read_text())
        except (OSError, ValueError):
            saved = {}
        saved = saved if isinstance(saved, dict) else {}

        def pick(name: str, flag: int | None, with_grpc: bool) -> int:
            if flag:
                return flag
            if flag is None:
                for candidate in (saved.get(name), cls.DEFAULTS[name]):
                    if isinstance(candidate, int) and _free(candidate, host, with_grpc):
                        return candidate
                if isinstance(saved.get(name), int):
                    click.echo(f"port {saved[name]} of the last run is taken: {name} moves", err=True)
            return embedded.free_port(with_grpc=with_grpc, host=host)

        thumbor_port = pick("thumbor", thumbor, False)
        return cls(thumbor_port, pick("s3", s3, True) if with_s3 else None)

    def save(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        ports = {"thumbor": self.thumbor, **({"s3": self.s3} if self.s3 is not None else {})}
        (data_dir / self.FILE).write_text(json.dumps(ports) + "\n")


def _free(port: int, host: str, with_grpc: bool) -> bool:
    ports = [port, port + embedded.GRPC_OFFSET] if with_grpc else [port]
    return all(0 < p < 65536 and embedded.port_free(p, host) for p in ports)


class _Stop(Exception):
    pass


class _S3Failed(Exception):
    """The buckets could not be made ready on the S3 server at ``endpoint``."""

    def __init__(self, endpoint: str, error: Exception) -> None:
        super().__init__(f"{endpoint}: {error}")
        self.endpoint = endpoint
        self.error = error


def _raise_stop(signum: int, frame: object) -> None:  # noqa: ARG001
    # the first signal stops everything; later ones (a second Ctrl-C, a signal sent to the whole
    # process group as well) must not interrupt the stopping
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise _Stop(signum)


@click.command(name="dev")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=None,
              help="Thumbor's port (default: the last run's, else 8888 when free; 0: any free one).")
@click.option("--s3-port", type=int, default=None,
              help="Embedded S3 server's port (default: the last run's, else 9000 when free; 0: any free one).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".imgstack"),
    show_default=True,
    help="Persistent data (S3 objects, credentials, logs).",
)
@click.option("--no-samples", is_flag=True, help="Do not upload the sample images.")
@click.option("--s3-endpoint-url", default=None, help="Use this S3 server (e.g. a MinIO) instead of starting one.")
@click.option("--s3-access-key", default=None, help="Access key for --s3-endpoint-url.")
@click.option("--s3-secret-key", default=None, help="Secret key for --s3-endpoint-url.")
def command(
    host: str,
    port: int | None,
    s3_port: int | None,
    data_dir: Path,
    no_samples: bool,
    s3_endpoint_url: str | None,
    s3_access_key: str | None,
    s3_secret_key: str | None,
) -> None:
    """Run S3 + Thumbor locally; settings come from the environment (e.g. SECURITY_KEY=... imgstack dev)."""
    if s3_endpoint_url and not (s3_access_key and s3_secret_key):
        raise click.UsageError("--s3-endpoint-url needs --s3-access-key and --s3-secret-key")
    for flag, value in (("--port", port), ("--s3-port", s3_port)):
        if value is not None and not 0 <= value < 65536 - embedded.GRPC_OFFSET:
            raise click.UsageError(f"{flag} must be between 0 (any free port) and {65535 - embedded.GRPC_OFFSET}")
    data_dir = data_dir.resolve()
    env = dict(os.environ)
    generated = []
    for name in ("SECURITY_KEY", "IMGSTACK_EVENTS_TOKEN"):
        if not env.get(name):
            env[name] = secrets.token_urlsafe(32)
            generated.append(name)
    bucket = env.get("IMGSTACK_ALLOWED_BUCKETS", "images").split(",")[0].strip() or "images"
    derived_bucket = env.get("IMGSTACK_DERIVED_BUCKET", "images-derived")
    env.setdefault("IMGSTACK_ALLOWED_BUCKETS", bucket)
    # the JSON access log in a file of its own; Thumbor's other messages stay in thumbor.log
    env.setdefault("IMGSTACK_ACCESS_LOG_FILE", str(data_dir / "access.log"))
    env["IMGSTACK_DERIVED_BUCKET"] = derived_bucket

    children: list = []
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    started = time.monotonic()
    try:
        ports = Ports.choose(data_dir, host, port, s3_port, with_s3=not s3_endpoint_url)
        if s3_endpoint_url:
            # all three or none: refused with a usage error before anything started
            assert s3_access_key is not None and s3_secret_key is not None
            endpoint, access_key, secret_key = s3_endpoint_url, s3_access_key, s3_secret_key
        else:
            webhook = embedded.Webhook(f"http://{host}:{ports.thumbor}/events/seaweedfs",
                                       env["IMGSTACK_EVENTS_TOKEN"], (bucket,))
            s3 = embedded.start_s3(data_dir / "s3", host=host, s3_port=ports.s3, webhook=webhook)
            children.append(s3)
            endpoint, access_key, secret_key = s3.endpoint_url, s3.access_key, s3.secret_key
        try:
            embedded.ensure_buckets(endpoint, access_key, secret_key, [bucket, derived_bucket])
        except _Stop:
            raise
        except Exception as error:  # noqa: BLE001 - sorted by the S3 module below
            raise _S3Failed(endpoint, error) from error
        env.update(
            {
                "IMGSTACK_S3_ENDPOINT_URL": endpoint,
                "IMGSTACK_S3_ACCESS_KEY": access_key,
                "IMGSTACK_S3_SECRET_KEY": secret_key,
            }
        )
        thumbor = embedded.start_thumbor(env, data_dir / "thumbor.log", host=host, port=ports.thumbor)
        children.append(thumbor)
        ports.save(data_dir)
        # after Thumbor is up: their upload events warm their variants, as any upload's would
        samples = [] if no_samples else _upload_samples(endpoint, access_key, secret_key, bucket)
        ready = {
            "thumbor_url": thumbor.url,
            "s3_endpoint_url": endpoint,
            "s3_access_key": access_key,
            "s3_secret_key": secret_key,
            "bucket": bucket,
            "derived_bucket": derived_bucket,
            "security_key": env["SECURITY_KEY"],
            "events_token": env["IMGSTACK_EVENTS_TOKEN"],
        }
        click.echo("READY " + json.dumps(ready), nl=True)
        _greet(ready, samples, generated, env, time.monotonic() - started, data_dir)
        sys.stdout.flush()
        while all(child.process.alive() for child in children):
            time.sleep(0.5)
        dead = next(child for child in children if not child.process.alive())
        click.echo(f"{dead.process.name} exited unexpectedly:\n{dead.process.log_tail()}", err=True)
        sys.exit(int(Exit.SERVICE))
    except _Stop:
        click.echo("stopping...", err=True)
    except embedded.StartError as error:
        click.echo(f"imgstack dev: {error}", err=True)
        sys.exit(int(Exit.SERVICE))
    except _S3Failed as failed:
        from thumbor_plugins.s3.sync import translate

        reason = translate(failed.error)
        click.echo(f"imgstack dev: S3 at {failed.endpoint}: {type(reason).__name__}: {reason}", err=True)
        # a server of the user's (--s3-endpoint-url) is configuration or network; ours, a service
        sys.exit(int(exit_for(reason) if s3_endpoint_url else Exit.SERVICE))
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        for child in reversed(children):
            child.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _greet(ready: dict, samples: list[str], generated: list[str], env: dict, seconds: float, data_dir: Path) -> None:
    from thumbor_plugins.urls import build_url

    lines = [f"imgstack is up in {seconds:.1f}s: Thumbor {ready['thumbor_url']}, S3 {ready['s3_endpoint_url']}"]
    if "SECURITY_KEY" in generated:
        lines.append(f"generated SECURITY_KEY={ready['security_key']} "
                     "(set SECURITY_KEY to keep links valid across runs)")
    if "IMGSTACK_EVENTS_TOKEN" in generated:
        lines.append(f"generated IMGSTACK_EVENTS_TOKEN={env['IMGSTACK_EVENTS_TOKEN']}")
    for key in samples:
        url = build_url(
            f"{ready['bucket']}/{key}",
            key=ready["security_key"],
            base=ready["thumbor_url"],
            width=300,
            height=200,
            smart=True,
            expires_in=3600,
            algorithm=env.get("IMGSTACK_SIGNATURE_ALGORITHM", "sha1"),
        )
        lines.append(f"open: {url}")
    lines.append(f"access log (one JSON line per request): {env['IMGSTACK_ACCESS_LOG_FILE']}")
    lines.append(f"data and logs in {data_dir}; Ctrl-C stops everything")
    click.echo("\n".join(lines))
