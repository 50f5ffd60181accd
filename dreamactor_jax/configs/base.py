"""Base config of dreamactor-jax; `arg` picks a model size from MODELS.

  python -m dreamactor_jax.convert dit --src Wan2.1-T2V-1.3B-Diffusers/transformer --out ckpt/t2v-1.3b
  python sample.py --config=dreamactor_jax/configs/base.py --config.sampling.shift=5   # its sampling sections

Model fields are those of `dreamactor_jax.models.DiTConfig`.
"""

import ml_collections

# Released Wan sizes: WAN.md table, matching the config.json of each Wan-AI/Wan2.1-* (Wan2.2-*) repo.
# `tiny` has unequal sizes (3 heads of 16, ffn 40) so that a swapped axis fails tests loudly.
MODELS = {
    "tiny": dict(dim=48, num_heads=3, num_layers=2, ffn_dim=40, text_dim=20, freq_dim=32),
    "wan2.1-t2v-1.3b": dict(dim=1536, num_heads=12, num_layers=30, ffn_dim=8960),
    "wan2.1-t2v-14b": dict(dim=5120, num_heads=40, num_layers=40, ffn_dim=13824),
    "wan2.1-i2v-14b": dict(dim=5120, num_heads=40, num_layers=40, ffn_dim=13824, in_channels=36, image_dim=1280),
    # Wan2.2 wan/configs/wan_ti2v_5B.py; 48 channels: the latents of the Wan2.2 VAE (16x16 pixels each).
    "wan2.2-ti2v-5b": dict(dim=3072, num_heads=24, num_layers=30, ffn_dim=14336, in_channels=48, out_channels=48,
                           condition="timestep"),
}


def get_config(arg: str = "wan2.1-t2v-1.3b") -> ml_collections.ConfigDict:
  if arg not in MODELS:
    raise ValueError(f"unknown model {arg!r}; choose one of {sorted(MODELS)}")
  config = ml_collections.ConfigDict()
  config.model_name = arg
  config.model = ml_collections.ConfigDict(dict(
      dim=1536, num_heads=12, num_layers=30, ffn_dim=8960, in_channels=16, out_channels=16, text_dim=4096,
      freq_dim=256, patch_size=(1, 2, 2), image_dim=ml_collections.FieldReference(None, field_type=int),
      eps=1e-6, rope_theta=10000.0,
      param_dtype="float32",  # "bfloat16" halves memory; optimizer moments stay fp32 in training
      dtype="float32",  # compute dtype: "bfloat16" on accelerators
      remat="none",  # none | full | dots_saveable | dots_with_no_batch_dims_saveable
      attention="auto",  # auto | xla | cudnn | splash | blockwise (auto: cuDNN on GPU, splash on TPU)
      # --- LoRA (models/lora.py; PAPER.md section 3: rank 256 on the feed-forward layers, base frozen) ---
      lora_rank=0,  # 0: no adapters; the paper trains rank 256
      lora_alpha=ml_collections.FieldReference(None, field_type=float),  # scale alpha / rank; None: alpha = rank
      lora_targets=("ffn",),  # groups: ffn, self_attn, cross_attn_q, cross_attn_out; the text branch never
      lora_dtype="float32",  # adapter parameter dtype: fp32 also under a bf16 base, for the optimizer
      # --- Attention layout over the canvas (models/dit.py) ---
      # full: the paper's attention over the whole [F, H, 2W] canvas. motion_cache: the motion (right)
      # half attends only to itself and runs once per sample (WanDiT.encode_motion), its keys/values
      # cached per layer; each step runs only the left half: about half the FLOPs of full per step.
      layout="full",
      motion_timestep=0.0,  # timestep of that motion pass (0: the clean driving latents as "noisy" input)
      # How the DiT is told which canvas positions are given: channels (Wan2.1 I2V: 4 mask + z condition
      # channels after the noisy ones) | timestep (Wan2.2 TI2V: given tokens clean at timestep 0)
      condition="channels",
  ))
  config.model.update(MODELS[arg])

  # ---- In-context animation and flow matching (dreamactor_jax/animation, dreamactor_jax/diffusion) ----
  config.animation = ml_collections.ConfigDict(dict(
      # start transition: the driving signal is blanked this long in training; at inference as much blank
      # motion is prepended, then cut from the output
      start_seconds=1.0,
      # pad | error: lead-in + driving frames must be 1 + 4k; pad repeats the last driving frame (<= 3 times, cut after)
      fit_frames="pad",
      blank=0.0,  # pixel value (-1..1) of the empty left half, blank motion frames and reference padding
      segment_frames=81,  # long videos: frames per segment (1 + 4k)
      overlap_frames=5,  # frames each later segment continues from (given); 1 + 4m fills whole latent frames
      loss_region="generated",  # generated | canvas: where the flow-matching loss is taken
      # video | change: the DiT predicts the canvas, or (full, motion_cache) its change from the first given
      # left frame held still (zero = "do nothing"; conditioning.change_base, diffusion.relative_velocity)
      prediction="video",
  ))
  config.sampling = ml_collections.ConfigDict(dict(
      sampler="unipc",  # unipc (bh2, order 2, x0-prediction) | euler
      grid="wan",  # sigma grid: wan (original Wan sampler) | unipc (diffusers' UniPC) | euler (diffusers' Euler)
                   # | flowmatch (DiffSynth-Studio's, Wan-Animate-2's presets)
      steps=40,  # denoising steps (Wan: 40 for I2V, 50 for T2V)
      shift=3.0,  # sampling sigma shift s*sig/(1+(s-1)*sig): 3.0 for 480p I2V, 5.0 for 720p
      guidance=5.0,  # classifier-free guidance on text: uncond + g * (cond - uncond); 1.0 turns it off
      negative_prompt="",  # text of the unconditional branch
      driving_prompt="",  # layout animate2: text of the driving pass (its presets set diffusers' default)
      # Training noise levels (diffusion.sample_training_sigmas keyword arguments):
      train=ml_collections.ConfigDict(dict(
          distribution="logit_normal",  # logit_normal | uniform
          mean=0.0,  # logit-normal location
          std=1.0,  # logit-normal scale
          shift=1.0,  # shift applied after drawing (1.0 = none; 3.0 with uniform ~ the sampling grid's density)
      )),
  ))

  # ---- data: Grain input pipelines (dreamactor_jax.data.pipeline; DataConfig.from_config reads it) ----
  config.data = ml_collections.ConfigDict(dict(
      stage1_dir="",  # `python -m dreamactor_jax.data.build --out` folder (stage-1 videos + keypoints)
      stage2_dir="",  # `write_stage2_dataset` folder (bootstrap triplets)
      num_frames=81,  # frames per clip, T = 1 + 4k
      frame_stride=2,  # stage 1: every n-th source frame (batch fps = source fps / stride)
      stage2_frame_stride=1,  # stage 2: stride within the stored triplet clips (already at training fps)
      reference="first",  # first: the clip's first frame (PAPER.md 1) | outside: a random frame outside the clip
      buckets=((480, 832), (832, 480), (624, 624), (544, 720), (720, 544)),  # (H, W) sizes, multiples of the model's pixel_multiple (16)
      random_crop=True,  # random crop offset inside each frame's cover box (else centred)
      batch_size=2,  # examples per process per step (PAPER.md 6: batch 2)
      seed=0,  # shuffle, clip, crop and augmentation draws all derive from it
      num_epochs=ml_collections.FieldReference(None, field_type=int),  # None: repeat forever
      num_workers=2,  # Grain worker processes (0: load in the main process)
      worker_buffer_size=2,  # batches prefetched per worker
      threads_per_worker=1,  # loader threads in each worker (PIL decodes without the GIL)
      # How stage-1 skeletons are drawn (data.skeleton.PoseDrawing); the bundle records it, and the
      # bootstrap draws the stage-1 model's skeletons with it.
      pose=dict(
          threshold=0.3,  # keypoint confidence below which a joint is absent (drawing, box)
          bbox_normalize=True,  # map the clip's joint box to a centred box of the frame (PAPER.md 3)
          bbox_fill=0.9,  # that box's larger relative side, as a fraction of the frame
      ),
      bone_scale_prob=0.3,  # share of stage-1 clips with bone-length scaling (PAPER.md 3)
      bone_scale_range=(0.8, 1.2),  # U(low, high) factor per anatomical segment, fixed per clip
      stage2_min_score=ml_collections.FieldReference(None, field_type=float),  # keep triplets whose mean score >= this
      stage2_flip_prob=0.0,  # stage 2: horizontal flip of target, reference and driving together
      # stage 2: train on self pairs (driving identity = the target's, e.g. the bootstrap's --self-pairs).
      # False refuses them: on a self pair the loss collapses, the model learns to copy the driving pixels
      allow_self_pairs=False,
      appearance_prob=0.0,  # share of examples recoloured: one colour map on target + reference, another on
                            # stage 2's driving (data/augment.py); small datasets: colours come from the reference
      text_len=512,  # text tokens per prompt (zero-padded), as the DiT reads them
      text_dim=config.model.get_ref("text_dim"),  # width of the zeros used without a prompt cache
      max_retries=16,  # records tried for one batch slot before DataError (a dataset that is all bad)
      warn_every_s=60.0,  # at most one skipped-record warning per this many seconds
  ))
  if arg == "tiny":
    config.data.update(num_frames=9, frame_stride=1, buckets=((64, 64), (48, 80), (80, 48)))

  # ---- Training (train.py, dreamactor_jax/training; PAPER.md sections 3-6) ----
  config.stage = 1  # 1: pose-driven (stage-1 data, rendered skeletons) | 2: RGB-driven (bootstrap triplets)
  config.init = ml_collections.ConfigDict(dict(
      dit="",  # Orbax DiT folder (`convert dit`; `--in-channels 36` from T2V); "": random init (tiny models)
      lora="",  # adapters to continue from (`save_lora` folder, e.g. stage 1's for stage 2); "": fresh ones
      vae="",  # Orbax VAE folder (`convert vae`, or the codec the demo recipe fits)
      clip="",  # Orbax CLIP folder, needed when the DiT has an image branch (I2V)
      prompt_cache="",  # PromptCache file holding every caption and the negative prompt; "": no text (zeros)
  ))
  config.optimizer = ml_collections.ConfigDict(dict(
      learning_rate=5e-5,  # PAPER.md 6
      weight_decay=0.01,  # PAPER.md 6
      b1=0.9, b2=0.999, eps=1e-8,  # AdamW moments
      warmup_steps=500,  # linear warmup from 0
      schedule="constant",  # constant | cosine (after warmup)
      decay_steps=50_000,  # cosine: the step where the rate reaches final_lr_fraction * learning_rate
      final_lr_fraction=0.1,
      grad_clip_norm=1.0,  # global-norm clipping; 0: off
  ))
  config.train = ml_collections.ConfigDict(dict(
      steps=50_000,  # optimizer steps per stage (PAPER.md 6)
      seed=0,  # parameter init, noise, noise levels and dropout draws (data has config.data.seed)
      grad_accum=1,  # micro-batches per optimizer step: the per-process batch is split this many ways
      ema_decay=0.0,  # EMA of the trained parameters (0: none); sampling can use it
      text_dropout=0.1,  # share of samples trained with the negative prompt, for classifier-free guidance
      continuation_prob=0.0,  # share of steps whose first `animation.overlap_frames` left frames are given,
                              # teaching segment continuation (the rest give the reference only)
      max_nonfinite=10,  # steps in a row with a NaN/inf loss (skipped) before training stops with an error
      log_every=50,  # steps between metric writes
      sample_every=2_000,  # steps between validation videos (0: never)
      num_samples=2,  # validation videos per sampling (the first clips of the first batch)
      sample_steps=20,  # denoising steps of validation videos
      peak_flops_per_device=0.0,  # for the MFU estimate; 0: look the device kind up (unknown: no MFU)
  ))
  config.checkpoint = ml_collections.ConfigDict(dict(
      every=1_000,  # steps between saves (also on SIGTERM and at the end)
      keep_last=3,  # newest checkpoints kept
      keep_every=10_000,  # also keep every step divisible by this (0: none)
      async_save=True,  # write in the background while training continues
  ))

  # ---- Parallelism (dreamactor_jax/parallel): the device mesh and the logical-axis rules -------
  # Mesh axis sizes; exactly one may be -1 (the devices left over). Outermost axis first.
  config.mesh = ml_collections.ConfigDict(dict(
      data=1,  # replicas: pure data parallel (weights replicated)
      fsdp=-1,  # data parallel with weights, grads and optimizer state sharded (ZeRO-3)
      context=1,  # sequence parallel: the tokens of one sample split over devices
      tensor=1,  # heads and FFN width split (Megatron); keep within a host / NVLink domain
  ))
  config.parallel = ml_collections.ConfigDict(dict(
      # How attention sees every token when tokens are split: "ulysses" (all-to-all to a head
      # split; heads / tensor must divide by context) or "ring" (k/v blocks passed round).
      sequence_parallel="ulysses",
      # Logical axis -> mesh axes (MaxText's logical_axis_rules). Size-1 axes are ignored.
      rules=ml_collections.ConfigDict(dict(
          batch=("data", "fsdp"),  # activations' batch axis
          tokens=("context",),  # video tokens (queries, and keys of self-attention)
          act_embed=(),  # activations' width, between blocks
          act_heads=("tensor",),  # activations' heads, in attention
          kv=(),  # cross-attention keys/values (text, CLIP tokens): whole on every device
          layers=(),  # the stacked-blocks axis of weights
          embed=("fsdp", "context"),  # weights' model width: ZeRO-3 over every non-replica axis
          heads=("tensor",),  # weights' heads x head_dim axis
          mlp=("tensor",),  # FFN hidden axis
          modulation=(),  # the 6 x dim timestep projection output
          norm=(),  # norm scales
          text=(),  # text encoder width (4096) at the text embedding's input
          image=(),  # CLIP width (1280) at the image embedding's input
          lora=(),  # LoRA rank (256): small, whole on every device
      )),
  ))
  return config
