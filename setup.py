"""Packaging for cvflow: everything is read from `settings.ini`, nbdev's single source of project settings."""
from configparser import ConfigParser
from pathlib import Path

import setuptools

here = Path(__file__).parent
config = ConfigParser(delimiters=["="])
config.read(here / "settings.ini", encoding="utf-8")
cfg = config["DEFAULT"]

licenses = {"apache2": ("Apache Software License 2.0", "OSI Approved :: Apache Software License")}
statuses = ["1 - Planning", "2 - Pre-Alpha", "3 - Alpha", "4 - Beta", "5 - Production/Stable"]
lic = licenses[cfg["license"]]

requirements = cfg.get("requirements", "").split()
dev_requirements = cfg.get("dev_requirements", "").split()
extras = {
    "dev": dev_requirements,
    # ONNX export (`cvflow export --onnx`) and ONNX Runtime serving; a served package lists onnxruntime itself.
    "onnx": ["onnx", "onnxruntime", "onnxscript"],
    # Azure ML SDK v2 (the supported backend) and the workspace's MLflow tracking plugin; azureml-mlflow caps
    # mlflow-skinny at 3.15.0, hence the mlflow pin (see settings.ini). Also in `dev`, so the Azure tests run in CI.
    "azure": ["azure-ai-ml>=1.28", "azureml-mlflow", "mlflow<=3.15.0"],
    # Legacy: Azure ML SDK v1 (azureml-core), support ended 2026-06-30; `backend: azure-v1` only.
    "azure-v1": ["azureml-core"],
    # Benchmark only (bench/peer.py: cvflow against a from-scratch YOLO11n-seg); AGPL-3.0, never a runtime dependency.
    "bench": ["ultralytics"],
    # Legacy v1 pipelines: azureml-pipeline-* downgrade numpy/pyarrow/azure-identity (joblib<1.6 repairs pip check), so
    # they live in an environment of their own: `make venv-v1` (build/venv-v1), where `make test` runs their test.
    "azure-pipeline": ["azureml-core", "azureml-pipeline-core", "azureml-pipeline-steps", "joblib<1.6"],
}

setuptools.setup(
    name=cfg["lib_name"],
    version=cfg["version"],
    description=cfg["description"],
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    author=cfg["author"],
    author_email=cfg["author_email"],
    url=cfg["git_url"],
    license=lic[0],
    classifiers=[
        "Development Status :: " + statuses[int(cfg["status"])],
        "Intended Audience :: " + cfg["audience"].title(),
        "License :: " + lic[1],
        "Natural Language :: " + cfg["language"].title(),
        "Programming Language :: Python :: 3",
    ],
    keywords=cfg["keywords"],
    packages=setuptools.find_packages(include=["cvflow", "cvflow.*"]),
    include_package_data=True,
    package_data={"cvflow": ["templates/*", "*.yaml"]},
    install_requires=requirements,
    extras_require=extras,
    python_requires=">=" + cfg["min_python"],
    entry_points={
        "console_scripts": cfg.get("console_scripts", "").split(),
        "nbdev": [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"],
    },
    zip_safe=False,
)
