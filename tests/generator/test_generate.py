"""The main job end to end: signed mp4s from pictures and drivers, with clear errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from generator.errors import MissingWeightsError, NoFaceError, VideoReadError
from generator.inference.generate import GenerateConfig, generate
from generator.io.samples import astronaut_frames, write_astronaut_image
from generator.io.video import MediaReader, probe, write_image, write_video
from generator.model.checkpoint import CheckpointError
from generator.model.config import get_preset
from generator.training.meta_train import train


@pytest.fixture(scope="module")
def checkpoint(tiny_corpus, tmp_path_factory):
    cfg = dataclasses.replace(get_preset("test_tiny").train, steps=2)
    return train(tiny_corpus, tmp_path_factory.mktemp("run"), "test_tiny", cfg).checkpoint


@pytest.fixture(autouse=True)
def keys(tmp_path, monkeypatch):
    monkeypatch.setenv("SFUMATO_KEYS_DIR", str(tmp_path / "keys"))


def test_builtin_driver_gives_a_signed_playable_mp4(checkpoint, tmp_path):
    out = tmp_path / "out.mp4"
    r = generate(out, checkpoint=checkpoint, config=GenerateConfig(seconds=1.0))
    assert (r.frames, r.fps, r.driver, r.manifest) == (25, 25.0, "builtin", "Trusted")
    assert set(r.stage_seconds) == {"person", "driver_landmarks", "render_G", "compose_encode",
                                       "sign"}
    assert all(v >= 0 for v in r.stage_seconds.values())
    info = probe(out)
    assert (info.frame_count, info.width, info.height) == (25, 64, 64)
    with MediaReader(out) as reader:
        frames = [f for _, f in reader.frames()]
    assert len(frames) == 25 and np.std(frames[0]) > 1  # real pixels, not a blank


def test_one_source_image_and_video_driver_with_gaps(checkpoint, tmp_path):
    src = write_astronaut_image(tmp_path / "astro.png")
    frames = astronaut_frames(12, 256)
    frames[4] = np.zeros_like(frames[4])  # the driver looks away: no face
    driver = tmp_path / "driver.mp4"
    write_video(driver, frames, fps=10, crf=12)
    out = tmp_path / "out.mp4"
    r = generate(out, [src], driver, checkpoint, config=GenerateConfig(preview=True, size=96))
    assert r.frames == 12 and r.fps == 10.0
    assert r.driver_frames_without_face == [4]  # held the previous landmarks, reported
    assert (probe(out).width, probe(out).height) == (3 * 96, 96)  # driver | landmarks | output
    with MediaReader(out) as reader:
        left = [f[:, :96].astype(float) for _, f in reader.frames()]
    assert left[4].mean() < 10 < left[3].mean()  # the faceless driver frame is shown as it is


def test_landmark_file_driver_png_export_and_range(checkpoint, tmp_path, astronaut_clip):
    from generator.faces.extract import extract_landmarks

    track = extract_landmarks(astronaut_clip)
    track.save(tmp_path / "lm.npz")
    out = tmp_path / "out.mp4"
    cfg = GenerateConfig(start=5, end=15, png_dir=str(tmp_path / "png"))
    r = generate(out, driver=tmp_path / "lm.npz", checkpoint=checkpoint, config=cfg)
    assert r.frames == 10 and r.driver == "landmarks"
    assert len(list((tmp_path / "png").glob("*.png"))) == 10


def test_bad_inputs_are_clear(checkpoint, tmp_path, tiny_corpus):
    blank = tmp_path / "blank.png"
    write_image(blank, np.full((128, 128, 3), 90, np.uint8))
    with pytest.raises(NoFaceError, match="blank.png: no face found"):
        generate(tmp_path / "a.mp4", [blank], checkpoint=checkpoint)
    junk = tmp_path / "driver.mp4"
    junk.write_text("not a video\n" * 10)
    with pytest.raises(VideoReadError, match="not a video or image"):
        generate(tmp_path / "b.mp4", driver=junk, checkpoint=checkpoint)
    faceless = tmp_path / "faceless.mp4"
    write_video(faceless, [np.full((64, 64, 3), 50, np.uint8)] * 5, fps=10)
    with pytest.raises(NoFaceError, match="no face found in any frame"):
        generate(tmp_path / "c.mp4", driver=faceless, checkpoint=checkpoint)
    with pytest.raises(CheckpointError, match="damaged or not a safetensors"):
        generate(tmp_path / "d.mp4", checkpoint=blank)
    with pytest.raises(MissingWeightsError, match="not found"):
        generate(tmp_path / "e.mp4", checkpoint=tmp_path / "missing.safetensors")
    assert not any(p.suffix == ".mp4" and p.name != "faceless.mp4" and p.name != "driver.mp4"
                   for p in tmp_path.iterdir())  # nothing half-written


def test_person_file_and_unsigned_output(checkpoint, tmp_path, caplog):
    from generator.provenance import SigningOptions
    from generator.training.finetune import FinetuneConfig, finetune_to_file

    src = write_astronaut_image(tmp_path / "astro.png")
    person = tmp_path / "astro.safetensors"
    finetune_to_file(checkpoint, [src], person, FinetuneConfig(steps=0))
    out = tmp_path / "out.mp4"
    with caplog.at_level("WARNING"):
        r = generate(out, person=person, config=GenerateConfig(seconds=0.4),
                     signing=SigningOptions(enabled=False))
    assert r.frames == 10 and not r.signed and r.manifest == "Absent"
    assert "NOT signing" in caplog.text
    from generator.errors import BadInputError

    with pytest.raises(BadInputError, match="leave out --source"):
        generate(tmp_path / "x.mp4", [src], person=person)


def test_precision_bf16_renders_like_fp32_and_fp16_needs_cuda(checkpoint, tmp_path):
    from generator.errors import BadInputError
    from generator.inference.person import person_from_sources

    src = write_astronaut_image(tmp_path / "astro.png")
    person = person_from_sources(checkpoint, [src])
    from generator.faces.motion import mean_face

    s = person.image_size
    pts = np.repeat(mean_face(s)[None].astype(np.float32), 3, axis=0)
    full = person.render(pts).astype(int)
    half = person.render(pts, precision="bf16").astype(int)
    assert full.shape == half.shape == (3, s, s, 3)
    assert np.abs(full - half).mean() < 4  # bf16 keeps ~3 significant digits: a few grey levels
    with pytest.raises(BadInputError, match="fp16 needs a CUDA device"):
        person.render(pts, precision="fp16")
    with pytest.raises(BadInputError, match="fp16 needs a CUDA device"):
        generate(tmp_path / "x.mp4", [src], checkpoint=checkpoint,
                 config=GenerateConfig(precision="fp16"))
    assert not (tmp_path / "x.mp4").exists()


def test_auto_precision_is_bf16_only_where_the_cpu_computes_it(monkeypatch):
    import torch

    from generator.errors import BadInputError
    from generator.inference import person as inference

    cpu = torch.device("cpu")
    assert GenerateConfig().precision == "auto"
    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(inference, "native_bf16", lambda device, native=native: native)
        assert inference.resolve_precision("auto", cpu) == expected
        assert inference.autocast_dtype("auto", cpu) == (torch.bfloat16 if native else None)
    assert inference.resolve_precision("fp32", cpu) == "fp32"
    with pytest.raises(BadInputError, match="precision must be one of"):
        inference.resolve_precision("fp8", cpu)


def test_feed_forward_generation_loads_no_discriminator(checkpoint, tmp_path):
    from generator.errors import BadInputError
    from generator.inference.generate import resolve_person
    from generator.provenance import SigningOptions

    src = write_astronaut_image(tmp_path / "astro.png")
    calls = []

    def backend():
        from generator.faces.backends import create_backend

        calls.append(1)
        return create_backend("dlib")

    person, points, _ = resolve_person(checkpoint, None, [src], GenerateConfig(), backend=backend)
    assert calls == [1] and points.shape == (68, 2)  # a deferred backend is asked for once
    assert person.D is None and person.w is None
    frames = person.render(points[None])
    assert frames.shape == (1, person.image_size, person.image_size, 3)
    with pytest.raises(BadInputError, match="without D"):
        person.realism(frames, points[None])
    r = generate(tmp_path / "ff.mp4", [src], checkpoint=checkpoint, backend=backend,
                 config=GenerateConfig(seconds=0.2), signing=SigningOptions(enabled=False))
    assert r.frames == 5 and len(calls) == 2 and r.precision in ("bf16", "fp32")


def test_driver_audio_is_carried_over(checkpoint, tmp_path):
    import av

    frames = astronaut_frames(10, 192)
    driver = tmp_path / "talk.mp4"
    with av.open(str(driver), "w") as c:  # 10 frames at 10 fps with a 1 s tone
        v = c.add_stream("libx264", rate=10)
        v.width = v.height = 192
        v.pix_fmt = "yuv420p"
        a = c.add_stream("aac", rate=16000)
        tone = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)[None]
        for k in range(0, 16000, 1024):
            chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, k:k + 1024]),
                                               format="fltp", layout="mono")
            chunk.sample_rate = 16000
            for p in a.encode(chunk):
                c.mux(p)
        for p in a.encode():
            c.mux(p)
        for f in frames:
            for p in v.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
    out = tmp_path / "out.mp4"
    r = generate(out, driver=driver, checkpoint=checkpoint)
    assert r.audio and r.manifest == "Trusted"
    info = probe(out)
    assert info.has_audio and info.frame_count == 10
    silent = generate(tmp_path / "silent.mp4", driver=driver, checkpoint=checkpoint,
                      config=GenerateConfig(audio=False))
    assert not silent.audio and not probe(tmp_path / "silent.mp4").has_audio


def test_paste_back_into_the_source_picture_and_the_driver_frames(checkpoint, tmp_path):
    from generator.errors import BadInputError

    src = write_astronaut_image(tmp_path / "astro.png")
    out = tmp_path / "pasted.mp4"
    r = generate(out, [src], checkpoint=checkpoint,
                 config=GenerateConfig(seconds=0.4, paste="source"))
    assert r.size == [512, 512] and (probe(out).width, probe(out).height) == (512, 512)
    with MediaReader(out) as reader:
        first = next(reader.frames())[1]
    from generator.io.video import read_image

    photo = read_image(src)
    corner = np.abs(first[400:, :100].astype(int) - photo[400:, :100].astype(int)).mean()
    assert corner < 6  # far from the face, the frame is the source picture (after H.264)
    driver = tmp_path / "driver.mp4"
    write_video(driver, astronaut_frames(8, 200), fps=10, crf=12)
    r = generate(tmp_path / "on_driver.mp4", [src], driver, checkpoint,
                 config=GenerateConfig(paste="driver", size=100))
    assert r.size == [100, 100] and r.frames == 8
    with pytest.raises(BadInputError, match="needs a driving video"):
        generate(tmp_path / "x.mp4", [src], checkpoint=checkpoint,
                 config=GenerateConfig(seconds=0.2, paste="driver"))


def test_frame_sink_keeps_order_and_raises_the_workers_error():
    from generator.inference.render import FrameSink

    seen = []
    with FrameSink(lambda k: seen.append(k), max_pending=1) as sink:
        for k in range(20):
            sink.submit(k)
        sink.drain()
    assert seen == list(range(20)) and sink.busy >= 0

    def fail_on_3(k):
        if k == 3:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"), FrameSink(fail_on_3) as sink:
        for k in range(10):
            sink.submit(k)
        sink.drain()


def test_an_encoding_error_leaves_no_output(checkpoint, tmp_path, monkeypatch):
    import generator.inference.render as render

    def broken(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(render, "side_by_side", broken)
    out = tmp_path / "out.mp4"
    with pytest.raises(OSError, match="No space left"):
        generate(out, checkpoint=checkpoint, config=GenerateConfig(seconds=1.0, preview=True))
    assert not out.exists() and not any(p.suffix == ".mp4" for p in tmp_path.iterdir())
