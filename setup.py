"""Shim for Beam's --setup_file, which builds an sdist of the project for cluster workers.

All metadata lives in pyproject.toml; this file only lets `--setup_file=./setup.py` find it.
"""

import setuptools

setuptools.setup()
