"""thumbor_plugins.detectors: Thumbor's detectors, run in a thread instead of on the event loop."""

from __future__ import annotations

import asyncio
import threading
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
