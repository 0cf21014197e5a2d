"""ros2 launch colvlm server.launch.py namespace:=cam0 model:=bundled

The server side: `server_node` with `config/server.yaml` (or `config:=FILE`) in the camera's
namespace. `model` overrides the file's model when given (a local folder or a hub id).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def _node(context) -> list:
    """One Node; `model` joins its parameters only when given (launch has no 'unset')."""
    def value(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    # One path in on both backends: launch_ros passes `parameters` as --ros-args
    # --params-file, and namespace/name as -r __ns:= / __node:=, which rclpy and the dds
    # backend both read.
    parameters = [value('config')]
    if value('model'):
        parameters.append({'model': value('model')})
    return [Node(package='colvlm', executable='server_node', name='server',
                 namespace=value('namespace'), output='screen', parameters=parameters,
                 additional_env={'COLVLM_TRANSPORT': value('transport'),
                                 'HF_HUB_OFFLINE': '1'})]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument('namespace', default_value='camera',
                              description='camera namespace of the colvlm topics'),
        DeclareLaunchArgument(
            'config', description='server parameter file',
            default_value=PathJoinSubstitution([FindPackageShare('colvlm'), 'config',
                                                'server.yaml'])),
        DeclareLaunchArgument('model', default_value='',
                              description="model path or id; '' = the file's (bundled)"),
        DeclareLaunchArgument('transport', default_value='ros', description='ros | dds'),
        OpaqueFunction(function=_node),
    ])
