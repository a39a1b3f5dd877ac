"""``python -m sbil.experiments.learner_consistency``: the study's command line."""

from sbil.experiments.learner_consistency.writing import main

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
