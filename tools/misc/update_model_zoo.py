"""Write docs/model_zoo.md's config tables and each family's
configs/<family>/README.md table from the metafiles (model-index.yml).

    python tools/misc/update_model_zoo.py          # rewrite the tables
    python tools/misc/update_model_zoo.py --check  # exit 1 if one is stale

A table sits between ``<!-- model_zoo:NAME -->`` and ``<!-- /model_zoo:NAME
-->``; the text around it is written by hand. Every config of the index
must fall in exactly one docs/model_zoo.md table (:data:`TABLES`).
"""
import argparse
import fnmatch
import os.path as osp
import sys
from typing import Dict, List

from pvt_mm.model_index import read_index, read_metafiles

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

MODEL_ZOO = osp.join(REPO, 'docs', 'model_zoo.md')
#: docs/model_zoo.md's tables: name -> the config patterns it shows (rows
#: by family, then in metafile order)
TABLES = {
    'retinanet_1x': ('retinanet_*_coco', 'retinanet_*_coco_640'),
    'mask_rcnn_1x': ('mask_rcnn_*_coco', ),
    'pvt_v1_3x': ('retinanet_pvt_v1_*_3x_ms', 'mask_rcnn_pvt_v1_*_3x_ms'),
    'detr': ('detr_*', ),
    'pvt_v2_3x': ('mask_rcnn_pvt_v2_*_3x_ms', 'cascade_mask_rcnn_*',
                  'atss_*', 'sparse_rcnn_*'),
    'gfl': ('gfl_*', ),
    'sem_fpn_40k': ('sem_fpn_*_40k', ),
    'sem_fpn_tta': ('sem_fpn_*_tta', ),
    'trans2seg': ('trans2seg_*', ),
    'imagenet': ('cls_*', ),
}
FAMILY_ORDER = ('CvT', 'PVTv1', 'PVTv2')


def fmt(value: float) -> str:
    return f'{value:.1f}'


def paper_cell(model: dict) -> str:
    """The published number(s) as docs/model_zoo.md shows them."""
    meta = model.get('Metadata') or {}
    values = [v for r in model.get('Results') or []
              for v in r['Metrics'].values()]
    if not values:
        return 'not published'
    cell = ' / '.join(fmt(v) for v in values)
    if 'Paper Column' in meta:
        paper = meta['Paper Column']['Metrics'].values()
        cell = f'code {cell} / paper {" / ".join(fmt(v) for v in paper)}'
    if meta.get('Test-Time Augmentation'):
        cell += ' (multi-scale + flip test)'
    return cell


def config_cell(model: dict, link_root: str) -> str:
    name = model['Name']
    cell = f'[`{name}`]({link_root}{model["Config"]})'
    note = (model.get('Metadata') or {}).get('Note')
    return f'{cell} ({note})' if note else cell


def weights_cell(model: dict) -> str:
    """The backbone's pretrained weights (the metafile's ``Pretrained
    Weights``) as a link named after the file, or the Hugging Face
    repository it is in; 'from scratch' without."""
    url = (model.get('Metadata') or {}).get('Pretrained Weights')
    if not url:
        return 'from scratch'
    parts = url.split('/')
    name = ('/'.join(parts[3:5]) if 'huggingface.co' in url
            else parts[-1])
    return f'[{name}]({url})'


def table(models: List[dict], link_root: str, with_source: bool) -> str:
    """``| config | paper | pretrained backbone |``; with the source:
    ``| config | metric | paper | source | pretrained backbone |``."""
    head = ('| config | metric | paper | source | pretrained backbone |'
            if with_source else '| config | paper | pretrained backbone |')
    lines = [head, '|---' * head.count(' |') + '|']
    for m in models:
        cells = [config_cell(m, link_root), paper_cell(m)]
        if with_source:
            metrics = [k for r in m.get('Results') or [] for k in r['Metrics']]
            source = (m.get('Metadata') or {}).get('Results Source', '-')
            cells = [cells[0], ' / '.join(metrics) or '-', cells[1], source]
        lines.append('| ' + ' | '.join(cells + [weights_cell(m)]) + ' |')
    return '\n'.join(lines) + '\n'


def zoo_tables(models: Dict[str, dict]) -> Dict[str, str]:
    """docs/model_zoo.md's tables; an error names a config no table (or
    two tables) would show."""
    order = {name: i for i, name in enumerate(models)}
    placed = {}
    out = {}
    for table_name, patterns in TABLES.items():
        rows = [m for n, m in models.items()
                if any(fnmatch.fnmatch(n, p) for p in patterns)]
        rows.sort(key=lambda m: (FAMILY_ORDER.index(m['In Collection']),
                                 order[m['Name']]))
        for m in rows:
            if m['Name'] in placed:
                raise SystemExit(
                    f'{m["Name"]} matches tables {placed[m["Name"]]} and '
                    f'{table_name}: narrow the patterns in TABLES')
            placed[m['Name']] = table_name
        out[table_name] = table(rows, '../', with_source=False)
    missing = sorted(set(models) - set(placed))
    if missing:
        raise SystemExit(f'no docs/model_zoo.md table shows {missing}: add '
                         f'its pattern to TABLES in {__file__}')
    return out


def family_tables(index: str) -> Dict[str, str]:
    """``{configs/<family>/README.md: table}``: each family's configs with
    their published numbers and sources, in metafile order (the README is
    the one its collection names, beside the metafile)."""
    return {osp.join(osp.dirname(path), meta['Collections'][0]['README']):
            table(meta['Models'], '../../', with_source=True)
            for path, meta in read_metafiles(index).items()}


def fill(text: str, name: str, block: str, path: str) -> str:
    begin, end = f'<!-- model_zoo:{name} -->', f'<!-- /model_zoo:{name} -->'
    if text.count(begin) != 1 or text.count(end) != 1:
        raise SystemExit(f'{path}: needs one {begin} ... {end} pair where '
                         f'the table goes')
    head, rest = text.split(begin)
    return head + begin + '\n' + block + end + rest.split(end)[1]


def updates(index: str) -> Dict[str, str]:
    """``{file: its text with every table rewritten}``."""
    zoo = open(MODEL_ZOO).read()
    for name, block in zoo_tables(read_index(index)).items():
        zoo = fill(zoo, name, block, MODEL_ZOO)
    texts = {MODEL_ZOO: zoo}
    for path, block in family_tables(index).items():
        texts[path] = fill(open(path).read(), 'family', block, path)
    return texts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--check', action='store_true',
                        help='write nothing; exit 1 if a table is stale')
    parser.add_argument('--index', default=osp.join(REPO, 'model-index.yml'))
    args = parser.parse_args(argv)
    stale = []
    for path, text in updates(args.index).items():
        if open(path).read() != text:
            stale.append(osp.relpath(path, REPO))
            if not args.check:
                with open(path, 'w') as f:
                    f.write(text)
    if args.check and stale:
        print(f'stale tables in {", ".join(stale)}: run python '
              f'tools/misc/update_model_zoo.py', file=sys.stderr)
        return 1
    print('updated: ' + (', '.join(stale) or 'nothing (all up to date)'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
