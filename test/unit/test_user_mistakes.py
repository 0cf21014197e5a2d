"""A user's mistakes on the `colvlm` command line end in one line naming the culprit and exit
status 2, never a traceback (issue 20): model paths, hub look-ups, parameter files, output
folders, `ask` flags. These load nothing and run in-process; the cases that need a process
of their own (a server, eval, ask over DDS) are test/integration/test_user_mistakes_cli.py."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import REPO_ROOT
import pytest
import yaml

from colvlm_bench import cli
from colvlm_models.vlm import ModelLoadError, resolve_model
from colvlm_msgs.params import ParameterError, parse_overrides, read_yaml


def _one_line_error(capsys, argv: list[str]) -> str:
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert 'Traceback' not in captured.err + captured.out
    return lines[0]


@pytest.mark.parametrize('model', ['/nonexistent/model', './mymodel', 'a/b/c'])
def test_a_model_path_that_is_no_folder_is_named_before_loading(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelLoadError, match=f"model '{model}': no such folder"):
        resolve_model(model)
    (tmp_path / 'mymodel').mkdir()
    assert resolve_model('./mymodel') == 'mymodel'


def test_a_hub_id_is_not_looked_up_online_unless_allowed(monkeypatch):
    monkeypatch.delenv('COLVLM_ALLOW_DOWNLOAD', raising=False)
    with pytest.raises(ModelLoadError, match='--allow-download or set COLVLM_ALLOW_DOWNLOAD=1'):
        resolve_model('colvlm-test/no-such-model')
    monkeypatch.setenv('COLVLM_ALLOW_DOWNLOAD', '1')
    assert resolve_model('colvlm-test/no-such-model') == 'colvlm-test/no-such-model'


def test_the_command_is_offline_unless_the_user_opts_in(monkeypatch):
    for name in ('HF_HUB_OFFLINE', 'COLVLM_ALLOW_DOWNLOAD'):
        monkeypatch.delenv(name, raising=False)
    cli.offline_unless_allowed(['server'])
    assert os.environ['HF_HUB_OFFLINE'] == '1'
    monkeypatch.delenv('HF_HUB_OFFLINE')
    cli.offline_unless_allowed(['eval', 'data', '--allow-download'])
    assert os.environ['COLVLM_ALLOW_DOWNLOAD'] == '1' and 'HF_HUB_OFFLINE' not in os.environ
    verbs = next(action.choices for action in cli.build_parser()._actions
                 if action.dest == 'verb')
    for verb in cli.MODEL_VERBS:  # every verb that loads a model takes the flag
        assert '--allow-download' in verbs[verb].format_help(), verb


@pytest.mark.parametrize('text, message', [
    ('/**:\n  ros__parameters:\n    gate: [1\n    policy: global\n',
     r'bad\.yaml:4:11: not valid YAML'),
    ('gate.threshold: 0.01\n', r"bad\.yaml: 'gate\.threshold' is not a node section"),
    ('edge:\n  ros__parameters:\n    frame_id: cam\n',
     r"bad\.yaml: no section for node '/cam0/server' \(it has edge\)"),
])
def test_a_bad_parameter_file_is_refused_naming_the_file(tmp_path, text, message):
    (tmp_path / 'bad.yaml').write_text(text)
    with pytest.raises(ParameterError, match=message) as error:
        read_yaml(tmp_path / 'bad.yaml', '/cam0/server')
    assert '\n' not in str(error.value)


def test_tuple_values_as_launch_ros_writes_them_read_as_lists(tmp_path):
    # Jazzy's launch_ros yaml.dump()s a launch file's parameters (cameras.launch.py gives the
    # server views.cameras as a list it turns into a tuple), tagging tuples !!python/tuple;
    # a server that refused the tag died at start-up on a real Jazzy.
    path = tmp_path / 'launch_params.yaml'
    with path.open('w') as handle:
        yaml.dump({'/**': {'ros__parameters': {'views.cameras': ('/robot/front', '/robot/rear')}}},
                  handle, default_flow_style=False)
    assert '!!python/tuple' in path.read_text()
    assert read_yaml(path, '/robot/server') == {'views.cameras': ['/robot/front', '/robot/rear']}
    assert parse_overrides([f"views.cameras={yaml.dump(('/a', '/b'))}"]) == \
        {'views.cameras': ['/a', '/b']}
    path.write_text("/**:\n  ros__parameters:\n    x: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ParameterError, match='not valid YAML'):  # still no arbitrary objects
        read_yaml(path, '/robot/server')


def test_wildcard_and_named_sections_apply_as_in_rcl(tmp_path):
    path = tmp_path / 'params.yaml'
    path.write_text('/**:\n  ros__parameters:\n    a: 1\n    b: 1\n'
                    '/**/server:\n  ros__parameters:\n    b: 2\n    c: 2\n'
                    'server:\n  ros__parameters:\n    c: 3\n'
                    'edge:\n  ros__parameters:\n    d: 4\n')
    assert read_yaml(path, '/cam0/server') == {'a': 1, 'b': 2, 'c': 3}
    assert read_yaml(path, '/server') == {'a': 1, 'b': 2, 'c': 3}
    assert read_yaml(path, '/cam0/edge') == {'a': 1, 'b': 1, 'd': 4}


def test_dataset_into_a_file_or_below_one_is_one_line(tmp_path, capsys):
    (tmp_path / 'file').write_text('x')
    for out in (tmp_path / 'file', tmp_path / 'file' / 'sub'):
        line = _one_line_error(capsys, ['dataset', 'glyphvqa', str(out), '--n-images', '1',
                                        '--overwrite'])
        assert 'is a file, not a folder' in line and '--overwrite' not in line


@pytest.mark.skipif(os.geteuid() == 0, reason='root writes into a read-only folder')
def test_dataset_into_an_unwritable_folder_is_one_line(tmp_path, capsys):
    locked = tmp_path / 'locked'
    locked.mkdir(mode=0o500)
    line = _one_line_error(capsys, ['dataset', 'glyphvqa', str(locked / 'out'),
                                    '--n-images', '1'])
    assert 'cannot write' in line and 'locked' in line


def test_dataset_says_overwrite_only_when_it_was_not_passed(tmp_path, capsys):
    (tmp_path / 'keep.txt').write_text('x')
    line = _one_line_error(capsys, ['dataset', 'glyphvqa', str(tmp_path), '--n-images', '1'])
    assert 'pass --overwrite' in line


def test_demo_into_an_existing_file_or_with_no_model_is_one_line(tmp_path, capsys):
    (tmp_path / 'report').write_text('x')
    line = _one_line_error(capsys, ['demo', '--out', str(tmp_path / 'report')])
    assert 'a file is there, not a folder' in line
    line = _one_line_error(capsys, ['demo', '--out', str(tmp_path / 'new'), '--model',
                                    str(tmp_path / 'mymodel')])
    assert 'no such folder' in line and not (tmp_path / 'new').exists()


def test_eval_with_a_model_folder_that_is_not_there_is_one_line(tmp_path, capsys,
                                                                monkeypatch):
    from colvlm_bench.glyphvqa.dataset import write_dataset

    data = write_dataset(tmp_path / 'data', n_images=1, seed=0)
    monkeypatch.chdir(tmp_path)
    line = _one_line_error(capsys, ['eval', str(data), '--model', './mymodel', '--out',
                                    str(tmp_path / 'out'), '--no-progress'])
    assert "model './mymodel': no such folder" in line


def test_image_and_stamp_are_checked_before_anything_starts(tmp_path, capsys):
    line = _one_line_error(capsys, ['ask', 'Is it?', '--image', str(tmp_path / 'none.png')])
    assert 'none.png: no such file' in line
    line = _one_line_error(capsys, ['ask', 'Is it?', '--stamp', '-5'])
    assert '--stamp must be a positive stamp' in line


def test_the_shipped_configs_still_apply(tmp_path):
    for name in ('edge', 'server'):
        assert read_yaml(Path(REPO_ROOT) / 'config' / f'{name}.yaml', f'/cam0/{name}')
