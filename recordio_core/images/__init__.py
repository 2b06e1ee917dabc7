"""Images: decode, resize, crop and encode (Pillow, OpenCV where it is exact), JPEG specifics,
header checks, reader-side augmentation, difference hashes.
"""
