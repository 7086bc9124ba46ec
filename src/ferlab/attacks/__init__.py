"""Image-scaling (camouflage) attacks: craft them, detect them, defend against them.

    >>> from ferlab.attacks import craft, scaling_score
    >>> attack = craft(source, target, method="cv2-bilinear")  # doctest: +SKIP
    >>> scaling_score(attack.image, 48) > scaling_score(source, 48)  # doctest: +SKIP
"""

from ferlab.attacks.defend import DEFENCES, defended_resize
from ferlab.attacks.detect import CONSISTENCY_THRESHOLD, DETECTORS, scaling_score
from ferlab.attacks.evaluate import ScalingReport, measure_scaling_attacks, roc_auc
from ferlab.attacks.resize import RESIZERS, get_resizer, scaling_matrices
from ferlab.attacks.scaling import ScalingAttack, craft, psnr, ssim

__all__ = ["CONSISTENCY_THRESHOLD", "DEFENCES", "DETECTORS", "RESIZERS", "ScalingAttack", "ScalingReport", "craft",
           "defended_resize", "get_resizer", "measure_scaling_attacks", "psnr", "roc_auc", "scaling_matrices",
           "scaling_score", "ssim"]
