"""Explainability: voxel attributions of the deep models and their sanity checks (issue 5).

:mod:`core.explain.attributions` computes maps with captum (integrated gradients, gradient
SHAP, occlusion, Grad-CAM, LRP, saliency) and summarises them per region;
:mod:`core.explain.sanity` checks that a map depends on the model (Adebayo et al. 2018);
:mod:`core.explain.study` runs those checks over several test patients per method, says
which methods apply to an architecture, and where the evidence of a map lies.
"""

from core.explain.attributions import (METHODS, Attribution, PassThroughRule, attribute, channel_sum,
                                       region_summary, set_lrp_rules)
from core.explain.sanity import (SanityResult, cascading_randomisation, label_randomisation_similarity,
                                 map_similarity, randomisable_layers)
from core.explain.study import (SanityStudy, applicable_methods, attribution_regions, inapplicable_reasons,
                                label_randomisation, sanity_study, where_evidence_lies)

__all__ = ["METHODS", "Attribution", "PassThroughRule", "attribute", "channel_sum", "region_summary",
           "set_lrp_rules", "SanityResult", "cascading_randomisation", "label_randomisation_similarity",
           "map_similarity", "randomisable_layers", "SanityStudy", "applicable_methods", "attribution_regions",
           "inapplicable_reasons", "label_randomisation", "sanity_study", "where_evidence_lies"]
