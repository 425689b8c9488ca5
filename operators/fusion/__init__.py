"""Temporal fusion of per-cell video and audio features into action, event, sentiment and caption outputs.

    from operators.fusion import Bundle, CellFeaturizer, FusionConfig, FusionModel
"""

from operators.fusion.bundle import Bundle, BundleError, default_preprocessing
from operators.fusion.features import CellFeaturizer
from operators.fusion.heads import FusionOutput, template_caption
from operators.fusion.model import FusionConfig, FusionModel

__all__ = ["Bundle", "BundleError", "CellFeaturizer", "FusionConfig", "FusionModel", "FusionOutput",
           "default_preprocessing", "template_caption"]
