"""Input and output: video/image-folder reading, frame writing, atomic files."""

# How frames become square (io.video.prepare implements each); the order is the .plab header's
# crop codes (docs/format.md): append, never reorder. Here, not in io.video, so that settings can
# read it without loading the video readers.
CROP_MODES = ("center", "squash", "pad")
