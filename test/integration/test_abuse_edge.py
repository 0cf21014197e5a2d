"""issue 19's edge probes against real processes over DDS (tools/abuse_edge.py, which also
prints the memory figures; here only behaviour is checked): image bombs are dropped by a
server with one line each, a hostile folder is refused and counted with prefixed warnings, a
bag corrupted mid-file ends the edge's source with one ERROR and an ERROR on /diagnostics, and
a crop flood from one client leaves another's refining questions answered. The probes that
start a server (it loads the model) are marked slow."""

from __future__ import annotations

import pytest

from tools.abuse_edge import QUESTIONS, probe_bag, probe_bomb, probe_flood, probe_folder


def test_a_hostile_folder_is_refused_and_counted(dds_env, tmp_path):
    figures = probe_folder(dds_env, tmp_path)
    assert figures['refused images'] == 2  # 13000x13000 JPEG, 20000x20000 PNG bomb
    assert figures['dropped frames'] == 2  # the link loop and the link to a device
    # Only the 640x480 good image is ever held: never 507 MB of a forged one.
    assert 0 < figures['buffer bytes'] and figures['buffer bytes'] % (640 * 480 * 3) == 0
    assert figures['warnings'] == figures['warnings with the log prefix'] == 4


def test_a_bag_corrupted_mid_file_is_one_error_and_a_diagnostics_error(dds_env, tmp_path):
    figures = probe_bag(dds_env, tmp_path)
    assert figures['error lines'] == 1 and 'malformed' in figures['error line']
    assert figures['tracebacks'] == figures['source ended lines'] == 0
    assert figures['diagnostics level'] == 2 and 'malformed' in figures['diagnostics message']


@pytest.mark.slow
def test_image_bombs_are_dropped_by_the_server(dds_env):
    figures = probe_bomb(dds_env)
    for name in ('jpeg 30000x30000', 'png 20000x20000'):
        assert 'over the limit' in (figures[name]['dropped line'] or ''), figures


@pytest.mark.slow
def test_a_crop_flood_from_one_client_leaves_anothers_questions_answered(dds_env):
    figures = probe_flood(dds_env)
    assert figures['questions OK'] >= QUESTIONS - 1, figures
    assert figures['flood crops served'] < figures['flood crops sent'], figures
    assert figures['request_frame served'] < figures['of'], figures
