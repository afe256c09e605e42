"""Installs the fixed top-level folders under one namespace: echelon (plumbing), echelon.jobs,
echelon.models and echelon.expectations, so no generic `models` or `jobs` lands in site-packages."""
from setuptools import find_packages, setup

ROOTS = {"echelon": "echelon", "echelon.jobs": "jobs", "echelon.models": "models",
         "echelon.expectations": "expectations"}

packages = []
for name, folder in ROOTS.items():
    packages += [name] + [f"{name}.{sub}" for sub in find_packages(folder)]

setup(packages=sorted(set(packages)), package_dir=ROOTS)
