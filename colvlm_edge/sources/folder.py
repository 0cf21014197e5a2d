"""Images in a folder, in name order, as frames stamped at a nominal rate.

Undecodable files are skipped with one warning each and counted in `dropped`.
"""

from __future__ import annotations

from collections.abc import Iterator
import logging
from pathlib import Path
from typing import Optional

from colvlm_edge.sources.frame import Frame, FrameSource, IndexClock
from colvlm_msgs.image_codec import ImageDecodeError, decode_image

IMAGE_SUFFIXES = ('.bmp', '.jpeg', '.jpg', '.pgm', '.png', '.ppm', '.tif', '.tiff', '.webp')

logger = logging.getLogger(__name__)


class FolderSource(FrameSource):
    """Every image file in path (by suffix, sorted by name); loop=True starts over forever."""

    kind = 'folder'

    def __init__(self, path: str | Path, loop: bool = False, fps: float = 30.0,
                 start_ns: Optional[int] = None, frame_id: str = 'camera') -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f'image folder {str(self.path)!r} does not exist')
        self.files = sorted((p for p in self.path.iterdir()
                             if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                            key=lambda p: p.name)
        if not self.files:
            raise ValueError(f'image folder {str(self.path)!r} has no images {IMAGE_SUFFIXES}')
        self.loop = bool(loop)
        self.frame_id = frame_id
        self._clock = IndexClock(fps, start_ns)

    def _frames(self) -> Iterator[Frame]:
        index = 0
        files = list(self.files)
        while files:
            readable = []
            for file in files:
                try:
                    image = decode_image(file.read_bytes())  # (H, W, 3) uint8 BGR
                except (ImageDecodeError, OSError) as error:
                    # Remembered as bad, so a looping source warns and counts it once.
                    logger.warning('skipping %s: %s', file, error)
                    self.dropped += 1
                    continue
                readable.append(file)
                yield Frame(self._clock.stamp(index), image, self.frame_id)
                index += 1
            if not self.loop:
                return
            files = readable
