"""Smart crop's detectors off the event loop: ``DETECTORS = ['thumbor_plugins.detectors', ...]``.

Thumbor awaits its detectors on the event loop, but they are plain CPU work (OpenCV's face cascade,
corner detection): while one runs, that worker answers nothing else. Put first in ``DETECTORS``,
this detector runs the ones after it — Thumbor's own, unchanged, in order — in a thread, on an
event loop of that thread's own. Exceptions come back to Thumbor as before.

One detection at a time per process: Thumbor's detectors share one OpenCV cascade per class
(loaded on first use), and OpenCV's ``CascadeClassifier`` is not thread-safe. Two detections at
once (an upload's warm and a browser's request, seen at start-up) failed inside
``detectMultiScale`` (``vector::_M_range_check``) and answered 500.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any

from thumbor.detectors import BaseDetector

_one_at_a_time = threading.Lock()


def _run_alone(detection: Coroutine[Any, Any, None]) -> None:
    with _one_at_a_time:
        asyncio.run(detection)


class Detector(BaseDetector):
    async def detect(self) -> None:
        if not self.detectors or self.index > len(self.detectors) - 2:
            return
        chain = self.detectors[self.index + 1](self.context, self.index + 1, self.detectors)
        await asyncio.get_running_loop().run_in_executor(None, _run_alone, chain.detect())
