"""ros2 launch colvlm edge.launch.py namespace:=cam0 source:=/path/to/images

The camera side: `edge_node` with `config/edge.yaml` (or `config:=FILE`), one namespace per
camera. `source` overrides the file's `source.uri` when given.
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
    return [Node(package='colvlm', executable='edge_node', name='edge',
                 namespace=value('namespace'), output='screen', parameters=parameters,
                 additional_env={'COLVLM_TRANSPORT': value('transport')})]


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
        DeclareLaunchArgument('transport', default_value='ros', description='ros | dds'),
        OpaqueFunction(function=_node),
    ])
