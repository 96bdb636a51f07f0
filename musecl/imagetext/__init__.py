"""Image-text pretraining on region imagery (UrbanCLIP, UrbanLN): caption tokens, CoCa/CLIP models from open_clip on a
frozen ImageNet trunk, UrbanLN's positional stretching and momentum self-distillation, caption consensus and
refinement, and retrieval metrics."""
