"""The same-person check: dlib descriptor distances of a video's frames to a source picture."""

from __future__ import annotations

from benchmarks.quality.identity import identity_distances
from tests.conftest import SHARED_VIDEO, shared_file


def test_a_real_clip_is_its_own_person_and_another_is_not(tmp_path):
    import cv2

    from generator.io.video import MediaReader

    video = shared_file(*SHARED_VIDEO.relative_to(SHARED_VIDEO.parents[1]).parts)
    other = shared_file("portraits", "liveportrait_s9.jpg")  # the Mona Lisa
    with MediaReader(video) as reader:
        first = reader.sample(1)[1][0]
    src = tmp_path / "first.png"
    cv2.imwrite(str(src), cv2.cvtColor(first, cv2.COLOR_RGB2BGR))
    same = identity_distances(video, src, frames=6)
    assert same["faces"] == 6 and same["mean"] < 0.45 and same["within_0.6"] == 1.0
    assert len(same["distances"]) == 6
    different = identity_distances(video, other, frames=3)
    assert different["mean"] > 0.6 and different["within_0.6"] < 0.5
