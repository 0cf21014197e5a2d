"""Frame sources chosen by one string: synthetic scenes, a camera, a folder, a video, a bag.

Each source is an iterator of `Frame(stamp_ns, image, frame_id)` with strictly increasing
stamps; `open_source(spec)` picks the kind. Sources neither pace nor buffer frames.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from colvlm_edge.sources.bag import BagSource
from colvlm_edge.sources.folder import IMAGE_SUFFIXES, FolderSource
from colvlm_edge.sources.frame import Frame, FrameSource
from colvlm_edge.sources.ros_image import image_from_ros
from colvlm_edge.sources.synthetic import SyntheticSource
from colvlm_edge.sources.video import VideoSource

__all__ = ['IMAGE_SUFFIXES', 'BagSource', 'FolderSource', 'Frame', 'FrameSource',
           'SyntheticSource', 'VideoSource', 'image_from_ros', 'open_source']

BAG_SUFFIXES = ('.mcap', '.db3')


def _pick(spec: str) -> tuple[type[FrameSource], object]:
    """(source class, its first argument) for spec."""
    if spec == 'synthetic':
        return SyntheticSource, None
    if spec.isdigit():
        return VideoSource, int(spec)
    if '://' in spec:
        return VideoSource, spec
    path = Path(spec).expanduser()
    if path.is_dir():
        return (BagSource if (path / 'metadata.yaml').is_file() else FolderSource), path
    if path.suffix.lower() in BAG_SUFFIXES:
        return BagSource, path  # BagSource says so clearly when it is missing
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        return FolderSource, path  # one picture: decoded as one, never through a video reader
    if path.is_file():
        return VideoSource, path
    raise FileNotFoundError(f"source {spec!r} is not 'synthetic', a device index, a URL or an "
                            'existing folder, bag or video file')


def open_source(spec: str, **options: object) -> FrameSource:
    """The source spec names, built with options.

    'synthetic' -> SyntheticSource; '0' -> camera 0; 'rtsp://...' -> stream; a folder -> its
    images, or a bag if it holds metadata.yaml; '*.mcap' / '*.db3' -> bag; an image file ->
    that one picture; another file -> video. Options set to None are dropped, so a node can
    pass all its parameters; any other option the chosen kind does not take is a ValueError
    naming it.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f'source must be a non-empty string, got {spec!r}')
    source_class, argument = _pick(spec.strip())
    options = {name: value for name, value in options.items() if value is not None}
    parameters = list(inspect.signature(source_class.__init__).parameters)[1:]  # no self
    accepted = set(parameters if argument is None else parameters[1:])
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(f'option(s) {unknown} do not apply to a {source_class.kind} source '
                         f'(it takes {sorted(accepted)})')
    if argument is None:
        return source_class(**options)
    return source_class(argument, **options)
