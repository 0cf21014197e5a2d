"""The ROS 2 package files: package.xml parses with catkin_pkg, CMake installs what it must."""

from __future__ import annotations

from pathlib import Path
import re

from catkin_pkg.package import parse_package

ROOT = Path(__file__).resolve().parents[2]


def test_package_xml_parses_and_declares_the_dependencies():
    package = parse_package(ROOT / 'package.xml')
    assert package.name == 'colvlm' and package.package_format == 3
    names = {d.name for d in package.buildtool_depends + package.build_depends
             + package.exec_depends + package.test_depends}
    for required in ('ament_cmake', 'ament_cmake_python', 'rosidl_default_generators',
                     'rosidl_default_runtime', 'rclpy', 'sensor_msgs', 'std_msgs',
                     'builtin_interfaces', 'cv_bridge', 'launch_ros', 'python3-opencv',
                     'python3-numpy', 'launch_testing', 'launch_testing_ros', 'launch_pytest',
                     'ament_cmake_pytest', 'visualization_msgs', 'python3-matplotlib',
                     'python3-fonttools'):
        assert required in names, required
    assert 'rosidl_interface_packages' in {g.name for g in package.member_of_groups}
    assert package.get_build_type() == 'ament_cmake'


def test_cmake_generates_interfaces_installs_and_registers_tests():
    text = (ROOT / 'CMakeLists.txt').read_text()
    assert 'rosidl_generate_interfaces(${PROJECT_NAME}' in text
    assert '"${_interface_root}/msg/*.msg"' in text and '"${_interface_root}/srv/*.srv"' in text
    for package in ('colvlm_msgs', 'colvlm_edge', 'colvlm_server'):
        assert f'ament_python_install_package({package})' in text
    assert re.search(r'install\(DIRECTORY launch config models DESTINATION share/', text)
    assert 'DESTINATION lib/${PROJECT_NAME}' in text and 'foreach(_node edge server)' in text
    assert 'add_launch_test(' in text and 'test/launch/test_*.py' in text
    assert 'ament_add_pytest_test(colvlm_unit test/unit' in text


def test_pyproject_keeps_torch_general_and_the_cpu_pin_in_constraints():
    # Plain text: tomllib is not in Python 3.10, which ROS 2 Humble uses.
    text = (ROOT / 'pyproject.toml').read_text()
    assert re.findall(r"'torch[^']*'", text) == ["'torch>=2.4'"]
    assert "colvlm = 'colvlm_bench.cli:main'" in text
    assert 'torch==2.13.0' in (ROOT / 'tools' / 'constraints-cpu.txt').read_text()


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / 'README.md').read_text()
    ci = (ROOT / '.ci' / 'run').read_text()
    command = 'bash tools/dev.sh test'
    assert f'\n{command}\n' in readme
    assert ci.rstrip().endswith(command)

