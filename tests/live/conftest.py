"""Media made by the real ffmpeg, shared by the live tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import pytest

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
# What the tests' encoders send: H.264 with a keyframe every 2 s at 30 fps, and AAC audio.
H264_2S_GOP = [
    "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-keyint_min", "60",
    "-sc_threshold", "0", "-pix_fmt", "yuv420p",
]  # fmt: skip
AAC = ["-c:a", "aac", "-b:a", "96k"]


def make_flv(path: Path, *, seconds: int = 6, size: str = "640x360", audio: bool = True) -> Path:
    """Encode a test pattern (H.264, 2 s GOP, AAC) into an FLV file."""
    command = [
        FFMPEG,
        "-hide_banner",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={size}:rate=30",
    ]
    if audio:
        command += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    command += ["-t", str(seconds), *H264_2S_GOP, *(AAC if audio else [])]
    command += ["-f", "flv", "-y", str(path)]
    subprocess.run(command, check=True, timeout=60)
    return path


@pytest.fixture(scope="session")
def flv_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six seconds of 640x360@30 with a 2 s GOP and AAC audio, as FLV."""
    return make_flv(tmp_path_factory.mktemp("media") / "pattern.flv")
