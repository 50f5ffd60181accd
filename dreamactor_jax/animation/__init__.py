"""DreamActor-M2's in-context conditioning (PAPER.md sections 2-3): the canvas, its mask at pixel and
latent resolution, the generated region, the start transition, reference fitting and long-video
segments. Plain functions of jax/numpy arrays; the trainer and the sampler both call these, so the
canvas layout exists once.
"""

from dreamactor_jax.animation.canvas import (BLANK, Canvas, build_canvas, given_then_blank, join_halves, left_half,
                                             split_halves)
from dreamactor_jax.animation.frames import (check_frame_count, check_frame_size, is_valid_frame_count,
                                             latent_frame_count, next_valid_frame_count, whole_latent_frames)
from dreamactor_jax.animation.latent_mask import (MASK_CHANNELS, check_dit_channels, dit_input,
                                                  dit_input_channels, pack_mask)
from dreamactor_jax.animation.reference import Box, fit_box, fit_reference, to_rgb
from dreamactor_jax.animation.regions import (LossRegion, generated_latents, generated_region,
                                              generated_video, loss_weight, token_timesteps)
from dreamactor_jax.animation.segments import (LastSegment, Segment, given_frames, output_buffer, plan_segments, stitch,
                                               zigzag_pad)
from dreamactor_jax.animation.start_transition import (FitFrames, Timeline, blank_start, cut_to_driving,
                                                       extend_driving, plan_timeline, transition_frames)

__all__ = [
    "BLANK", "Box", "Canvas", "FitFrames", "LastSegment", "LossRegion", "MASK_CHANNELS", "Segment", "Timeline",
    "blank_start", "build_canvas", "check_dit_channels", "check_frame_count", "check_frame_size", "cut_to_driving", "dit_input",
    "dit_input_channels", "extend_driving", "fit_box", "fit_reference", "generated_latents", "generated_region",
    "generated_video", "given_frames", "given_then_blank", "is_valid_frame_count", "join_halves", "latent_frame_count",
    "left_half", "loss_weight", "next_valid_frame_count", "output_buffer", "pack_mask", "plan_segments",
    "plan_timeline", "split_halves", "stitch", "to_rgb", "token_timesteps", "transition_frames",
    "whole_latent_frames", "zigzag_pad",
]
