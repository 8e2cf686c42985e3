"""Loaded into a sweep by ``bench_sweep_overhead.py`` (``imports=[_generation_timer]``): times every
``generate`` and ``score_video`` call and writes the totals to ``$VBOOST_TIMER_OUT`` when the process exits."""

import atexit
import functools
import json
import os
import time

import objectives
from vboost.backbones import BACKBONES

totals = {"generate_s": 0.0, "score_s": 0.0, "clips": 0}


def _timed(function, key):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[key] += time.perf_counter() - start
            totals["clips"] += key == "generate_s"

    return wrapper


# Wrap each generate where it is defined (the DiT adapters share one), once.
for defining in {next(k for k in cls.__mro__ if "generate" in vars(k)) for cls in BACKBONES.values()}:
    defining.generate = _timed(defining.generate, "generate_s")
objectives.Scorer.score_video = _timed(objectives.Scorer.score_video, "score_s")
atexit.register(lambda: open(os.environ["VBOOST_TIMER_OUT"], "w").write(json.dumps(totals)))
