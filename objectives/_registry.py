"""Which dimensions exist, in which tiers, how each aggregates, and what its records are called.

Everything here is plain data, so a sweep can validate its objective config before any network loads.
A record name always carries its tier (``"proxy/dynamic_degree"``), so a proxy number can never be
mistaken for a VBench one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

TIERS = ("exact", "proxy", "vbench")
"""``exact``: weight-free and identical to VBench. ``proxy``: weight-free stand-in, NOT a VBench number.
``vbench``: VBench's protocol with the same networks, weights from a local directory."""

BACKENDS = ("proxy", "vbench")
"""What a caller asks for; each dimension resolves it to a tier (exact wins where it exists)."""


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One VBench quality dimension.

    ``aggregation`` is ``"pair_weighted"`` (VBench sums per-frame-pair values over all videos and divides
    by the number of pairs) or ``"mean"`` (mean of per-video values; for dynamic degree the per-video
    value is 0/1, so the mean is the fraction of dynamic videos). ``companions`` are extra continuous
    records (``<tier>/<name>_<companion>``), always averaged over videos. ``min_side`` is, per tier, the
    smallest frame side (pixels) that tier can score.
    """

    name: str
    tiers: tuple[str, ...]
    aggregation: str = "mean"
    companions: tuple[str, ...] = ()
    min_frames: int = 2
    min_side: Mapping[str, int] = dataclasses.field(default_factory=dict)
    direction: str = "maximize"


def _min_side_for_padding(multiple: int) -> int:
    """RAFT (dynamic degree) and AMT-S (motion smoothness) pool their 1/8-resolution correlation volume three
    times; under 2 pixels there, their lookup divides by zero (VBench returns NaN), so the frame padded to a
    multiple of ``multiple`` must be at least 128 px a side: 121 px unpadded for RAFT's 8, 113 for AMT's 16."""
    return 128 - multiple + 1


DIMENSIONS: dict[str, Dimension] = {
    d.name: d
    for d in (
        Dimension("temporal_flickering", tiers=("exact",)),
        Dimension("dynamic_degree", tiers=("proxy", "vbench"), companions=("magnitude",),
                  min_side={"vbench": _min_side_for_padding(8)}),
        Dimension("subject_consistency", tiers=("proxy", "vbench"), aggregation="pair_weighted"),
        Dimension("background_consistency", tiers=("proxy", "vbench"), aggregation="pair_weighted"),
        Dimension("motion_smoothness", tiers=("proxy", "vbench"), min_frames=3,
                  min_side={"vbench": _min_side_for_padding(16)}),
        Dimension("aesthetic_quality", tiers=("proxy", "vbench")),
        Dimension("imaging_quality", tiers=("proxy", "vbench")),
    )
}

# Per-video parts that pair-weighted aggregation needs; they are records too, under the main name.
PAIR_SUM, PAIR_COUNT = "sum", "pairs"


class TierUnavailableError(NotImplementedError):
    """The asked tier does not exist for a dimension; the message says which tiers it has."""


def dimension(name: str) -> Dimension:
    """Return the :class:`Dimension` called ``name``; raises ``ValueError`` naming an unknown one."""
    try:
        return DIMENSIONS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown dimension {name!r}; expected one of {sorted(DIMENSIONS)}") from None


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {list(BACKENDS)}")


def available(name: str, backend: str = "proxy") -> bool:
    """Whether ``name`` can be scored under ``backend``; raises ``ValueError`` on an unknown name or backend."""
    dim = dimension(name)
    _check_backend(backend)
    return "exact" in dim.tiers or backend in dim.tiers


def tier(name: str, backend: str = "proxy") -> str:
    """The tier that ``backend`` resolves to for ``name``: ``exact`` where one exists, else ``backend``.

    Raises ``ValueError`` on an unknown name or backend, :class:`TierUnavailableError` (saying what is
    missing) when that tier cannot be provided.
    """
    dim = dimension(name)
    _check_backend(backend)
    if "exact" in dim.tiers:
        return "exact"
    if backend in dim.tiers:
        return backend
    raise TierUnavailableError(f"{name!r} has no {backend!r} tier; its tiers: {list(dim.tiers)}")


def min_side(name: str, backend: str = "proxy") -> int:
    """The smallest frame side (pixels, height and width alike) that ``name`` can be scored at under
    ``backend`` (1 where there is no limit). Raises as :func:`tier`."""
    return DIMENSIONS[name].min_side.get(tier(name, backend), 1)


def record_name(name: str, backend: str = "proxy") -> str:
    """The main record name of ``name`` under ``backend``, e.g. ``"exact/temporal_flickering"``."""
    return f"{tier(name, backend)}/{name}"


def record_names(name: str, backend: str = "proxy") -> list[str]:
    """The main record name followed by its companions', e.g. ``["proxy/dynamic_degree",
    "proxy/dynamic_degree_magnitude"]``. Aggregation parts (``.../sum``, ``.../pairs``) are not listed."""
    return tier_records(name, tier(name, backend))


def tier_records(name: str, tier_name: str) -> list[str]:
    """Main and companion record names of dimension ``name`` in tier ``tier_name`` (no validation)."""
    main = f"{tier_name}/{name}"
    return [main] + [f"{main}_{c}" for c in DIMENSIONS[name].companions]


def direction(name: str) -> str:
    """``"maximize"`` or ``"minimize"`` for a dimension or any of its record names (all VBench dimensions
    are higher-is-better). Raises ``ValueError`` on an unknown name."""
    base = name.split("/")[1] if "/" in name else name
    for dim in DIMENSIONS.values():
        if base == dim.name or base in {f"{dim.name}_{c}" for c in dim.companions}:
            return dim.direction
    raise ValueError(f"unknown dimension or record {name!r}; expected one of {sorted(DIMENSIONS)}")


def resolve(dimensions: Iterable[str] | str, backend: str | Mapping[str, str] = "proxy") -> dict[str, str]:
    """Validate a config: return ``{dimension: tier}`` in the given order, loading nothing.

    ``backend`` is one backend for all, or a mapping ``{dimension: backend}`` (missing ones default to
    ``"proxy"``). Raises ``ValueError`` on an empty list, a duplicate, an unknown dimension or backend, and
    :class:`TierUnavailableError` when a tier cannot be provided.
    """
    names = [dimensions] if isinstance(dimensions, str) else list(dimensions)
    if not names:
        raise ValueError("dimensions is empty; expected at least one of " f"{sorted(DIMENSIONS)}")
    if isinstance(backend, Mapping):
        for key in backend:
            if key not in names:
                raise ValueError(f"backend mapping names {key!r}, which is not among the dimensions {names}")
    resolved: dict[str, str] = {}
    for name in names:
        if name in resolved:
            raise ValueError(f"dimension {name!r} is listed twice")
        chosen = backend.get(name, "proxy") if isinstance(backend, Mapping) else backend
        resolved[name] = tier(name, chosen)
    return resolved
