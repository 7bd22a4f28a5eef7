"""``sfumato dataset round``: adversarial rounds, the generator and the detector improving against each other.

Round 0 is the given generator G_0 and detector D_0 and a dataset T_0 built with G_0. Round n >= 1:

1. G_n = G_{n-1} fine-tuned against the frozen D_{n-1} (``adversarial.against_detector``), on the corpus
   identities of the train split; its CSIM / SSIM / PSNR before and after on held-out (test split)
   videos, as in ``bench quality``;
2. T_n, a new dataset from G_n: the same identity split (one split seed for every round), fresh
   fakes (seed + n); optionally each fake the candidate D_{n-1} scores most real (``--hard``);
3. D_n = D_{n-1} fine-tuned on the union of the train splits of T_0..T_n, its fusion with r fitted
   on the union's val split (r always from G_0's discriminator, which no round changes);
4. D_n evaluated on T_n's test split (the round's own evaluation).

Then every detector is evaluated on every round's test split: the **round table** (rows D_0..D_n,
columns T_0..T_n, cells video AUC at c23 and c40), ``table.json`` / ``table.md`` / ``table.png``.
An optional detector of another backbone, trained on T_0 only, is evaluated on every round too, to
show whether the hardness transfers. Everything lands in ``OUT`` with ``rounds.json`` (settings,
commands, hashes, wall time per step and per round). Every step resumes from its own files, so a
killed run rerun with the same arguments goes on where it stopped; under torchrun every rank builds
its shard of each round's dataset and rank 0 does the rest.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.adversarial.against_detector import AdversarialConfig, adversarial_finetune
from benchmarks.adversarial.table import (
    TABLE_COMPRESSIONS,
    round_table,
    rounds_readme,
    table_markdown,
    video_auc,
    write_table_plot,
)
from benchmarks.datasets.build import build_dataset, read_build
from benchmarks.datasets.plan import BuildConfig
from detector.data.schema import ClipRecord, read_metadata, write_metadata
from detector.train import DetectTrainConfig
from generator.errors import BadInputError, ConfigMismatchError
from generator.io.files import link_or_copy, sha256_file, write_bytes_atomic

ROUNDS_FILE = "rounds.json"


@dataclasses.dataclass(frozen=True)
class RoundConfig:
    """Settings of a whole run of rounds (every field is part of its stamp)."""

    rounds: int = 2  # adversarial rounds after round 0
    build: BuildConfig = BuildConfig()
    adversarial: AdversarialConfig = AdversarialConfig()
    detector_epochs: int = 3  # fine-tuning D_{n-1} on the union
    # Adam at the recipe's 2e-4 wrecked the bundled detector within an epoch (test video AUC 0.92 ->
    # 0.46); 2e-5 gave 0.62, 5e-6 0.72 on the same data (issue 9's note)
    detector_lr: float = 5e-6
    detector_frames: int = 8  # frames per training video
    detector_batch_size: int = 16
    hard_candidates: int = 1  # > 1: T_n's fakes are the candidates D_{n-1} scores most real
    robust_backbone: str | None = None  # a detector not in the loop (trained on T_0 only)
    robust_epochs: int = 3
    eval_frames: int = 8
    quality_videos: int = 4  # held-out videos for CSIM / SSIM before and after (0: skip)

    def __post_init__(self):
        if self.rounds < 1 or self.detector_epochs < 1 or self.eval_frames < 1 or self.hard_candidates < 1:
            raise BadInputError("rounds, detector epochs, eval frames and hard candidates must be >= 1")
        missing = [c for c in TABLE_COMPRESSIONS if c not in self.build.compressions]
        if missing:
            raise BadInputError(f"the round table reports {' and '.join(TABLE_COMPRESSIONS)}: the datasets "
                                f"need them (--compressions lacks {', '.join(missing)})")


# -- checks ---------------------------------------------------------------------------------
def check_pair(generator: str | os.PathLike, detector: str | os.PathLike) -> dict:
    """Refuse a detector whose realism evidence (or training data) came from another generator."""
    from detector.model import load_detector
    from generator.model.talking_head import load_meta_model

    gen_sha = sha256_file(generator)
    try:
        _, gmeta = load_meta_model(generator)
    except Exception as exc:
        raise BadInputError(f"{generator}: not a generator checkpoint ({exc})") from None
    try:
        _, dmeta = load_detector(detector)
    except Exception as exc:
        raise BadInputError(f"{detector}: not a detector file ({exc})") from None
    base = gmeta.get("base_checkpoint_sha256")  # a round's G: its D is the base's
    want = (dmeta.get("realism") or {}).get("checkpoint_sha256")
    if want is None:
        try:
            want = read_build(dmeta["dataset"])["checkpoint_sha256"]
        except Exception:  # trained on data sfumato did not build: nothing to compare
            want = None
    if want is not None and want not in (gen_sha, base):
        raise ConfigMismatchError(
            f"mismatched versions: the detector {detector} was made with the generator sha256 {want[:12]}... "
            f"(its realism evidence and training data), not {generator} ({gen_sha[:12]}...): pass that "
            "generator, or a detector trained for this one (`sfumato detect train`)")
    return {"generator_sha256": gen_sha, "detector_sha256": sha256_file(detector),
            # its training settings, with the file's own backbone and input size (older files lack "config")
            "recipe": {**(dmeta.get("config") or {}), "backbone": dmeta["backbone"],
                       "input_size": int(dmeta["input_size"])},
            "detector_generator_sha256": want, "sfumato_versions": {
                "generator": gmeta.get("sfumato_version"), "detector": dmeta.get("sfumato_version")},
            "backbone": dmeta["backbone"], "input_size": int(dmeta["input_size"])}


# the parts of D_0's training recipe that decide what it learns: fine-tuning without them (e.g. no
# self-blends, c23 only) would drift D_n away from D_0's cues rather than adapt them to G_n
INHERITED = ("compressions", "sbi", "degrade", "balance", "flip", "blur", "jpeg", "weight_decay")


def finetune_config(recipe: dict, config: RoundConfig, n: int) -> DetectTrainConfig:
    """D_n's fine-tuning settings: D_0's recipe (``INHERITED``) with the rounds' epochs, lr and frames."""
    base = DetectTrainConfig()
    kept = {k: (tuple(recipe[k]) if isinstance(recipe[k], list) else recipe[k])
            for k in INHERITED if k in recipe}
    return dataclasses.replace(base, **kept, backbone=recipe.get("backbone", base.backbone),
                               input_size=int(recipe.get("input_size", base.input_size)),
                               frames=config.detector_frames, batch_size=config.detector_batch_size,
                               epochs=config.detector_epochs, lr=config.detector_lr,
                               seed=config.build.seed + n)


# -- the union of rounds ----------------------------------------------------------------------
def write_union(datasets: list[Path], out: Path) -> Path:
    """A dataset folder whose metadata lists the clips of every given dataset (ids prefixed r<k>-,
    paths relative to ``out``), so detector training reads them as one dataset."""
    rows = []
    for k, ds in enumerate(datasets):
        for r in read_metadata(ds):
            if r.perturbation != "none":
                continue
            d = r.to_dict()
            d.update(id=f"r{k}-{r.id}", clip_id=f"r{k}-{r.clip_id}",
                     path=os.path.relpath(ds / r.path, out),
                     signed_path=os.path.relpath(ds / r.signed_path, out) if r.signed_path else None)
            rows.append(ClipRecord.from_dict(d))
    out.mkdir(parents=True, exist_ok=True)
    write_metadata(out, rows)
    return out


# -- the run ----------------------------------------------------------------------------------
class Rounds:
    """One run of rounds in ``out``; each ``step`` is skipped when its output is already there."""

    def __init__(self, corpus: Path, generator: Path, detector: Path, out: Path, config: RoundConfig,
                 signing=None, command: str | None = None, progress: bool = False, device: str = "cpu",
                 on_step: Callable[[str], None] | None = None):
        self.corpus, self.out, self.config = corpus, out, config
        self.signing, self.command, self.progress, self.device = signing, command, progress, device
        self.on_step = on_step
        self.rank = int(os.environ.get("RANK", "0"))
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.pair = check_pair(generator, detector)
        self.stamp = {"corpus": str(corpus.resolve()), "generator_sha256": self.pair["generator_sha256"],
                      "detector_sha256": self.pair["detector_sha256"],
                      "config": json.loads(json.dumps(dataclasses.asdict(config)))}
        self.state = self._open_state()
        self.g = [self.round_dir(0) / "generator.safetensors"]
        self.d = [self.round_dir(0) / "detector.safetensors"]
        if self.rank == 0:
            for src, dst in ((generator, self.g[0]), (detector, self.d[0])):
                if not dst.is_file() or sha256_file(dst) != sha256_file(src):
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    tmp = dst.with_name(dst.name + ".tmp")
                    tmp.unlink(missing_ok=True)
                    link_or_copy(src, tmp)
                    os.replace(tmp, dst)
        else:
            _wait_for(self.d[0])

    # bookkeeping ------------------------------------------------------------------------------
    def round_dir(self, n: int) -> Path:
        """The folder of round ``n``."""
        return self.out / f"round{n}"

    def _open_state(self) -> dict:
        path = self.out / ROUNDS_FILE
        if path.is_file():
            state = json.loads(path.read_text())
            if state.get("stamp") != self.stamp:
                raise ConfigMismatchError(
                    f"{self.out} holds rounds run with another corpus, generator, detector or settings: "
                    "rerun with the original arguments to resume, or choose another --out")
            if self.command and self.command not in state["commands"]:
                state["commands"].append(self.command)
            return state
        self.out.mkdir(parents=True, exist_ok=True)
        from benchmarks.datasets.build import library_versions

        return {"stamp": self.stamp, "commands": [self.command] if self.command else [],
                "versions": library_versions(), "pair": self.pair, "steps": {}}

    def _save(self) -> None:
        if self.rank == 0:
            write_bytes_atomic(self.out / ROUNDS_FILE, json.dumps(self.state, indent=1).encode())

    def step(self, name: str, done: Callable[[], bool], run: Callable[[], dict | None]) -> dict:
        """Run ``run`` unless ``done()``; record its wall time and result under ``name``."""
        if self.on_step is not None:
            self.on_step(name)
        if done():
            entry = self.state["steps"].setdefault(name, {})
            entry["reused"] = True
            return entry
        t0 = time.perf_counter()
        result = run() or {}
        entry = {"seconds": round(time.perf_counter() - t0, 2), "reused": False, **result}
        self.state["steps"][name] = entry
        self._save()
        return entry

    # the steps --------------------------------------------------------------------------------
    def build_config(self, n: int, hard: bool) -> BuildConfig:
        """T_n's settings: the same split for every round, fresh fakes (seed + n)."""
        cfg = self.config.build
        if n == 0:
            return cfg  # round 0 is a plain `dataset build` with these settings
        extra = {}
        if hard:
            extra = {"candidates": self.config.hard_candidates,
                     "hard_for_sha256": sha256_file(self.d[n - 1])}
        split_seed = cfg.seed if cfg.split_seed is None else cfg.split_seed
        return dataclasses.replace(cfg, seed=cfg.seed + n, split_seed=split_seed, **extra)

    def dataset(self, n: int) -> Path:
        """Build (this rank's shard of) T_n; rank 0 finishes it."""
        out = self.round_dir(n) / "dataset"
        hard = n > 0 and self.config.hard_candidates > 1
        cfg = self.build_config(n, hard)
        shard = (self.rank, self.world) if self.world > 1 else None

        def done() -> bool:
            return _dataset_done(out)

        def run() -> dict:
            s = build_dataset(self.corpus, self.g[n], out, cfg, shard=shard, signing=self.signing,
                              command=self.command, progress=self.progress, device=self.device,
                              hard_for=self.d[n - 1] if hard else None)
            return {"made": s.made, "clips_reused": s.reused, "digest": read_build(out)["digest"],
                    "filter": s.dataset.filter if s.dataset else None}

        if self.rank == 0:
            self.step(f"round{n}/dataset", done, run)
        elif not done():
            run()
            _wait_for(out / "metadata.jsonl")
        return out

    def generator(self, n: int) -> None:
        """G_n: G_{n-1} against the frozen D_{n-1} on the train identities; quality before and after."""
        path = self.round_dir(n) / "generator.safetensors"
        self.g.append(path)
        if self.rank != 0:
            _wait_for(path)
            return
        train_ids = _split_identities(self.round_dir(0) / "dataset", "train")

        def run() -> dict:
            s = adversarial_finetune(self.g[n - 1], self.corpus, self.d[n - 1], path, self.config.adversarial,
                                     identities=train_ids, device=self.device, progress=self.progress)
            return {"sha256": sha256_file(path), "before": s["before"], "after": s["after"]}

        self.step(f"round{n}/generator", path.is_file, run)
        if self.config.quality_videos:
            self.step(f"round{n}/quality", lambda: (self.round_dir(n) / "quality.json").is_file(),
                      lambda: self.quality(n))

    def quality(self, n: int) -> dict:
        """CSIM / SSIM / PSNR of G_{n-1} and G_n (feed-forward, T = 8) on held-out test-split videos."""
        from benchmarks.quality.reenactment import QualityConfig, run_quality
        from generator.corpus.reader import Corpus

        test_ids = set(_split_identities(self.round_dir(0) / "dataset", "test"))
        # in folder-name order, as the build document listed them
        held_out = sorted(Corpus.open(self.corpus).select(test_ids), key=lambda v: v.dir)
        sources = [v.source_path for v in held_out]
        sources = sources[: self.config.quality_videos]
        qcfg = QualityConfig(shots=(8,), finetune_steps=0, seed=self.config.build.seed)
        res = {}
        for name, ck in (("before", self.g[n - 1]), ("after", self.g[n])):
            q = run_quality(sources, ck, self.round_dir(n) / f"quality_{name}", qcfg)
            ff = next((row for row in q["table"] if row["method"] == "FF"), None)
            res[name] = None if ff is None else {m: round(ff[m], 4) for m in ("CSIM", "SSIM", "PSNR", "LMD")}
        res["videos"] = len(sources)
        write_bytes_atomic(self.round_dir(n) / "quality.json", json.dumps(res, indent=1).encode())
        return res

    def detector(self, n: int) -> None:
        """D_n: D_{n-1} fine-tuned on the union of T_0..T_n's train splits, fused on their val split."""
        path = self.round_dir(n) / "detector.safetensors"
        self.d.append(path)
        if self.rank != 0:
            return
        union = self.round_dir(n) / "union"

        def run() -> dict:
            from detector.evaluate import fit_detector_fusion
            from detector.train import train_detector

            write_union([self.round_dir(k) / "dataset" for k in range(n + 1)], union)
            cfg = finetune_config(self.pair["recipe"], self.config, n)
            s = train_detector(union, self.round_dir(n) / "detector_run", cfg, device=self.device,
                               progress=self.progress, init_from=self.d[n - 1])
            fit_detector_fusion(union, self.round_dir(n) / "detector_run" / "best.safetensors", path,
                                generator=self.g[0], frames=self.config.eval_frames, progress=self.progress)
            return {"sha256": sha256_file(path), "best_val": s.best, "train_frames": s.train_frames}

        self.step(f"round{n}/detector", path.is_file, run)

    def robust(self) -> Path | None:
        """A detector of another backbone trained on T_0 only and fused there (from ImageNet where its
        weights ship, else from scratch)."""
        if not self.config.robust_backbone:
            return None
        path = self.out / "robust" / "detector.safetensors"
        if self.rank != 0:
            return path

        def run() -> dict:
            from detector.evaluate import fit_detector_fusion
            from detector.train import train_detector
            from generator.model.pretrained import PACKAGED

            c = self.config
            start = "imagenet" if c.robust_backbone in PACKAGED else "none"
            cfg = DetectTrainConfig(backbone=c.robust_backbone, input_size=self.pair["input_size"],
                                    frames=c.detector_frames, batch_size=c.detector_batch_size,
                                    epochs=c.robust_epochs, seed=c.build.seed)
            t0, run_dir = self.round_dir(0) / "dataset", self.out / "robust" / "run"
            s = train_detector(t0, run_dir, cfg, start, device=self.device, progress=self.progress)
            fit_detector_fusion(t0, run_dir / "best.safetensors", path, generator=self.g[0],
                                frames=c.eval_frames, progress=self.progress)
            return {"sha256": sha256_file(path), "backbone": c.robust_backbone, "best_val": s.best}

        self.step("robust/detector", path.is_file, run)
        return path

    def evaluate(self, detector: Path, n: int, folder: Path) -> dict:
        """A detector on T_n's test split, kept in ``folder`` and reused while both are unchanged."""
        from detector.evaluate import evaluate

        key = {"detector_sha256": sha256_file(detector),
               "metadata_sha256": sha256_file(self.round_dir(n) / "dataset" / "metadata.jsonl"),
               "frames": self.config.eval_frames}
        stamp = folder / "stamp.json"
        if stamp.is_file() and json.loads(stamp.read_text()) == key and (folder / "eval.json").is_file():
            return json.loads((folder / "eval.json").read_text())
        res = evaluate(self.round_dir(n) / "dataset", detector, folder, split="test", generator=self.g[0],
                       frames=self.config.eval_frames, with_perturbed=False, progress=self.progress)
        write_bytes_atomic(stamp, json.dumps(key).encode())
        return res.to_dict()

    def own_eval(self, n: int) -> dict:
        """The round's own evaluation: D_n on T_n's test split (the table's diagonal must agree)."""
        res = self.evaluate(self.d[n], n, self.round_dir(n) / "eval")
        return {c: video_auc(res, c) for c in TABLE_COMPRESSIONS}

    def run(self) -> dict:
        """Every round, then the table; returns the summary (rank 0) or None (other ranks)."""
        t_start = time.perf_counter()
        n_rounds = self.config.rounds
        per_round = {}
        for n in range(n_rounds + 1):
            t0 = time.perf_counter()
            if n:
                self.generator(n)
            self.dataset(n)
            if n:
                self.detector(n)
            if self.rank == 0:
                self.step(f"round{n}/eval", (self.round_dir(n) / "eval" / "stamp.json").is_file,
                          lambda n=n: self.own_eval(n))
            per_round[n] = round(time.perf_counter() - t0, 2)
        if self.rank != 0:
            return None
        robust = self.robust()
        names = [f"D{m}" for m in range(n_rounds + 1)]
        detectors = dict(zip(names, self.d))
        if robust is not None:
            detectors[f"robust ({self.config.robust_backbone})"] = robust
        evals = {}
        t0 = time.perf_counter()
        for name, det in detectors.items():
            for k in range(n_rounds + 1):
                if self.on_step is not None:
                    self.on_step(f"table/{name}/T{k}")
                folder = self.out / "table" / f"{name.split(' ')[0]}_on_T{k}"
                evals[(name, k)] = self.evaluate(det, k, folder)
        table = round_table(evals, list(detectors), n_rounds)
        table["hashes"] = {"generators": [sha256_file(g) for g in self.g],
                           "detectors": {name: sha256_file(d) for name, d in detectors.items()},
                           "datasets": [read_build(self.round_dir(k) / "dataset")["digest"]
                                        for k in range(n_rounds + 1)]}
        write_bytes_atomic(self.out / "table.json", json.dumps(table, indent=1).encode())
        md = f"# Round table: {self.out}\n\n" + table_markdown(table)
        write_bytes_atomic(self.out / "table.md", md.encode())
        write_table_plot(self.out / "table.png", table)
        self.state["table_seconds"] = round(time.perf_counter() - t0, 2)
        self.state["round_seconds_this_run"] = per_round
        self.state["seconds_this_run"] = round(time.perf_counter() - t_start, 2)
        self._save()
        write_bytes_atomic(self.out / "README.md", rounds_readme(self.state, table).encode())
        return {"out": str(self.out), "table": table, "steps": self.state["steps"],
                "round_seconds_this_run": per_round, "seconds": self.state["seconds_this_run"]}


def run_rounds(corpus: str | os.PathLike, generator: str | os.PathLike, detector: str | os.PathLike,
               out: str | os.PathLike, config: RoundConfig = RoundConfig(), signing=None,
               command: str | None = None, progress: bool = False, device: str = "cpu",
               on_step: Callable[[str], None] | None = None) -> dict | None:
    """Run (or resume) adversarial rounds into ``out``; see the module docstring."""
    corpus, generator, detector, out = Path(corpus), Path(generator), Path(detector), Path(out)
    for p, what in ((generator, "generator checkpoint"), (detector, "detector")):
        if not p.is_file():
            raise BadInputError(f"{what} {p} not found")
    return Rounds(corpus, generator, detector, out, config, signing, command, progress, device, on_step).run()


def _dataset_done(out: Path) -> bool:
    return (out / "metadata.jsonl").is_file() and (out / "README.md").is_file()


def _split_identities(dataset: Path, split: str) -> list[str]:
    return sorted(i for i, s in read_build(dataset)["splits"].items() if s == split)


def _wait_for(path: Path, poll_seconds: float = 2.0) -> None:
    """Block until ``path`` exists (torchrun ranks waiting for rank 0's step)."""
    while not path.exists():
        time.sleep(poll_seconds)
