"""UrbanLN's momentum self-distillation (MSD; ALBEF's momentum distillation, docs/method.md 3.4 and 3.6).

* Teacher: an exponential moving average of the student, `θ_t ← m θ_t + (1 - m) θ_s` (m = 0.995), updated every step
  before the teacher's forward pass (:func:`ema_update`; buffers are copied).
* Two queues of the most recent teacher image and text features (:class:`FeatureQueue`; MoCo-style, written after the
  loss, a ring buffer whose size is a multiple of the batch size and smaller than the number of training images).
  The queues start empty and only their filled part is used (ALBEF starts them with random unit vectors instead).
* Loss (:func:`msd_loss`): `(1 - μ) L_C + μ L_D` with `L_C` the student's in-batch image-text InfoNCE (open_clip's
  `ClipLoss`) and `L_D = ½ [KL(q_i2t ‖ p_i2t) + KL(q_t2i ‖ p_t2i)]`, where `q` is the softmax of the teacher's
  similarities to the candidates (the teacher's batch features ∪ the queue) and `p` the student's to the same
  candidates, both at the student's logit scale (ALBEF's choice). ALBEF mixes the soft targets into the hard ones
  (α·q + (1 - α)·one-hot over batch ∪ queue); the KL form differs from it only by the teacher's entropy, a constant.
* μ is ramped over the first epoch of distillation, `μ · min(1, step / steps_per_epoch)` (:func:`mu_at`), as ALBEF does.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """`teacher ← momentum · teacher + (1 - momentum) · student` for every parameter; buffers are copied."""
    t_params = [p for p in teacher.parameters()]
    s_params = [p.detach() for p in student.parameters()]
    if len(t_params) != len(s_params):
        raise ValueError("teacher and student differ in their parameters (the teacher must be a copy of the student)")
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, s_params, alpha=1.0 - momentum)
    for t_buf, s_buf in zip(teacher.buffers(), student.buffers()):
        t_buf.copy_(s_buf)


def mu_at(mu: float, step: int, steps_per_epoch: int) -> float:
    """ALBEF's ramp: μ grows linearly from 0 over the first epoch of distillation (`step` counts from 0)."""
    return mu * min(1.0, step / max(1, steps_per_epoch))


def check_queue_size(size: int, batch_size: int, n_train: int) -> None:
    """A queue must be a multiple of the batch size (whole batches wrap cleanly) and smaller than the training set (it
    would otherwise hold every image's own features as negatives)."""
    if size < 0 or (size and size % batch_size):
        raise ValueError(f"queue_size {size} must be a multiple of batch_size {batch_size} (0 = no queue)")
    if size >= n_train:
        raise ValueError(f"queue_size {size} must be smaller than the number of training images ({n_train}); "
                         f"lower queue_size (a multiple of batch_size {batch_size})")


class FeatureQueue:
    """The teacher's most recent `size` image and text features (rows), a ring buffer; `filled` rows are valid."""

    def __init__(self, size: int, dim: int, batch_size: int, n_train: int, device: torch.device | None = None) -> None:
        check_queue_size(size, batch_size, n_train)
        self.size = size
        self.image = torch.zeros(size, dim, device=device)
        self.text = torch.zeros(size, dim, device=device)
        self.ptr = 0
        self.filled = 0

    @torch.no_grad()
    def enqueue(self, image: torch.Tensor, text: torch.Tensor) -> None:
        """Write a batch of features at the pointer (wrapping around)."""
        if not self.size:
            return
        n = image.shape[0]
        idx = (self.ptr + torch.arange(n, device=self.image.device)) % self.size
        self.image[idx] = image.detach().float()
        self.text[idx] = text.detach().float()
        self.ptr = (self.ptr + n) % self.size
        self.filled = min(self.size, self.filled + n)

    def features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(image, text) rows written so far."""
        return self.image[: self.filled], self.text[: self.filled]

    def state_dict(self) -> dict[str, Any]:
        return {"image": self.image.cpu(), "text": self.text.cpu(), "ptr": self.ptr, "filled": self.filled}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.image.copy_(state["image"])
        self.text.copy_(state["text"])
        self.ptr, self.filled = int(state["ptr"]), int(state["filled"])


def contrastive_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """In-batch image-text InfoNCE (symmetric cross-entropy) of normalised features: open_clip's `ClipLoss`."""
    from open_clip import ClipLoss

    return ClipLoss()(image, text, logit_scale)


def msd_loss(image: torch.Tensor, text: torch.Tensor, image_t: torch.Tensor, text_t: torch.Tensor,
             queue_image: torch.Tensor, queue_text: torch.Tensor, logit_scale: torch.Tensor,
             mu: float) -> dict[str, torch.Tensor]:
    """{"loss", "contrastive", "distill"}: `(1 - mu) · InfoNCE + mu · KL`, features L2-normalised, the teacher's
    (`image_t`, `text_t`) and the queues without gradient (see the module)."""
    contrastive = contrastive_loss(image, text, logit_scale)
    if mu == 0.0:
        return {"loss": contrastive, "contrastive": contrastive, "distill": torch.zeros_like(contrastive)}
    scale = logit_scale.detach()
    texts = torch.cat([text_t, queue_text.to(text_t.dtype)]).detach()
    images = torch.cat([image_t, queue_image.to(image_t.dtype)]).detach()
    q_i2t = F.softmax(scale * image_t.detach() @ texts.T, dim=1)
    q_t2i = F.softmax(scale * text_t.detach() @ images.T, dim=1)
    log_p_i2t = F.log_softmax(logit_scale * image @ texts.T, dim=1)
    log_p_t2i = F.log_softmax(logit_scale * text @ images.T, dim=1)
    distill = 0.5 * (F.kl_div(log_p_i2t, q_i2t, reduction="batchmean")
                     + F.kl_div(log_p_t2i, q_t2i, reduction="batchmean"))
    return {"loss": (1.0 - mu) * contrastive + mu * distill, "contrastive": contrastive, "distill": distill}
