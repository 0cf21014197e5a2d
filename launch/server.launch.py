"""ros2 launch colvlm server.launch.py namespace:=cam0 model:=bundled

The server side: `server_node` with `config/server.yaml` (or `config:=FILE`) in the camera's
namespace. `model` overrides the file's model when given (a local folder or a hub id).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    namespace = LaunchConfiguration('namespace')
    config = LaunchConfiguration('config')
    model = LaunchConfiguration('model')
    transport = LaunchConfiguration('transport')
    has_model = PythonExpression(["'", model, "' != ''"])
    common = dict(package='colvlm', executable='server_node', name='server',
                  namespace=namespace, output='screen',
                  additional_env={'COLVLM_TRANSPORT': transport, 'HF_HUB_OFFLINE': '1'})
    # The `dds` backend reads no --ros-args: the same settings go on its own command line.
    cli = ['--namespace', namespace, '--config', config]
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
        Node(parameters=[config, {'model': model}], condition=IfCondition(has_model),
             arguments=[*cli, '--model', model], **common),
        Node(parameters=[config], condition=UnlessCondition(has_model), arguments=cli,
             **common),
    ])
