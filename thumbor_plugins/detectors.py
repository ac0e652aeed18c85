"""Smart crop's detectors off the event loop: ``DETECTORS = ['thumbor_plugins.detectors', ...]``.

Thumbor awaits its detectors on the event loop, but they are plain CPU work (OpenCV's face cascade,
corner detection): while one runs, that worker answers nothing else. Put first in ``DETECTORS``,
this detector runs the ones after it — Thumbor's own, unchanged, in order — in a thread, on an
event loop of that thread's own. Exceptions come back to Thumbor as before (it then serves a
centre crop, briefly cached).
"""

from __future__ import annotations

import asyncio

from thumbor.detectors import BaseDetector


class Detector(BaseDetector):
    async def detect(self) -> None:
        if not self.detectors or self.index > len(self.detectors) - 2:
            return
        chain = self.detectors[self.index + 1](self.context, self.index + 1, self.detectors)
        await asyncio.get_running_loop().run_in_executor(None, asyncio.run, chain.detect())
