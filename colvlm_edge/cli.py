"""Run the edge: publish global frames and serve RoI crops from a camera, folder, video or bag.

Parameters come from config/edge.yaml (or --config), then flags. With layers.enabled the
model's vision tower and the token codec are loaded before anything is offered, with
view.enabled the tower and the view probe. ROS_DOMAIN_ID and ROS_AUTOMATIC_DISCOVERY_RANGE
select the network as for any ROS 2 node.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--source', help="'synthetic', a folder, video, device index, URL, "
                        "rosbag2 path or topic:NAME (overrides source.uri)")
    parser.add_argument('--config', help='parameter YAML (default: the shipped edge.yaml)')
    parser.add_argument('--namespace', default='', help='camera namespace, e.g. cam0')
    parser.add_argument('--transport', choices=('auto', 'ros', 'dds'), default=None,
                        help='middleware backend (default: COLVLM_TRANSPORT or auto)')
    parser.add_argument('-p', '--param', action='append', default=[], metavar='NAME=VALUE',
                        help='override one parameter, value in YAML syntax; repeatable')


def run(args: argparse.Namespace) -> int:
    from colvlm_edge.node import TOPIC_SOURCE_PREFIX, EdgeNode, run_source
    from colvlm_edge.parameters import EDGE_PARAMETERS, EdgeConfig
    from colvlm_edge.sources import open_source
    from colvlm_edge.token_encoder import load_token_encoder
    from colvlm_msgs.params import parse_overrides
    from colvlm_msgs.resources import find
    from colvlm_msgs.transport import create_node

    try:
        overrides = parse_overrides(args.param)
        if args.source:
            overrides['source.uri'] = args.source
        config_path = args.config or str(find('config/edge.yaml'))
        node = create_node('edge', args.namespace, backend=args.transport,
                           parameters_file=config_path)
    except (ValueError, FileNotFoundError) as error:
        print(f'colvlm edge: {error}', file=sys.stderr)
        return 2
    try:
        config = EdgeConfig.from_values(node.declare_parameters(EDGE_PARAMETERS, overrides))
        if config.source.startswith(TOPIC_SOURCE_PREFIX):
            source = None
        else:
            source = open_source(config.source, frame_id=config.frame_id,
                                 **_source_options(config))
        tokens = None
        if config.layers.enabled:
            node.logger.info(f'loading the vision tower of {config.layers.model} '
                             f'({config.layers.split}) for token layers')
            tokens = load_token_encoder(config.layers)
        scorer = None
        if config.view.enabled:
            node.logger.info(f'loading the vision tower of {config.view.model} and its view '
                             'probe for colvlm/score_view')
            scorer = _view_scorer(config, tokens)
        edge = EdgeNode(node, config, tokens, scorer)
    except (ValueError, FileNotFoundError) as error:
        node.logger.error(str(error))
        node.shutdown()
        return 2
    stop = threading.Event()
    reader = None
    if source is None:
        topic = config.source[len(TOPIC_SOURCE_PREFIX):]
        msg_type = ('sensor_msgs/msg/CompressedImage' if topic.endswith('/compressed')
                    else 'sensor_msgs/msg/Image')
        node.create_subscription(msg_type, topic, edge.on_image_message, 'frames')
    else:
        edge.source = source
        reader = threading.Thread(target=run_source, name='edge-source', daemon=True,
                                  args=(edge, source, config.source_fps, stop))
        reader.start()
    layers = ''
    if tokens is not None:
        layers = (f'; token layers {tokens.codec.codec_id} ({config.layers.proactive} of '
                  f'{tokens.codec.layer_count} sent with each frame) on '
                  f'{node.resolve_name("colvlm/token_layers")}, serving '
                  f'{node.resolve_name("colvlm/request_layers")}'
                  + ('' if config.layers.send_global else ', no global images'))
    if scorer is not None:
        layers += f', view scores on {node.resolve_name("colvlm/score_view")}'
    node.logger.info(f'ready: source {config.source}, publishing '
                     f'{node.resolve_name("colvlm/global/compressed")} '
                     f'({config.publish_mode}), serving {node.resolve_name("colvlm/crop_roi")}'
                     f'{layers}')
    # launch stops nodes with SIGINT, then SIGTERM: both end spin() and shut down cleanly,
    # SIGINT also where it was ignored at start (a shell's background job, an init script).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.default_int_handler)
    try:
        node.spin()
    finally:
        stop.set()
        if reader is not None:
            reader.join(timeout=5.0)  # no publishing while DDS tears down at exit
        edge.log_status()  # the final counts, whatever the status period
    return 0


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
    """Only what the chosen kind takes: folders loop, paced sources stamp at source.fps,
    bags may name their image topic."""
    from pathlib import Path

    uri = config.source
    if uri == 'synthetic':
        return {'fps': config.source_fps}
    path = Path(uri).expanduser()
    if path.is_dir() and not (path / 'metadata.yaml').is_file():
        return {'loop': config.source_loop, 'fps': config.source_fps}
    if config.bag_topic:
        return {'topic': config.bag_topic}
    return {}


def main(argv: list[str] | None = None) -> int:
    """`ros2 run colvlm edge_node`: the `colvlm edge` verb; ROS arguments are left to rclpy."""
    from colvlm_msgs.transport import without_ros_arguments

    parser = argparse.ArgumentParser(prog='edge_node')
    add_arguments(parser)
    # rclpy reads --ros-args from sys.argv itself; its `-p` is not colvlm's --param.
    args, _unknown = parser.parse_known_args(
        without_ros_arguments(sys.argv[1:] if argv is None else argv))
    return run(args)
