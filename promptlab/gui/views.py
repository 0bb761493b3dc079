"""The viewer's views and zoom steps: plain names the command line offers before Qt is imported."""

MODES = ("side", "split", "diff", "flicker", "rd")
MODE_LABELS = {"side": "Side by side", "split": "Split (wipe)", "diff": "Difference", "flicker": "A/B flicker",
               "rd": "Rate–distortion"}
ZOOMS = (1, 2, 4, 8)  # screen pixels per image pixel, nearest neighbour; 0 on the command line = fit
