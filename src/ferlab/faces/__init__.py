"""Faces in the wild: detectors (registry), landmarks and classifier-ready crops."""

from ferlab.faces.crops import crop_faces
from ferlab.faces.detectors import (
    Detections,
    FaceDetector,
    HaarDetector,
    MTCNNDetector,
    create_detector,
    list_detectors,
    register_detector,
)

__all__ = ["Detections", "FaceDetector", "HaarDetector", "MTCNNDetector", "create_detector", "crop_faces",
           "list_detectors", "register_detector"]
