"""Evaluation metrics: FID, Intra-FID, cFID, IS, RA, GAN-train / GAN-test on streaming feature statistics;
KID / Intra-KID (``kid``), precision / recall and density / coverage (``manifold``, on the knn ops) on
kept features; FID statistics files in pytorch-fid's format (``stats_io``).

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
from .kid import intra_kid, kid
from .manifold import density_coverage, manifold_metrics, precision_recall
from .scores import Collected, InceptionScore, cfid, collect, fid, intra_fid

__all__ = ["FIDInceptionV3", "SmallClassifier", "ResNet18Classifier", "make_classifier", "CLASSIFIER_ARCHS",
           "train_classifier", "train_classifier_batches", "evaluate_accuracy",
           "collect", "Collected", "fid", "intra_fid", "cfid", "InceptionScore", "REGISTRY", "WeightsError",
           "register_weights", "weights_dir", "weights_path", "kid", "intra_kid", "manifold_metrics",
           "precision_recall", "density_coverage"]
