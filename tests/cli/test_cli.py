"""The sfumato command: help and version, default run, JSON output, one-line errors, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import EXIT_PARTIAL, cli
from generator.io.samples import write_astronaut_clip, write_astronaut_image


def all_commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        yield prefix + (name,)
        if isinstance(cmd, click.Group):
            yield from all_commands(cmd, prefix + (name,))


@pytest.fixture
def runner():
    return CliRunner()


def test_version(runner):
    from generator import __version__

    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


@pytest.mark.parametrize("path", list(all_commands(cli)), ids=" ".join)
def test_every_command_has_help(runner, path):
    result = runner.invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and len(result.output.splitlines()) > 3


def test_reporting_commands_have_json(runner):
    for path in [("landmarks",), ("prepare",), ("info",), ("bench", "faces")]:
        assert "--json" in runner.invoke(cli, [*path, "--help"]).output, path


def test_landmarks_default_runs_on_builtin_sample(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli, ["-q", "landmarks", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    (res,) = doc["results"]
    assert res["frames"] == res["frames_with_face"] == 50
    out = tmp_path / "sfumato-output" / "landmarks"
    for name in ("astronaut.mp4", "astronaut.overlay.mp4", "astronaut.landmarks.npz",
                 "astronaut.landmarks.json"):
        assert (out / name).stat().st_size > 0, name


def test_landmarks_human_output_and_partial_failure(runner, tmp_path):
    img = write_astronaut_image(tmp_path / "astro.png")
    bad = tmp_path / "bad.mp4"
    bad.write_text("text, not video")
    result = runner.invoke(cli, ["landmarks", str(img), str(bad), "-o", str(tmp_path / "o")])
    assert result.exit_code == EXIT_PARTIAL
    assert "face in 1/1 frames" in result.stdout
    assert "bad.mp4: not a video or image" in result.stderr
    assert (tmp_path / "o" / "astro.overlay.png").is_file()


@pytest.mark.parametrize("name,content,expected", [
    ("missing.mp4", None, "no such file"),
    ("zero.mp4", b"", "empty file"),
    ("t.mp4", b"hello\n" * 9, "not a video or image"),
])
def test_errors_are_one_line_without_traceback(runner, tmp_path, name, content, expected):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    for args in (["info", str(path)], ["landmarks", str(path), "-o", str(tmp_path / "o")]):
        result = runner.invoke(cli, args)
        assert result.exit_code != 0
        assert expected in result.stderr
        assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1


def test_unwritable_output_is_one_line(runner, tmp_path):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    img = write_astronaut_image(tmp_path / "a.png")
    result = runner.invoke(cli, ["landmarks", str(img), "-o", str(a_file / "sub")])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot create output folder")
    result = runner.invoke(cli, ["prepare", str(img), "-o", str(a_file / "sub")])
    assert result.exit_code == 1 and "cannot create output folder" in result.stderr


def test_fan_without_weights_is_a_clear_error(runner, tmp_path, monkeypatch):
    monkeypatch.delenv("SFUMATO_FAN_WEIGHTS", raising=False)
    img = write_astronaut_image(tmp_path / "a.png")
    result = runner.invoke(cli, ["landmarks", str(img), "--backend", "fan", "-o", str(tmp_path)])
    assert result.exit_code == 1
    assert "2DFAN4-11f355bf06.pth.tar" in result.stderr and "Traceback" not in result.output


def test_internal_errors_are_one_line_and_debug_shows_traceback(runner, tmp_path, monkeypatch):
    import generator.faces.extract

    def boom(*a, **k):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(generator.faces.extract, "extract_landmarks", boom)
    img = write_astronaut_image(tmp_path / "a.png")
    result = runner.invoke(cli, ["landmarks", str(img), "-o", str(tmp_path)])
    assert result.exit_code == 70 and "internal error: ZeroDivisionError" in result.stderr
    result = runner.invoke(cli, ["--debug", "landmarks", str(img), "-o", str(tmp_path)])
    assert isinstance(result.exception, ZeroDivisionError)


def test_prepare_json_and_resume(runner, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    write_astronaut_clip(src / "a.mp4", n_frames=10, size=256)
    (src / "broken.mp4").write_bytes(b"\x00" * 100)
    args = ["-q", "prepare", str(src), "-o", str(tmp_path / "c"), "--frames", "4", "--size",
            "64", "--json"]
    result = runner.invoke(cli, args)
    assert result.exit_code == EXIT_PARTIAL, result.output
    doc = json.loads(result.stdout)
    assert (doc["done"], doc["failed"], doc["frames_kept"]) == (1, 1, 4)
    again = json.loads(runner.invoke(cli, args).stdout)
    assert (again["done"], again["already_done"]) == (0, 1)
    table = runner.invoke(cli, args[1:-1])
    assert "already done" in table.stdout and "broken.mp4" in table.stdout
    quiet = runner.invoke(cli, args[:-1])  # quiet: no table, but failures still named
    assert "broken.mp4" in quiet.stderr and "broken.mp4" not in quiet.stdout


def test_info_json(runner, tmp_path):
    clip = write_astronaut_clip(tmp_path / "a.mp4", n_frames=10, size=128)
    doc = json.loads(runner.invoke(cli, ["info", str(clip), "--json"]).stdout)
    (row,) = doc["results"]
    assert (row["frame_count"], row["width"], row["fps"]) == (10, 128, 25.0)


def test_verbosity_flags(runner, tmp_path):
    img = write_astronaut_image(tmp_path / "a.png")
    quiet = runner.invoke(cli, ["-q", "info", str(img)])
    verbose = runner.invoke(cli, ["-vv", "info", str(img)])
    assert quiet.exit_code == verbose.exit_code == 0
    assert np.all([("image 512x512" in r.stdout) for r in (quiet, verbose)])


def test_train_and_finetune_commands(runner, tiny_corpus, tmp_path):
    run = tmp_path / "run"
    args = ["-q", "train", str(tiny_corpus), "-o", str(run), "--preset", "test_tiny", "--steps",
            "2", "--content-loss", "none", "--json"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["step"] == 2
    again = runner.invoke(cli, args)  # no --resume: refused, one line
    assert again.exit_code == 1 and "--resume" in again.stderr
    resumed = runner.invoke(cli, [*args[:8], "3", *args[9:], "--resume"])
    assert resumed.exit_code == 0 and json.loads(resumed.stdout)["step"] == 3
    img = write_astronaut_image(tmp_path / "a.png")
    ft = runner.invoke(cli, ["-q", "finetune", str(img), "--checkpoint",
                             str(run / "checkpoint.safetensors"), "-o", str(tmp_path / "p.safetensors"),
                             "--steps", "0", "--adv-weight", "0.5", "--json"])
    assert ft.exit_code == 0, ft.output
    assert json.loads(ft.stdout)["mode"] == "feed-forward"
    from generator.inference.person import load_person
    assert load_person(tmp_path / "p.safetensors").meta["finetune"]["adv_weight"] == 0.5
    negative = runner.invoke(cli, ["finetune", str(img), "-o", str(tmp_path / "n.safetensors"),
                                   "--adv-weight", "-1"])
    assert negative.exit_code == 2 and "adv-weight" in negative.output
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    broken = runner.invoke(cli, ["finetune", str(img), "--checkpoint", str(bad), "-o",
                                 str(tmp_path / "q.safetensors")])
    assert broken.exit_code == 1 and "damaged" in broken.stderr and "Traceback" not in broken.output


def test_train_without_vgg_weights_names_the_file(runner, tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.delenv("SFUMATO_VGG19", raising=False)
    result = runner.invoke(cli, ["train", str(tiny_corpus), "-o", str(tmp_path / "r"), "--preset",
                                 "test_tiny", "--steps", "1", "--content-loss", "vgg"])
    assert result.exit_code == 1
    assert "vgg19-dcbb9e9d.pth" in result.stderr and "--content-loss lite0" in result.stderr


def test_presets_command(runner):
    rows = json.loads(runner.invoke(cli, ["presets", "--json"]).stdout)
    paper = next(r for r in rows if r["name"] == "paper")
    assert paper["image_size"] == 256 and 13e6 < paper["parameters"]["E"] < 17e6


def test_python_dash_m_cli_runs_the_command():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "cli", "--version"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("sfumato, version")


@pytest.mark.parametrize("name", ["build", "merge", "perturb", "export", "import", "round"])
def test_old_bench_dataset_names_still_work_and_say_where_they_moved(name, tmp_path):
    runner = CliRunner()
    old, new = cli.commands["bench"].commands[name], cli.commands["dataset"].commands[name]
    assert old.callback is new.callback and old.params == new.params
    assert not new.deprecated and f"sfumato dataset {name}" in old.deprecated
    assert "DEPRECATED" in runner.invoke(cli, ["bench", name, "--help"]).output
    if name == "merge":  # a real call: same result, plus the warning on stderr only
        result = runner.invoke(cli, ["bench", "merge", str(tmp_path)])
        assert result.exit_code == 1 and "not a folder made by `sfumato dataset build`" in result.output
        assert "deprecated" in result.stderr and "sfumato dataset merge" in result.stderr


@pytest.mark.parametrize("module", ["bench", "datasets", "detect", "faces", "model", "provenance"])
def test_each_command_module_imports_on_its_own(module):
    # A fresh interpreter: in-process the group has already imported every command module.
    import subprocess
    import sys

    code = f"import cli.{module}; import cli.context; print(sorted(vars(cli.{module})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "click" in out.stdout


def test_keys_sign_verify_commands(runner, tmp_path, monkeypatch):
    from generator.io.video import write_image

    monkeypatch.setenv("SFUMATO_KEYS_DIR", str(tmp_path / "keys"))
    init = runner.invoke(cli, ["keys", "init", "--json"])
    assert init.exit_code == 0, init.output
    assert json.loads(init.stdout)["signer"]["valid_now"]
    assert "sha256" in runner.invoke(cli, ["keys", "show"]).stdout
    again = runner.invoke(cli, ["keys", "init"])
    assert again.exit_code == 1 and "--force" in again.stderr
    img = tmp_path / "a.png"
    write_image(img, np.zeros((64, 64, 3), np.uint8))
    gen = tmp_path / "gen.json"
    gen.write_text(json.dumps({"preset": "small", "seed": 1}))
    signed = runner.invoke(cli, ["sign", str(img), "-o", str(tmp_path / "s.png"), "--generation",
                                 str(gen), "--json"])
    assert signed.exit_code == 0, signed.output
    ok = runner.invoke(cli, ["verify", str(tmp_path / "s.png"), "--json"])
    assert ok.exit_code == 0
    assert json.loads(ok.stdout)["results"][0]["generation"]["seed"] == 1
    assert runner.invoke(cli, ["verify", str(tmp_path / "s.png"), "--no-local-ca"]).exit_code == 10
    assert runner.invoke(cli, ["verify", str(img)]).exit_code == 11
    mixed = runner.invoke(cli, ["verify", str(tmp_path / "s.png"), str(img)])
    assert mixed.exit_code == 11 and "Trusted" in mixed.stdout and "Absent" in mixed.stdout
    empty = tmp_path / "e.png"
    empty.write_bytes(b"")
    bad = runner.invoke(cli, ["sign", str(empty)])
    assert bad.exit_code == 1 and bad.stderr.strip() == f"Error: {empty}: empty file (0 bytes)"
    assert runner.invoke(cli, ["verify", str(empty)]).exit_code == 1


def test_train_hyperparameter_flags_are_recorded(runner, tiny_corpus, tmp_path):
    run = tmp_path / "run"
    result = runner.invoke(cli, ["-q", "train", str(tiny_corpus), "-o", str(run), "--preset",
                                 "test_tiny", "--steps", "1", "--content-loss", "none",
                                 "--pixel-loss", "10", "--lr-g", "1e-4", "--lr-d", "4e-4"])
    assert result.exit_code == 0, result.output
    cfg = json.loads((run / "config.json").read_text())["train"]
    assert (cfg["lr_g"], cfg["lr_d"], cfg["losses"]["pixel_weight"]) == (1e-4, 4e-4, 10.0)


def test_generate_command(runner, tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("SFUMATO_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    assert runner.invoke(cli, ["-q", "train", str(tiny_corpus), "-o", str(run), "--preset",
                               "test_tiny", "--steps", "1", "--content-loss", "none"]).exit_code == 0
    ck = str(run / "checkpoint.safetensors")
    result = runner.invoke(cli, ["-q", "generate", "--checkpoint", ck, "--seconds", "0.4", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["frames"] == 10 and doc["manifest"] == "Trusted"
    assert (tmp_path / "sfumato-output" / "generated.mp4").is_file()
    pics = tmp_path / "pics"
    pics.mkdir()
    write_astronaut_image(pics / "a.png")
    write_astronaut_image(pics / "b.png")
    batch = runner.invoke(cli, ["-q", "generate", "--checkpoint", ck, "--seconds", "0.2", "--batch",
                                str(pics), "-o", str(tmp_path / "batch"), "--json"])
    assert batch.exit_code == 0, batch.output
    assert sorted(p.name for p in (tmp_path / "batch").iterdir()) == ["a.mp4", "b.mp4"]
    first = {r["output"]: r for r in json.loads(batch.stdout)["results"]}
    # Rerun (e.g. after a kill) with one more picture, one without a face: finished outputs are
    # kept (read from their manifests), the new one is made, the faceless one fails alone (exit 3).
    write_astronaut_image(pics / "c.png")
    import cv2

    cv2.imwrite(str(pics / "d.png"), np.full((96, 96, 3), 128, np.uint8))
    again = runner.invoke(cli, ["-q", "generate", "--checkpoint", ck, "--seconds", "0.2", "--batch",
                                str(pics), "-o", str(tmp_path / "batch"), "--json"])
    assert again.exit_code == EXIT_PARTIAL, again.output
    doc = json.loads(again.stdout)
    skipped = sorted(Path(r["output"]).name for r in doc["results"] if r.get("skipped"))
    made = sorted(Path(r["output"]).name for r in doc["results"] if not r.get("skipped"))
    assert (skipped, made) == (["a.mp4", "b.mp4"], ["c.mp4"]) and len(first) == 2
    assert [Path(f["input"]).name for f in doc["failed"]] == ["d.png"]
    assert "no face" in doc["failed"][0]["error"]
    reseeded = runner.invoke(cli, ["-q", "generate", "--checkpoint", ck, "--seconds", "0.2", "--seed",
                                   "1", "--batch", str(pics), "-o", str(tmp_path / "batch"), "--json"])
    assert sum(not r.get("skipped") for r in json.loads(reseeded.stdout)["results"]) == 3
    unsigned = runner.invoke(cli, ["generate", "--checkpoint", ck, "--seconds", "0.2", "--no-sign",
                                   "-o", str(tmp_path / "u.mp4")])
    assert unsigned.exit_code == 0 and "--no-sign" in unsigned.stderr
