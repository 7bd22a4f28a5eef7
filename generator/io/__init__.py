"""Media in and out: video decoding and encoding with clear errors, atomic writes and hashes, samples."""

from generator.io.files import atomic_path, check_writable, link_or_copy, sha256_file, write_bytes_atomic
from generator.io.samples import (
    astronaut_frames,
    astronaut_image,
    write_astronaut_clip,
    write_astronaut_image,
)
from generator.io.video import (
    MediaInfo,
    MediaReader,
    VideoWriter,
    evenly_spaced_indices,
    is_image_path,
    is_media_path,
    probe,
    read_image,
    write_image,
    write_video,
)

__all__ = [
    "MediaInfo", "MediaReader", "VideoWriter", "astronaut_frames", "astronaut_image", "atomic_path",
    "check_writable", "evenly_spaced_indices", "is_image_path", "is_media_path", "link_or_copy", "probe",
    "read_image", "sha256_file", "write_astronaut_clip", "write_astronaut_image", "write_bytes_atomic",
    "write_image", "write_video",
]
