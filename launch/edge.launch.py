"""ros2 launch colvlm edge.launch.py namespace:=cam0 source:=/path/to/images

The camera side: `edge_node` with `config/edge.yaml` (or `config:=FILE`), one namespace per
camera. `source` overrides the file's `source.uri` when given.
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
    source = LaunchConfiguration('source')
    transport = LaunchConfiguration('transport')
    has_source = PythonExpression(["'", source, "' != ''"])
    common = dict(package='colvlm', executable='edge_node', name='edge', namespace=namespace,
                  output='screen', additional_env={'COLVLM_TRANSPORT': transport})
    # The `dds` backend reads no --ros-args: the same settings go on its own command line.
    cli = ['--namespace', namespace, '--config', config]
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
        Node(parameters=[config, {'source.uri': source}], condition=IfCondition(has_source),
             arguments=[*cli, '--source', source], **common),
        Node(parameters=[config], condition=UnlessCondition(has_source), arguments=cli,
             **common),
    ])
