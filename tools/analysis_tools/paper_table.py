"""Print the metrics a ``tools/test.py`` run wrote beside the paper's.

    python tools/analysis_tools/paper_table.py work_dirs/retinanet_pvt_v2_b2_coco/metrics.json
    python tools/analysis_tools/paper_table.py work_dirs/*/metrics.json --markdown

Each metrics.json names its config; the paper numbers for that config come
from the metafiles (configs/<family>/metafile.yml, each with its source;
pvt_mm.paper_results reads them). Rows published twice
(PVTv1 Semantic FPN: the official code's mIoU and the paper's) get one line
per column, e.g. ``mIoU`` (code) and ``mIoU (paper)``.
"""
import argparse
import json
import os.path as osp
import sys

from pvt_mm.paper_results import (CODE_VS_PAPER, METRIC_KEYS, PAPER_RESULTS,
                                  TTA_ROWS)


def rows_for(metrics_file: str):
    """(config, metric, ours, paper, delta, source) rows of one run."""
    with open(metrics_file) as f:
        run = json.load(f)
    if 'config' not in run or 'metrics' not in run:
        raise SystemExit(f'{metrics_file}: not a tools/test.py metrics file '
                         f'(needs "config" and "metrics")')
    name = osp.splitext(osp.basename(run['config']))[0]
    paper = PAPER_RESULTS.get(name)
    if paper is None:
        return [(name, '-', None, None, None,
                 'no published result for this config')]
    source = paper['source']
    if name in TTA_ROWS and not run.get('tta'):
        source += (' -- WARNING: published with test-time augmentation, '
                   'this run was not (rerun tools/test.py with --tta)')
    columns = [('', paper, source)]
    for column, (values, source) in CODE_VS_PAPER.get(name, {}).items():
        if values != {k: v for k, v in paper.items() if k != 'source'}:
            columns.append((f' ({column})', values, source))
    rows = []
    for label, values, source in columns:
        for metric, published in values.items():
            if metric == 'source':
                continue
            keys, scale = METRIC_KEYS[metric]
            ours = next((run['metrics'][k] * scale for k in keys
                         if k in run['metrics']), None)
            delta = None if ours is None else ours - published
            rows.append((name, metric + label, ours, published, delta,
                         source))
    return rows


def fmt(value, signed=False):
    if value is None:
        return 'n/a'
    return f'{value:+.1f}' if signed else f'{value:.1f}'


def render(rows, markdown: bool) -> str:
    header = ('config', 'metric', 'ours', 'paper', 'delta', 'source')
    table = [header] + [(c, m, fmt(o), fmt(p), fmt(d, True), s)
                        for c, m, o, p, d, s in rows]
    if markdown:
        lines = ['| ' + ' | '.join(r) + ' |' for r in table]
        lines.insert(1, '|' + '---|' * len(header))
        return '\n'.join(lines)
    widths = [max(len(r[i]) for r in table) for i in range(len(header) - 1)]
    return '\n'.join('  '.join(cell.ljust(w) for cell, w in
                               zip(r[:-1], widths)) + '  ' + r[-1]
                     for r in table)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('metrics', nargs='+',
                        help='metrics.json files written by tools/test.py')
    parser.add_argument('--markdown', action='store_true',
                        help='print a Markdown table')
    args = parser.parse_args(argv)
    rows = []
    for path in args.metrics:
        if not osp.isfile(path):
            raise SystemExit(f'{path}: no such file (tools/test.py writes '
                             f'<work dir>/metrics.json)')
        rows += rows_for(path)
    print(render(rows, args.markdown))
    return rows


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
