"""Quality metrics (LPIPS, PSNR, SSIM, MS-SSIM, severe-frame ratio) and their weights."""

from promptlab.metrics.frame import (
    HIGHER_IS_BETTER,
    METRICS,
    SEVERE_LPIPS,
    FrameMetrics,
    psnr,
    score,
    summarize,
)
from promptlab.metrics.ssim import ms_ssim, ms_ssim_loss, ssim
from promptlab.metrics.weights import lpips_status

__all__ = ["FrameMetrics", "score", "summarize", "psnr", "lpips_status", "ms_ssim", "ms_ssim_loss", "ssim",
           "METRICS", "HIGHER_IS_BETTER", "SEVERE_LPIPS"]
