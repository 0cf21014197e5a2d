"""Run the server: answer questions about an edge's frames with a VLM, cropping when unsure.

Parameters come from config/server.yaml (or --config), then flags. The model is loaded before
any topic or service is offered; one "ready" line follows. ROS_DOMAIN_ID and
ROS_AUTOMATIC_DISCOVERY_RANGE select the network as for any ROS 2 node.
"""

from __future__ import annotations

import argparse
import signal
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--model', help="'bundled', a local folder or a Hugging Face id "
                        '(overrides the model parameter)')
    parser.add_argument('--config', help='parameter YAML (default: the shipped server.yaml)')
    parser.add_argument('--namespace', default='', help='namespace, e.g. cam0 (the camera '
                        'answered about unless camera.default names another)')
    parser.add_argument('--transport', choices=('auto', 'ros', 'dds'), default=None,
                        help='middleware backend (default: COLVLM_TRANSPORT or auto)')
    parser.add_argument('-p', '--param', action='append', default=[], metavar='NAME=VALUE',
                        help='override one parameter, value in YAML syntax; repeatable')


def run(args: argparse.Namespace) -> int:
    from colvlm_msgs.params import parse_overrides
    from colvlm_msgs.resources import find
    from colvlm_msgs.transport import create_node
    from colvlm_server.parameters import SERVER_PARAMETERS, ServerConfig

    try:
        overrides = parse_overrides(args.param)
        if args.model:
            overrides['model'] = args.model
        config_path = args.config or str(find('config/server.yaml'))
        node = create_node('server', args.namespace, backend=args.transport,
                           parameters_file=config_path)
    except (ValueError, FileNotFoundError) as error:
        print(f'colvlm server: {error}', file=sys.stderr)
        return 2
    try:
        config = ServerConfig.from_values(node.declare_parameters(SERVER_PARAMETERS, overrides))
        server = _build(node, config)
    except (ValueError, FileNotFoundError, RuntimeError) as error:  # ModelLoadError too
        node.logger.error(str(error))
        node.shutdown()
        return 2
    pipeline = server.pipeline
    node.logger.info(
        f'ready: model {server.model_id} ({pipeline.backend.image_size[0]}x'
        f'{pipeline.backend.image_size[1]}, attention layer {pipeline.attention_layer}, '
        f'ViCrop {pipeline.vicrop_method}) on '
        f'{config.device}, policy {config.policy}, threshold {config.gate.threshold:g} nats, '
        f'{config.acceleration.describe()}camera {server.camera}; serving '
        f'{node.resolve_name("colvlm/ask")} and {node.resolve_name("colvlm/query")}')
    # launch stops nodes with SIGINT, then SIGTERM: both end spin() and shut down cleanly,
    # SIGINT also where it was ignored at start (a shell's background job, an init script).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.default_int_handler)
    try:
        node.spin()
    finally:
        server.stop()
        server.log_status()  # the final counts, whatever the status period
    return 0


def _build(node, config):
    """Load the model, then build the node: nothing is offered before the model is ready."""
    from colvlm_models.vlm import TransformersVlm
    from colvlm_server.node import ServerNode
    from colvlm_server.pipeline import TwoStagePipeline
    from colvlm_server.token_layers import LayerOptions, load_codecs

    _check_device(config.device)
    node.logger.info(f'loading model {config.model} on {config.device} ({config.dtype})')
    backend = TransformersVlm(config.model, device=config.device, dtype=config.dtype,
                              max_new_tokens=config.max_new_tokens, attention=True,
                              progress=False, acceleration=config.acceleration)
    pipeline = TwoStagePipeline(backend, config.gate, attention_layer=config.vicrop_layer,
                                vicrop_method=config.vicrop_method)
    options = LayerOptions(load_codecs(codec_paths(config)), config.layers_step,
                           config.layers_crop)
    return ServerNode(node, config, pipeline, layer_options=options)


def codec_paths(config) -> list:
    """The token codec artifacts `layers.codec` names, or those next to a local model."""
    from colvlm_models.vlm import resolve_model
    from colvlm_server.token_layers import model_codec_paths

    if config.layers_codec.strip():
        return [part.strip() for part in config.layers_codec.split(',') if part.strip()]
    return model_codec_paths(resolve_model(config.model))


def _check_device(name: str) -> None:
    """A device this machine has, or ValueError naming the parameter (torch would assert)."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f'device {name!r} is not a torch device: {error}') from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f'device {name!r}: this machine has no CUDA device torch can use')
    if device.type == 'mps' and not torch.backends.mps.is_available():
        raise ValueError(f'device {name!r}: MPS is not available on this machine')


def main(argv: list[str] | None = None) -> int:
    """`ros2 run colvlm server_node`: the `colvlm server` verb; ROS arguments are left to rclpy."""
    from colvlm_msgs.transport import without_ros_arguments

    parser = argparse.ArgumentParser(prog='server_node')
    add_arguments(parser)
    # rclpy reads --ros-args from sys.argv itself; its `-p` is not colvlm's --param.
    args, _unknown = parser.parse_known_args(
        without_ros_arguments(sys.argv[1:] if argv is None else argv))
    return run(args)
