"""How renders are run: off the event loop, on several worker processes, once per result key.

Real Thumbor processes started by thumbor_plugins.serve (as imgstack dev and the Docker image do)
against the real S3 server. Speed itself is measured by bench/compare.py, not here."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

from thumbor_plugins import embedded

from .conftest import BUCKET, sign, thumbor_env, worker_pids
from .test_delivery import peak_rss_kb
from .test_ops import scrape, value

PLAIN = {"Accept": "image/jpeg"}


def noise_png(width: int, height: int, seed: int = 1) -> bytes:
    """Noise: incompressible, so decoding and encoding it cost real time."""
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def slow_original(s3) -> str:  # noqa: ANN001
    key = f"rendering/{time.time_ns()}/noise.png"
    s3.put_object(Bucket=BUCKET, Key=key, Body=noise_png(4000, 3000))
    return f"{BUCKET}/{key}"


def test_four_identical_concurrent_misses_fetch_and_render_once(thumbor_factory, slow_original) -> None:
    # two workers: the four requests land on both, so the lock between processes is exercised
    thumbor = thumbor_factory(IMGSTACK_PROCESSES="2")
    url = sign(slow_original, base=thumbor.url, width=1200, height=900, fit_in=True)
    before = scrape(thumbor.url)

    def fetch(_: int) -> httpx.Response:
        with httpx.Client(timeout=120) as client:  # one connection each
            return client.get(url, headers=PLAIN)

    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(fetch, range(4)))
    after = scrape(thumbor.url)

    assert [r.status_code for r in responses] == [200] * 4
    assert len({r.content for r in responses}) == 1

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("imgstack_s3_fetch_duration_seconds_count") == 1  # one GET of the original
    assert grew("imgstack_render_duration_seconds_count") == 1
    # each looks once before the render lock (a miss for all four: nothing is stored yet), the
    # three that waited look again after it and find the leader's result
    assert grew("imgstack_result_storage_lookups_total", result="miss") == 4
    assert grew("imgstack_result_storage_lookups_total", result="hit") == 3


def assert_healthcheck_answers_while_rendering(
    thumbor: embedded.Thumbor, urls: list[str], headers: dict[str, str] = PLAIN, check=None  # noqa: ANN001
) -> None:
    """Renders ``urls`` at once (each response goes through ``check``) while probing
    ``/healthcheck`` every 50 ms: the renders must take over a second, and no probe may wait
    half of that (a blocked event loop holds a probe for as long as it is blocked)."""

    def render(url: str) -> float:
        started = time.perf_counter()
        response = httpx.get(url, headers=headers, timeout=120)
        assert response.status_code == 200
        if check is not None:
            check(response)
        return time.perf_counter() - started

    latencies = []
    with ThreadPoolExecutor(len(urls)) as pool, httpx.Client(timeout=30) as client:
        renders = [pool.submit(render, url) for url in urls]
        time.sleep(0.2)  # the renders have started
        while not all(r.done() for r in renders):
            probe = time.perf_counter()
            assert client.get(thumbor.url + "/healthcheck").status_code == 200
            latencies.append(time.perf_counter() - probe)
            time.sleep(0.05)
        slowest = max(r.result() for r in renders)
    assert slowest > 1.0, f"renders took {slowest:.2f} s: too fast to show anything"
    assert len(latencies) >= 5
    assert max(latencies) < min(0.5, slowest / 2), sorted(latencies)[-5:]


def test_healthcheck_answers_while_one_worker_renders(thumbor_factory, slow_original) -> None:
    """A single worker busy with several large renders still answers /healthcheck at once: the
    renders run in threads, not on the event loop (before: each check waited for a render)."""
    thumbor = thumbor_factory(IMGSTACK_PROCESSES="1")
    urls = [sign(slow_original, base=thumbor.url, width=2000 + i, height=2000, fit_in=True) for i in range(3)]
    assert_healthcheck_answers_while_rendering(thumbor, urls, {"Accept": "image/avif"})


def test_healthcheck_answers_while_a_worker_blurs(thumbor_factory, slow_original) -> None:
    """Thumbor's blur ran on the event loop, in a C extension holding the GIL: blur(20) of a 12 MP
    photo held /healthcheck for 1.25 s, eight of them 8.7 s. Ours is computed by libvips with the
    render, in the engine's threads (thumbor_plugins/filters/blur.py)."""
    thumbor = thumbor_factory(IMGSTACK_PROCESSES="1")
    url = sign(slow_original, base=thumbor.url, filters=["blur(20)"] * 10)
    assert_healthcheck_answers_while_rendering(thumbor, [url])


def test_healthcheck_answers_while_a_worker_applies_colour_filters(thumbor_factory, slow_original) -> None:
    """Thumbor's brightness, contrast, rgb and saturation copied the image into Pillow and walked
    it in C extensions holding the GIL, on the event loop; so did the grayscale filter's convert.
    With these filters (twice each) three renders at the 2560-pixel cap held probes for up to
    0.94 s. Ours add their step to the libvips pipeline (thumbor_plugins/filters/): computed with
    the render, in the engine's threads."""
    thumbor = thumbor_factory(IMGSTACK_PROCESSES="1")
    filters = ["brightness(10)", "contrast(20)", "rgb(5,0,-5)", "saturation(1.5)"] * 2 + ["grayscale()"]
    # no size: the 2560-pixel cap (4.9 MP); each one a different result
    urls = [sign(slow_original, base=thumbor.url, filters=[*filters, f"quality({80 + i})"]) for i in range(3)]

    def grey(response: httpx.Response) -> None:
        assert Image.open(io.BytesIO(response.content)).mode == "L"  # as Thumbor's grayscale makes it

    assert_healthcheck_answers_while_rendering(thumbor, urls, check=grey)


def test_workers_share_the_port_and_a_dead_worker_is_replaced(s3_server, tmp_path) -> None:
    import os
    import signal

    env = thumbor_env(s3_server, IMGSTACK_PROCESSES="2")
    thumbor = embedded.start_thumbor(env, tmp_path / "thumbor.log")
    try:
        pids = worker_pids(thumbor)
        assert len(pids) == 2
        os.kill(pids[0], signal.SIGKILL)
        while _running(pids[0]):  # dead (a connection handed to it as it died is lost with it)
            time.sleep(0.01)
        # meanwhile the other worker takes every new connection: none waits for the replacement
        # to start, as those the kernel queued on the dead worker's own socket did (0.7 s seen)
        for _ in range(10):
            started = time.perf_counter()
            assert httpx.get(thumbor.url + "/healthcheck", timeout=10).status_code == 200
            assert time.perf_counter() - started < 0.4
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = worker_pids(thumbor)
            if len(now) == 2 and pids[0] not in now:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"worker not replaced: {now}")
        for _ in range(10):
            assert httpx.get(thumbor.url + "/healthcheck", timeout=10).status_code == 200
    finally:
        thumbor.stop()
    assert not worker_pids(thumbor)


def test_default_worker_count_follows_the_containers_cpu_quota(tmp_path) -> None:
    from thumbor_plugins.serve import usable_cores

    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")  # cpus: 1.5
    assert usable_cores(cpu_max) == min(2, usable_cores(tmp_path / "absent"))
    cpu_max.write_text("max 100000\n")  # no limit
    assert usable_cores(cpu_max) == usable_cores(tmp_path / "absent") >= 1


def test_processes_setting_is_checked() -> None:
    from thumbor.config import Config

    from thumbor_plugins.serve import process_count
    from thumbor_plugins.settings import SettingError, Settings

    assert process_count(3) == 3
    assert process_count(0) >= 1
    for text in ("many", "-1"):
        with pytest.raises(SettingError, match="IMGSTACK_PROCESSES"):
            Settings.of(Config(IMGSTACK_PROCESSES=text))


def test_a_75_megapixel_png_is_rendered_without_holding_it_whole(s3, thumbor_factory) -> None:
    """Plain resizes stream the original: the worker's peak memory grows by far less than the
    225 MB the decoded image takes (held whole, as the PIL engine does, it would grow by more)."""
    import pyvips

    xy = pyvips.Image.xyz(10000, 7500)  # gradients: 75 MP that compress to a few MB
    body = (xy[0] * 255 / 10000).bandjoin([xy[1] * 255 / 7500, (xy[0] + xy[1]) % 256]).cast("uchar") \
        .copy(interpretation="srgb").pngsave_buffer(compression=6)
    key = f"rendering/{time.time_ns()}/big.png"
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    thumbor = thumbor_factory(IMGSTACK_PROCESSES="1", IMGSTACK_MEMORY_TEST="1")  # a fresh worker
    (worker,) = worker_pids(thumbor)
    url = sign(f"{BUCKET}/{key}", base=thumbor.url, width=800, height=800, fit_in=True)
    httpx.get(sign(f"{BUCKET}/nothing", base=thumbor.url, width=1, height=1))  # warm imports
    before = peak_rss_kb(worker)
    response = httpx.get(url, headers=PLAIN, timeout=120)
    grown = (peak_rss_kb(worker) - before) // 1024
    assert response.status_code == 200
    assert Image.open(io.BytesIO(response.content)).size == (800, 600)
    assert grown < 150, f"peak memory grew by {grown} MB for a 75 MP original"


def test_workers_stop_when_their_supervisor_is_killed(s3_server, tmp_path) -> None:
    import os
    import signal

    thumbor = embedded.start_thumbor(thumbor_env(s3_server, IMGSTACK_PROCESSES="2"), tmp_path / "thumbor.log")
    pids = worker_pids(thumbor)
    assert len(pids) == 2
    os.kill(thumbor.process.popen.pid, signal.SIGKILL)
    thumbor.process.popen.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_running(pid) for pid in pids):
        time.sleep(0.2)
    thumbor.stop()
    assert not any(_running(pid) for pid in pids), "workers outlived their supervisor"


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    from pathlib import Path

    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_render_past_its_time_limit_is_answered_503_and_its_result_kept(thumbor_factory, slow_original) -> None:
    """IMGSTACK_RENDER_TIMEOUT: the client is not held past the limit; the render goes on,
    stores its result, and the retry the 503 asks for is a hit."""
    thumbor = thumbor_factory(IMGSTACK_RENDER_TIMEOUT="0.2", IMGSTACK_PROCESSES="1")
    url = sign(slow_original, base=thumbor.url, width=2400, height=1800, fit_in=True, filters="blur(20)")
    started = time.monotonic()
    response = httpx.get(url, headers=PLAIN, timeout=120)
    assert response.status_code == 503, response.text
    assert response.text == "503 render took too long, retry later\n"
    assert response.headers["retry-after"] == "5" and response.headers["cache-control"] == "no-store"
    assert time.monotonic() - started < 5
    assert httpx.get(thumbor.url + "/healthcheck", timeout=5).status_code == 200
    deadline = time.monotonic() + 120
    while (retry := httpx.get(url, headers=PLAIN, timeout=120)).status_code == 503 and time.monotonic() < deadline:
        time.sleep(1)
    assert retry.status_code == 200 and retry.headers["content-type"] == "image/png"  # the source format


def test_should_refuse_a_costly_filter_before_loading_anything(thumbor, slow_original) -> None:
    response = httpx.get(sign(slow_original, base=thumbor.url, width=300, height=200, filters="blur(150)"),
                         headers=PLAIN, timeout=30)
    assert (response.status_code, response.text) == (400, "400 too costly to render\n")


def _server_side_owners(port: int, client_ports: list[int]) -> list[int]:
    """The worker pid holding the server side of each client connection (Linux /proc)."""
    import os
    from pathlib import Path

    inodes = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if int(local.rsplit(":", 1)[1], 16) == port and int(remote.rsplit(":", 1)[1], 16) in client_ports:
                inodes[int(remote.rsplit(":", 1)[1], 16)] = f"socket:[{inode}]"
    owners = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        except OSError:
            continue
        for client_port, inode in inodes.items():
            if inode in links:
                owners[client_port] = int(pid)
    return [owners.get(p, 0) for p in client_ports]


def test_keep_alive_connections_are_spread_evenly_over_the_workers(s3_server, tmp_path) -> None:
    """Four keep-alive clients on two workers: always two each, once both workers are ready (a
    starting worker gets connections only when no worker is ready). Left to the kernel they
    landed 3:1 or 4:0 in five rounds of eight, and the busier worker queued renders while the
    other idled."""
    import socket

    thumbor = embedded.start_thumbor(thumbor_env(s3_server, IMGSTACK_PROCESSES="2"), tmp_path / "thumbor.log")
    port = int(thumbor.url.rsplit(":", 1)[1])

    def split() -> list[int]:
        connections = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        try:
            for connection in connections:  # one request each, the connection kept
                connection.sendall(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\n\r\n")
                assert connection.recv(4096).startswith(b"HTTP/1.1 200")
            return _server_side_owners(port, [c.getsockname()[1] for c in connections])
        finally:
            for connection in connections:
                connection.close()
            time.sleep(0.3)  # the workers tell the supervisor those connections closed

    try:
        workers = set(worker_pids(thumbor))
        deadline = time.monotonic() + 30
        while set(split()) != workers:  # until the second worker is ready too
            assert time.monotonic() < deadline, "a worker never got a connection"
        for _ in range(5):
            owners = split()
            assert set(owners) == workers and sorted(owners.count(pid) for pid in workers) == [2, 2], owners
    finally:
        thumbor.stop()
