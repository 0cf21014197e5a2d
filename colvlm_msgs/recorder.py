"""Record what a node receives on some topics into a rosbag2, readable by `ros2 bag` and rosbags.

`BagRecorder` subscribes through the transport port, so it records on either backend. Each
sample is written as its CDR bytes (the port's classes serialize to exactly what crossed the
wire), stamped with its receive time, under the topic's fully qualified name, with the
type's message definition and RIHS01 hash and the offered QoS in the bag's metadata. The bag
is complete once `close()` has run; a process killed before that leaves a folder without
metadata.yaml, which `colvlm_msgs.bag.open_reader` reports as such. It knows topics and
files, not what the messages mean.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
import queue
import threading

from rosbags.rosbag2 import Writer, WriterError

from colvlm_msgs.bag import (
    WRITER_VERSION,
    BagError,
    colvlm_typestore,
    rosbags_qos,
    storage_plugin,
)
from colvlm_msgs.qos import QosProfile, profile
from colvlm_msgs.transport.port import Node


@dataclass(frozen=True)
class RecordedTopic:
    name: str                  # relative to the node's namespace, or absolute
    msg_type: str              # 'pkg/msg/Name'
    qos: str | QosProfile      # what the recorder subscribes with


class BagRecorder:
    """Writes every sample `node` receives on `topics` into a new bag at `path`.

    One writer thread owns the bag (sqlite3 connections must stay on their thread, and disk
    writes must not hold up the middleware's reader threads); callbacks only queue samples.
    """

    def __init__(self, node: Node, path: str | Path, topics: list[RecordedTopic], *,
                 storage: str = 'mcap', serialize: Callable[[object], bytes]) -> None:
        store = colvlm_typestore()
        unknown = [t.msg_type for t in topics if t.msg_type not in store.types]
        if unknown:
            raise BagError(f'cannot record type {unknown[0]!r}: not a colvlm or standard '
                           'interface the bag writer knows')
        self.path = Path(path)
        self._node = node
        self._serialize = serialize
        self._plugin = storage_plugin(storage)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = threading.Event()
        self.counts: dict[str, int] = {}  # messages written, by topic
        full = [(node.resolve_name(t.name), t) for t in topics]
        self._connections: dict[str, object] = {}
        self._failure: BaseException | None = None
        opened = threading.Event()
        self._thread = threading.Thread(target=self._write, args=(store, full, opened),
                                        name='bag-writer', daemon=True)
        self._thread.start()
        opened.wait()
        if self._failure is not None:
            self._thread.join()
            raise self._failure
        try:
            for name, topic in full:
                node.create_subscription(topic.msg_type, topic.name,
                                         partial(self._on_message, name), topic.qos)
        except Exception:
            self.close()
            raise

    @property
    def topics(self) -> list[str]:
        return list(self.counts)

    def _write(self, store, topics: list[tuple[str, RecordedTopic]],
               opened: threading.Event) -> None:
        writer = None
        try:
            writer = Writer(self.path, version=WRITER_VERSION, storage_plugin=self._plugin)
            writer.open()
            for name, topic in topics:
                self._connections[name] = writer.add_connection(
                    name, topic.msg_type, typestore=store,
                    offered_qos_profiles=[rosbags_qos(profile(topic.qos))])
                self.counts[name] = 0
        except WriterError as error:
            self._failure = BagError(f'cannot create bag {str(self.path)!r}: {error}')
        except Exception as error:
            self._failure = error
        finally:
            opened.set()
        if self._failure is not None:
            if writer is not None and writer.storage is not None:
                writer.close()
            return
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    break
                name, received_ns, data = item
                writer.write(self._connections[name], received_ns, data)
                self.counts[name] += 1
        except Exception as error:  # e.g. a full disk: keep what was written, readable
            self._closed.set()
            self._node.logger.error(f'bag {self.path}: writing failed ({error}); closing it '
                                    'with what was written')
        finally:
            writer.close()

    def _on_message(self, topic: str, message) -> None:
        if not self._closed.is_set():
            self._queue.put((topic, self._node.now_ns(), self._serialize(message)))

    def close(self) -> None:
        """Write what is queued, then finish the bag (index, metadata.yaml); later samples are
        ignored. Safe to call twice."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._queue.put(None)
        self._thread.join()
