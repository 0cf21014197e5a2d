"""ros2 launch colvlm replay.launch.py bag:=/path/to/bag image_topic:=/camera/image_raw/compressed

A recorded camera through the live nodes: `edge_node` subscribed to the bag's image topic
(`source.uri` = topic:IMAGE_TOPIC, its replay mode) and `server_node`, both on the bag's clock
(use_sim_time), with `config/edge.yaml` and `config/server.yaml` (or edge_config:=,
server_config:=). `ros2 bag play --clock` starts once the server has logged its ready line,
so that no frame or question is played to a model still loading; the bag's Query topic
(query_topic) is remapped into the namespace, and answers come out on
<namespace>/colvlm/answer. The launch ends `linger` seconds after the bag has played
(negative: keeps running). Defaults replay the shipped sample bag. For offline numbers
without ROS, see `colvlm replay`.
"""

from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    ExecuteProcess,
    OpaqueFunction,
    RegisterEventHandler,
    TimerAction,
)
from launch.conditions import IfCondition
from launch.event_handlers import OnProcessExit, OnProcessIO
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

READY_MARK = b'ready:'  # the server's one line once its model is loaded (server_cli)


def _start_once(actions: list):
    """An OnProcessIO callback that returns `actions` the first time READY_MARK shows."""
    started = []

    def on_output(event):
        if started or READY_MARK not in event.text:
            return None
        started.append(True)
        return actions

    return on_output


def _server(context, play: ExecuteProcess, use_sim_time: ParameterValue) -> list:
    """One server Node (`model` among its parameters only when given) and, on its ready
    line, the player."""
    arg = LaunchConfiguration
    overrides = {'use_sim_time': use_sim_time}
    if arg('model').perform(context):
        overrides['model'] = arg('model').perform(context)
    server = Node(package='colvlm', executable='server_node', name='server',
                  namespace=arg('namespace'), output='screen',
                  parameters=[arg('server_config'), overrides],
                  additional_env={'COLVLM_TRANSPORT': arg('transport'), 'HF_HUB_OFFLINE': '1'})
    return [server, RegisterEventHandler(OnProcessIO(target_action=server,
                                                     on_stderr=_start_once([play]),
                                                     on_stdout=_start_once([play])))]


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare('colvlm')
    arg = LaunchConfiguration
    namespace = arg('namespace')
    use_sim_time = ParameterValue(arg('use_sim_time'), value_type=bool)
    query_target = PythonExpression(["'/' + '", namespace, "'.strip('/') + '/colvlm/query'"])
    transport = {'COLVLM_TRANSPORT': arg('transport')}

    edge = Node(
        package='colvlm', executable='edge_node', name='edge', namespace=namespace,
        output='screen', additional_env=transport,
        parameters=[arg('edge_config'), {
            'source.uri': ParameterValue(['topic:', arg('image_topic')], value_type=str),
            'use_sim_time': use_sim_time}])
    play = ExecuteProcess(
        cmd=['ros2', 'bag', 'play', arg('bag'), '--rate', arg('rate'), '--clock', '50',
             '--disable-keyboard-controls',
             '--remap', [arg('query_topic'), ':=', query_target]],
        name='bag_play', output='screen')
    finished = RegisterEventHandler(
        OnProcessExit(target_action=play, on_exit=[TimerAction(
            period=arg('linger'),
            actions=[EmitEvent(event=Shutdown(reason='the bag has been played'))])]),
        condition=IfCondition(PythonExpression([arg('linger'), ' >= 0'])))
    return LaunchDescription([
        DeclareLaunchArgument(
            'bag', description='rosbag2 folder to play',
            default_value=PathJoinSubstitution([share, 'samples', 'glyphvqa-replay', 'bag'])),
        DeclareLaunchArgument('rate', default_value='1.0',
                              description='playback speed factor of ros2 bag play'),
        DeclareLaunchArgument('namespace', default_value='camera',
                              description='camera namespace of the colvlm topics'),
        DeclareLaunchArgument('image_topic', default_value='/camera/image_raw/compressed',
                              description='sensor_msgs Image or CompressedImage topic of the '
                                          "bag the edge reads ('.../compressed' = compressed)"),
        DeclareLaunchArgument('query_topic', default_value='/camera/colvlm/query',
                              description='colvlm/msg/Query topic of the bag, remapped to '
                                          '<namespace>/colvlm/query'),
        DeclareLaunchArgument(
            'edge_config', description='edge parameter file',
            default_value=PathJoinSubstitution([share, 'config', 'edge.yaml'])),
        DeclareLaunchArgument(
            'server_config', description='server parameter file',
            default_value=PathJoinSubstitution([share, 'config', 'server.yaml'])),
        DeclareLaunchArgument('model', default_value='',
                              description="model path or id; '' = the file's (bundled)"),
        DeclareLaunchArgument('transport', default_value='ros', description='ros | dds'),
        DeclareLaunchArgument('use_sim_time', default_value='true',
                              description="the nodes run on the bag's /clock"),
        DeclareLaunchArgument('linger', default_value='10.0',
                              description='seconds to keep running after the bag has played '
                                          'for the last answers; negative = until Ctrl-C'),
        edge, OpaqueFunction(function=_server, args=[play, use_sim_time]), finished,
    ])
