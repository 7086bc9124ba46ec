"""See what the network sees: saliency maps (Captum), kernels, activations, maximising images."""

from ferlab.explain.dataset import class_average_saliency, confident_mistakes
from ferlab.explain.filters import activations, first_layer_kernels, maximise
from ferlab.explain.saliency import (
           METHODS,
           Explanation,
           explain,
           explainable_copy,
           feature_layer,
           overlay_faces,
)

__all__ = ["METHODS", "Explanation", "activations", "class_average_saliency", "confident_mistakes", "explain",
           "explainable_copy", "feature_layer", "first_layer_kernels", "maximise", "overlay_faces"]
