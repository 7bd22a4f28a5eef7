"""The plan of a dataset build: its settings, the identity split, the clips to make and the shards.

A pure function of the corpus and the settings (see ``benchmarks.datasets.build`` for the whole
build): identities split train / val / test, never one identity in two splits; per identity
``clips_per_identity`` real segments, each the target of ``fakes_per_real`` fakes drawn round-robin
from the grid method x shots T x mode. Every seed derives from the build seed and a name, so shards,
reruns and one-process runs plan the same clips.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections import defaultdict
from typing import TYPE_CHECKING

import numpy as np

from detector.data.schema import COMPRESSIONS
from generator.errors import BadInputError

if TYPE_CHECKING:  # the corpus package imports torch: keep `dataset --help` light
    from generator.corpus.reader import Corpus, VideoEntry

METHODS = ("self", "cross")
MODES = ("FF", "FT")


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """What to build; every field shapes the dataset (and is part of its digest)."""

    splits: tuple[float, float, float] = (0.72, 0.14, 0.14)  # train / val / test identity shares
    methods: tuple[str, ...] = METHODS
    shots: tuple[int, ...] = (1, 8, 32)  # T
    modes: tuple[str, ...] = MODES
    fakes_per_real: int = 4  # fakes per real clip, round-robin over the grid; 0 = the whole grid
    clips_per_identity: int = 1
    clip_frames: int = 64
    compressions: tuple[str, ...] = ("c0", "c23", "c40")
    finetune_steps: int = 40  # FT mode
    max_side: int = 512  # frames larger than this are scaled down
    min_face_share: float = 0.9  # a segment needs a face in this share of its frames
    x264_preset: str = "medium"
    seed: int = 0
    # hard examples (issue 9): render ``candidates`` per planned fake and keep one that passes
    candidates: int = 1
    min_realism: float | None = None  # keep a fake only if its mean r is at least this
    realism_quantile: float | None = None  # ... at least this quantile of the real clips' mean r
    hard_for_sha256: str | None = None  # among those, keep the one this detector scores most real
    split_seed: int | None = None  # the identity split's seed when it differs from ``seed`` (rounds)

    def __post_init__(self):
        if len(self.splits) != 3 or min(self.splits) < 0 or not 0.999 < sum(self.splits) < 1.001:
            raise BadInputError(f"splits must be three shares summing to 1, got {self.splits}")
        if not self.methods or set(self.methods) - set(METHODS):
            raise BadInputError(f"methods must be among {', '.join(METHODS)}, got {self.methods}")
        if not self.modes or set(self.modes) - set(MODES):
            raise BadInputError(f"modes must be among {', '.join(MODES)}, got {self.modes}")
        if not self.shots or min(self.shots) < 1:
            raise BadInputError(f"shots T must be positive, got {self.shots}")
        if not self.compressions or set(self.compressions) - set(COMPRESSIONS):
            raise BadInputError(f"compressions must be among {', '.join(COMPRESSIONS)}, got "
                                f"{self.compressions}")
        if self.clip_frames < 2 or self.clips_per_identity < 1 or self.fakes_per_real < 0:
            raise BadInputError("clip_frames >= 2, clips_per_identity >= 1 and fakes_per_real >= 0")
        if self.candidates < 1:
            raise BadInputError(f"candidates must be >= 1, got {self.candidates}")
        if self.min_realism is not None and self.realism_quantile is not None:
            raise BadInputError("give a realism threshold (--min-realism) or a quantile "
                                "(--realism-quantile), not both")
        if self.realism_quantile is not None and not 0.0 <= self.realism_quantile <= 1.0:
            raise BadInputError(f"the realism quantile must be in 0..1, got {self.realism_quantile}")

    @property
    def filtering(self) -> bool:
        """Whether fakes are chosen among candidates or by a threshold (hard examples)."""
        return (self.candidates > 1 or self.min_realism is not None or self.realism_quantile is not None
                or self.hard_for_sha256 is not None)

    def to_doc(self) -> dict:
        """The settings as they enter the digest: fields added later are left out at their defaults,
        so datasets built before them keep their digest (and can still be resumed)."""
        d = dataclasses.asdict(self)
        for name in _LATER_FIELDS:
            if d[name] == _DEFAULTS[name]:
                del d[name]
        return d


_LATER_FIELDS = ("candidates", "min_realism", "realism_quantile", "hard_for_sha256", "split_seed")
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(BuildConfig)}


@dataclasses.dataclass(frozen=True)
class Segment:
    """Frames [start, start + n) of one corpus video."""

    video: str  # corpus-relative folder: identity/video_id
    start: int


@dataclasses.dataclass(frozen=True)
class ClipPlan:
    """One clip to make."""

    clip_id: str
    label: str
    split: str
    method: str
    source_identity: str
    driver_identity: str
    target: Segment  # the real frames (and the background and pose of a fake)
    driver: Segment  # whose expressions (= target for real and self)
    shots: int | None
    mode: str | None
    seed: int

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ClipPlan:
        """Inverse of ``to_dict``."""
        return cls(**{**d, "target": Segment(**d["target"]), "driver": Segment(**d["driver"])})


def derived_seed(seed: int, key: str) -> int:
    """A seed for one named thing, independent of order, shard and process."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:4], "little") >> 1


# -- the plan ------------------------------------------------------------------------------------
def split_identities(identities: list[str], shares: tuple[float, float, float], seed: int,
                     min_per_split: int = 1) -> dict[str, str]:
    """identity -> train | val | test, seeded; every split with a non-zero share gets at least
    ``min_per_split`` identities, else a clear error."""
    ids = sorted(identities)
    n = len(ids)
    want = [min_per_split if s > 0 else 0 for s in shares]
    if n < sum(want):
        raise BadInputError(
            f"the corpus has {n} usable identities; splits {'/'.join(f'{s:g}' for s in shares)} need at "
            f"least {sum(want)} ({min_per_split} per split"
            + (", as cross-reenactment drives each face by another of its split" if min_per_split > 1 else "")
            + "): add identities, or change --splits / --methods")
    counts = [max(w, round(s * n)) for s, w in zip(shares[1:], want[1:])]
    counts = [n - sum(counts), *counts]
    while counts[0] < want[0]:  # rounding up the small splits starved train: take back from the largest
        k = 1 + int(np.argmax([c - w for c, w in zip(counts[1:], want[1:])]))
        counts[k] -= 1
        counts[0] += 1
    order = np.random.default_rng(seed).permutation(n)
    names = ["train"] * counts[0] + ["val"] * counts[1] + ["test"] * counts[2]
    return {ids[i]: names[k] for k, i in enumerate(order)}


def _segments(videos: list[VideoEntry], frames: int, wanted: int) -> list[Segment]:
    """``wanted`` segments spread over an identity's videos (fewer if they are short)."""
    candidates = []
    for v in videos:
        n = v.frame_count // frames
        if n:
            starts = np.linspace(0, v.frame_count - frames, n).round().astype(int)
            candidates += [Segment(v.dir, int(s)) for s in starts]
    if len(candidates) <= wanted:
        return candidates
    return [candidates[i] for i in np.linspace(0, len(candidates) - 1, wanted).round().astype(int)]


def make_plan(videos: Corpus | list[VideoEntry], config: BuildConfig
              ) -> tuple[list[ClipPlan], dict[str, str], list[dict]]:
    """(clips, identity -> split, skipped identities with reasons) for a corpus; deterministic."""
    from generator.corpus.prepare import slug

    by_id: dict[str, list[VideoEntry]] = defaultdict(list)
    for v in videos:
        by_id[v.identity].append(v)
    segments, skipped = {}, []
    for ident in sorted(by_id):
        segs = _segments(by_id[ident], config.clip_frames, config.clips_per_identity)
        if segs:
            segments[ident] = segs
        else:
            longest = max(v.frame_count for v in by_id[ident])
            skipped.append({"identity": ident, "reason": f"no video has {config.clip_frames} frames "
                                                         f"(longest: {longest})"})
    need = 2 if "cross" in config.methods else 1
    split = split_identities(list(segments), config.splits,
                             config.seed if config.split_seed is None else config.split_seed, need)
    grid = [(m, t, mode) for m in config.methods for t in config.shots for mode in config.modes]
    grid = [grid[i] for i in np.random.default_rng(config.seed).permutation(len(grid))]
    per_real = len(grid) if config.fakes_per_real == 0 else min(config.fakes_per_real, len(grid))
    clips, q = [], 0
    for ident in sorted(segments):
        peers = sorted(i for i in segments if split[i] == split[ident] and i != ident)
        for s, seg in enumerate(segments[ident]):
            name = f"{slug(ident)}_s{s}"
            clips.append(ClipPlan(f"real_{name}", "real", split[ident], "real", ident, ident, seg, seg,
                                  None, None, derived_seed(config.seed, f"real_{name}")))
            for j in range(per_real):
                method, t, mode = grid[(q * per_real + j) % len(grid)]
                if method == "self":
                    drv, dseg, cid = ident, seg, f"self_{slug(ident)}_T{t}_{mode}_s{s}"
                else:
                    drv = peers[derived_seed(config.seed, f"driver:{name}:{j}") % len(peers)]
                    dseg = segments[drv][s % len(segments[drv])]
                    cid = f"cross_{slug(ident)}_by_{slug(drv)}_T{t}_{mode}_s{s}"
                clips.append(ClipPlan(cid, "fake", split[ident], method, ident, drv, seg, dseg, t, mode,
                                      derived_seed(config.seed, cid)))
            q += 1
    ids = [c.clip_id for c in clips]
    if len(set(ids)) != len(ids):
        raise BadInputError("two identities give the same clip id after slugging; rename one")
    return clips, split, skipped


def in_shard(clip: ClipPlan, identities: list[str], shard: tuple[int, int]) -> bool:
    """Shards take whole target identities (their persons and tracks are made once per shard)."""
    i, n = shard
    return identities.index(clip.source_identity) % n == i


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'i/n' -> (i, n); None -> from torchrun's RANK / WORLD_SIZE when set, else None."""
    if text is None:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return (int(os.environ.get("RANK", "0")), world) if world > 1 else None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise BadInputError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not 0 <= i < n:
        raise BadInputError(f"--shard {text}: need 0 <= i < n")
    return i, n

