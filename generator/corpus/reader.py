"""The one reader of a prepared corpus (``sfumato prepare``): a typed Corpus of VideoEntry.

Training (episodes), ``dataset build`` (segments and shots) and the generator-vs-detector rounds all
read the corpus through ``Corpus.open``; nothing else parses ``record.json`` or ``landmarks.npz``.
A video's landmarks load on first use, so listing a large corpus stays cheap.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from generator.corpus.prepare import INDEX_FILE, RECORD, read_corpus
from generator.errors import BadInputError


@dataclasses.dataclass(frozen=True)
class VideoEntry:
    """One finished video of the corpus: where it is, what it came from, and its kept frames."""

    video_id: str
    identity: str
    directory: Path  # the video's folder (absolute, or as the corpus root was given)
    crop_size: int  # side of the stored crops, in pixels
    frame_count: int = 0  # frames in the source video
    fps: float = 25.0
    source_path: str = ""
    source_sha256: str = ""
    record: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def dir(self) -> str:
        """The video's folder relative to the corpus root: ``<identity>/<video_id>``."""
        return f"{self.identity}/{self.video_id}"

    @functools.cached_property
    def _landmarks(self) -> tuple[np.ndarray, np.ndarray]:
        path = self.directory / self.record.get("files", {}).get("landmarks", "landmarks.npz")
        try:
            with np.load(path, allow_pickle=False) as z:
                return z["points"], z["frame_indices"]
        except (OSError, KeyError, ValueError) as exc:
            raise BadInputError(f"{path}: missing or unreadable corpus landmarks ({exc})") from exc

    @property
    def points(self) -> np.ndarray:
        """(N, 68, 2) landmarks of the kept frames, in crop pixels."""
        return self._landmarks[0]

    @property
    def frame_indices(self) -> np.ndarray:
        """(N,) source-video frame numbers of the kept frames."""
        return self._landmarks[1]

    @functools.cached_property
    def frame_files(self) -> tuple[str, ...]:
        """File names (relative to ``directory``) of the kept frames' crops."""
        pattern = self.record["files"]["frames"]
        return tuple(pattern.format(index=int(i)) for i in self.frame_indices)

    def frame_path(self, index: int) -> Path:
        """The crop of source frame ``index`` (a kept one)."""
        return self.directory / self.record["files"]["frames"].format(index=int(index))


def _entry(root: Path, rec: dict) -> VideoEntry:
    return VideoEntry(rec["video_id"], rec["identity"], root / rec["identity"] / rec["video_id"],
                      int(rec["crop"]["size"]), int(rec.get("frame_count") or 0),
                      float(rec.get("fps") or 25.0), rec.get("source_path", ""),
                      rec.get("source_sha256", ""), rec)


@dataclasses.dataclass(frozen=True)
class Corpus:
    """A prepared corpus: its root and its finished videos, sorted by identity and video id."""

    root: Path
    videos: tuple[VideoEntry, ...]

    @classmethod
    def open(cls, root: str | Path) -> Corpus:
        """Read the corpus at ``root``; BadInputError when it is missing, not a corpus, or empty."""
        root = Path(root)
        if not root.is_dir():
            raise BadInputError(f"{root}: no such corpus folder")
        if not (root / INDEX_FILE).is_file() and not any(root.glob(f"*/*/{RECORD}")):
            raise BadInputError(f"{root}: not a corpus (no {INDEX_FILE}); make one with 'sfumato prepare'")
        videos = tuple(_entry(root, rec) for rec in read_corpus(root))
        if not videos:
            raise BadInputError(f"{root}: the corpus holds no finished videos (make them with "
                                "'sfumato prepare')")
        return cls(root, videos)

    def __iter__(self) -> Iterator[VideoEntry]:
        return iter(self.videos)

    def __len__(self) -> int:
        return len(self.videos)

    @property
    def identities(self) -> list[str]:
        """The corpus's identities, sorted."""
        return sorted({v.identity for v in self.videos})

    def of(self, identity: str) -> list[VideoEntry]:
        """The videos of one identity."""
        return [v for v in self.videos if v.identity == identity]

    def select(self, identities: list[str] | None) -> list[VideoEntry]:
        """The videos of ``identities`` (all of them for None)."""
        return list(self.videos) if identities is None else [v for v in self.videos
                                                              if v.identity in identities]
