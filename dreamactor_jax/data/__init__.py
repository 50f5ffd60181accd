"""Training data: TFDS ArrayRecord datasets, keypoints, skeleton rendering, pose augmentation and
the Grain pipelines of both stages (numpy, grain, tfds, video I/O; never the models); and a
synthetic world with ground truth (`synthetic.py`, rasterised by `raster.py`)."""

from dreamactor_jax.data.augment import bone_scale_factors, normalize_to_box, scale_bones
from dreamactor_jax.data.build import BuildReport, build_dataset, open_videos
from dreamactor_jax.data.keypoints import Pose, read_pose, read_pose_json, read_pose_npz, write_pose_npz
from dreamactor_jax.data.pipeline import (DataConfig, PipelineIterator, dataset_captions, stage1_dataset,
                                          stage2_dataset)
from dreamactor_jax.data.skeleton import render_frame, render_pose
from dreamactor_jax.data.stage2 import (open_stage2, remove_stage2_records, stage2_key, write_stage2_dataset,
                                        written_stage2_keys)
from dreamactor_jax.data.staging import DataError

__all__ = ["BuildReport", "DataConfig", "DataError", "PipelineIterator", "Pose", "bone_scale_factors",
           "build_dataset", "dataset_captions", "normalize_to_box", "open_stage2", "open_videos", "read_pose",
           "read_pose_json", "read_pose_npz", "remove_stage2_records", "render_frame", "render_pose", "scale_bones",
           "stage1_dataset", "stage2_dataset", "stage2_key", "write_pose_npz", "write_stage2_dataset",
           "written_stage2_keys"]
