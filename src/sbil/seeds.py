"""The one rule for seeds in sbil (standard library only).

Every seed sbil hands to a library, and every seed it derives from one (episode ``i`` of a run
seeded ``s`` is reset with ``s + i``), lies in ``0 .. MAX_SEED`` = ``0 .. 2**32 - 1``: the
range every library below sbil accepts (numpy's legacy ``np.random.seed``, which
stable-baselines3 calls, refuses more; int64 arithmetic on larger seeds wraps to negative
numbers). :func:`check_seed_range` checks a seed and the ``count`` seeds derived from it
before any work starts; the command line wraps it so that its message names the option
(``sbil.cli._common.check_seed`` and ``parse_seeds``).
"""

from __future__ import annotations

import numbers

#: The largest seed sbil accepts (2**32 - 1).
MAX_SEED = 2**32 - 1


def check_seed_range(
    seed: object, count: int = 1, *, name: str = "seed", unit: str = "episodes"
) -> int:
    """Return ``seed`` as an int if ``seed .. seed + count - 1`` all lie in ``0 .. MAX_SEED``.

    Args:
        seed: the first seed; an integer (numpy integers too, not bools).
        count: how many consecutive seeds are derived from it (e.g. the number of episodes).
        name: what to call the seed in the message (e.g. ``"--seed"``).
        unit: what the ``count`` derived seeds seed, for the message.

    Raises:
        ValueError: saying which seed falls outside the range, and the range.

    Example:
        >>> check_seed_range(4294967295)
        4294967295
        >>> check_seed_range(4294967295, 2)  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ValueError: seed 4294967295 with 2 episodes uses seeds up to 4294967296, ...
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"{name} must be an integer in 0..{MAX_SEED}, got {seed!r}.")
    seed = int(seed)
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{name} must be an integer in 0..{MAX_SEED} (2**32 - 1), got {seed}.")
    if count > 1 and seed + count - 1 > MAX_SEED:
        raise ValueError(
            f"{name} {seed} with {count} {unit} uses seeds up to {seed + count - 1}, past "
            f"the largest seed {MAX_SEED} (2**32 - 1); {name} must be at most "
            f"{MAX_SEED - count + 1}."
        )
    return seed
