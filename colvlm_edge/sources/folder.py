"""Images in a folder (or one image file), in name order, as frames stamped at a nominal rate.

Undecodable files are skipped with one warning each and counted in `dropped`; files whose
header declares more than `max_pixels` are refused undecoded and counted in `refused`; links
that loop or lead to a device, pipe or socket are skipped with a warning and counted in
`dropped` (a pipe would block the reader forever). A pass that yields no frame at all raises
ValueError saying so, instead of a source that looks ready and never sends anything.
"""

from __future__ import annotations

from collections.abc import Iterator
import logging
from pathlib import Path
import stat
from typing import Optional

from colvlm_edge.sources.frame import Frame, FrameSource, IndexClock
from colvlm_msgs.image_codec import (
    DEFAULT_MAX_PIXELS,
    ImageDecodeError,
    ImageTooLarge,
    decode_image,
)

IMAGE_SUFFIXES = ('.bmp', '.jpeg', '.jpg', '.pgm', '.png', '.ppm', '.tif', '.tiff', '.webp')

logger = logging.getLogger(__name__)


def list_images(folder: Path) -> tuple[list[Path], list[str]]:
    """(the regular image files in folder by name, why each unusable entry was skipped)."""
    files, skipped = [], []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        try:
            mode = entry.stat().st_mode  # follows links: a loop or a dangling one raises
        except OSError as error:
            skipped.append(f'{entry}: {error.strerror or error}')
            continue
        if stat.S_ISDIR(mode):
            continue
        if not stat.S_ISREG(mode):
            skipped.append(f'{entry}: not a regular file (a device, pipe or socket)')
        elif entry.suffix.lower() in IMAGE_SUFFIXES:
            files.append(entry)
    return files, skipped


class FolderSource(FrameSource):
    """Every image file in path (by suffix, sorted by name), or path itself when it is an image
    file; loop=True starts over forever."""

    kind = 'folder'

    def __init__(self, path: str | Path, loop: bool = False, fps: float = 30.0,
                 start_ns: Optional[int] = None, frame_id: str = 'camera',
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        super().__init__()
        self.path = Path(path)
        if self.path.is_file():
            self.files = [self.path]
        elif self.path.is_dir():
            self.files, skipped = list_images(self.path)
            for why in skipped:
                logger.warning('skipping %s', why)
            self.dropped += len(skipped)
        else:
            raise FileNotFoundError(f'image folder {str(self.path)!r} does not exist')
        if not self.files:
            raise ValueError(f'image folder {str(self.path)!r} has no images {IMAGE_SUFFIXES}')
        self.loop = bool(loop)
        self.frame_id = frame_id
        self.max_pixels = max_pixels  # px
        self._clock = IndexClock(fps, start_ns)

    def _read(self, file: Path):
        """The (H, W, 3) uint8 BGR image in file, or None (warned and counted) if unusable."""
        try:
            return decode_image(file.read_bytes(), self.max_pixels)
        except ImageTooLarge as error:
            logger.warning('refusing %s: %s', file, error)
            self.refused += 1
        except (ImageDecodeError, OSError) as error:
            logger.warning('skipping %s: %s', file, error)
            self.dropped += 1
        return None

    def _frames(self) -> Iterator[Frame]:
        index = 0
        files = list(self.files)
        while files:
            readable = []
            for file in files:
                image = self._read(file)
                if image is None:
                    continue  # remembered as bad: a looping source warns and counts it once
                readable.append(file)
                yield Frame(self._clock.stamp(index), image, self.frame_id)
                index += 1
            if not readable:
                what = 'image' if self.path.is_file() else 'folder'
                raise ValueError(f'{what} {str(self.path)!r}: no decodable image among '
                                 f'{len(files)} file(s)')
            if not self.loop:
                return
            files = readable
