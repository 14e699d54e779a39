"""Training: the LightningModule, focal loss, AdamW groups and schedule, checkpoints, train().

``train(cfg) -> metrics`` is what ``train.py`` runs; ``load_detector(ckpt_path, model_cfg)``
rebuilds a trained detector for evaluation (``torch.load(weights_only=True)``).
"""

from brain_go_brr.training.train import CheckpointMismatchError, load_detector, train

__all__ = ["CheckpointMismatchError", "load_detector", "train"]
