"""Is the converted Real-ESRGAN a real super-resolver? ×2 on scikit-image's sample photos.

`python scripts/check_realesrgan.py`: each photo (centre-cropped to a multiple of 4) is
area-downscaled ×2, then brought back with bicubic, Lanczos-3 and realesrgan-x2 (the lab's
upsampler registry), and each is scored against the original (PSNR, LPIPS-alex). Not the
evaluation clips in promptlab/assets.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from skimage import data

from promptlab.engine.upsample import get_upsampler
from promptlab.metrics.frame import FrameMetrics

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")
METHODS = ("bicubic", "lanczos", "realesrgan-x2")


def main() -> None:
    metrics = FrameMetrics()
    totals: dict[str, list[tuple[float, float]]] = {m: [] for m in METHODS}
    print(f"{'photo':22s}" + "".join(f"{m:>24s}" for m in METHODS))
    for name in PHOTOS:
        img = getattr(data, name)()[:, :, :3]
        h, w = (min(img.shape[0], 512) // 4) * 4, (min(img.shape[1], 512) // 4) * 4
        y0, x0 = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
        ref = np.ascontiguousarray(img[y0:y0 + h, x0:x0 + w])
        x = torch.from_numpy(ref).permute(2, 0, 1)[None].float() / 127.5 - 1
        small = F.interpolate(x, scale_factor=0.5, mode="area")
        cells = []
        for m in METHODS:
            with torch.no_grad():
                y = get_upsampler(m)(small, (h, w)).clamp(-1, 1)
            out = ((y[0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
            row = metrics.compute(ref, out)
            totals[m].append((row["psnr"], row["lpips"]))
            cells.append(f"{row['psnr']:7.2f} dB {row['lpips']:.4f}")
        print(f"{name:22s}" + "".join(f"{c:>24s}" for c in cells))
    print(f"{'mean':22s}" + "".join(
        f"{np.mean([p for p, _ in totals[m]]):7.2f} dB {np.mean([lp for _, lp in totals[m]]):.4f}".rjust(24)
        for m in METHODS))


if __name__ == "__main__":
    main()
