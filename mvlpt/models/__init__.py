"""Frozen CLIP loading and the prompt methods (CoOp, VPT, UPT)."""
