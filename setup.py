"""Packaging step that pyproject.toml cannot say: the repository keeps its Hydra configs in top-level
`conf/`; a built wheel (and `pip install .`) ships them as `oversight/conf`, where
`oversight.app.CONF_DIR` finds them. Editable installs read `conf/` in the checkout directly."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithConf(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        source = Path(__file__).resolve().parent / "conf"
        target = Path(self.build_lib) / "oversight" / "conf"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildWithConf})
