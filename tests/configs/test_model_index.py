"""The model index (model-index.yml + configs/<family>/metafile.yml): every
config listed once with a real file, read the same by mim's reader
(modelindex) and ours (pvt_mm.model_index), and the tables generated from it
(docs/model_zoo.md, configs/<family>/README.md) up to date."""
import glob
import os.path as osp
import shutil

import pytest
import yaml

from helpers import REPO_ROOT, load_tool

from pvt_mm import model_index

INDEX = osp.join(REPO_ROOT, 'model-index.yml')
CONFIGS = sorted(osp.splitext(osp.basename(p))[0]
                 for p in glob.glob(osp.join(REPO_ROOT, 'configs', '*.py')))


def test_every_config_is_listed_once_with_its_family():
    models = model_index.read_index(INDEX)
    assert sorted(models) == CONFIGS
    for name, model in models.items():
        assert model['Config'] == f'configs/{name}.py'
        assert osp.isfile(osp.join(REPO_ROOT, model['Config']))
        family = {'pvt_v1': 'PVTv1', 'pvt_v2': 'PVTv2', 'cvt': 'CvT'}
        assert model['In Collection'] == next(
            v for k, v in family.items() if f'_{k}_' in name), name
        meta = model['Metadata']
        # an official config to follow, or the reason there is none
        assert ('Official Config' in meta) != ('No Official Config' in meta)
        if model.get('Results'):
            assert meta['Results Source'], name


@pytest.mark.usefixtures('fast_config_parsing')
def test_pretrained_weights_are_the_configs():
    """Each metafile entry's ``Pretrained Weights`` is the URL its config
    loads (the official release's, or the Hugging Face hub's for CvT), and
    only the ImageNet configs, trained from scratch, have none."""
    from pvt_mm.engine.runner import load_config
    from pvt_mm.weights.preflight import weight_sources
    for name, model in model_index.read_index(INDEX).items():
        cfg = load_config(osp.join(REPO_ROOT, model['Config']))
        sources = [s.source for s in weight_sources(cfg)]
        listed = model['Metadata'].get('Pretrained Weights')
        if name.startswith('cls_'):
            assert sources == [] and listed is None, name
        else:
            assert sources == [listed], name
            assert listed.startswith((
                'https://github.com/whai362/PVT/releases/download/v2/',
                'https://huggingface.co/microsoft/cvt-')), name


def test_installed_index_is_the_checkouts():
    assert osp.samefile(model_index.index_file(), INDEX)
    assert model_index.models() == model_index.read_index(INDEX)


def test_mims_reader_reads_it():
    import modelindex  # the model-index package, mim's reader
    mi = modelindex.load(INDEX)
    assert mi.check(silent=True) == []
    assert sorted(m.name for m in mi.models) == CONFIGS
    ours = model_index.read_index(INDEX)
    for m in mi.models:
        theirs = {k: v for r in m.results or [] for k, v in r.metrics.items()}
        assert theirs == {k: v for r in ours[m.name].get('Results') or []
                          for k, v in r['Metrics'].items()}, m.name


def copy_index(tmp_path):
    """model-index.yml, the metafiles, the family READMEs and
    docs/model_zoo.md in a folder of their own."""
    shutil.copy(INDEX, tmp_path / 'model-index.yml')
    for path in glob.glob(osp.join(REPO_ROOT, 'configs', '*', '*.*')):
        if osp.basename(path) in ('metafile.yml', 'README.md'):
            dest = tmp_path / osp.relpath(path, REPO_ROOT)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, dest)
    (tmp_path / 'docs').mkdir()
    shutil.copy(osp.join(REPO_ROOT, 'docs', 'model_zoo.md'),
                tmp_path / 'docs' / 'model_zoo.md')
    return tmp_path


def test_index_errors_name_the_file(tmp_path):
    root = copy_index(tmp_path)
    meta_path = root / 'configs' / 'cvt' / 'metafile.yml'
    meta = yaml.safe_load(meta_path.read_text())
    meta['Models'].append(dict(meta['Models'][0]))
    meta_path.write_text(yaml.safe_dump(meta))
    with pytest.raises(ValueError, match=r'cvt/metafile.yml: cls_cvt_13_in1k '
                                         r'is listed twice'):
        model_index.read_index(str(root / 'model-index.yml'))
    bad = dict(meta['Models'][0], Name='x',
               Results=[dict(Task='t', Dataset='d', Metrics={'AP50': 1.0})])
    with pytest.raises(ValueError, match="x: unknown metric 'AP50'"):
        model_index.published(bad)


def test_generated_tables_are_up_to_date(tmp_path, monkeypatch, capsys):
    tool = load_tool('misc/update_model_zoo')
    assert tool.main(['--check']) == 0
    # Negative control: a number changed in a metafile makes both tables
    # that show it stale, and a rewrite puts it there.
    root = copy_index(tmp_path)
    monkeypatch.setattr(tool, 'MODEL_ZOO', str(root / 'docs' / 'model_zoo.md'))
    meta_path = root / 'configs' / 'pvt_v2' / 'metafile.yml'
    text = meta_path.read_text()
    assert text.count('box AP: 44.6') == 1  # RetinaNet-B2
    meta_path.write_text(text.replace('box AP: 44.6', 'box AP: 99.9'))
    index = str(root / 'model-index.yml')
    assert tool.main(['--check', '--index', index]) == 1
    assert 'docs/model_zoo.md' in capsys.readouterr().err
    assert tool.main(['--index', index]) == 0
    row = ('| [`retinanet_pvt_v2_b2_coco`](../configs/'
           'retinanet_pvt_v2_b2_coco.py) | 99.9 |')
    assert row in (root / 'docs' / 'model_zoo.md').read_text()
    assert '| box AP | 99.9 |' in (
        root / 'configs' / 'pvt_v2' / 'README.md').read_text()
    assert tool.main(['--check', '--index', index]) == 0


def test_a_config_no_table_shows_is_an_error():
    tool = load_tool('misc/update_model_zoo')
    models = model_index.read_index(INDEX)
    models['yolo_pvt_v2_b2_coco'] = dict(
        models['retinanet_pvt_v2_b2_coco'], Name='yolo_pvt_v2_b2_coco')
    with pytest.raises(SystemExit, match="yolo_pvt_v2_b2_coco.*add its "
                                         "pattern to TABLES"):
        tool.zoo_tables(models)
