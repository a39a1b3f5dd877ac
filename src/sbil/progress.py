"""The one progress-callback type of sbil.

Long-running functions (training, evaluation, sweeps) take ``progress: ProgressCallback | None``
and call it as ``progress(done, total)`` now and then; the CLI turns it into a bar on a
terminal or periodic one-line messages in a log.
"""

from __future__ import annotations

from collections.abc import Callable

#: Called as ``progress(done, total)``: ``done`` units of work out of ``total`` are finished.
ProgressCallback = Callable[[int, int], None]
