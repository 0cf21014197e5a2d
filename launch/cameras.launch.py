"""ros2 launch colvlm cameras.launch.py cameras:=front,left,right sources:=/a,/b,/c

Several cameras, one server choosing among them (LiteVLM view selection): one `edge_node`
per camera in `<namespace>/<camera>`, publishing global frames only when asked
(`publish.mode: on_request`) and serving `colvlm/score_view` (`view.enabled`); one
`server_node` in `<namespace>` with `views.cameras` naming them. A question that names no
camera is answered from the views the server selects for it: only their frames cross the link.
`sources` lists one frame source per camera (`source.uri`); '' = the edge file's for all.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def _nodes(context):
    def value(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    root = value('namespace').strip('/')
    cameras = [c.strip() for c in value('cameras').split(',') if c.strip()]
    sources = [s.strip() for s in value('sources').split(',')] if value('sources') else []
    if len(cameras) < 2:
        raise ValueError(f'cameras: name two or more, comma-separated; got {cameras}')
    if sources and len(sources) != len(cameras):
        raise ValueError(f'sources: one per camera ({len(cameras)}), got {len(sources)}')
    transport = value('transport')
    env = {'COLVLM_TRANSPORT': transport, 'HF_HUB_OFFLINE': '1'}
    nodes = []
    for index, camera in enumerate(cameras):
        namespace = f'{root}/{camera}' if root else camera
        overrides = {'publish.mode': 'on_request', 'view.enabled': True, 'frame_id': camera}
        if sources:
            overrides['source.uri'] = sources[index]
        # Both backends read the --ros-args launch_ros makes of `parameters` and `namespace`.
        nodes.append(Node(package='colvlm', executable='edge_node', name='edge',
                          namespace=namespace, output='screen', additional_env=env,
                          parameters=[value('edge_config'), overrides]))
    absolute = [f'/{root}/{camera}' if root else f'/{camera}' for camera in cameras]
    nodes.append(Node(package='colvlm', executable='server_node', name='server',
                      namespace=root or '/', output='screen', additional_env=env,
                      parameters=[value('server_config'), {'views.cameras': absolute}]))
    return nodes


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare('colvlm')
    return LaunchDescription([
        DeclareLaunchArgument('cameras', default_value='front,left,right',
                              description='camera names, comma-separated (two or more)'),
        DeclareLaunchArgument('sources', default_value='',
                              description="one source.uri per camera, comma-separated; "
                                          "'' = the edge file's"),
        DeclareLaunchArgument('namespace', default_value='robot',
                              description='namespace of the server; cameras go below it'),
        DeclareLaunchArgument('edge_config',
                              default_value=PathJoinSubstitution([share, 'config',
                                                                  'edge.yaml'])),
        DeclareLaunchArgument('server_config',
                              default_value=PathJoinSubstitution([share, 'config',
                                                                  'server.yaml'])),
        DeclareLaunchArgument('transport', default_value='ros', description='ros | dds'),
        OpaqueFunction(function=_nodes),
    ])
