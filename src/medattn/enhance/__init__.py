"""Lesion-detection enhancement (seed paper 002): CAWE, colorization GAN, fusion, detector FROC."""
