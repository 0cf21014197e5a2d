"""Camera frames replayed from a rosbag2 (sqlite3 or mcap) through the `rosbags` library.

Reads sensor_msgs/msg/Image or CompressedImage from one topic, stamped by each message's
header (the bag's log time when the header stamp is zero). It needs no ROS installation.
"""

from __future__ import annotations

from collections.abc import Iterator
import logging
from pathlib import Path
from typing import Optional

from rosbags.rosbag2 import Reader, ReaderError
from rosbags.typesys import Stores, get_typestore

from colvlm_edge.sources.frame import Frame, FrameSource
from colvlm_edge.sources.ros_image import image_from_ros
from colvlm_msgs.image_codec import DEFAULT_MAX_PIXELS, ImageTooLarge

IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')

logger = logging.getLogger(__name__)


class BagSource(FrameSource):
    """The image messages of topic (default: the bag's first image topic), in log order."""

    kind = 'bag'

    def __init__(self, path: str | Path, topic: Optional[str] = None,
                 frame_id: str = 'camera', max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        super().__init__()
        self.max_pixels = max_pixels  # px; larger images are refused undecoded
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f'bag {str(self.path)!r} does not exist')
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except ReaderError as error:
            raise ValueError(f'cannot read bag {str(self.path)!r}: {error}') from None
        image_connections = [c for c in self._reader.connections if c.msgtype in IMAGE_TYPES]
        if topic is None:
            if not image_connections:
                topics = {c.topic: c.msgtype for c in self._reader.connections}
                self._reader.close()
                raise ValueError(f'bag {str(self.path)!r} has no image topic {IMAGE_TYPES}; '
                                 f'its topics: {topics}')
            topic = image_connections[0].topic
        self.connections = [c for c in image_connections if c.topic == topic]
        if not self.connections:
            topics = {c.topic: c.msgtype for c in self._reader.connections}
            self._reader.close()
            raise ValueError(f'topic {topic!r} is not an image topic {IMAGE_TYPES} of bag '
                             f'{str(self.path)!r}; its topics: {topics}')
        self.topic = topic
        self.frame_id = frame_id
        # Image and CompressedImage have not changed since Foxy; one distro's types read all.
        self._typestore = get_typestore(Stores.ROS2_JAZZY)

    def _frames(self) -> Iterator[Frame]:
        last_stamp: Optional[int] = None
        for connection, log_time_ns, raw in self._reader.messages(connections=self.connections):
            try:
                msg = self._typestore.deserialize_cdr(raw, connection.msgtype)
                image = image_from_ros(msg, self.max_pixels)  # (H, W, 3) uint8 BGR
            except ImageTooLarge as error:
                logger.warning('refusing a %s message at %d ns: %s', self.topic, log_time_ns,
                               error)
                self.refused += 1
                continue
            except Exception as error:  # a corrupt message of any kind is skipped alike
                logger.warning('skipping a %s message at %d ns: %s', self.topic,
                               log_time_ns, error)
                self.dropped += 1
                continue
            header_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            stamp = header_ns if header_ns > 0 else log_time_ns
            # The frame buffer keys on stamps: a repeated or backwards one is nudged forward.
            if last_stamp is not None and stamp <= last_stamp:
                stamp = last_stamp + 1
            last_stamp = stamp
            yield Frame(stamp, image, msg.header.frame_id or self.frame_id)

    def close(self) -> None:
        super().close()
        if self._reader.is_open:
            self._reader.close()
