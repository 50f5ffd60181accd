"""The stage-1 dataset's TFDS builder (its own module, so that `python -m dreamactor_jax.data.build`
running build.py as `__main__` does not define, and register, the builder a second time)."""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from dreamactor_jax.data import staging

NAME = "video_folder"


class VideoFolder(staging.StagedBuilder):
  """Stage-1 videos. Features (per record; T frames of `height x width`, P persons):

  video_id str, identity str, caption str, fps float32, height/width/num_frames int32,
  frames `[T]` JPEG bytes, body `[T, P, 18, 3]`, hands `[T, P, 2, 21, 3]`, face `[T, P, 68, 3]`
  float32 (pixels of the stored frames + confidence; P = 0 when the video had no keypoints).
  """

  INDEX_COLUMNS = ("video_id", "height", "width", "num_frames", "fps", "num_persons", "caption", "identity")

  def _features(self) -> dict:
    keypoints = dict(dtype=np.float32, encoding=tfds.features.Encoding.ZLIB)
    return {
        "video_id": tfds.features.Text(), "identity": tfds.features.Text(), "caption": tfds.features.Text(),
        "fps": tfds.features.Scalar(np.float32), "height": tfds.features.Scalar(np.int32),
        "width": tfds.features.Scalar(np.int32), "num_frames": tfds.features.Scalar(np.int32),
        "frames": tfds.features.Tensor(shape=(None,), dtype=np.object_),
        "body": tfds.features.Tensor(shape=(None, None, 18, 3), **keypoints),
        "hands": tfds.features.Tensor(shape=(None, None, 2, 21, 3), **keypoints),
        "face": tfds.features.Tensor(shape=(None, None, 68, 3), **keypoints),
    }

  def _example(self, staged):
    frames = staging.unpack_bytes(staged["frames_data"], staged["frames_offsets"])
    example = {name: staged[name] for name in ("body", "hands", "face")}
    example.update(video_id=str(staged["key"]), identity=str(staged["identity"]), caption=str(staged["caption"]),
                   fps=float(staged["fps"]), height=int(staged["height"]), width=int(staged["width"]),
                   num_frames=len(frames), frames=np.array(frames, dtype=object))
    row = [str(staged["key"]), int(staged["height"]), int(staged["width"]), len(frames), float(staged["fps"]),
           int(staged["body"].shape[1]), str(staged["caption"]), str(staged["identity"])]
    return str(staged["key"]), example, row
