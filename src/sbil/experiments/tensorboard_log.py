"""Training curves to TensorBoard as they are trained: ``sbil train --tensorboard DIR``.

Each seed is one TensorBoard run, ``DIR/seed-<s>/``, and each loss term one scalar tag,
``train/<term>`` (e.g. ``train/loss``, ``train/rho``, ``train/cross_entropy``), with the update
as its step; ``tensorboard --logdir DIR`` then draws the seeds of a term in one chart. A resumed
training hands on its whole history again, and the writer marks its first step as a restart
(``purge_step``), so TensorBoard drops what the interrupted process had logged past it and
shows each update once.

TensorBoard is an optional extra: ``pip install "sbil[tensorboard]"``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

#: What to install when TensorBoard is missing.
INSTALL_HINT = 'pip install "sbil[tensorboard]"'


class TensorBoardMissing(ValueError):
    """TensorBoard is not installed."""


def check_tensorboard() -> None:
    """Raise :class:`TensorBoardMissing` (one sentence naming the extra) unless
    ``torch.utils.tensorboard`` can write event files here."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise TensorBoardMissing(
            f"--tensorboard needs TensorBoard, which is not installed; install it with "
            f"`{INSTALL_HINT}` (or leave out --tensorboard)."
        ) from None


class TensorBoardTerms:
    """An ``on_terms`` callback (:data:`sbil.deep.training.TermsCallback`) writing every term
    of every seed to ``folder/seed-<s>/`` as scalar ``train/<term>`` at step ``update``.

    Use it as a context manager (it closes, and so flushes, its writers).
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        check_tensorboard()
        self.folder = Path(folder)
        self._writers: dict[int, object] = {}

    def __call__(self, seeds: tuple[int, ...], start: int, terms: dict[str, np.ndarray]) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary
        from torch.utils.tensorboard import SummaryWriter

        tags = [(f"train/{name}", values) for name, values in terms.items()]
        n = next(iter(terms.values())).shape[1] if terms else 0
        for row, seed in enumerate(seeds):
            writer = self._writers.get(seed)
            if writer is None:
                # purge_step: a resumed run starts again at update 1; TensorBoard hides what an
                # earlier process logged from that step on.
                writer = SummaryWriter(str(self.folder / f"seed-{seed}"), purge_step=start + 1)
                self._writers[seed] = writer
            for j in range(n):  # one event per update with every term: ~6x faster than one each
                summary = Summary(
                    value=[
                        Summary.Value(tag=tag, simple_value=float(values[row, j]))
                        for tag, values in tags
                    ]
                )
                writer.file_writer.add_summary(summary, start + j + 1)

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def __enter__(self) -> TensorBoardTerms:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
