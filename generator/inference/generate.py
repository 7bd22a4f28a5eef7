"""The main job: a signed talking-head video of a face from one or a few pictures and a driver.

source picture(s) -> person (feed-forward or fine-tuned, or a person file) ; driver video / landmark
file / built-in track -> landmark track -> motion transfer onto the source's landmarks -> G -> frames
-> H.264 mp4 -> C2PA manifest. ``generate`` is the library call behind ``sfumato generate``.

Bad input gives a clear error or a documented fallback, never a hole or a crash (see ``generate``):
small, turned or covered source faces (``generator.faces.shots``), driving landmarks that fold the warp
mesh, and driver frames without a face.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from generator.errors import BadInputError, MissingWeightsError
from generator.faces.motion import describe_gaps, smooth_track, transfer_motion
from generator.inference.person import PRECISIONS, Person, autocast_dtype, resolve_precision
from generator.inference.render import (
    Driver,
    Paster,
    PreviewPanel,
    is_landmark_file,
    load_driver,
    render_video,
)
from generator.io.encode import copy_audio
from generator.io.files import check_writable, sha256_file
from generator.io.video import is_image_path
from generator.provenance import GenerationInfo, SigningOptions, sign_generated, verify_file

# The default model (MODEL_CARD.md); the bundled detector was trained on its fakes and records its hash.
BUNDLED_MODEL = Path(__file__).resolve().parents[1] / "weights" / "sfumato_texture128.safetensors"
# Share of the crop that folded warp triangles may cover in a frame before generate warns: real
# extreme turns (magicportrait_driving's near-profile frames) reach 1.3%; crossed-over landmarks 4-40%.
FOLD_WARN_AREA = 0.03

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class GenerateConfig:
    """Everything about one generation besides its inputs."""

    motion: str = "relative"  # relative (keep the source's face shape) or absolute
    shots: int | None = None  # T: at most this many source frames (None: all)
    finetune_steps: int = 0  # 0 = feed-forward
    seed: int = 0
    size: int | None = None  # output side in pixels (default: the model's)
    fps: float | None = None  # default: the driver's (25 for the built-in track)
    start: int = 0  # first driver frame
    end: int | None = None  # one past the last driver frame
    seconds: float = 4.0  # length of the built-in track
    smooth: int = 5  # Savitzky-Golay window over the driver's landmarks (0 = off)
    preview: bool = False  # driver | landmarks | output side by side
    png_dir: str | None = None  # also export every frame as PNG here
    batch_size: int = 8
    precision: str = "auto"  # G under autocast: fp16 (CUDA) or bf16; auto = bf16 where native
    crf: int = 18
    audio: bool = True  # carry a driving video's audio track into the output
    paste: str = "none"  # none (the face crop), source (into the source picture), driver (into
    #                      the driving video's frames)

    def __post_init__(self):
        if self.motion not in ("relative", "absolute"):
            raise BadInputError(f"motion must be relative or absolute, not {self.motion!r}")
        if self.start < 0 or (self.end is not None and self.end <= self.start):
            raise BadInputError("the frame range must satisfy 0 <= start < end")
        if self.paste not in ("none", "source", "driver"):
            raise BadInputError(f"paste must be none, source or driver, not {self.paste!r}")
        if self.precision not in PRECISIONS:
            raise BadInputError(f"precision must be one of {', '.join(PRECISIONS)}, not "
                                f"{self.precision!r}")
        if self.paste != "none" and self.preview:
            raise BadInputError("--preview shows face crops; it does not combine with --paste")


def default_source(tmp: Path) -> Path:
    """The built-in source picture: scikit-image's astronaut, written to ``tmp``."""
    from generator.io.samples import write_astronaut_image

    return write_astronaut_image(tmp / "astronaut.png")


def resolve_checkpoint(checkpoint: str | Path | None) -> Path:
    """The meta checkpoint to use: the one given, else the bundled model (a clear error if absent)."""
    ck = Path(checkpoint) if checkpoint else BUNDLED_MODEL
    if not ck.is_file():
        if checkpoint:
            raise MissingWeightsError(f"checkpoint {ck} not found")
        raise MissingWeightsError(
            f"the bundled model {ck} is missing from this installation: reinstall sfumato, or pass "
            "--checkpoint (a run's checkpoint.safetensors) or --person (from 'sfumato finetune')")
    return ck


def resolve_person(checkpoint: str | Path | None, person: str | Path | None, sources: list[Path],
                config: GenerateConfig, device: str = "cpu", progress: bool = False,
                vgg19: str | None = None, vggface: str | None = None, backend=None):
    """A Person and its source landmarks (crop pixels) from a person file or checkpoint + sources.

    ``backend``: the face backend for the sources, or a function returning it (called once the
    model is loaded, so that it can load meanwhile).
    """
    from generator.faces.shots import frontal_first, load_shots
    from generator.inference.person import load_person
    from generator.model.config import LossConfig
    from generator.model.talking_head import load_meta_model
    from generator.training.finetune import FinetuneConfig, make_person
    from generator.training.losses import build_content_loss, choose_content

    if person is not None:
        p = load_person(person, device)  # (a person file needs no face backend)
        if "source_points" not in p.meta:
            raise BadInputError(f"{person}: person file lacks its source landmarks; remake it with "
                                "'sfumato finetune'")
        return p, np.asarray(p.meta["source_points"], np.float32)[0], p.meta.get("source_sha256", {})
    ck = resolve_checkpoint(checkpoint)
    # Feed-forward rendering needs E and G only; fine-tuning trains against D too.
    model, meta = load_meta_model(ck, device, with_d=config.finetune_steps > 0)
    if callable(backend):  # loading alongside the model: wait for it now
        backend = backend()
    # The first shot gives the face shape the motion moves: a frontal one, if any (see frontal_first).
    shots = frontal_first(load_shots(sources, model.cfg.image_size, config.shots, backend))
    torch.manual_seed(config.seed)
    ft, perceptual = None, None
    if config.finetune_steps:
        # Fine-tuning fits the default content loss (packaged Lite0 features), or the paper's VGG
        # loss when its files are given.
        losses = LossConfig(content=choose_content(None, vgg19, vggface))
        perceptual = build_content_loss(losses, vgg19, vggface).to(device)
        ft = FinetuneConfig(steps=config.finetune_steps, seed=config.seed, losses=losses)
    p = make_person(model, shots, ft, perceptual, progress)
    p.meta.update({"preset": meta.get("preset"), "checkpoint_sha256": sha256_file(ck),
                   "shots": len(shots), "sources": shots.origins, "warnings": list(shots.warnings)})
    return p, shots.points[0], shots.source_sha256



@dataclasses.dataclass
class GenerateResult:
    """What one ``generate`` made and measured; ``to_dict()`` is ``sfumato generate --json``."""

    output: str
    frames: int
    size: list[int]  # [height, width] of the written frames
    fps: float
    fps_achieved: float  # frames per second of the whole run's wall clock
    render_seconds: float  # in G
    encode_busy_seconds: float  # composing + encoding on the sink's thread (overlaps G)
    seconds: float  # the whole run's wall clock
    precision: str
    stage_seconds: dict[str, float]  # person, driver_landmarks, render_G, compose_encode, sign
    driver: str  # builtin, video, landmarks
    driver_frames_without_face: list[int]
    driver_frames_folded: list[int]
    warnings: list[str]
    motion: str
    audio: bool  # the driving video's audio was carried over
    manifest: str  # the C2PA state read back from the output, Absent when unsigned
    signed: bool

    def to_dict(self) -> dict:
        """The JSON-ready summary."""
        return dataclasses.asdict(self)  # keys in field order: the --json documents


@dataclasses.dataclass
class SkippedOutput:
    """A batch output kept as it was: already signed for this picture, model, driver and settings."""

    output: str
    source: str
    skipped: bool = True

    def to_dict(self) -> dict:
        """The JSON-ready entry."""
        return dataclasses.asdict(self)  # keys in field order: the --json documents


@dataclasses.dataclass
class BatchFailure:
    """A batch picture that gave no output, and why."""

    input: str
    error: str

    def to_dict(self) -> dict:
        """The JSON-ready entry."""
        return dataclasses.asdict(self)  # keys in field order: the --json documents


@dataclasses.dataclass
class BatchResult:
    """What ``generate_batch`` made or kept, and the pictures that failed."""

    results: list[GenerateResult | SkippedOutput]
    failures: list[BatchFailure]

    def to_dict(self) -> dict:
        """The JSON-ready summary of ``sfumato generate --batch --json``."""
        return {"results": [r.to_dict() for r in self.results],
                "failed": [f.to_dict() for f in self.failures]}


def generate(out: str | Path, sources: list[str | Path] = (), driver: str | Path | None = None,
             checkpoint: str | Path | None = None, person: str | Path | None = None,
             config: GenerateConfig = GenerateConfig(), signing: SigningOptions = SigningOptions(),
             device: str = "cpu", progress: bool = False, vgg19: str | None = None,
             vggface: str | None = None, backend=None) -> GenerateResult:
    """Render a talking-head video; see the module docstring. Returns what it made and measured.

    ``backend``: the face backend for the sources and the driver, or a function returning it;
    None: dlib's, loaded on a thread while the model loads.

    Bad input, and what happens (each warning is logged and listed in the result's ``warnings``):

    - source face under 64 px across (its landmark box): upscaled to the model's crop with a warning
      that the output will be soft; under 24 px: BadInputError naming the size and the minimum;
    - source face turned more than 30 degrees (yaw from the landmarks) or partly covered by something
      flat or off-colour: a warning (the hidden side cannot be shown); with several shots the most
      frontal one gives the face shape; a full profile or half-hidden face is usually not detected:
      NoFaceError;
    - driving landmarks that fold the warp mesh (points crossing over: extreme turns, bad fits,
      synthetic tracks): the warp masks the folded triangles and still colours every pixel, G paints
      there; frames where folds cover over ``FOLD_WARN_AREA`` of the crop are counted
      (``driver_frames_folded``) with a warning;
    - driver frames without a face: they hold the last face's landmarks (leading ones the first
      face's), listed in ``driver_frames_without_face`` with a warning; no face in any frame:
      NoFaceError.
    """
    if person is not None and (sources or checkpoint is not None):
        raise BadInputError("--person already holds the source and the model: leave out --source "
                            "and --checkpoint")
    out = check_writable(out)
    precision = resolve_precision(config.precision, torch.device(device))
    autocast_dtype(precision, torch.device(device))  # fp16 off CUDA fails here, before any work
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(1) as loader:
        srcs = [Path(s) for s in sources] or ([] if person else [default_source(Path(tmp))])
        backend = _face_backend(backend, srcs, driver, loader)
        p, source_points, source_hashes = resolve_person(checkpoint, person, srcs, config, device,
                                                         progress, vgg19, vggface, backend)
        if callable(backend):
            backend = backend()
        stages = {"person": time.perf_counter() - t0}
        t = time.perf_counter()
        drv = load_driver(driver, config, backend)
        stages["driver_landmarks"] = time.perf_counter() - t
        warnings = list(p.meta.get("warnings") or [])
        track, points, folded = _drive(p, drv, source_points, config, warnings)
        size = config.size or p.image_size
        fps = config.fps or drv.fps
        paster, preview = _panels(p, drv, driver, person, config, size)
        stats = render_video(out, p, points, track, fps, size, config, precision, paster, preview,
                             progress)
        generation = _generation_info(p, person, drv, config, source_hashes, len(points), fps, precision)
        images = [x for x in srcs if is_image_path(x)]
        audio = False
        if drv.kind == "video" and config.audio:  # the driver's voice goes with its motion
            audio = copy_audio(out, driver, config.start / drv.fps, len(points) / drv.fps)
        stages["render_G"] = stats.render_seconds
        # The part of composing + encoding that G's rendering did not hide (the sink's busy time
        # overlaps G; this is what it added to the wall clock).
        stages["compose_encode"] = time.perf_counter() - stats.started - stats.render_seconds
        t = time.perf_counter()
        signed = sign_generated(out, generation, signing, ingredients=images)
        stages["sign"] = time.perf_counter() - t
    wall = time.perf_counter() - t0
    state = verify_file(out).state if signed["signed"] else "Absent"
    return GenerateResult(
        output=str(out), frames=len(points), size=list(stats.frame_shape), fps=fps,
        fps_achieved=round(len(points) / wall, 2), render_seconds=round(stats.render_seconds, 3),
        encode_busy_seconds=round(stats.encode_busy_seconds, 3), seconds=round(wall, 3),
        precision=precision, stage_seconds={k: round(v, 4) for k, v in stages.items()},
        driver=drv.kind, driver_frames_without_face=drv.filled, driver_frames_folded=folded,
        warnings=warnings, motion=config.motion, audio=audio, manifest=state, signed=signed["signed"])


def _face_backend(backend, sources: list[Path], driver: str | Path | None, loader: ThreadPoolExecutor):
    """The face backend for the sources and the driver: as given, or dlib's loading on ``loader``;
    a function returning it is wrapped to make it once."""
    if backend is None and (sources or (driver is not None and not is_landmark_file(driver))):
        from generator.faces.backends import create_backend

        # dlib's models (~1 s to read) load once for the source and the driver, on a thread
        # while the model loads: dlib releases the GIL, so the two overlap.
        backend = loader.submit(create_backend, "dlib").result
    if callable(backend):
        backend = functools.cache(backend)  # asked for by the source, then the driver: made once
    return backend


def _drive(p: Person, drv: Driver, source_points: np.ndarray, config: GenerateConfig,
           warnings: list[str]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The driver's track (smoothed unless built-in), the source landmarks it moves frame by frame,
    and the frames where those fold the warp mesh; faceless and folded frames add to ``warnings``."""
    from generator.faces.warp import folded_area

    if drv.filled:
        warnings.append(f"driver: {describe_gaps(drv.filled, len(drv.track))} had no face: they hold "
                        "the last face's landmarks (the first face's before it)")
        log.warning(warnings[-1])
    track = smooth_track(drv.track, config.smooth) if drv.kind != "builtin" else drv.track
    points = transfer_motion(source_points, track, config.motion)
    folded = np.flatnonzero(folded_area(points, p.image_size) > FOLD_WARN_AREA).tolist()
    if folded:
        # The warp masks folded triangles and still colours them (no hole); say where G paints alone.
        warnings.append(f"driving landmarks cross over (fold the face mesh) in "
                        f"{describe_gaps(folded, len(points))}: expect smeared or painted-over areas "
                        "there")
        log.warning(warnings[-1])
    return track, points, folded


def _panels(p: Person, drv: Driver, driver: str | Path | None, person: str | Path | None,
            config: GenerateConfig, size: int) -> tuple[Paster | None, PreviewPanel | None]:
    """The paster (``--paste``) and the preview panel (``--preview``) the config asks for, if any."""
    paster = None
    preview = PreviewPanel(drv, size) if config.preview else None
    if config.paste != "none":
        origin = None if person else (p.meta.get("sources") or [None])[0]
        paster = Paster(config.paste, p.meta, origin, driver, drv, config, p.image_size)
    return paster, preview


def _generation_info(p: Person, person: str | Path | None, drv: Driver, config: GenerateConfig,
                     source_hashes: dict, frames: int, fps: float, precision: str) -> GenerationInfo:
    """How the video was made, for its C2PA manifest."""
    return GenerationInfo(
        preset=p.meta.get("preset"), checkpoint_sha256=p.meta.get("checkpoint_sha256"),
        shots=p.meta.get("shots"), finetune_steps=config.finetune_steps if not person else
        (p.meta.get("finetune") or {}).get("steps"), seed=config.seed, driver_kind=drv.kind,
        source_sha256=sorted(set(source_hashes.values())), driver_sha256=drv.sha256,
        extra={"motion": config.motion, "frames": frames, "fps": fps, "precision": precision,
               "settings_sha256": settings_digest(config)})


def settings_digest(config: GenerateConfig) -> str:
    """sha256 of the settings that shape the output (stored in the manifest; batch resume compares it)."""
    import hashlib

    shaping = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("png_dir",)}
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()


def batch_outputs(folder: str | Path, out_dir: str | Path) -> list[tuple[Path, Path]]:
    """(picture, output mp4) for every picture in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInputError(f"{folder}: not a folder")
    pictures = sorted(p for p in folder.iterdir() if p.is_file() and is_image_path(p))
    if not pictures:
        raise BadInputError(f"no pictures in {folder}")
    return [(p, Path(out_dir) / f"{p.stem}.mp4") for p in pictures]


def batch_request(driver: str | Path | None, checkpoint: str | Path | None,
                  config: GenerateConfig) -> dict:
    """What every output of one batch shares in its manifest: model, driver and settings hashes."""
    ck = Path(checkpoint) if checkpoint else BUNDLED_MODEL
    return {"checkpoint_sha256": sha256_file(ck) if ck.is_file() else None,
            "driver_sha256": sha256_file(driver) if driver else None,
            "settings_sha256": settings_digest(config)}


def already_generated(out: Path, source: Path, request: dict) -> bool:
    """True if ``out`` is a finished, signed output of this very request (same picture, and the
    model, driver and settings of ``batch_request``, read from its C2PA manifest): what batch mode
    skips when rerun."""
    from generator.provenance.verify import TRUSTED, VALID

    if not out.is_file():
        return False
    v = verify_file(out)
    g = v.generation or {}
    if v.state not in (TRUSTED, VALID):
        return False  # unsigned (killed before signing, or --no-sign), tampered or foreign: redo
    return (g.get("checkpoint_sha256") == request["checkpoint_sha256"]
            and g.get("driver_sha256") == request["driver_sha256"]
            and (g.get("extra") or {}).get("settings_sha256") == request["settings_sha256"]
            and g.get("source_sha256") == [sha256_file(source)])



def generate_batch(folder: str | Path, out_dir: str | Path, driver: str | Path | None = None,
                   checkpoint: str | Path | None = None, config: GenerateConfig = GenerateConfig(),
                   signing: SigningOptions = SigningOptions(), device: str = "cpu",
                   progress: bool = False, vgg19: str | None = None, vggface: str | None = None,
                   on_result=None) -> BatchResult:
    """One signed video per picture in ``folder``, written to ``out_dir/<picture stem>.mp4``.

    Resumable: an output already signed for the same picture, model, driver and settings is kept
    (a ``SkippedOutput``). A picture that fails (no face, unreadable) is listed in the failures and
    the others are still made. ``on_result(result)`` is called as each picture finishes (with its
    ``GenerateResult``, ``SkippedOutput`` or ``BatchFailure``).
    """
    from generator.errors import SfumatoError

    pairs = batch_outputs(folder, out_dir)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    request = batch_request(driver, checkpoint, config)  # hashed once, not per picture
    results, failures = [], []
    backend = None  # dlib's models, read once for the whole folder (~1 s each time otherwise)
    for pic, out in pairs:
        try:
            if already_generated(out, pic, request):
                r = SkippedOutput(str(out), str(pic))
            else:
                if backend is None:
                    from generator.faces.backends import create_backend

                    backend = create_backend("dlib")
                r = generate(out, [pic], driver, checkpoint, None, config, signing, device,
                             progress, vgg19, vggface, backend)
        except SfumatoError as exc:
            failure = BatchFailure(str(pic), str(exc))
            failures.append(failure)
            if on_result is not None:
                on_result(failure)
            continue
        results.append(r)
        if on_result is not None:
            on_result(r)
    return BatchResult(results, failures)
