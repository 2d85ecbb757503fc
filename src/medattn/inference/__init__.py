"""Inference: load a trained model, predict images, measure lesions, render pictures.

>>> from medattn.inference import load_model, predict_image       # doctest: +SKIP
>>> lm = load_model("runs/bsanet-polyp")                           # doctest: +SKIP
>>> pred = predict_image(lm, image)                                # doctest: +SKIP
>>> pred.prob.shape == image.shape[:2]                             # doctest: +SKIP
True
"""

from medattn.inference.files import display_image, evaluate_model, iter_inputs, predict_paths, score_model
from medattn.inference.lesions import MinSize, find_lesions, min_size_from_card
from medattn.inference.loading import LoadedModel, load_model
from medattn.inference.predict import Prediction, predict_batch, predict_image

__all__ = [
    "LoadedModel",
    "MinSize",
    "Prediction",
    "display_image",
    "evaluate_model",
    "find_lesions",
    "iter_inputs",
    "load_model",
    "min_size_from_card",
    "predict_batch",
    "predict_image",
    "predict_paths",
    "score_model",
]
