"""Pretrained encoders: frame backbones (frame.py), Kinetics video classifiers (video.py), PANNs audio (audio.py)."""
