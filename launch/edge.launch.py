"""ros2 launch colvlm edge.launch.py namespace:=cam0 source:=/path/to/images

The camera side: `edge_node` with `config/edge.yaml` (or `config:=FILE`), one namespace per
camera. `source`, `loop` (true/false) and `fps` override the file's `source.uri`,
`source.loop` and `source.fps` when given.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def _node(context) -> list:
    """One Node; `source` joins its parameters only when given (launch has no 'unset')."""
    def value(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    # One path in on both backends: launch_ros passes `parameters` as --ros-args
    # --params-file, and namespace/name as -r __ns:= / __node:=, which rclpy and the dds
    # backend both read.
    parameters = [value('config')]
    if value('source'):
        parameters.append({'source.uri': value('source')})
    if value('loop'):
        parameters.append({'source.loop': _flag('loop', value('loop'))})
    if value('fps'):
        parameters.append({'source.fps': _number('fps', value('fps'))})
    return [Node(package='colvlm', executable='edge_node', name='edge',
                 namespace=value('namespace'), output='screen', parameters=parameters,
                 additional_env={'COLVLM_TRANSPORT': value('transport')})]


def _flag(name: str, text: str) -> bool:
    if text.lower() not in ('true', 'false'):
        raise ValueError(f'{name}:={text!r} must be true or false')
    return text.lower() == 'true'


def _number(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f'{name}:={text!r} must be a number (frames per second)') from None


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument('namespace', default_value='camera',
                              description='camera namespace of the colvlm topics'),
        DeclareLaunchArgument(
            'config', description='edge parameter file',
            default_value=PathJoinSubstitution([FindPackageShare('colvlm'), 'config',
                                                'edge.yaml'])),
        DeclareLaunchArgument('source', default_value='',
                              description="frames (source.uri); '' = the file's"),
        DeclareLaunchArgument('loop', default_value='',
                              description="start a folder again at its end (source.loop): "
                                          "true | false; '' = the file's"),
        DeclareLaunchArgument('fps', default_value='',
                              description="frames per second of file sources (source.fps); "
                                          "'' = the file's"),
        DeclareLaunchArgument('transport', default_value='ros', description='ros | dds'),
        OpaqueFunction(function=_node),
    ])
