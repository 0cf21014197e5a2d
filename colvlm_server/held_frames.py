"""What the server holds of one camera's edge: its newest global frames and the token layers
it sent unasked, bounded so that no peer on the domain can make it hold more.

Both stores forget by arrival, not by stamp: a frame stamped far in the future (a hostile
peer, or an edge whose clock jumped) is forgotten like any other once newer ones have
arrived, instead of outliving every frame stamped before it. Both are bounded in count and
in bytes. A frame is usable once both halves (the image and its FrameGeometry, same stamp)
arrived; a half waiting for the other is forgotten after UNPAIRED_S. A frame's token layers
are at most the codec's layer count. The stamp check against the clock is the intake's
(intake.py); these stores take any stamp.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
import threading
import time

from colvlm_msgs.geometry import GlobalGeometry
from colvlm_msgs.token_codec import EncodedLayer
from colvlm_server.pipeline import Frame
from colvlm_server.token_layers import LayeredFrame

FRAMES_KEPT = 8  # newest complete frames a query may name by stamp
# A frame's image or geometry waiting for the other half is forgotten after this long: the
# two are published together, and a frame that old is stale anyway (frame.max_age_s 5 s).
UNPAIRED_S = 5.0


class ArrivalTable:
    """Values by stamp in arrival order, at most `max_count` of them and `max_bytes` of
    their sizes together: the first arrived goes first. Not thread-safe (its store locks)."""

    def __init__(self, max_count: int, max_bytes: int, clock: Callable[[], float]):
        self.max_count, self.max_bytes, self._clock = max_count, max_bytes, clock
        self._items: OrderedDict[int, tuple[object, int, float]] = OrderedDict()
        self.bytes = 0

    def __contains__(self, stamp_ns: int) -> bool:
        return stamp_ns in self._items

    def __len__(self) -> int:
        return len(self._items)

    def get(self, stamp_ns: int):
        held = self._items.get(stamp_ns)
        return held[0] if held else None

    def put(self, stamp_ns: int, value, size: int, arrived: bool = True) -> None:
        """Hold `value` of `size` bytes; `arrived` False keeps a held stamp's place (more of
        the same frame), True makes it the newest arrival. Evicts the first arrived beyond
        the bounds; ValueError when `size` alone is over them."""
        if size > self.max_bytes:
            raise ValueError(f'{size} B, more than the {self.max_bytes} B held at most')
        old = self._items.get(stamp_ns)
        if old is not None:
            self.bytes -= old[1]
        self._items[stamp_ns] = (value, size, old[2] if old and not arrived else self._clock())
        if arrived:
            self._items.move_to_end(stamp_ns)
        self.bytes += size
        while len(self._items) > self.max_count or self.bytes > self.max_bytes:
            self.pop_first()

    def pop(self, stamp_ns: int):
        held = self._items.pop(stamp_ns, None)
        if held is None:
            return None
        self.bytes -= held[1]
        return held[0]

    def pop_first(self) -> int:
        stamp_ns, (_, size, _) = self._items.popitem(last=False)
        self.bytes -= size
        return stamp_ns

    def expire(self, max_age_s: float) -> int:
        """Forget what arrived more than `max_age_s` ago; how many were."""
        limit, expired = self._clock() - max_age_s, 0
        while self._items and next(iter(self._items.values()))[2] < limit:
            self.pop_first()
            expired += 1
        return expired

    def stamps(self) -> list[int]:
        """The stamps held, first arrived first."""
        return list(self._items)

    def newest_stamp(self) -> int | None:
        return max(self._items) if self._items else None


class FrameStore:
    """The newest global frames of one camera, each image paired with its geometry by stamp;
    `max_bytes` bounds the decoded images held, paired or waiting."""

    def __init__(self, camera: str, keep: int = FRAMES_KEPT, max_bytes: int = 2**30,
                 clock: Callable[[], float] = time.monotonic):
        self.camera = camera
        self._changed = threading.Condition()
        self._images = ArrivalTable(keep, max_bytes, clock)  # stamp -> (image, frame_id, B)
        self._geometries = ArrivalTable(4 * keep, max_bytes, clock)  # (GlobalGeometry, B)
        self._frames = ArrivalTable(keep, max_bytes, clock)  # stamp -> (Frame, frame_id)
        self.completed = 0
        self.expired = 0  # halves forgotten unpaired

    def add_image(self, stamp_ns: int, image, frame_id: str, size: int) -> None:
        """ValueError when the image alone is over the bytes held at most, or does not
        match its geometry."""
        with self._changed:
            self._expire()
            if stamp_ns in self._geometries:
                self._complete(stamp_ns, (image, frame_id, size), self._geometries.pop(stamp_ns))
                return
            try:
                self._images.put(stamp_ns, (image, frame_id, size), image.nbytes)
            except ValueError as error:
                raise ValueError(f'frame {stamp_ns} of {self.camera}: image of {error}') \
                    from None
            self._fit(stamp_ns)

    def add_geometry(self, stamp_ns: int, geometry: GlobalGeometry, size: int) -> None:
        with self._changed:
            self._expire()
            if stamp_ns in self._images:
                image_part = self._images.pop(stamp_ns)
                self._complete(stamp_ns, image_part, (geometry, size))
            else:
                self._geometries.put(stamp_ns, (geometry, size), size)

    def _complete(self, stamp_ns: int, image_part: tuple, geometry_part: tuple) -> None:
        image, frame_id, image_bytes = image_part  # (h, w, 3) uint8 BGR
        geometry, geometry_bytes = geometry_part
        if image.shape[:2] != (geometry.global_height, geometry.global_width) \
                or not (geometry.scale_x > 0 and geometry.scale_y > 0):
            raise ValueError(f'frame {stamp_ns}: image {image.shape[1]}x{image.shape[0]} does '
                             f'not match its geometry ({geometry})')
        frame = Frame(image, geometry, stamp_ns, self.camera, image_bytes + geometry_bytes)
        try:
            self._frames.put(stamp_ns, (frame, frame_id), image.nbytes)
        except ValueError as error:
            raise ValueError(f'frame {stamp_ns} of {self.camera}: image of {error}') from None
        self._fit(stamp_ns)
        self.completed += 1
        self._changed.notify_all()

    def _fit(self, arrived_ns: int) -> None:
        """Images waiting for their geometry go first, then the first arrived frames, until
        what is held fits in max_bytes; never the image or frame that just arrived."""
        for table in (self._images, self._frames):
            for stamp_ns in table.stamps():
                if self._images.bytes + self._frames.bytes <= self._frames.max_bytes:
                    return
                if stamp_ns != arrived_ns:
                    table.pop(stamp_ns)

    def _expire(self) -> None:
        self.expired += self._images.expire(UNPAIRED_S) + self._geometries.expire(UNPAIRED_S)

    def held_bytes(self) -> int:
        """Decoded image bytes held, paired or waiting for their geometry."""
        with self._changed:
            self._expire()
            return self._images.bytes + self._frames.bytes

    def latest(self) -> tuple[Frame, str] | None:
        """The held frame of the largest stamp."""
        with self._changed:
            self._expire()
            newest = self._frames.newest_stamp()
            return None if newest is None else self._frames.get(newest)

    def get(self, stamp_ns: int) -> tuple[Frame, str] | None:
        with self._changed:
            return self._frames.get(stamp_ns)

    def wait_for(self, stamp_ns: int, timeout: float) -> tuple[Frame, str] | None:
        with self._changed:
            self._changed.wait_for(lambda: stamp_ns in self._frames, max(0.0, timeout))
            return self._frames.get(stamp_ns)

    def geometry(self, stamp_ns: int) -> GlobalGeometry | None:
        """The FrameGeometry of `stamp_ns`, with or without its image."""
        with self._changed:
            held = self._frames.get(stamp_ns)
            if held is not None:
                return held[0].geometry
            waiting = self._geometries.get(stamp_ns)
            return waiting[0] if waiting else None


class LayerStore:
    """The token layers an edge sent unasked, per frame stamp, for the newest frames: at
    most `per_frame` layers a frame (the codec's layer count) and `max_bytes` of serialized
    layers in all."""

    def __init__(self, camera: str, keep: int = FRAMES_KEPT, per_frame: int = 16,
                 max_bytes: int = 2**26, clock: Callable[[], float] = time.monotonic):
        self.camera, self.per_frame = camera, per_frame
        self._changed = threading.Condition()
        self._frames = ArrivalTable(keep, max_bytes, clock)  # stamp -> (layers, B, frame_id)

    def add(self, stamp_ns: int, layer: EncodedLayer, size: int, frame_id: str) -> None:
        """ValueError when the frame holds `per_frame` layers already, or the layer alone is
        over the bytes held at most."""
        with self._changed:
            layers, total, held_id = self._frames.get(stamp_ns) or ([], 0, frame_id)
            if len(layers) >= self.per_frame:
                raise ValueError(f'token layer {layer.layer_index} of frame {stamp_ns} of '
                                 f'{self.camera}: {len(layers)} are held already (the '
                                 "codec's layer count)")
            try:
                self._frames.put(stamp_ns, (layers + [layer], total + size, held_id),
                                 total + size, arrived=not layers)
            except ValueError as error:
                raise ValueError(f'token layers of frame {stamp_ns} of {self.camera}: '
                                 f'{error}') from None
            self._changed.notify_all()

    def held_bytes(self) -> int:
        with self._changed:
            return self._frames.bytes

    def _frame(self, stamp_ns: int) -> tuple[LayeredFrame, str]:
        layers, total, frame_id = self._frames.get(stamp_ns)
        return LayeredFrame(stamp_ns, tuple(layers), self.camera, total), frame_id

    def latest(self) -> tuple[LayeredFrame, str] | None:
        """The layers of the largest stamp held."""
        with self._changed:
            newest = self._frames.newest_stamp()
            return None if newest is None else self._frame(newest)

    def get(self, stamp_ns: int) -> tuple[LayeredFrame, str] | None:
        with self._changed:
            return self._frame(stamp_ns) if stamp_ns in self._frames else None

    def wait_for(self, stamp_ns: int, timeout: float) -> tuple[LayeredFrame, str] | None:
        with self._changed:
            self._changed.wait_for(lambda: stamp_ns in self._frames, max(0.0, timeout))
            return self._frame(stamp_ns) if stamp_ns in self._frames else None
