"""Evaluation metrics on streaming feature statistics: FID, Intra-FID, cFID, IS, RA, GAN-train / GAN-test.

Feature extractors: ``FIDInceptionV3`` (the FID Inception, weights from the registry) and
``SmallClassifier`` / ``ResNet18Classifier`` (RA / GAN-train / GAN-test, and the feature space for data
Inception does not fit).
Weights are never downloaded (``ssgan_fast.weights``).
"""
from ..weights import REGISTRY, WeightsError, register_weights, weights_dir, weights_path
from .classifier import (
    CLASSIFIER_ARCHS,
    ResNet18Classifier,
    SmallClassifier,
    evaluate_accuracy,
    make_classifier,
    train_classifier,
    train_classifier_batches,
)
from .inception import FIDInceptionV3
from .scores import Collected, InceptionScore, cfid, collect, fid, intra_fid

__all__ = ["FIDInceptionV3", "SmallClassifier", "ResNet18Classifier", "make_classifier", "CLASSIFIER_ARCHS",
           "train_classifier", "train_classifier_batches", "evaluate_accuracy",
           "collect", "Collected", "fid", "intra_fid", "cfid", "InceptionScore", "REGISTRY", "WeightsError",
           "register_weights", "weights_dir", "weights_path"]
