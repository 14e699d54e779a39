"""The V3 detector and its parts (see ``v3.py`` for the data flow).

``build_v3(**keys)`` is the Hydra target of ``conf/model/v3.yaml`` and ``v3_tiny.yaml``.
"""

from brain_go_brr.models.laplacian_pe import PEConfig
from brain_go_brr.models.mamba2 import Mamba2Config
from brain_go_brr.models.v3 import V3Config, V3Detector, build_v3

__all__ = ["Mamba2Config", "PEConfig", "V3Config", "V3Detector", "build_v3"]
