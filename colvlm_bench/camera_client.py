"""The asking end of the link, shared by `colvlm ask` and the demo: it asks the server
(colvlm/ask) and can play the camera for a picture of its own.

Playing the camera is the ROS way to aim a question at one picture: the file's bytes go to
the edge's image topic as a `sensor_msgs/CompressedImage` stamped now (the edge must read that
topic: `colvlm edge --source topic:camera/image_raw/compressed`), and once the edge has sent
its global frame (its FrameGeometry of that stamp arrived) the question names the frame by
its stamp. With `feedback`, it asks through the colvlm/ask action instead and hands each
stage's Feedback to it as it comes; a goal that times out or is interrupted (Ctrl-C) is
cancelled, so that the server stops too. It knows nothing of the answer's meaning.
"""

from __future__ import annotations

from pathlib import Path
import threading
import time

IMAGE_TOPIC = 'camera/image_raw/compressed'  # relative: under the namespace, as a camera's
CANCEL_WAIT_S = 5.0  # for the server to confirm a cancelled goal with its CANCELED answer
FRAME_WAIT_S = 15.0  # for the edge's global frame of a picture shown to it
NO_FRAME_RETRY_S = 0.2  # between asks while the server has not yet got a frame the edge sent


class CameraClient:
    """One transport node in `namespace`: an Ask client and, with `camera`, a publisher on the
    edge's image topic (made at once, so that discovery has begun when a picture is shown)."""

    def __init__(self, name: str, namespace: str, backend: str | None = None, *,
                 camera: bool = False, image_topic: str = IMAGE_TOPIC) -> None:
        from colvlm_msgs.transport import create_node

        self.node = create_node(name, namespace, backend=backend)
        self._ask_type = self.node.service_type('colvlm/srv/Ask')
        self._client = self.node.create_client('colvlm/srv/Ask', 'colvlm/ask')
        self.image_topic = image_topic
        self._images = self.node.create_publisher(
            'sensor_msgs/msg/CompressedImage', image_topic, 'frames') if camera else None
        self._action = None  # the colvlm/ask action client, made on the first action ask
        self._sent: set[int] = set()  # stamps of the global frames the edge has sent
        self._changed = threading.Condition()
        self.node.create_subscription('colvlm/msg/FrameGeometry', 'colvlm/global/geometry',
                                      self._on_geometry, 'frame_info')

    @property
    def ask_service(self) -> str:
        return self.node.resolve_name('colvlm/ask')

    def _on_geometry(self, info) -> None:
        from colvlm_msgs import stamps

        with self._changed:
            self._sent.add(stamps.to_ns(info.header.stamp))
            self._changed.notify_all()

    def show(self, image_file: Path, stamp_ns: int, wait_s: float = FRAME_WAIT_S) -> bool:
        """Publish the picture (its file bytes) until the edge has sent its global frame;
        False when it did not within `wait_s`."""
        from colvlm_msgs import stamps

        if self._images is None:
            raise ValueError('this CameraClient was made without camera=True')
        message = self.node.message_type('sensor_msgs/msg/CompressedImage')()
        stamps.fill(message.header.stamp, stamp_ns)
        message.header.frame_id = 'camera'
        message.format = image_file.suffix.lstrip('.').lower()
        message.data = image_file.read_bytes()
        deadline = time.monotonic() + wait_s
        with self._changed:
            while stamp_ns not in self._sent and time.monotonic() < deadline:
                self._images.publish(message)  # best effort: sent again until it lands
                self._changed.wait(timeout=min(0.5, max(0.0, deadline - time.monotonic())))
            return stamp_ns in self._sent

    def action_client(self):
        if self._action is None:
            self._action = self.node.create_action_client('colvlm/action/Ask', 'colvlm/ask')
        return self._action

    def wait_for_server(self, timeout: float, action: bool = False) -> bool:
        if action:
            return self.action_client().wait_for_server(timeout)
        return self._client.wait_for_service(timeout)

    def ask(self, query_id: str, question: str, timeout: float, *, stamp_ns: int = 0,
            policy: str = '', camera: str = '', shown: bool = False, feedback=None):
        """The Answer message; ServiceTimeout when none came within `timeout`. For a frame
        `shown` to the edge, NO_FRAME means the server does not hold it yet (the edge has
        sent it): asked again until it does, within `timeout`. With `feedback`, through the
        action: `feedback(message)` for each stage."""
        from colvlm_msgs import stamps
        from colvlm_msgs.constants import Status

        deadline = time.monotonic() + timeout
        request = self._ask_type.Request()
        query = request.query
        query.query_id, query.question = query_id, question
        query.policy, query.camera = policy, camera
        stamps.fill(query.frame_stamp, stamp_ns)
        while True:
            stamps.fill(query.header.stamp, self.node.now_ns())
            remaining = max(0.0, deadline - time.monotonic())
            answer = self._client.call(request, timeout=remaining).answer if feedback is None \
                else self._ask_action(query, remaining, feedback)
            if not shown or answer.status != Status.NO_FRAME \
                    or time.monotonic() + NO_FRAME_RETRY_S >= deadline:
                return answer
            time.sleep(NO_FRAME_RETRY_S)

    def _ask_action(self, query, timeout: float, feedback):
        """The Answer of one colvlm/ask goal; a goal not answered within `timeout`, or
        interrupted, is cancelled (and the ServiceTimeout or KeyboardInterrupt raised)."""
        from colvlm_msgs.transport import ServiceTimeout

        deadline = time.monotonic() + timeout
        client = self.action_client()
        goal = self.node.action_type('colvlm/action/Ask').Goal(query=query)
        sent = client.send_goal(goal, timeout, feedback)
        if not sent.accepted:
            raise ServiceTimeout(f'the server on {client.action} refused the goal')
        try:
            return sent.result(max(0.0, deadline - time.monotonic()))[1].answer
        except KeyboardInterrupt:  # Ctrl-C: cancel, and return the answer that brings
            if not _cancelled(sent):
                raise
            return sent.result(CANCEL_WAIT_S)[1].answer
        except ServiceTimeout:  # the server need not go on for nobody
            _cancelled(sent)
            raise

    def close(self) -> None:
        self.node.shutdown()


def _cancelled(sent) -> bool:
    """Whether the server accepted to cancel the goal `sent` (within CANCEL_WAIT_S)."""
    try:
        return sent.cancel(CANCEL_WAIT_S) == 0  # CancelGoal's ERROR_NONE
    except Exception:  # no answer, or a transport already shutting down (rclpy on Ctrl-C)
        return False
