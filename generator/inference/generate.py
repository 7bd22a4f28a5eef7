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

import cv2
import numpy as np
import torch

from generator.errors import BadInputError, MissingWeightsError, NoFaceError
from generator.faces.landmarks import landmark_image
from generator.faces.motion import builtin_track, describe_gaps, fill_missing, smooth_track, transfer_motion
from generator.inference.person import PRECISIONS, autocast_dtype, resolve_precision
from generator.io.files import sha256_file
from generator.io.video import MediaReader, VideoWriter, copy_audio, is_image_path, write_image
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


@dataclasses.dataclass
class Driver:
    """A landmark track (N, 68, 2) to drive with, and where it came from."""

    track: np.ndarray
    kind: str  # builtin, video, landmarks
    fps: float
    sha256: str | None = None
    filled: list[int] = dataclasses.field(default_factory=list)  # frames without a face (held)
    raw: np.ndarray | None = None  # a video's tracked points before filling (NaN: no face)
    path: Path | None = None
    start: int = 0  # first driver frame used


def is_landmark_file(path: str | Path) -> bool:
    """A driver given as a landmark file from ``sfumato landmarks`` (npz/json), not a video."""
    return Path(path).suffix.lower() in (".npz", ".json")


def load_driver(driver: str | Path | None, config: GenerateConfig, backend=None) -> Driver:
    """Read the driver: a video (faces tracked), a landmark file from ``sfumato landmarks``, or None
    for the built-in track. Frames where the driver shows no face hold the last landmarks (leading
    ones the first found) and are listed in ``Driver.filled``; no face in any frame is a NoFaceError."""
    if driver is None:
        track = builtin_track(config.seconds, config.fps or 25.0, config.seed)
        return Driver(track[config.start:config.end], "builtin", config.fps or 25.0)
    path = Path(driver)
    if is_landmark_file(path):
        return _landmark_file_driver(path, config)
    from generator.faces.backends import create_backend
    from generator.faces.tracking import TrackerConfig, track_video

    track = track_video(path, backend or create_backend("dlib"), TrackerConfig(), start=config.start,
                        end=config.end)
    fps = track.info.fps or 25.0
    points = list(track.points)  # NaN where the driver shows no face
    if not points:
        raise BadInputError(f"{path}: no frames in the requested range")
    try:
        track, filled = fill_missing(np.stack(points))
    except ValueError:
        where = _range_text(config, len(points))
        raise NoFaceError(f"{path}: no face found in any frame of the driver{where} (a driver needs a "
                          "visible, roughly frontal face in at least one frame)") from None
    return Driver(track, "video", fps, sha256_file(path), filled, np.stack(points), path,
                  config.start)


def _range_text(config: GenerateConfig, n: int) -> str:
    """' (frames a-b)' when only part of the driver was read, else ''."""
    if config.start == 0 and config.end is None:
        return ""
    return f" (frames {config.start}-{config.start + n - 1})"


def _preview_crop(frame: np.ndarray, points, params) -> np.ndarray:
    from generator.faces.crop import crop_face

    if points is None:
        return cv2.resize(frame, (params.size, params.size), interpolation=cv2.INTER_AREA)
    return crop_face(frame, points, params)[0]


def _landmark_file_driver(path: Path, config: GenerateConfig) -> Driver:
    try:
        if path.suffix.lower() == ".npz":
            from generator.faces.extract import load_landmarks_npz

            data = load_landmarks_npz(path)
            points, fps = data["points"], data["meta"].get("media", {}).get("fps")
        else:
            doc = json.loads(path.read_text())
            points = np.stack([np.asarray(f.get("points", np.full((68, 2), np.nan)), np.float32)
                               for f in doc["frames_detail"]])
            fps = doc.get("media", {}).get("fps")
    except (OSError, ValueError, KeyError) as exc:
        raise BadInputError(f"{path}: not a landmark file from 'sfumato landmarks' ({exc})") from exc
    try:
        track, filled = fill_missing(np.asarray(points, np.float32)[config.start:config.end])
    except ValueError:
        raise NoFaceError(f"{path}: the landmark file has no frame with a face") from None
    return Driver(track, "landmarks", float(fps or 25.0), sha256_file(path), filled)


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


def generate(out: str | Path, sources: list[str | Path] = (), driver: str | Path | None = None,
             checkpoint: str | Path | None = None, person: str | Path | None = None,
             config: GenerateConfig = GenerateConfig(), signing: SigningOptions = SigningOptions(),
             device: str = "cpu", progress: bool = False, vgg19: str | None = None,
             vggface: str | None = None, backend=None) -> dict:
    """Render a talking-head video; see the module docstring. Returns a JSON-ready summary.

    ``backend``: the face backend for the sources and the driver, or a function returning it;
    None: dlib's, loaded on a thread while the model loads.

    Bad input, and what happens (each warning is logged and listed in the summary's ``warnings``):

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
    from tqdm import tqdm

    from generator.faces.warp import folded_area
    from generator.io.files import check_writable

    if person is not None and (sources or checkpoint is not None):
        raise BadInputError("--person already holds the source and the model: leave out --source "
                            "and --checkpoint")
    out = check_writable(out)
    precision = resolve_precision(config.precision, torch.device(device))
    autocast_dtype(precision, torch.device(device))  # fp16 off CUDA fails here, before any work
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(1) as loader:
        srcs = [Path(s) for s in sources] or ([] if person else [default_source(Path(tmp))])
        if backend is None and (srcs or (driver is not None and not is_landmark_file(driver))):
            from generator.faces.backends import create_backend

            # dlib's models (~1 s to read) load once for the source and the driver, on a thread
            # while the model loads: dlib releases the GIL, so the two overlap.
            backend = loader.submit(create_backend, "dlib").result
        if callable(backend):
            backend = functools.cache(backend)  # asked for by the source, then the driver: made once
        p, source_points, source_hashes = resolve_person(checkpoint, person, srcs, config, device,
                                                      progress, vgg19, vggface, backend)
        if callable(backend):
            backend = backend()
        stages = {"person": time.perf_counter() - t0}
        t = time.perf_counter()
        drv = load_driver(driver, config, backend)
        stages["driver_landmarks"] = time.perf_counter() - t
        warnings = list(p.meta.get("warnings") or [])
        if drv.filled:
            warnings.append(f"driver: {describe_gaps(drv.filled, len(drv.track))} had no face: they hold "
                            "the last face's landmarks (the first face's before it)")
            log.warning(warnings[-1])
        track = smooth_track(drv.track, config.smooth) if drv.kind != "builtin" else drv.track
        points = transfer_motion(source_points, track, config.motion)
        s = p.image_size
        folded = np.flatnonzero(folded_area(points, s) > FOLD_WARN_AREA).tolist()
        if folded:
            # The warp masks folded triangles and still colours them (no hole); say where G paints alone.
            warnings.append(f"driving landmarks cross over (fold the face mesh) in "
                            f"{describe_gaps(folded, len(points))}: expect smeared or painted-over areas "
                            "there")
            log.warning(warnings[-1])
        size = config.size or s
        fps = config.fps or drv.fps
        paster = None
        preview = PreviewPanel(drv, size) if config.preview else None
        if config.paste != "none":
            origin = None if person else (p.meta.get("sources") or [None])[0]
            paster = Paster(config.paste, p.meta, origin, driver, drv, config, s)
        png_dir = Path(config.png_dir) if config.png_dir else None
        if png_dir is not None:
            png_dir.mkdir(parents=True, exist_ok=True)
        frame_shape = [size, size]

        def compose_and_write(k: int, batch: np.ndarray, frames: np.ndarray) -> None:
            for j, frame in enumerate(frames):
                if paster is not None:
                    img = paster(frame, batch[j], track[k + j])
                elif size == s:
                    img = frame
                else:
                    img = cv2.resize(frame, (size, size), interpolation=cv2.INTER_CUBIC)
                if preview is not None:
                    img = _side_by_side(preview(k + j), batch[j] * (size / s), img)
                writer.write(img)
                frame_shape[:] = img.shape[:2]
                if png_dir is not None:
                    write_image(png_dir / f"{k + j:06d}.png", img)

        t_render = 0.0
        t_frames = time.perf_counter()
        bar = tqdm(total=len(points), unit="frame", desc="generate", disable=not progress)
        try:
            with VideoWriter(out, fps=fps, crf=config.crf) as writer, \
                    FrameSink(compose_and_write) as sink:
                for k in range(0, len(points), config.batch_size):
                    batch = points[k:k + config.batch_size]
                    t = time.perf_counter()
                    frames = p.render(batch, config.batch_size, precision)
                    t_render += time.perf_counter() - t
                    sink.submit(k, batch, frames)  # encoded on the sink's thread while G renders on
                    bar.update(len(frames))
                sink.drain()
        finally:
            bar.close()
            for panel in (paster, preview):
                if panel is not None:
                    panel.close()
        generation = GenerationInfo(
            preset=p.meta.get("preset"), checkpoint_sha256=p.meta.get("checkpoint_sha256"),
            shots=p.meta.get("shots"), finetune_steps=config.finetune_steps if not person else
            (p.meta.get("finetune") or {}).get("steps"), seed=config.seed, driver_kind=drv.kind,
            source_sha256=sorted(set(source_hashes.values())), driver_sha256=drv.sha256,
            extra={"motion": config.motion, "frames": len(points), "fps": fps, "precision": precision,
                   "settings_sha256": settings_digest(config)})
        images = [x for x in srcs if is_image_path(x)]
        audio = False
        if drv.kind == "video" and config.audio:  # the driver's voice goes with its motion
            audio = copy_audio(out, driver, config.start / drv.fps, len(points) / drv.fps)
        stages["render_G"] = t_render
        # The part of composing + encoding that G's rendering did not hide (the sink's busy time
        # overlaps G; this is what it added to the wall clock).
        stages["compose_encode"] = time.perf_counter() - t_frames - t_render
        t = time.perf_counter()
        signed = sign_generated(out, generation, signing, ingredients=images)
        stages["sign"] = time.perf_counter() - t
    wall = time.perf_counter() - t0
    state = verify_file(out).state if signed["signed"] else "Absent"
    return {"output": str(out), "frames": len(points), "size": list(frame_shape), "fps": fps,
            "fps_achieved": round(len(points) / wall, 2),
            "render_seconds": round(t_render, 3), "encode_busy_seconds": round(sink.busy, 3),
            "seconds": round(wall, 3), "precision": precision,
            "stage_seconds": {k: round(v, 4) for k, v in stages.items()},
            "driver": drv.kind, "driver_frames_without_face": drv.filled,
            "driver_frames_folded": folded, "warnings": warnings, "motion": config.motion,
            "audio": audio,
            "manifest": state, "signed": signed["signed"]}


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
                   on_result=None) -> tuple[list[dict], list[dict]]:
    """One signed video per picture in ``folder``, written to ``out_dir/<picture stem>.mp4``.

    Resumable: an output already signed for the same picture, model, driver and settings is kept
    (``{"skipped": True}``). A picture that fails (no face, unreadable) is listed in the failures and
    the others are still made. ``on_result(result)`` is called as each picture finishes.
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
                r = {"output": str(out), "source": str(pic), "skipped": True}
            else:
                if backend is None:
                    from generator.faces.backends import create_backend

                    backend = create_backend("dlib")
                r = generate(out, [pic], driver, checkpoint, None, config, signing, device,
                             progress, vgg19, vggface, backend)
        except SfumatoError as exc:
            failures.append({"input": str(pic), "error": str(exc)})
            if on_result is not None:
                on_result({"input": str(pic), "error": str(exc)})
            continue
        results.append(r)
        if on_result is not None:
            on_result(r)
    return results, failures


class FrameSink:
    """Runs ``fn(*args)`` for each submitted batch, in order, on one worker thread.

    Composing and H.264-encoding a batch then overlaps G rendering the next one: on a GPU the encoder,
    not G, was the bottleneck (60-70% of the time on an H200). At most ``max_pending`` batches wait,
    which bounds memory; a worker's exception is raised in the caller at the next submit or drain.
    """

    def __init__(self, fn, max_pending: int = 2):
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        self.fn, self.max_pending = fn, max_pending
        self.busy = 0.0  # seconds the worker spent in fn
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="sfumato-encode")
        self._pending = deque()

    def _run(self, *args) -> None:
        t = time.perf_counter()
        try:
            self.fn(*args)
        finally:
            self.busy += time.perf_counter() - t

    def submit(self, *args) -> None:
        """Queue one batch (blocks while ``max_pending`` are already waiting)."""
        while len(self._pending) >= self.max_pending:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._run, *args))

    def drain(self) -> None:
        """Wait for every queued batch; raise the first error."""
        while self._pending:
            self._pending.popleft().result()

    def __enter__(self) -> FrameSink:
        return self

    def __exit__(self, *exc) -> None:
        # On an error, drop what has not started and let the running batch finish before the
        # writer (entered first, closed after this) discards its temporary file.
        self._pool.shutdown(wait=True, cancel_futures=True)


class Paster:
    """Puts generated face crops back into full frames: the source picture's, or the driver's."""

    def __init__(self, mode: str, person_meta: dict, shots_origin: dict | None, driver,
                 drv: Driver, config: GenerateConfig, crop_size: int):
        from generator.faces.crop import CropTransform

        self.mode, self.size, self.crop_size = mode, config.size, crop_size
        if mode == "source":
            origin = shots_origin or (person_meta.get("sources") or [None])[0]
            if not origin or "crop_matrix" not in origin:
                raise BadInputError("--paste source needs the source picture's crop (remake the "
                                    "person file with this version, or pass --source)")
            src = Path(origin["source"])
            if not src.is_file():
                raise BadInputError(f"--paste source: the source {src} is no longer there")
            with MediaReader(src) as reader:
                self.background = reader.read_at([origin["frame"]])[origin["frame"]]
            self.transform = CropTransform(np.asarray(origin["crop_matrix"]), crop_size)
        elif mode == "driver":
            if drv.kind != "video":
                raise BadInputError("--paste driver needs a driving video")
            self._reader = MediaReader(driver)
            self._frames = (f for i, f in self._reader.frames()
                            if i >= config.start and (config.end is None or i < config.end))

    def __call__(self, crop: np.ndarray, crop_points: np.ndarray, frame_points: np.ndarray
                 ) -> np.ndarray:
        """The full frame with ``crop`` (model size) pasted in."""
        from generator.faces.crop import CropTransform
        from generator.faces.motion import similarity_transform

        if self.mode == "source":
            out = self.transform.paste(crop, self.background)
        else:
            frame = next(self._frames)
            # crop pixels -> driver frame pixels, fitted on the landmarks, inverted for paste().
            m = similarity_transform(frame_points, crop_points)
            out = CropTransform(m, self.crop_size).paste(crop, frame)
        if self.size:
            h, w = out.shape[:2]
            k = self.size / max(h, w)
            out = cv2.resize(out, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA)
        return out

    def close(self) -> None:
        """Release the driver file."""
        if self.mode == "driver":
            self._reader.close()


class PreviewPanel:
    """The left panel of ``--preview``, frame by frame: the driver's face crop, read again from the
    video in order (nothing kept in memory), or for landmark drivers the mean face they move."""

    def __init__(self, drv: Driver, size: int):
        self.drv, self.size = drv, size
        self._reader = MediaReader(drv.path) if drv.kind == "video" else None
        self._frames = (f for i, f in self._reader.frames() if i >= drv.start) if self._reader else None

    def __call__(self, k: int) -> np.ndarray:
        """Panel for output frame ``k`` (frames are asked for in order)."""
        from generator.faces.crop import DETECTOR_CROP
        from generator.faces.motion import mean_face

        if self._frames is None:
            pts = transfer_motion(mean_face(self.size), self.drv.track[k:k + 1], "absolute")[0]
            return landmark_image(pts, self.size)
        frame = next(self._frames)
        crop = _preview_crop(frame, None if np.isnan(self.drv.raw[k]).any() else self.drv.raw[k],
                             DETECTOR_CROP)
        return cv2.resize(crop, (self.size, self.size), interpolation=cv2.INTER_AREA)

    def close(self) -> None:
        """Release the driver file."""
        if self._reader is not None:
            self._reader.close()


def _side_by_side(left: np.ndarray, pts: np.ndarray, out: np.ndarray) -> np.ndarray:
    """driver | landmarks | output, each as large as the output; ``pts`` in output pixels."""
    return np.hstack([left, landmark_image(pts, out.shape[0]), out])
