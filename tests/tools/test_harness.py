"""benchmarks/harness: the worker protocol every measurement shares
(bench_backbones, bench_detectors, compat_matrix), timing helpers and the
doc-block writer, on a throw-away worker script."""
import os.path as osp
import textwrap

import pytest

from harness.measure import parse_size, replace_doc_block
from harness.workers import run_worker, run_worker_process

WORKER = textwrap.dedent('''
    import json, sys, time
    sys.path.insert(0, {benchmarks!r})
    from harness.workers import print_result
    kind, spec = sys.argv[2], json.loads(sys.argv[3])
    if kind == 'ok':
        print('noise before the result')
        print_result(dict(doubled=spec['x'] * 2))
    elif kind == 'crash':
        raise RuntimeError('the cell broke: ' + str(spec['x']))
    else:
        time.sleep(30)
''')


@pytest.fixture
def worker(tmp_path):
    import harness
    path = tmp_path / 'worker.py'
    path.write_text(WORKER.format(
        benchmarks=osp.dirname(osp.dirname(harness.__file__))))
    return str(path)


def test_worker_protocol(worker, capsys):
    run = run_worker_process(worker, 'ok', dict(x=21), timeout=60)
    assert run.result == dict(doubled=42) and run.returncode == 0
    assert run_worker(worker, 'ok', dict(x=2, threads=1), 60) == \
        dict(doubled=4)
    # Negative controls: a crash keeps its error, a hang is a timeout.
    run = run_worker_process(worker, 'crash', dict(x=7), timeout=60)
    assert run.result is None and run.returncode != 0
    assert 'RuntimeError: the cell broke: 7' in run.stderr
    assert run_worker(worker, 'crash', dict(x=7, threads=1), 60) is None
    assert 'failed' in capsys.readouterr().out
    run = run_worker_process(worker, 'hang', dict(x=0), timeout=2)
    assert run.returncode is None and run.result is None


def test_sizes_and_doc_blocks(tmp_path):
    assert parse_size('800x1333') == (800, 1333)
    assert parse_size('512') == (512, 512)
    doc = tmp_path / 'doc.md'
    doc.write_text('head\n<!-- b -->\nold\n<!-- e -->\ntail\n')
    replace_doc_block(str(doc), '<!-- b -->', '<!-- e -->', 'new\n')
    assert doc.read_text() == 'head\n<!-- b -->\nnew\n<!-- e -->\ntail\n'
    doc.write_text('no markers\n')
    with pytest.raises(SystemExit, match='add the two markers'):
        replace_doc_block(str(doc), '<!-- b -->', '<!-- e -->', 'x\n')
