"""How long the dataset checks of tools/train.py take on a COCO-size
annotation file (pvt_mm/data/contents.py; docs/benchmarks.md, "Dataset
checks at start").

    python benchmarks/bench_check_dataset.py [--images 118287] [--per-image 7.3]

Writes a synthetic COCO json (COCO train2017's counts by default: 118,287
images, ~860k annotations, 80 categories, a json of about its size) and one empty file per image to
a temporary folder, then times the layout check and the content check of
the RetinaNet config's training set on it (best of --repeats runs), and
the peak memory of this process.
"""
import argparse
import json
import os
import os.path as osp
import resource
import sys
import tempfile
import time

import numpy as np

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def write_dataset(root: str, images: int, per_image: float, points: int,
                  seed=0) -> int:
    from pvt_mm.data.demo_data import coco_classes
    rng = np.random.RandomState(seed)
    img_dir = osp.join(root, 'train2017')
    os.makedirs(img_dir)
    os.makedirs(osp.join(root, 'annotations'))
    counts = rng.poisson(per_image, size=images)
    cats = rng.randint(1, 81, size=int(counts.sum()))
    polygon = [[round(float(v), 2) for v in rng.uniform(0, 480, 2 * points)]]
    anns, k = [], 0
    image_list = []
    for i in range(images):
        name = f'{i:012d}.jpg'
        open(osp.join(img_dir, name), 'wb').close()
        image_list.append(dict(id=i, file_name=name, width=640, height=480))
        for _ in range(counts[i]):
            anns.append(dict(id=k + 1, image_id=i, category_id=int(cats[k]),
                             bbox=[10.0, 20.0, 30.5, 40.5], area=1235.25,
                             iscrowd=0, segmentation=polygon))
            k += 1
    categories = [dict(id=i + 1, name=n, supercategory='thing')
                  for i, n in enumerate(coco_classes())]
    with open(osp.join(root, 'annotations', 'instances_train2017.json'),
              'w') as f:
        json.dump(dict(images=image_list, annotations=anns,
                       categories=categories), f)
    return len(anns)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--images', type=int, default=118287)
    parser.add_argument('--per-image', type=float, default=7.3)
    parser.add_argument('--points', type=int, default=28,
                        help='polygon points per annotation (28 makes the '
                        'json about as large as COCO train2017\'s 448 MiB)')
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args(argv)
    from pvt_mm.data import check_dataset_contents, check_dataset_layout
    from pvt_mm.engine.runner import init_scope, load_config
    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        num_anns = write_dataset(root, args.images, args.per_image,
                                 args.points)
        size = osp.getsize(osp.join(root, 'annotations',
                                    'instances_train2017.json'))
        print(f'wrote {args.images} images, {num_anns} annotations '
              f'({size / 2**20:.0f} MiB json) in '
              f'{time.perf_counter() - t0:.0f} s')
        cfg = load_config(osp.join(REPO, 'configs',
                                   'retinanet_pvt_v2_b2_coco.py'),
                          dict(data_root=root + '/'))
        init_scope(cfg)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            check_dataset_layout(cfg, ['train'])
            check_dataset_contents(cfg, ['train'])
            times.append(time.perf_counter() - t0)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f'| images | annotations | json | check (best of '
              f'{args.repeats}) | peak RSS of the process |')
        print('|---:|---:|---:|---:|---:|')
        print(f'| {args.images:,} | {num_anns:,} | {size / 2**20:.0f} MiB | '
              f'{min(times):.1f} s | {peak:.1f} GiB |')


if __name__ == '__main__':
    sys.path.insert(0, REPO)
    main()
