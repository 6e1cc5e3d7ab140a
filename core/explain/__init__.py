"""Explainability: voxel attributions of the deep models and their sanity checks (issue 5).

:mod:`core.explain.attributions` computes maps with captum (integrated gradients, gradient
SHAP, occlusion, Grad-CAM, LRP, saliency) and summarises them per region;
:mod:`core.explain.sanity` checks that a map depends on the model (Adebayo et al. 2018).
"""

from core.explain.attributions import (METHODS, Attribution, PassThroughRule, attribute, channel_sum,
                                       region_summary, set_lrp_rules)
from core.explain.sanity import (SanityResult, cascading_randomisation, label_randomisation_similarity,
                                 map_similarity, randomisable_layers)

__all__ = ["METHODS", "Attribution", "PassThroughRule", "attribute", "channel_sum", "region_summary",
           "set_lrp_rules", "SanityResult", "cascading_randomisation", "label_randomisation_similarity",
           "map_similarity", "randomisable_layers"]
