"""ros2 launch colvlm colvlm.launch.py namespace:=cam0 source:=/path/to/images

Edge and server together, in one namespace: edge.launch.py and server.launch.py with their
arguments passed through (namespace, edge_config, server_config, source, loop, fps, model,
transport).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def _include(name: str, arguments: dict) -> IncludeLaunchDescription:
    path = PathJoinSubstitution([FindPackageShare('colvlm'), 'launch', name])
    return IncludeLaunchDescription(PythonLaunchDescriptionSource(path),
                                    launch_arguments=arguments.items())


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare('colvlm')
    arg = LaunchConfiguration
    return LaunchDescription([
        DeclareLaunchArgument('namespace', default_value='camera'),
        DeclareLaunchArgument('edge_config',
                              default_value=PathJoinSubstitution([share, 'config',
                                                                  'edge.yaml'])),
        DeclareLaunchArgument('server_config',
                              default_value=PathJoinSubstitution([share, 'config',
                                                                  'server.yaml'])),
        DeclareLaunchArgument('source', default_value=''),
        DeclareLaunchArgument('loop', default_value=''),
        DeclareLaunchArgument('fps', default_value=''),
        DeclareLaunchArgument('model', default_value=''),
        DeclareLaunchArgument('transport', default_value='ros'),
        _include('edge.launch.py', {'namespace': arg('namespace'), 'config': arg('edge_config'),
                                    'source': arg('source'), 'loop': arg('loop'),
                                    'fps': arg('fps'), 'transport': arg('transport')}),
        _include('server.launch.py', {'namespace': arg('namespace'),
                                      'config': arg('server_config'), 'model': arg('model'),
                                      'transport': arg('transport')}),
    ])
