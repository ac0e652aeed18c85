"""The adapter's own logic without a server: the per-request state, Thumbor's request parameters for
a decision, the start-up check of thumbor_plugins.serve."""

from __future__ import annotations

import socket
import time

import pytest
from thumbor.context import RequestParameters

from thumbor_plugins import pipeline, serve
from thumbor_plugins.settings import SettingError, Settings
from thumbor_plugins.thumbor_adapter import RequestState, checked_settings, loopback_base, state_of, thumbor_request
from thumbor_plugins.urls import build_url, parse

KEY = "adapter-test-key-0123456789abcdef0123"
SETTINGS = Settings(security_key=KEY, allow_unsafe_url=False, max_width=2560, max_height=1440)


def decision(**options) -> pipeline.Decision:  # noqa: ANN003
    return pipeline.decide(build_url("images/a.jpg", key=KEY, **options), "", SETTINGS, time.time())


def test_the_state_is_made_once_and_shared_through_thumbors_request() -> None:
    request = RequestParameters()
    state = state_of(request)
    assert isinstance(state, RequestState) and state_of(request) is state
    state.source_etag = '"abc"'
    assert state_of(request).source_etag == '"abc"'


def test_thumbor_request_carries_the_decision_and_the_state() -> None:
    state = RequestState(decision=decision(width=300, height=200, smart=True))
    request = thumbor_request(state.decision, SETTINGS, state, None)
    assert (request.width, request.height, request.smart, request.fit_in) == (300, 200, True, False)
    assert request.url == "300x200/smart/images/a.jpg" and request.image_url == "images/a.jpg"
    assert state_of(request) is state


def test_no_size_asked_fits_the_original_into_the_size_cap() -> None:
    state = RequestState(decision=decision())
    request = thumbor_request(state.decision, SETTINGS, state, None)
    assert (request.fit_in, request.width, request.height) == (True, 2560, 1440)
    meta = RequestState(decision=decision(params=parse("meta/_")))
    assert thumbor_request(meta.decision, SETTINGS, meta, None).fit_in is False


@pytest.mark.parametrize(("ip", "expected"), [("0.0.0.0", "http://127.0.0.1:8888"), ("::1", "http://[::1]:8888"),
                                              (None, "http://127.0.0.1:8888"), ("10.1.2.3", "http://10.1.2.3:8888")])
def test_loopback_base(ip: str | None, expected: str) -> None:
    from types import SimpleNamespace

    assert loopback_base(SimpleNamespace(server=SimpleNamespace(ip=ip, port=8888))) == expected


def test_serve_refuses_a_bad_config_once_before_starting_any_worker(tmp_path) -> None:  # noqa: ANN001
    conf = tmp_path / "thumbor.conf"
    conf.write_text("import thumbor_plugins.config\nSECURITY_KEY = None\n")
    with pytest.raises(SystemExit, match="refusing to start: SECURITY_KEY is not set.*security key"):
        serve.main([f"--conf={conf}", "--port=0"])
    conf.write_text(f"import thumbor_plugins.config\nSECURITY_KEY = {KEY!r}\nIMGSTACK_MAX_PIXELS = 'many'\n")
    with pytest.raises(SystemExit, match="IMGSTACK_MAX_PIXELS='many'"):
        serve.main([f"--conf={conf}", "--port=0"])


def test_the_keyfile_signs(tmp_path) -> None:  # noqa: ANN001
    conf = tmp_path / "thumbor.conf"
    conf.write_text("import thumbor_plugins.config\nSECURITY_KEY = 'short'\nIMGSTACK_PROCESSES = 3\n")
    keyfile = tmp_path / "key"
    keyfile.write_text(KEY + "\n")
    settings = checked_settings([f"--conf={conf}", f"--keyfile={keyfile}"])
    assert settings.signing_keys == (KEY,) and settings.processes == 3
    with pytest.raises(SettingError, match="SECURITY_KEY holds a key of 5 characters"):
        checked_settings([f"--conf={conf}"])


def test_workers_run_thumbor_on_uvloop(monkeypatch) -> None:  # noqa: ANN001
    import asyncio

    import thumbor.server
    import uvloop

    from thumbor_plugins.thumbor_adapter import run_thumbor

    seen = []
    monkeypatch.setattr(thumbor.server, "main", lambda arguments: seen.append((arguments, asyncio.get_event_loop())))
    try:
        run_thumbor(["--port=1"])
        (arguments, loop), = seen
        assert arguments == ["--port=1"] and isinstance(loop, uvloop.Loop)
    finally:
        asyncio.get_event_loop().close()
        asyncio.set_event_loop(None)


def test_the_supervisor_starts_workers_through_its_own_entry_point(monkeypatch) -> None:  # noqa: ANN001
    started = []

    class Popen:
        pid = 4242

        def __init__(self, argv, **kwargs) -> None:  # noqa: ANN001, ANN003
            started.append(argv)

    monkeypatch.setattr(serve.subprocess, "Popen", Popen)
    listener = type("Sock", (), {"fileno": lambda self: 7, "setblocking": lambda self, flag: None})()
    serve.Supervisor(listener, 1, ["--conf=x.conf"]).spawn(0)  # one worker: on the port itself
    assert started == [[serve.sys.executable, "-m", "thumbor_plugins.serve", "--fd=7", "--conf=x.conf"]]
    started.clear()
    supervisor = serve.Supervisor(listener, 2, ["--conf=x.conf"])  # several: handed connections
    supervisor.spawn(1)
    (argv,) = started
    assert argv[:3] == [serve.sys.executable, "-m", "thumbor_plugins.serve"] and argv[4:] == ["--conf=x.conf"]
    assert argv[3].startswith(serve.HANDOFF_FLAG + "=")
    supervisor.balancer.close()


def test_workers_get_glibcs_malloc_settings_unless_the_environment_sets_them(monkeypatch, tmp_path) -> None:  # noqa: ANN001
    import os

    from thumbor_plugins import singleflight

    conf = tmp_path / "thumbor.conf"
    conf.write_text(f"import thumbor_plugins.config\nSECURITY_KEY = {KEY!r}\n")
    for name in (*serve.MALLOC_DEFAULTS, singleflight.LOCK_DIR_ENV, "PROMETHEUS_MULTIPROC_DIR"):
        monkeypatch.delenv(name, raising=False)  # restored (removed) after the test
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "999")
    seen: dict[str, str | None] = {}
    monkeypatch.setattr(serve, "_listen", lambda ip, port: socket.create_server(("127.0.0.1", 0)))
    monkeypatch.setattr(serve.Supervisor, "run",
                        lambda self: seen.update({name: os.environ.get(name) for name in serve.MALLOC_DEFAULTS}) or 0)
    assert serve.main([f"--conf={conf}", "--port=0", "--processes=1"]) == 0
    assert seen == {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": str(64 * 2**20), "MALLOC_TRIM_THRESHOLD_": "999"}


def test_every_context_of_a_process_shares_one_filters_factory(monkeypatch) -> None:  # noqa: ANN001
    """Thumbor's Context made a FiltersFactory per request (re-compiling every filter's pattern);
    the adapter makes one per process, and it still makes the filters a URL asks for."""
    import thumbor.context
    from thumbor.config import Config
    from thumbor.context import Context
    from thumbor.filters.blur import Filter as Blur
    from thumbor.filters.quality import Filter as Quality

    from thumbor_plugins.thumbor_adapter import share_filters_factory

    monkeypatch.setattr(thumbor.context, "FiltersFactory", thumbor.context.FiltersFactory)  # restored after
    share_filters_factory()
    first, second = (Context(config=Config()) for _ in range(2))
    assert first.filters_factory is second.filters_factory
    made = thumbor.context.FiltersFactory([Quality, Blur])
    assert made is thumbor.context.FiltersFactory([Quality, Blur]) and made is not first.filters_factory
    runner = made.create_instances(first, "quality(80):blur(2)")
    assert sorted(type(f).__module__ for phase in runner.filter_instances.values() for f in phase) == \
        ["thumbor.filters.blur", "thumbor.filters.quality"]


def test_workers_keep_what_start_up_made_out_of_the_collectors_full_passes(monkeypatch) -> None:  # noqa: ANN001
    import asyncio
    import gc

    import thumbor.server

    from thumbor_plugins.thumbor_adapter import run_thumbor

    frozen = []

    def serve(arguments) -> None:  # noqa: ANN001
        asyncio.get_event_loop().run_until_complete(asyncio.sleep(0))  # Thumbor's server starts the loop
        frozen.append(gc.get_freeze_count())

    monkeypatch.setattr(thumbor.server, "main", serve)
    try:
        run_thumbor(["--port=1"])
        assert frozen[0] > 0
    finally:
        gc.unfreeze()
        asyncio.get_event_loop().close()
        asyncio.set_event_loop(None)


def _pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def test_the_balancer_hands_each_connection_to_the_least_busy_worker() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        balancer = serve.Balancer(listener)
        workers = {slot: balancer.attach(slot) for slot in range(3)}
        try:
            received = []
            for _ in range(5):
                with socket.create_connection(listener.getsockname()) as client:
                    connection, _ = listener.accept()
                    with connection:
                        assert balancer.hand_off(connection)
                    for slot, end in workers.items():
                        end.setblocking(False)
                        try:
                            _, fds, _, _ = socket.recv_fds(end, 16, 4)
                        except BlockingIOError:
                            continue
                        received.append(slot)
                        with socket.socket(fileno=fds[0]) as handed:  # the client's very connection
                            client.sendall(b"ping")
                            assert handed.recv(4) == b"ping"
            # in turn while they are even (the least recently given first), then the least busy
            assert received[:3] == [0, 1, 2] and balancer.open == {0: 2, 1: 2, 2: 1}
            workers[0].send(serve.CLOSED)
            workers[1].send(serve.CLOSED)
            workers[1].send(serve.CLOSED)
            assert balancer.heard(0) and balancer.heard(1)
            assert balancer.open == {0: 1, 1: 0, 2: 1}
        finally:
            balancer.close()
            for end in workers.values():
                end.close()


def test_a_gone_worker_is_skipped_and_with_none_left_no_worker_takes_the_connection() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        balancer = serve.Balancer(listener)
        gone, alive = balancer.attach(0), balancer.attach(1)
        gone.close()  # the worker died: its end of the pair is closed
        try:
            with socket.create_connection(listener.getsockname()):
                connection, _ = listener.accept()
                with connection:
                    assert balancer.hand_off(connection)
            assert balancer.open == {0: 0, 1: 1}
            assert not balancer.heard(0)  # the supervisor then looks at its workers at once
            alive.close()
            with socket.create_connection(listener.getsockname()):
                connection, _ = listener.accept()
                with connection:
                    assert not balancer.hand_off(connection)
        finally:
            balancer.close()


def test_a_ready_worker_is_preferred_and_connections_wait_while_no_worker_runs() -> None:
    """While a worker restarts, the others take the new connections; with none running, they
    wait in the supervisor and go to the next worker."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        balancer = serve.Balancer(listener)
        starting, ready = balancer.attach(0), balancer.attach(1)
        ready.send(serve.READY)
        clients = []
        try:
            assert balancer.heard(1) and balancer.ready == {1}
            for _ in range(2):
                clients.append(socket.create_connection(listener.getsockname()))
                time.sleep(0.05)
                balancer.accept()
            assert balancer.open == {0: 0, 1: 2}  # the ready one, though busier
            starting.close()
            ready.close()
            assert not balancer.heard(0) and not balancer.heard(1)
            balancer.detach(0)
            balancer.detach(1)
            clients.append(socket.create_connection(listener.getsockname()))
            time.sleep(0.05)
            balancer.accept()
            assert len(balancer.pending) == 1  # no worker: it waits
            restarted = balancer.attach(0)  # the next worker gets it, even before it is ready
            assert not balancer.pending and balancer.open == {0: 1}
            _, fds, _, _ = socket.recv_fds(restarted, 16, 4)
            with socket.socket(fileno=fds[0]) as handed:
                clients[-1].sendall(b"late")
                assert handed.recv(4) == b"late"
            restarted.close()
        finally:
            balancer.close()
            for client in clients:
                client.close()


def test_a_worker_serves_handed_over_connections_and_says_when_each_closes() -> None:
    import asyncio

    import tornado.web

    from thumbor_plugins import thumbor_adapter

    class Hello(tornado.web.RequestHandler):
        def get(self) -> None:
            self.write("hello")

    ours, theirs = _pair()

    async def scenario() -> None:
        server = thumbor_adapter._handed_off_server(theirs, tornado.web.Application([("/", Hello)]), None)
        loop = asyncio.get_running_loop()
        with socket.create_server(("127.0.0.1", 0)) as listener:
            client = socket.create_connection(listener.getsockname())
            connection, _ = listener.accept()
            with connection:
                socket.send_fds(ours, [b"c"], [connection.fileno()])
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = await loop.run_in_executor(None, client.recv, 4096)
            assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"hello")
            ours.setblocking(False)
            assert ours.recv(16) == serve.READY  # said once its loop ran
            with pytest.raises(BlockingIOError):
                ours.recv(16)  # the connection still open: nothing said
            client.close()
            for _ in range(100):
                await asyncio.sleep(0.01)
                try:
                    assert ours.recv(16) == serve.CLOSED
                    break
                except BlockingIOError:
                    continue
            else:
                raise AssertionError("the worker did not say the connection closed")
        server.stop()

    try:
        asyncio.run(scenario())
    finally:
        ours.close()
        theirs.close()
