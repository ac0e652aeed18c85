"""The README's commands, run as written against a real ``imgstack dev`` stack, so the README cannot
drift from the program: every ``imgstack`` line of its ``sh`` blocks, its Python example and its
``imgstack doctor`` example. Placeholders (``...``, the example host and ports) are replaced by the
stack's values; nothing else is changed.

Not run here, with the reason: ``scripts/test`` (it is what runs this), ``scripts/run`` (it execs
``imgstack dev``, which these tests start), the benchmark (30 minutes; ``bench/compare.py --quick``
is its smoke run), and the docker compose section (no docker here; ``tests/deploy/`` validates it).
"""

from __future__ import annotations

import io
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from thumbor_plugins.s3.settings import S3Settings
from thumbor_plugins.s3.sync import client as s3_client

from .test_dev import start_dev, stop

README = Path(__file__).resolve().parent.parent / "README.md"
EXAMPLE_BASE = "https://img.example.com"
NOT_RUN = ("scripts/run", "scripts/test", "scripts/setup")


def sh_blocks() -> list[list[str]]:
    """The command lines of every ```sh block (continuations joined, comments kept for the shell)."""
    blocks = []
    for block in re.findall(r"```sh\n(.*?)```", README.read_text(), re.S):
        lines = [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]
        blocks.append(lines)
    return blocks


def doctor_example() -> str:
    block = README.read_text().split("### imgstack doctor", 1)[1]
    lines = re.findall(r"^    (.*)$", block, re.M)
    return " ".join(line.rstrip("\\").strip() for line in lines[:2])


def jpeg(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (400, 300), colour).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):  # noqa: ANN001, ANN201
    tmp = tmp_path_factory.mktemp("readme")
    process, ready, _ = start_dev(tmp, "--no-samples", "--port", "0", "--s3-port", "0")
    try:
        s3 = s3_client(S3Settings(endpoint_url=ready["s3_endpoint_url"], access_key=ready["s3_access_key"],
                                  secret_key=ready["s3_secret_key"]))
        # the images the README's examples name
        s3.put_object(Bucket="images", Key="photos/cat.jpg", Body=jpeg((200, 120, 40)), ContentType="image/jpeg")
        s3.put_object(Bucket="images", Key="プロフィール 画像+1.png", Body=jpeg((40, 120, 200)))
        work = tmp / "work"
        (work / "photos").mkdir(parents=True)
        (work / "photos" / "dog.jpg").write_bytes(jpeg((10, 200, 10)))
        yield {**ready, "work": work}
    finally:
        stop(process)


def environment(stack: dict) -> dict[str, str]:  # noqa: ANN001
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IMGSTACK_", "SECURITY_KEY"))},
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        # imgstack sync's hash cache: this test's own, never the user's
        "IMGSTACK_SYNC_CACHE_DIR": str(stack["work"].parent / "sync-cache"),
    }


def substitute(line: str, stack: dict) -> str:  # noqa: ANN001
    """The README's placeholders -> this stack's values."""
    s3_port = stack["s3_endpoint_url"].rsplit(":", 1)[1]
    thumbor_port = stack["thumbor_url"].rsplit(":", 1)[1]
    values = {
        "SECURITY_KEY=...": f"SECURITY_KEY={shlex.quote(stack['security_key'])}",
        "AWS_ACCESS_KEY_ID=...": f"AWS_ACCESS_KEY_ID={stack['s3_access_key']}",
        "AWS_SECRET_ACCESS_KEY=...": f"AWS_SECRET_ACCESS_KEY={shlex.quote(stack['s3_secret_key'])}",
        "IMGSTACK_EVENTS_TOKEN=...": f"IMGSTACK_EVENTS_TOKEN={shlex.quote(stack['events_token'])}",
        "127.0.0.1:9000": f"127.0.0.1:{s3_port}",
        "127.0.0.1:8888": f"127.0.0.1:{thumbor_port}",
    }
    for placeholder, value in values.items():
        line = line.replace(placeholder, value)
    assert "..." not in line.split("#", 1)[0], f"a placeholder this test does not know: {line}"
    return line


def run_block(lines: list[str], stack: dict, *, check_line=None) -> list[str]:  # noqa: ANN001
    """Run the ``export`` and ``imgstack`` lines in one shell, each command's stdout collected."""
    outputs = []
    exports = [substitute(line, stack) for line in lines if line.startswith("export ")]
    for line in lines:
        if not line.startswith("imgstack "):
            continue
        if check_line is not None and not check_line(line):
            continue
        script = "\n".join([*exports, substitute(line, stack)])
        result = subprocess.run(["bash", "-c", script], cwd=stack["work"], env=environment(stack),
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
        assert "warning" not in result.stderr.lower(), f"{line}\n{result.stderr}"
        outputs.append(result.stdout)
    return outputs


def served(url: str, stack: dict) -> httpx.Response:  # noqa: ANN001
    return httpx.get(url.strip().replace(EXAMPLE_BASE, stack["thumbor_url"]), timeout=60)


def test_every_sh_block_is_known() -> None:
    """A new block must be run by a test here (or listed as not runnable, with the reason)."""
    for lines in sh_blocks():
        for line in lines:
            assert line.startswith(("imgstack ", "export ", *NOT_RUN)), f"README command not covered: {line}"


def test_no_section_or_paragraph_of_the_readme_appears_twice() -> None:
    """An edit that pastes a section back in (it happened once) leaves a reader two versions."""
    text = README.read_text()
    headings = re.findall(r"^#+ .*$", text, re.M)
    assert len(headings) == len(set(headings)), sorted({h for h in headings if headings.count(h) > 1})
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if len(p.strip()) > 200]
    assert len(paragraphs) == len(set(paragraphs)), [p[:80] for p in paragraphs if paragraphs.count(p) > 1]


def test_readme_url_examples_make_links_that_render(stack) -> None:  # noqa: ANN001
    [block] = [lines for lines in sh_blocks() if any(line.startswith("imgstack url") for line in lines)]
    outputs = run_block(block, stack)
    assert len(outputs) == sum(line.startswith("imgstack url") for line in block) >= 3
    for url in outputs:
        if not url.startswith(EXAMPLE_BASE):
            url = stack["thumbor_url"] + url.strip()
        response = served(url, stack)
        assert response.status_code == 200, (url, response.status_code, response.text)
        assert response.headers["content-type"].startswith("image/")


def test_readme_python_example_makes_a_link_that_renders(stack) -> None:  # noqa: ANN001
    [code] = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    namespace: dict = {"SECURITY_KEY": stack["security_key"]}
    exec(code, namespace)  # noqa: S102 - the README's own example
    assert served(namespace["url"], stack).status_code == 200


def test_readme_sync_examples_run_as_written(stack) -> None:  # noqa: ANN001
    [block] = [lines for lines in sh_blocks() if any(line.startswith("imgstack sync") for line in lines)]
    run_block(block, stack, check_line=lambda line: "--watch" not in line)
    s3 = s3_client(S3Settings(endpoint_url=stack["s3_endpoint_url"], access_key=stack["s3_access_key"],
                              secret_key=stack["s3_secret_key"]))
    keys = {item["Key"] for item in s3.list_objects_v2(Bucket="images", Prefix="photos/")["Contents"]}
    # pushed; then --delete removed what the folder does not have (cat.jpg, uploaded by the fixture)
    assert keys == {"photos/dog.jpg"}
    assert sorted(path.name for path in (stack["work"] / "photos").iterdir()) == ["dog.jpg"]

    [watch] = [line for line in block if "--watch" in line]
    exports = [substitute(line, stack) for line in block if line.startswith("export ")]
    script = "\n".join([*exports, "export SECURITY_KEY=" + shlex.quote(stack["security_key"]),
                        "exec " + substitute(watch, stack)])
    process = subprocess.Popen(["bash", "-c", script], cwd=stack["work"], env=environment(stack),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        time.sleep(3)  # the first sync, then watching
        (stack["work"] / "photos" / "new.jpg").write_bytes(jpeg((250, 250, 0)))
        line = ""
        deadline = time.monotonic() + 60
        while "new.jpg" not in line and time.monotonic() < deadline:
            line = process.stdout.readline()
        assert "new.jpg" in line, process.stderr.read() if process.poll() is not None else "no URL printed"
        assert served(line, stack).status_code == 200
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        process.stdout.close()
        process.stderr.close()


def test_readme_doctor_example_passes_against_the_stack(stack) -> None:  # noqa: ANN001
    command = substitute(doctor_example(), stack)
    assert command.startswith("SECURITY_KEY=") and "imgstack doctor" in command
    result = subprocess.run(["bash", "-c", command], cwd=stack["work"], env=environment(stack),
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
