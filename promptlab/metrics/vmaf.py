"""VMAF (Netflix's v0.6.1 model) per frame, from the vmaf-torch package.

vmaf-torch is a PyTorch port of libvmaf's features (VIF at four scales, ADM, motion) with the
v0.6.1 SVM (211 support vectors) built in, so it needs no download. VMAF reads the luma plane:
frames are converted from RGB as ffmpeg's default RGB→yuv420p does (BT.601, limited range,
rounded to 8 bits). Its motion feature is temporal: frame i's motion2 is the smaller of the
blurred-luma SAD to the previous and to the next reference frame (0 for the first frame), so
a batch is scored with the reference frames just before and after it. Scores are clipped to
0–100 as libvmaf does. Optional: `pip install "promptlab[vmaf]"`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from promptlab.extras import require

V061_SUPPORT_VECTORS = 211  # the v0.6.1 model's size: the check that the real model is loaded
_LUMA = np.array([65.481, 128.553, 24.966]) / 255.0


def luma(frame: np.ndarray) -> np.ndarray:
    """8-bit limited-range BT.601 luma (16–235) of a uint8 RGB frame, as float32."""
    return np.round(16.0 + frame[..., :3].astype(np.float64) @ _LUMA).astype(np.float32)


class Vmaf:
    """The v0.6.1 model on a device; `scores` gives one VMAF value (0–100) per frame pair."""

    def __init__(self, device: str = "cpu") -> None:
        require("vmaf-torch")
        from vmaf_torch import VMAF

        self.device = device
        self.model = VMAF(temporal_pooling=False, enable_motion=False, clip_score=True).to(device).eval()
        svm = self.model.svm
        if int(svm.num_sv) != V061_SUPPORT_VECTORS or svm.support_vectors.shape[-2] != V061_SUPPORT_VECTORS:
            raise RuntimeError(f"vmaf-torch's model has {svm.num_sv} support vectors, not v0.6.1's "
                               f"{V061_SUPPORT_VECTORS}")
        from vmaf_torch import Motion

        self.motion = Motion().to(device)

    def _y(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack([luma(f) for f in frames])[:, None]).to(self.device)

    @torch.no_grad()
    def scores(self, refs: Sequence[np.ndarray], dists: Sequence[np.ndarray],
               prev_ref: np.ndarray | None = None, next_ref: np.ndarray | None = None) -> list[float]:
        """VMAF of aligned frames; `prev_ref`/`next_ref` are the reference frames around the batch."""
        if not refs:
            return []
        ref_y, dist_y = self._y(refs), self._y(dists)
        clip = list(refs) if prev_ref is None else [prev_ref, *refs]
        if next_ref is not None:
            clip.append(next_ref)
        sad = self._sad_to_previous(self._y(clip))          # sad[j]: clip[j] vs clip[j-1]
        lead = 0 if prev_ref is None else 1
        n = len(refs)
        motion2 = []
        for i in range(n):
            j = lead + i
            if j == 0:
                motion2.append(0.0)                          # the clip's first frame
            elif j + 1 < len(clip):
                motion2.append(min(sad[j], sad[j + 1]))
            else:
                motion2.append(sad[j])                       # the clip's last frame
        m = torch.tensor(motion2, dtype=torch.float32, device=self.device)[:, None]
        adm = self.model.compute_adm_score(ref_y, dist_y)
        vif = self.model.compute_vif_features(ref_y, dist_y)
        return [float(v) for v in self.model.predict(adm, m, vif)[:, 0].cpu()]

    def _sad_to_previous(self, y: torch.Tensor) -> list[float]:
        """Mean absolute difference of each blurred luma frame to the one before (libvmaf's motion)."""
        sad = self.motion.motion(y)[:, 0]
        return [float(v) for v in sad.cpu()]
