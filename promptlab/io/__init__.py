"""Input and output: video/image-folder reading, frame writing, atomic files."""
