"""Data: formats, synthetic generation, decoding, augmentation, datasets."""
