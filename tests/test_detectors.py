"""thumbor_plugins.detectors: Thumbor's detectors, run in a thread instead of on the event loop."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import pytest
from thumbor.detectors import BaseDetector

from thumbor_plugins.detectors import Detector

seen: list[tuple[str, bool]] = []


class Faces(BaseDetector):
    async def detect(self) -> None:
        seen.append(("faces", threading.current_thread() is threading.main_thread()))
        await self.next()  # found nothing: the next one tries


class Corners(BaseDetector):
    async def detect(self) -> None:
        seen.append(("corners", threading.current_thread() is threading.main_thread()))
        self.context.request.focal_points.append("corner")


class Broken(BaseDetector):
    async def detect(self) -> None:
        raise RuntimeError("cascade missing")


def context() -> SimpleNamespace:
    return SimpleNamespace(request=SimpleNamespace(focal_points=[]))


def test_the_following_detectors_run_in_order_off_the_event_loop_thread() -> None:
    seen.clear()
    ctx = context()
    detectors = [Detector, Faces, Corners]
    asyncio.run(Detector(ctx, 0, detectors).detect())
    assert seen == [("faces", False), ("corners", False)]
    assert ctx.request.focal_points == ["corner"]


def test_a_failing_detector_fails_the_detection_as_before() -> None:
    with pytest.raises(RuntimeError, match="cascade missing"):
        asyncio.run(Detector(context(), 0, [Detector, Broken]).detect())


def test_alone_it_detects_nothing() -> None:
    ctx = context()
    asyncio.run(Detector(ctx, 0, [Detector]).detect())
    assert ctx.request.focal_points == []


class Slow(BaseDetector):
    running = 0
    most = 0

    async def detect(self) -> None:
        Slow.running += 1
        Slow.most = max(Slow.most, Slow.running)
        time.sleep(0.05)  # OpenCV's work: it holds the thread, not the loop
        Slow.running -= 1


def test_should_never_run_two_detections_at_once_in_one_process() -> None:
    """OpenCV's cascade, shared by Thumbor's detector class, is not thread-safe: two detections at
    once (an upload's warm and a browser's request) failed with ``vector::_M_range_check``, a 500."""

    async def four_at_once() -> None:
        await asyncio.gather(*(Detector(context(), 0, [Detector, Slow]).detect() for _ in range(4)))

    Slow.most = 0
    asyncio.run(four_at_once())
    assert Slow.most == 1
