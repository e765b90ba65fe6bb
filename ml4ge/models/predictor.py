"""The ``predictor`` family: imaging volumes fused early as channels of one residual 3-D CNN, dense branches for
vectors and tabular domains, concatenated into an MLP head with one output per target map (the legibility seed,
REFERENCE_SEEDS.md D).

Inputs: maps with three spatial axes (``(x, y, z, c)``) go to the CNN, stacked as channels (they must share a
grid); rank-1 maps get a dense branch each, a *tabular domain* (a continuous map with a ``channel_map`` naming its
columns) the seed's metadata MLP, any other vector the seed's connectivity MLP. Options:
:class:`~ml4ge.models.predictor_config.PredictorConfig`.

Missing inputs. Per sample, an optional input (``--optional_tensors``) that is absent arrives as zeros with its
presence flag 0 (the pipeline's); its branch's batch statistics leave the sample out and the branch output is
zeros of the branch's width, so nothing of the absence reaches the head but those zeros (unless
``--presence_inputs`` gives the head the flags too), and the branch's weights get no gradient from that sample.
The CNN counts as absent only when all its contrasts are. Per run, an optional input no training sample has is not
built (``spec["unbuilt"]``; the model still takes it, unused). Leak guard: a tabular domain with a column that is a
target (by the target's name or dataset) is zeroed (not built, ``spec["zeroed"]``), with a log line.

Targets: a continuous target is predicted scaled to [-1, 1] (clamped at the training split's 0.5/99.5 percentiles,
z-scored, min-max) and the model's output is back in its original units; the loss is the MSE on the scaled target.
A categorical target uses its softmax and cross-entropy, weighted by class with ``--balance class_weights``;
``--balance undersample`` draws a balanced subset of the training split every epoch (:meth:`train_sampler`).
"""

from __future__ import annotations

import logging
import types
from dataclasses import dataclass, field

import keras

from ml4ge.models.family import FamilyModel, map_from_spec, map_spec
from ml4ge.models.predictor_blocks import dense_branch, head, imaging_branch
from ml4ge.models.predictor_config import PredictorConfig, TargetScale
from ml4ge.models.predictor_layers import AnyPresent, ClassWeightedCrossentropy, ScaledTargetMSE
from ml4ge.models.registries import FAMILIES
from ml4ge.tensormap import Interpretation, TensorMap

log = logging.getLogger(__name__)
CNN = "imaging"  # the encode() key of the CNN's output


@dataclass(frozen=True)
class PreparedPredictor:
    """The options and what the family took from the training split before building (:meth:`prepare`)."""

    config: PredictorConfig = field(default_factory=PredictorConfig)
    scales: dict = field(default_factory=dict)  # {continuous target: TargetScale dict}
    class_weights: dict = field(default_factory=dict)  # {categorical target: [weight per class]}
    unbuilt: tuple[str, ...] = ()  # optional inputs no training sample has


def is_imaging(tm: TensorMap) -> bool:
    return len(tm.shape) == 4


def is_tabular(tm: TensorMap) -> bool:
    """A rank-1 continuous map whose channel_map names its columns."""
    return len(tm.shape) == 1 and tm.interpretation == Interpretation.CONTINUOUS and bool(tm.channel_map)


def target_names(tm: TensorMap) -> set[str]:
    """Names a target may carry as a column of a tabular domain: its own, its dataset's, its reader's column."""
    return {name for name in (tm.name, tm.dataset, getattr(tm.reader, "column", None)) if name}


def leaked_domains(input_tmaps, output_tmaps) -> list[str]:
    """Input maps that hold a target: a tabular domain with a target's column, or the target map itself."""
    targets = set().union(*(target_names(tm) for tm in output_tmaps)) if output_tmaps else set()
    return [tm.name for tm in input_tmaps
            if tm.name in {t.name for t in output_tmaps} or (is_tabular(tm) and targets & set(tm.channel_map))]


@FAMILIES.register("predictor")
@keras.saving.register_keras_serializable(package="ml4ge")
class PredictorModel(FamilyModel):
    """Imaging CNN + dense branches -> head, built from a spec (see :func:`predictor_spec`)."""

    family = "predictor"
    # The residual CNN normalises after each stage with few steps per epoch: Keras' moving averages lag the weights
    # so far that inference predicted a near-constant age on the demo (ml4ge.precise_bn).
    precise_bn_batches = 16

    @classmethod
    def options_from_args(cls, args) -> PredictorConfig:
        return PredictorConfig.from_args(args)

    @classmethod
    def check_architecture(cls, architecture, input_tmaps, output_tmaps) -> None:
        predictor_spec(input_tmaps, output_tmaps, architecture.optional, _prepared(architecture))

    @classmethod
    def prepare(cls, architecture, train_paths, input_tmaps, output_tmaps):
        """``architecture`` with the target scales, class weights and unbuilt inputs of the training split."""
        from dataclasses import replace

        from ml4ge.predictor_data import prepare_predictor

        prepared = prepare_predictor(_prepared(architecture), train_paths, input_tmaps, output_tmaps,
                                     architecture.optional)
        return replace(architecture, family_options=prepared)

    @classmethod
    def from_architecture(cls, architecture, input_tmaps, output_tmaps) -> PredictorModel:
        return cls(predictor_spec(input_tmaps, output_tmaps, architecture.optional, _prepared(architecture)))

    def __init__(self, spec: dict, **kwargs):
        config = PredictorConfig.from_dict(spec["predictor"])
        input_maps = [map_from_spec(m) for m in spec["inputs"]]
        output_maps = [map_from_spec(m) for m in spec["outputs"]]
        optional = set(spec.get("optional", ()))
        inputs = {tm.name: keras.Input(tm.shape, name=tm.input_name) for tm in input_maps}
        presence = {tm.name: keras.Input((1,), name=tm.presence_name) for tm in input_maps if tm.name in optional}
        branches = _branches(spec, config, input_maps, inputs, presence)
        if not branches:
            raise ValueError("the predictor has no input branch left to build (every input is unbuilt or zeroed).")
        features = list(branches.values())
        if config.presence_inputs:
            features += [presence[name] for name in sorted(presence)]
        fused = features[0] if len(features) == 1 else keras.layers.Concatenate(name="fused")(features)
        outputs = head(fused, output_maps, spec["scales"], config)
        model_inputs = {tm.input_name: inputs[tm.name] for tm in input_maps}
        model_inputs |= {tm.presence_name: presence[tm.name] for tm in input_maps if tm.name in presence}
        kwargs.setdefault("name", "ml4ge_predictor")
        super().__init__(inputs=model_inputs, outputs=outputs, **kwargs)
        self.set_spec(spec)
        object.__setattr__(self, "_branch_tensors", types.MappingProxyType(dict(branches)))

    @property
    def config(self) -> PredictorConfig:
        return PredictorConfig.from_dict(self.spec["predictor"])

    def encode(self, inputs: dict) -> dict:
        """``{branch: output}``: the CNN's under ``"imaging"``, each dense branch's under its map's name."""
        features = keras.Model(self.input, dict(self._branch_tensors))
        given = {name: inputs[name] for name in self.input}
        return dict(features(given, training=False))

    def compile_for_training(self, output_tmaps, settings, jit_compile="auto", run_eagerly: bool = False):
        """Compile with the seed's losses: the scaled MSE for continuous targets, (class-weighted) cross-entropy for
        categorical ones; metrics MAE (original units) and categorical accuracy."""
        spec = self.spec
        losses, metrics = {}, {}
        for tm in output_tmaps:
            if tm.name in spec["scales"]:
                scale = TargetScale(**spec["scales"][tm.name])
                losses[tm.output_name] = ScaledTargetMSE(scale.factor, scale.clamp_low, scale.clamp_high)
                metrics[tm.output_name] = ["mae"]
            else:
                weights = spec["class_weights"].get(tm.name, [1.0] * tm.shape[-1])
                losses[tm.output_name] = ClassWeightedCrossentropy(weights)
                metrics[tm.output_name] = ["categorical_accuracy"]
        self.compile(optimizer=settings.make_optimizer(), loss=losses, metrics=metrics,
                     loss_weights={tm.output_name: float(tm.loss_weight) for tm in output_tmaps},
                     jit_compile=jit_compile, run_eagerly=run_eagerly)
        return self

    def train_sampler(self, train_paths, output_tmaps, seed: int):
        """The per-epoch order of the training split: balanced classes with ``--balance undersample``
        (``output_tmaps``: the targets as the recipe resolved them, able to read the data)."""
        if self.config.balance != "undersample":
            return None
        from ml4ge.predictor_data import BalancedSampler

        categorical = [tm for tm in output_tmaps if tm.interpretation == Interpretation.CATEGORICAL]
        return BalancedSampler.of_paths(train_paths, categorical[0], seed) if categorical else None

    def test_report(self, dataset, folder) -> dict:
        """Write the test split's predictions and metrics (:mod:`ml4ge.predictor_data`); returns the metrics."""
        from ml4ge.predictor_data import write_test_report

        return write_test_report(self, dataset, folder)


def _prepared(architecture) -> PreparedPredictor:
    options = architecture.family_options
    if isinstance(options, PreparedPredictor):
        return options
    return PreparedPredictor(config=options if isinstance(options, PredictorConfig) else PredictorConfig())


def _presence_of(names: list[str], presence: dict):
    """The branch's presence flag: None when one of its inputs is required (always present)."""
    if not names or any(name not in presence for name in names):
        return None
    flags = [presence[name] for name in names]
    return flags[0] if len(flags) == 1 else AnyPresent(name="imaging_present")(flags)


def _branches(spec: dict, config: PredictorConfig, input_maps, inputs: dict, presence: dict) -> dict:
    """``{branch: [B, width] tensor}`` of the inputs that are built."""
    skipped = set(spec["unbuilt"]) | set(spec["zeroed"])
    built = [tm for tm in input_maps if tm.name not in skipped]
    branches = {}
    imaging = [tm.name for tm in built if is_imaging(tm)]
    if imaging:
        branches[CNN] = imaging_branch([inputs[name] for name in imaging], _presence_of(imaging, presence), config)
    for tm in built:
        if not is_imaging(tm):
            branches[tm.name] = dense_branch(inputs[tm.name], tm, tm.name in spec["tabular"],
                                             _presence_of([tm.name], presence), config)
    return branches


def _check_maps(input_tmaps, output_tmaps, config: PredictorConfig) -> None:
    """Refuse maps the predictor cannot take or give, saying what to change."""
    grids = {tm.shape[:3] for tm in input_tmaps if is_imaging(tm)}
    if len(grids) > 1:
        raise ValueError(f"the predictor stacks imaging inputs as channels of one CNN: they must share a grid, got "
                         f"{sorted(grids)}; use maps of one resolution.")
    smallest = 2 ** len(config.stages)
    for grid in grids:
        if min(grid) < smallest:
            raise ValueError(f"imaging grid {grid} is too small for {len(config.stages)} CNN stages (each halves "
                             f"it; needs at least {smallest} per axis): give fewer --predictor_stages.")
    odd = [tm.name for tm in input_tmaps if not is_imaging(tm) and len(tm.shape) != 1]
    odd += [tm.name for tm in output_tmaps if len(tm.shape) != 1 or tm.mask is not None]
    if odd:
        raise ValueError(f"the predictor takes 3-D volumes (x, y, z, channels) and vectors, and predicts scalars and "
                         f"categories; {odd} are neither.")


def predictor_spec(input_tmaps, output_tmaps, optional, prepared: PreparedPredictor) -> dict:
    """The spec of a predictor; the leak guard zeroes tabular domains that hold a target (logged).

    Raises:
        ValueError: for maps the predictor cannot take, names that are not inputs, or a continuous target without
            its training scale when one is needed.
    """
    input_tmaps, output_tmaps = list(input_tmaps), list(output_tmaps)
    if not input_tmaps or not output_tmaps:
        raise ValueError("the predictor needs --input_tensors and --output_tensors (its targets).")
    _check_maps(input_tmaps, output_tmaps, prepared.config)
    if prepared.config.balance == "undersample" and sum(
            tm.interpretation == Interpretation.CATEGORICAL for tm in output_tmaps) > 1:
        raise ValueError("--balance undersample balances one categorical target; give one, or --balance "
                         "class_weights.")
    zeroed = leaked_domains(input_tmaps, output_tmaps)
    for name in zeroed:
        log.warning("leak guard: input %s holds a target (%s); its branch is zeroed", name,
                    ", ".join(tm.name for tm in output_tmaps))
    scales = dict(prepared.scales)
    for tm in output_tmaps:  # before prepare() (a check, a test): identity scale, replaced from the training split
        if tm.interpretation == Interpretation.CONTINUOUS and tm.name not in scales:
            scales[tm.name] = TargetScale(-1e30, 1e30, 0.0, 1.0, -1.0, 1.0).to_dict()
    return {"family": "predictor", "inputs": [map_spec(tm) for tm in input_tmaps],
            "outputs": [map_spec(tm) for tm in output_tmaps],
            "optional": [tm.name for tm in input_tmaps if tm.name in set(optional)],
            "tabular": [tm.name for tm in input_tmaps if is_tabular(tm)],
            "zeroed": zeroed, "unbuilt": [name for name in prepared.unbuilt if name not in zeroed],
            "scales": scales, "class_weights": dict(prepared.class_weights),
            "predictor": prepared.config.to_dict()}
