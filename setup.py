"""pvt_mm: PVTv1 / PVTv2 / CvT backbones for MMDetection, MMSegmentation and
MMPretrain. See README.md for the one-command setup (tools/setup_env.sh)."""
import re
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

PTH = 'pvt_mm_config.pth'


class BuildWithPth(build_py):
    """Also put pvt_mm_config.pth at the wheel root: it lets MMEngine resolve
    ``pvt_mm::`` base configs before anything imports pvt_mm."""

    def run(self):
        super().run()
        self.copy_file(str(HERE / PTH), str(Path(self.build_lib) / PTH),
                       preserve_mode=0)

    def get_outputs(self, include_bytecode=1):
        return super().get_outputs(include_bytecode) + [
            str(Path(self.build_lib) / PTH)]

HERE = Path(__file__).parent


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
    # `pvt_mm::path/to/config.py` base configs resolve after `pip install`.
    include_package_data=True,
    package_data={'pvt_mm': ['.mim/configs/**/*.py', '.mim/configs/*.py']},
    install_requires=['torch>=2.1', 'mmengine>=0.10.4,<0.11',
                      'mmcv>=2.0.0,<2.2.0', 'numpy'],
    extras_require={
        'det': ['mmdet==3.3.0', 'pycocotools'],
        'seg': ['mmsegmentation==1.2.2', 'ftfy', 'regex'],
        'cls': ['mmpretrain==1.2.0'],
        # ONNX export and the ONNX Runtime runner (pvt_mm.deploy,
        # docs/deployment.md: why not MMDeploy)
        'deploy': ['onnx', 'onnxruntime'],
        'tests': requirements('tests'),
    },
    zip_safe=False,
)
