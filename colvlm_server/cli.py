"""Run the server: answer questions about an edge's frames with a VLM, cropping when unsure.

Parameters come from config/server.yaml (or --config), then flags. The model is loaded before
any topic or service is offered; one "ready" line follows. ROS_DOMAIN_ID and
ROS_AUTOMATIC_DISCOVERY_RANGE select the network as for any ROS 2 node.
"""

from __future__ import annotations

import argparse

CONFIG = 'config/server.yaml'

def add_arguments(parser: argparse.ArgumentParser) -> None:
    from colvlm_msgs.transport.entry import add_node_arguments

    parser.add_argument('--model', help="'bundled', a local folder or a Hugging Face id "
                        '(overrides the model parameter)')
    add_node_arguments(parser, CONFIG, 'namespace, e.g. cam0 (the camera answered about unless '
                               'camera.default names another)')


def run(args: argparse.Namespace) -> int:
    from colvlm_msgs.transport.entry import run_node

    return run_node('server', args, CONFIG,
                    {'model': args.model} if args.model else {}, _start)


def _start(node, overrides: dict):
    """The configured server, ready and logged as such; what stops it."""
    from colvlm_models.settings import model_settings
    from colvlm_server.parameters import SERVER_PARAMETERS, ServerConfig

    # The chosen model's colvlm.yaml ranks between the table's defaults and the user's files.
    model = node.user_parameters.get('model', SERVER_PARAMETERS.specs['model'].default)
    config = ServerConfig.from_values(node.declare_parameters(
        SERVER_PARAMETERS, overrides, base=model_settings(str(model))))
    server = _build(node, config)
    pipeline = server.pipeline
    node.logger.info(
        f'ready: model {server.model_id} ({pipeline.backend.image_size[0]}x'
        f'{pipeline.backend.image_size[1]}, attention layer {pipeline.attention_layer}, '
        f'ViCrop {pipeline.vicrop_method}) on '
        f'{config.device}, policy {config.policy}, threshold {config.gate.threshold:g} nats, '
        f'{config.acceleration.describe()}camera {server.camera}; serving '
        f'{node.resolve_name("colvlm/ask")} and {node.resolve_name("colvlm/query")}')

    def stop() -> None:
        server.stop()
        server.log_status()  # the final counts, whatever the status period

    return stop


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
    pipeline = TwoStagePipeline(backend, config.gate, attention_layer=config.attention_layer,
                                vicrop_method=config.vicrop_method)
    options = LayerOptions(load_codecs(codec_paths(config)), config.layers_step,
                           config.layers_crop, config.layers_first)
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
    from colvlm_msgs.transport.entry import main as node_main

    return node_main('server_node', add_arguments, run, argv)
