"""The tiny random backbones of ``tests/backbones/conftest.py``, shared here."""

from tests.backbones.conftest import SMALL, backbone, small_backbone  # noqa: F401
