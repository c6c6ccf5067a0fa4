"""Generate the small, deterministic demo dataset used by ``make demo``, the
demo configs (``configs/demo/``) and the end-to-end tests.

Scenes are coloured rectangles, ellipses and triangles on noise. The same
scenes are written in three standard layouts::

    OUT/coco/annotations/instances_{train,val}.json   COCO boxes + polygons
    OUT/coco/{train,val}/NNNNNN.jpg
    OUT/ade/images/{training,validation}/NNNNNN.jpg   ADE20K layout
    OUT/ade/annotations/{training,validation}/NNNNNN.png
        (0 = unlabelled, 1 = background, 2.. = shape classes; the configs
        use reduce_zero_label=True as for ADE20K)
    OUT/imagenet/{train,val}/<class>/NNNNNN.jpg       one shape per image

The shapes are named ``rectangle``, ``ellipse`` and ``triangle`` unless
``classes`` names them (three names, e.g. a user's own classes for
docs/your_dataset.md), or ``classes='coco'``: then the COCO json lists
COCO's 80 categories with their ids and the shapes are its first three
(``person``, ``bicycle``, ``car``), as a subset of real COCO would be.
``coco2017=True`` names the COCO folders and files as COCO 2017 does
(``OUT/coco/{train2017,val2017}/``, ``instances_{train,val}2017.json``),
so that the COCO configs read them with only ``data_root`` changed.

Command line: python tools/misc/make_demo_data.py [--out data/demo] [--num-train 240]
    [--classes NAME,NAME,NAME | --classes coco] [--coco2017]
"""
import json
import math
import os
import os.path as osp
from typing import Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ('rectangle', 'ellipse', 'triangle')
SPLITS = {'train': 'training', 'val': 'validation'}


def shape_polygon(cls: str, box) -> list:
    """Outline of a shape filling ``box`` = (x0, y0, x1, y1), as (x, y)s."""
    x0, y0, x1, y1 = box
    if cls == 'rectangle':
        return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    if cls == 'triangle':
        return [((x0 + x1) / 2, y0), (x1, y1), (x0, y1)]
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    return [(cx + rx * math.cos(t), cy + ry * math.sin(t))
            for t in np.linspace(0, 2 * math.pi, 32, endpoint=False)]


def random_colour(rng) -> tuple:
    """A saturated colour, so shapes stand out from the grey noise."""
    rgb = rng.randint(0, 90, size=3)
    rgb[rng.randint(3)] = rng.randint(170, 256)
    return tuple(int(c) for c in rgb)


def noise_background(rng, size: int) -> np.ndarray:
    base = rng.randint(60, 190)
    img = base + rng.randint(-40, 41, size=(size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def place_boxes(rng, size: int, count: int, min_side: int, max_side: int):
    """Up to ``count`` non-overlapping boxes (so polygons are exact masks)."""
    boxes = []
    for _ in range(count * 20):
        if len(boxes) == count:
            break
        w, h = rng.randint(min_side, max_side + 1, size=2)
        x0, y0 = rng.randint(0, size - w), rng.randint(0, size - h)
        box = (int(x0), int(y0), int(x0 + w), int(y0 + h))
        if all(box[2] + 2 < b[0] or b[2] + 2 < box[0] or
               box[3] + 2 < b[1] or b[3] + 2 < box[1] for b in boxes):
            boxes.append(box)
    return boxes


def coco_classes() -> tuple:
    """COCO's 80 category names in the order (and so with the ids 1..80 in
    that order) of MMDetection's ``CocoDataset``."""
    from mmdet.datasets import CocoDataset
    return tuple(CocoDataset.METAINFO['classes'])


def category_names(classes: Union[None, str, Sequence[str]]) -> tuple:
    """The categories the COCO json lists (the shapes are the first
    three): the shape names, three given names, or COCO's 80."""
    if classes is None:
        return CLASSES
    if isinstance(classes, str):
        if classes != 'coco':
            raise ValueError(f"classes={classes!r}: give three names or "
                             f"'coco'")
        return coco_classes()
    names = tuple(str(c) for c in classes)
    if len(names) != len(CLASSES) or len(set(names)) != len(names):
        raise ValueError(f'classes={names!r}: give {len(CLASSES)} different '
                         f'names, one per shape ({", ".join(CLASSES)})')
    return names


def make_scene(rng, size: int, max_objects: int):
    """One image, its label map (0 unused, 1 background, 2.. classes) and
    its objects as ``(class_index, polygon)``."""
    img = Image.fromarray(noise_background(rng, size))
    label = Image.new('L', (size, size), 1)
    draw, draw_label = ImageDraw.Draw(img), ImageDraw.Draw(label)
    objects = []
    boxes = place_boxes(rng, size, rng.randint(1, max_objects + 1),
                        size // 5, size // 2)
    for box in boxes:
        cls = rng.randint(len(CLASSES))
        poly = shape_polygon(CLASSES[cls], box)
        draw.polygon(poly, fill=random_colour(rng))
        draw_label.polygon(poly, fill=cls + 2)
        objects.append((cls, poly))
    return img, label, objects


def coco_annotation(ann_id: int, image_id: int, cls: int, poly, label_map,
                    label_value: int) -> dict:
    xs, ys = [p[0] for p in poly], [p[1] for p in poly]
    x0, y0 = min(xs), min(ys)
    return dict(id=ann_id, image_id=image_id, category_id=cls + 1,
                bbox=[round(x0, 2), round(y0, 2), round(max(xs) - x0, 2),
                      round(max(ys) - y0, 2)],
                area=float((label_map == label_value).sum()), iscrowd=0,
                segmentation=[[round(v, 2) for p in poly for v in p]])


def write_split(out: str, split: str, num: int, size: int, max_objects: int,
                rng, categories: Sequence[str] = CLASSES,
                coco_split: Optional[str] = None) -> None:
    coco_split = coco_split or split
    coco_dir = osp.join(out, 'coco', coco_split)
    ade_img = osp.join(out, 'ade', 'images', SPLITS[split])
    ade_ann = osp.join(out, 'ade', 'annotations', SPLITS[split])
    coco_ann = osp.join(out, 'coco', 'annotations')
    for d in (coco_dir, ade_img, ade_ann, coco_ann):
        os.makedirs(d, exist_ok=True)
    images, annotations = [], []
    for i in range(num):
        img, label, objects = make_scene(rng, size, max_objects)
        name = f'{i:06d}'
        img.save(osp.join(coco_dir, name + '.jpg'), quality=95)
        img.save(osp.join(ade_img, name + '.jpg'), quality=95)
        label.save(osp.join(ade_ann, name + '.png'))
        images.append(dict(id=i, file_name=name + '.jpg', width=size,
                           height=size))
        label_map = np.asarray(label)
        for cls, poly in objects:
            # Objects never overlap, so each one is the pixels of its class
            # inside its own box.
            x0, y0 = (int(min(p[k] for p in poly)) for k in (0, 1))
            x1, y1 = (int(max(p[k] for p in poly)) + 1 for k in (0, 1))
            crop = label_map[y0:y1, x0:x1]
            annotations.append(coco_annotation(
                len(annotations) + 1, i, cls, poly, crop, cls + 2))
    categories = [dict(id=i + 1, name=c, supercategory='shape')
                  for i, c in enumerate(categories)]
    with open(osp.join(out, 'coco', 'annotations',
                       f'instances_{coco_split}.json'), 'w') as f:
        json.dump(dict(images=images, annotations=annotations,
                       categories=categories), f)


def write_classification(out: str, split: str, num: int, size: int,
                         rng, names: Sequence[str] = CLASSES) -> None:
    """ImageNet-style ``split/<class>/*.jpg`` with one centred-ish shape."""
    for i in range(num):
        cls = i % len(CLASSES)
        folder = osp.join(out, 'imagenet', split, names[cls])
        os.makedirs(folder, exist_ok=True)
        img = Image.fromarray(noise_background(rng, size))
        side = rng.randint(size // 2, size - 8, size=2)
        x0, y0 = rng.randint(0, size - side[0]), rng.randint(0, size - side[1])
        box = (int(x0), int(y0), int(x0 + side[0]), int(y0 + side[1]))
        ImageDraw.Draw(img).polygon(shape_polygon(CLASSES[cls], box),
                                    fill=random_colour(rng))
        img.save(osp.join(folder, f'{i:06d}.jpg'), quality=95)


def make_demo_data(out: str = 'data/demo', num_train: int = 240,
                   num_val: int = 60, size: int = 128, max_objects: int = 3,
                   cls_size: int = 64, seed: int = 0,
                   classes: Union[None, str, Sequence[str]] = None,
                   coco2017: bool = False) -> str:
    """Write the whole demo dataset under ``out`` and return ``out``
    (``classes`` and ``coco2017``: see the module docstring). The scenes
    depend on ``seed`` only."""
    categories = category_names(classes)
    rng = np.random.RandomState(seed)
    for split, num in (('train', num_train), ('val', num_val)):
        write_split(out, split, num, size, max_objects, rng, categories,
                    f'{split}2017' if coco2017 else split)
        write_classification(out, split, num, cls_size, rng,
                             categories[:len(CLASSES)])
    return out


def demo_data_ready(out: str = 'data/demo') -> bool:
    """Whether every layout the demo configs read is present."""
    return all(osp.exists(osp.join(out, p)) for p in (
        'coco/annotations/instances_train.json',
        'coco/annotations/instances_val.json',
        'ade/annotations/validation', 'imagenet/val'))
