"""benchmarks/compat_matrix.py: which MMDetection / MMSegmentation
architectures train and evaluate with pvt_mm backbones.

Default suite: the folder classification, one real cell (RetinaNet +
PVTv2-B0 through MMDetection's Runner), and that the table in
docs/use_in_your_project.md is the one the tool renders from
docs/compat_matrix.json. Slow: the whole matrix and the targets."""
import json
import os
import os.path as osp

import pytest

from helpers import REPO_ROOT, load_module

DOC = osp.join(REPO_ROOT, 'docs', 'use_in_your_project.md')
JSON = osp.join(REPO_ROOT, 'docs', 'compat_matrix.json')
#: Share of the applicable architecture folders that must work.
TARGET_PERCENT = 90.0


@pytest.fixture(scope='module')
def tool():
    return load_module('benchmarks/compat_matrix.py')


def test_every_folder_is_run_or_has_a_reason(tool):
    rows = tool.walk_folders()
    for lib in tool.LIBS:
        folders = sorted(os.listdir(tool.configs_root(lib)))
        folders = [f for f in folders
                   if osp.isdir(osp.join(tool.configs_root(lib), f))]
        assert sorted(r[1] for r in rows if r[0] == lib) == folders
    named = {(lib, f) for lib, f, _, _ in rows}
    # no stale names in the tables
    assert set(tool.NOT_APPLICABLE) <= named
    assert set(tool.REPRESENTATIVE) <= named
    for lib, folder, rep, reason in rows:
        assert (rep is None) != (reason is None), (lib, folder)
        if rep is not None:
            assert osp.isfile(osp.join(tool.configs_root(lib), folder, rep))
    by = {(lib, f): (rep, reason) for lib, f, rep, reason in rows}
    assert 'own CNN' in by[('mmdet', 'cornernet')][1]
    assert 'plain ViT' in by[('mmseg', 'setr')][1]
    assert by[('mmdet', 'faster_rcnn')][0] == 'faster-rcnn_r50_fpn_1x_coco.py'
    assert by[('mmseg', 'upernet')][0] == 'upernet_r50_4xb4-80k_ade20k-512x512.py'
    # the examples are architectures that are run
    for lib, f in [('mmdet', 'cascade_rcnn'), ('mmdet', 'fcos'),
                   ('mmdet', 'atss'), ('mmdet', 'tood'), ('mmdet', 'detr'),
                   ('mmdet', 'deformable_detr'), ('mmdet', 'dino'),
                   ('mmdet', 'mask2former'), ('mmdet', 'solov2'),
                   ('mmdet', 'yolof'), ('mmseg', 'pspnet'),
                   ('mmseg', 'deeplabv3plus'), ('mmseg', 'segformer'),
                   ('mmseg', 'mask2former'), ('mmseg', 'knet')]:
        assert by[(lib, f)][1] is None, (lib, f)


def test_one_cell_trains_and_evaluates(tool, tmp_path):
    """RetinaNet + PVTv2-B0: swap, 2 iterations through MMDetection's
    Runner, COCO evaluation; cached, so a second call runs nothing."""
    # --subprocess: a fresh interpreter, not a fork of this (threaded)
    # test process
    args = ['--folders', 'retinanet', '--libs', 'mmdet', '--backbones',
            'pvt_v2_b0', '--subprocess', '--cache', str(tmp_path), '--json',
            str(tmp_path / 'm.json'), '--doc', str(tmp_path / 'doc.md')]
    (tmp_path / 'doc.md').write_text('# doc\n')
    result = tool.main(args)
    cell = [c for c in result['cells'] if c['folder'] == 'retinanet']
    assert len(cell) == 1 and cell[0]['status'] == 'ok', cell
    assert 'coco/bbox_mAP' in cell[0]['metrics']
    doc = (tmp_path / 'doc.md').read_text()
    assert tool.MARK_BEGIN in doc and '| mmdet | retinanet |' in doc
    mtime = os.path.getmtime(tool.cell_path(str(tmp_path), 'mmdet',
                                            'retinanet', 'pvt_v2_b0'))
    tool.main(args)
    assert os.path.getmtime(tool.cell_path(
        str(tmp_path), 'mmdet', 'retinanet', 'pvt_v2_b0')) == mtime


def test_keep_recorded_updates_some_folders_only(tool, tmp_path):
    """``--keep-recorded``: cells not in the cache are taken from --json as
    recorded, so updating a few folders keeps the others' results; without
    it an empty cache gives an empty table."""
    with open(JSON) as f:
        recorded = json.load(f)
    out = tmp_path / 'm.json'
    out.write_text(json.dumps(recorded))
    (tmp_path / 'doc.md').write_text('# doc\n')
    args = ['--report-only', '--cache', str(tmp_path / 'cache'), '--json',
            str(out), '--doc', str(tmp_path / 'doc.md')]
    kept = tool.main(args + ['--keep-recorded'])
    assert kept['cells'] == recorded['cells']
    assert kept['summary'] == recorded['summary']
    assert tool.main(args)['cells'] == []  # the negative control


def test_old_path_still_runs():
    """tools/analysis_tools/compat_matrix.py (the path the docs used to
    show) runs the moved script with the same options."""
    import subprocess
    import sys
    res = subprocess.run(
        [sys.executable, osp.join(REPO_ROOT, 'tools', 'analysis_tools',
                                  'compat_matrix.py'), '--help'],
        capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert '--report-only' in res.stdout and '--backbones' in res.stdout


def test_doc_table_is_the_tools_output(tool):
    """The table in docs/use_in_your_project.md is rendered from
    docs/compat_matrix.json by the tool, not edited by hand."""
    with open(JSON) as f:
        result = json.load(f)
    with open(DOC) as f:
        doc = f.read()
    assert tool.render_markdown(result) in doc


@pytest.mark.slow
def test_compat_matrix_targets(tool, tmp_path):
    """The whole matrix (cached per cell in work_dirs/compat_matrix by code
    fingerprint): at least 90% of each library's architecture folders
    train and evaluate with PVTv2-B0 and CvT-13. Rewrites
    docs/compat_matrix.json and the table when PVT_MM_WRITE_MATRIX=1,
    otherwise checks the committed table is what this run produced."""
    write = os.environ.get('PVT_MM_WRITE_MATRIX') == '1'
    out_json = JSON if write else str(tmp_path / 'm.json')
    out_doc = DOC if write else str(tmp_path / 'doc.md')
    if not write:
        with open(DOC) as f:
            (tmp_path / 'doc.md').write_text(f.read())
    result = tool.main(['--json', out_json, '--doc', out_doc,
                        '--backbones', *tool.REQUIRED])
    for lib, s in result['summary'].items():
        for b in tool.REQUIRED:  # PVTv1-Tiny: where time allowed
            assert s['run'][b] == s['applicable'], (lib, b, s)
        assert s['not run'] == 0, (lib, s)
        # folders whose config fails with its own backbone too are listed
        # with the library's error; of the rest, TARGET_PERCENT must work
        assert s['percent_measurable'] >= TARGET_PERCENT, (lib, s)
    with open(out_doc) as f:
        produced = f.read()
    with open(DOC) as f:
        assert f.read() == produced, (
            'docs table differs from this run: rerun with '
            'PVT_MM_WRITE_MATRIX=1')
