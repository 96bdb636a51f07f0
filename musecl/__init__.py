"""musecl: MuseCL (Yong & Zhou, IJCAI 2024) and its baselines, reimplemented as a reproducible pipeline."""
__version__ = "0.1.0"
