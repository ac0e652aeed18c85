"""thumbor_plugins.singleflight: one leader per key, in a process and across processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

from thumbor_plugins.singleflight import SingleFlight


async def _run(flight: SingleFlight, key: str, log: list, hold: float = 0.05) -> bool:
    async with flight.hold(key) as leader:
        log.append(("start", key, leader))
        await asyncio.sleep(hold)
        log.append(("end", key, leader))
        return leader


def test_identical_keys_have_one_leader_and_followers_start_after_it_ended(tmp_path) -> None:
    async def main() -> list:
        flight = SingleFlight(str(tmp_path))
        log: list = []
        leaders = await asyncio.gather(*(_run(flight, "images/a.jpg/x", log) for _ in range(4)))
        assert leaders.count(True) == 1
        return log

    log = asyncio.run(main())
    assert log[0] == ("start", "images/a.jpg/x", True)
    assert log[1] == ("end", "images/a.jpg/x", True)  # nobody started while the leader ran


def test_different_keys_never_wait_for_each_other(tmp_path) -> None:
    async def main() -> list:
        flight = SingleFlight(str(tmp_path))
        log: list = []
        leaders = await asyncio.gather(*(_run(flight, f"images/{i}.jpg/x", log, hold=0.2) for i in range(4)))
        assert leaders == [True] * 4
        return log

    log = asyncio.run(main())
    assert [entry[0] for entry in log[:4]] == ["start"] * 4  # all running at once


def test_a_leader_that_fails_releases_its_followers(tmp_path) -> None:
    async def failing(flight: SingleFlight) -> None:
        async with flight.hold("k"):
            await asyncio.sleep(0.05)
            raise RuntimeError("render failed")

    async def main() -> bool:
        flight = SingleFlight(str(tmp_path))
        first = asyncio.ensure_future(failing(flight))
        await asyncio.sleep(0.01)
        follower = await asyncio.wait_for(_run(flight, "k", []), 2)
        assert isinstance(first.exception(), RuntimeError)
        again = await _run(flight, "k", [])  # the key is free again
        return follower is False and again is True

    assert asyncio.run(main())


HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from thumbor_plugins.singleflight import SingleFlight

    async def main():
        flight = SingleFlight(sys.argv[1])
        async with flight.hold("images/a.jpg/x") as leader:
            print("leader" if leader else "follower", flush=True)
            sys.stdin.readline()  # hold until told to go

    asyncio.run(main())
    """
)


def holder_process(lock_dir) -> subprocess.Popen:  # noqa: ANN001
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def test_workers_in_other_processes_wait_for_the_leader(tmp_path) -> None:
    with holder_process(tmp_path) as holder:
        assert holder.stdout.readline().strip() == "leader"

        async def main() -> tuple[bool, bool]:
            flight = SingleFlight(str(tmp_path), poll=0.01)
            other = await _run(flight, "images/b.jpg/x", [])  # another key: not held
            waiting = asyncio.ensure_future(_run(flight, "images/a.jpg/x", []))
            await asyncio.sleep(0.3)
            still_waiting = not waiting.done()
            holder.stdin.write("go\n")
            holder.stdin.flush()
            follower = await asyncio.wait_for(waiting, 10)
            return other, still_waiting and follower is False

        assert asyncio.run(main()) == (True, True)


def test_a_crashed_leader_process_does_not_wedge_its_key(tmp_path) -> None:
    with holder_process(tmp_path) as holder:
        assert holder.stdout.readline().strip() == "leader"
        holder.kill()

    async def main() -> bool:
        return await asyncio.wait_for(_run(SingleFlight(str(tmp_path)), "images/a.jpg/x", []), 5)

    assert asyncio.run(main()) is True
