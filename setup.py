"""pvt_mm: PVTv1 / PVTv2 / CvT backbones for MMDetection, MMSegmentation and
MMPretrain. See README.md for the one-command setup (tools/setup_env.sh)."""
import re
import sys
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import pvt_mm_config_hook  # noqa: E402  (stdlib only; the .pth's one line)


class BuildWithPth(build_py):
    """Also put pvt_mm_config.pth at the wheel root: it lets MMEngine resolve
    ``pkg::`` base configs before anything imports pvt_mm
    (pvt_mm_config_hook.py, docs/process_wide_changes.md)."""

    def run(self):
        super().run()
        pth = Path(self.build_lib) / pvt_mm_config_hook.PTH_NAME
        pth.write_text(pvt_mm_config_hook.PTH_LINE)

    def get_outputs(self, include_bytecode=1):
        return super().get_outputs(include_bytecode) + [
            str(Path(self.build_lib) / pvt_mm_config_hook.PTH_NAME)]



def requirements(name):
    lines = (HERE / 'requirements' / f'{name}.txt').read_text().splitlines()
    return [ln.split('#')[0].strip() for ln in lines if ln.split('#')[0].strip()]


version = re.search(r"__version__ = '(.+)'",
                    (HERE / 'pvt_mm' / 'version.py').read_text()).group(1)

setup(
    name='pvt_mm',
    version=version,
    description='PVTv1, PVTv2 and CvT backbones for OpenMMLab dense prediction',
    long_description=(HERE / 'README.md').read_text(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(include=['pvt_mm', 'pvt_mm.*']),
    py_modules=['pvt_mm_config_hook'],
    cmdclass={'build_py': BuildWithPth},
    # configs ship inside the package (pvt_mm/.mim/configs) so that
    # `pvt_mm::path/to/config.py` base configs resolve after `pip install`;
    # the docs that error messages and the README name, in pvt_mm/.mim/docs.
    include_package_data=True,
    package_data={'pvt_mm': ['.mim/configs/**/*.py', '.mim/configs/*.py',
                             '.mim/configs/*/metafile.yml',
                             '.mim/configs/*/README.md',
                             '.mim/model-index.yml', '.mim/docs/*.md']},
    # safetensors: the .safetensors weights of the hubs (CvT-13's config)
    install_requires=['torch>=2.1', 'mmengine>=0.10.4,<0.11',
                      'mmcv>=2.0.0,<2.2.0', 'numpy', 'safetensors'],
    extras_require={
        'det': ['mmdet==3.3.0', 'pycocotools'],
        'seg': ['mmsegmentation==1.2.2', 'ftfy', 'regex'],
        'cls': ['mmpretrain==1.2.0'],
        # ONNX export and the ONNX Runtime runner (pvt_mm.deploy, which
        # imports mmdet; docs/deployment.md: why not MMDeploy)
        'deploy': ['onnx', 'onnxruntime', 'mmdet==3.3.0', 'pycocotools'],
        # the torch-free runtime of end-to-end ONNX files (pvt_mm.runtime):
        # with `pip install --no-deps pvt_mm`, as install_requires has torch
        # (docs/deployment.md)
        'runtime': ['numpy', 'onnxruntime', 'opencv-python-headless'],
        # the same with OpenVINO (fp32, and bf16 on CPUs that have it) as
        # the backend; ONNX Runtime stays usable with --backend onnxruntime
        'runtime-openvino': ['numpy', 'openvino', 'opencv-python-headless'],
        'tests': requirements('tests'),
    },
    zip_safe=False,
)
