"""Run the edge: publish global frames and serve RoI crops from a camera, folder, video or bag.

Parameters come from config/edge.yaml (or --config), then flags. With layers.enabled the
model's vision tower and the token codec are loaded before anything is offered, with
view.enabled the tower and the view probe. ROS_DOMAIN_ID and ROS_AUTOMATIC_DISCOVERY_RANGE
select the network as for any ROS 2 node.
"""

from __future__ import annotations

import argparse
import threading

CONFIG = 'config/edge.yaml'
TOPIC_SOURCE_PREFIX = 'topic:'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from colvlm_msgs.transport.entry import add_node_arguments

    parser.add_argument('--source', help="'synthetic', a folder, video, device index, URL, "
                        "rosbag2 path or topic:NAME (overrides source.uri)")
    add_node_arguments(parser, CONFIG, 'camera namespace, e.g. cam0')


def run(args: argparse.Namespace) -> int:
    from colvlm_msgs.transport.entry import run_node

    return run_node('edge', args, CONFIG,
                    {'source.uri': args.source} if args.source else {}, _start)


def _start(node, overrides: dict):
    """The configured edge, its frames flowing, logged ready; what stops it."""
    from colvlm_edge.node import EdgeNode
    from colvlm_edge.parameters import EDGE_PARAMETERS, EdgeConfig
    from colvlm_edge.source_runner import log_sources_through
    from colvlm_edge.sources import open_source
    from colvlm_edge.token_encoder import load_token_encoder

    config = EdgeConfig.from_values(node.declare_parameters(EDGE_PARAMETERS, overrides))
    log_sources_through(node.logger)  # a folder warns about its entries as it opens
    source = None
    if not config.source.startswith(TOPIC_SOURCE_PREFIX):
        source = open_source(config.source, frame_id=config.frame_id, **_source_options(config))
    tokens = scorer = None
    if config.layers.enabled:
        node.logger.info(f'loading the vision tower of {config.layers.model} '
                         f'({config.layers.split}) for token layers')
        tokens = load_token_encoder(config.layers)
    if config.view.enabled:
        node.logger.info(f'loading the vision tower of {config.view.model} and its view '
                         'probe for colvlm/score_view')
        scorer = _view_scorer(config, tokens)
    edge = EdgeNode(node, config, tokens, scorer)
    stop_source = _feed(edge, source)
    node.logger.info(_ready_line(node, edge))

    def stop() -> None:
        stop_source()  # no publishing while DDS tears down at exit
        edge.log_status()  # the final counts, whatever the status period

    return stop


def _feed(edge, source):
    """Frames into the edge: a subscription for a topic source, else a thread reading
    `source` at source.fps. Returns what stops the feeding."""
    config, node = edge.config, edge.node
    from colvlm_edge.source_runner import run_source

    if source is None:
        edge.health.set_state('topic')
        topic = config.source[len(TOPIC_SOURCE_PREFIX):]
        msg_type = ('sensor_msgs/msg/CompressedImage' if topic.endswith('/compressed')
                    else 'sensor_msgs/msg/Image')
        node.create_subscription(msg_type, topic, edge.on_image_message, 'frames')
        return lambda: None
    edge.source = source
    stop = threading.Event()
    reader = threading.Thread(target=run_source, name='edge-source', daemon=True,
                              args=(edge, source, config.source_fps, stop))
    reader.start()

    def stop_reading() -> None:
        stop.set()
        reader.join(timeout=5.0)

    return stop_reading


def _ready_line(node, edge) -> str:
    config, tokens = edge.config, edge.tokens
    extra = ''
    if tokens is not None:
        extra = (f'; token layers {tokens.codec.codec_id} ({config.layers.proactive} of '
                 f'{tokens.codec.layer_count} sent with each frame) on '
                 f'{node.resolve_name("colvlm/token_layers")}, serving '
                 f'{node.resolve_name("colvlm/request_layers")}'
                 + ('' if config.layers.send_global else ', no global images'))
    if edge.scorer is not None:
        extra += f', view scores on {node.resolve_name("colvlm/score_view")}'
    return (f'ready: source {config.source}, publishing '
            f'{node.resolve_name("colvlm/global/compressed")} ({config.publish_mode}), '
            f'serving {node.resolve_name("colvlm/crop_roi")}{extra}')


def _view_scorer(config, tokens):
    """The view scorer, on the token layers' model when it is the same one (one tower in
    memory, not two)."""
    from colvlm_edge.view_score import load_view_scorer

    view = config.view
    shared = tokens is not None and (config.layers.model, config.layers.device) == (
        view.model, view.device)
    return load_view_scorer(view.model, view.probe, view.device, config.encoder,
                            backend=tokens.backend if shared else None)


def _source_options(config) -> dict:
    """Only what the chosen kind takes: folders (and single pictures) loop, paced sources stamp
    at source.fps, bags may name their image topic, all but synthetic check image sizes."""
    from pathlib import Path

    from colvlm_edge.sources import IMAGE_SUFFIXES

    uri = config.source
    if uri == 'synthetic':
        return {'fps': config.source_fps}
    limit = {'max_pixels': config.decode_max_pixels}
    path = Path(uri).expanduser()
    if (path.is_dir() and not (path / 'metadata.yaml').is_file()) or (
            path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES):
        return {'loop': config.source_loop, 'fps': config.source_fps, **limit}
    if config.bag_topic:
        return {'topic': config.bag_topic, **limit}
    return limit


def main(argv: list[str] | None = None) -> int:
    """`ros2 run colvlm edge_node`: the `colvlm edge` verb; ROS arguments are left to rclpy."""
    from colvlm_msgs.transport.entry import main as node_main

    return node_main('edge_node', add_arguments, run, argv)
