"""The cvae family: the batch-half swap, where each gradient goes (TC to the encoders only, L_D to the
discriminator only), the two steps leaving each other's weights alone, the target reconstruction scored against the
target rows, half-and-half batches of two sample lists, both optimizers restored on resume, and the command line."""

import sys

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from recipe_helpers import TINY_MODEL, write_cohort, write_maps_package

from ml4ge.cli import main
from ml4ge.models.config import DenseConfig, ModelConfig
from ml4ge.models.cvae import half_swap, product_of_marginals
from ml4ge.models.cvae_data import HalfAndHalf, split_groups
from ml4ge.models.factory import Architecture, build_family, compile_model
from ml4ge.models.vae_config import VAEConfig
from ml4ge.pipeline import TensorDataset
from ml4ge.tensormap import TensorMap
from ml4ge.training_settings import TrainingSettings

PACKAGE = "cvae_maps"
VECTOR = TensorMap("v", (6,))


def cvae(gamma=1.0, learning_rate=1e-2, family="cvae"):
    architecture = Architecture(family, ("dense_encode",), (), ("dense_decode",),
                                ModelConfig(dense=DenseConfig((8, 4))), (),
                                VAEConfig(gamma=gamma, salient_size=2, background_size=3))
    model = build_family(architecture, [VECTOR], [VECTOR])
    return compile_model(model, [VECTOR], learning_rate=learning_rate)


def batch(n=8, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, 6)).astype("float32")
    return {VECTOR.input_name: x}, {VECTOR.output_name: x}


def values(variables):
    return [np.array(v.numpy()) for v in variables]


def changed(before, variables):
    return [not np.array_equal(a, b) for a, b in zip(before, values(variables))]


def encoder_variables(model):
    return [v for layer in model.layers if layer.name.startswith(("encode_", "salient_", "background_"))
            for v in layer.trainable_variables]


def decoder_variables(model):
    return model.get_layer("decode_v").trainable_variables


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_the_half_swap_is_a_permutation_that_keeps_s_and_breaks_the_pairs(n):
    order = keras.ops.convert_to_numpy(half_swap(n))
    assert sorted(order) == list(range(n))
    kept = 1 if n % 2 else 0  # with an odd batch row 0 keeps its pair, as the seed
    assert all(order[i] != i for i in range(kept, n)) and all(order[:kept] == range(kept))
    s, z = np.arange(n * 2.0).reshape(n, 2), 100 + np.arange(n * 3.0).reshape(n, 3)
    marginals = keras.ops.convert_to_numpy(product_of_marginals(s, z))
    np.testing.assert_array_equal(marginals[:, :2], s)  # s stays where it was
    np.testing.assert_array_equal(marginals[:, 2:], z[order])


def test_tc_reaches_the_encoders_only_and_the_discriminator_loss_the_discriminator_only():
    model = cvae()
    x, y = batch()
    with tf.GradientTape(persistent=True) as tape:
        terms = model.losses_of(x, y, training=True)
        critic = model.discriminator_terms(terms["joint"], terms["marginals"], training=True)
    tc = tape.gradient(terms["tc_loss"], encoder_variables(model) + decoder_variables(model))
    encoders, decoders = tc[:len(encoder_variables(model))], tc[len(encoder_variables(model)):]
    assert any(g is not None and np.any(g.numpy()) for g in encoders)
    assert all(g is None for g in decoders)
    d_grads = tape.gradient(critic["discriminator_loss"], model.autoencoder_variables())
    assert all(g is None for g in d_grads)  # L_D never updates encoders or decoder
    assert all(g is not None for g in tape.gradient(critic["discriminator_loss"],
                                                    model.discriminator.trainable_variables))


def test_each_step_leaves_the_others_weights_unchanged():
    x, y = batch()
    model = cvae()
    model.discriminator_optimizer.learning_rate.assign(0.0)  # the VAE step alone changes weights
    before_d, before_ae = values(model.discriminator.trainable_variables), values(model.autoencoder_variables())
    model.train_on_batch(x, y)
    assert not any(changed(before_d, model.discriminator.trainable_variables))
    assert any(changed(before_ae, encoder_variables(model))) and any(changed(before_ae, model.autoencoder_variables()))
    model = cvae()
    model.optimizer.learning_rate.assign(0.0)  # the discriminator step alone changes weights
    before_d, before_ae = values(model.discriminator.trainable_variables), values(model.autoencoder_variables())
    model.train_on_batch(x, y)
    assert all(changed(before_d, model.discriminator.trainable_variables))
    assert not any(changed(before_ae, model.autoencoder_variables()))


def test_without_gamma_the_discriminator_is_not_trained():
    model = cvae(gamma=0.0)
    x, y = batch()
    before = values(model.discriminator.trainable_variables)
    logs = model.fit(x, y, batch_size=8, epochs=2, verbose=0).history
    assert not any(changed(before, model.discriminator.trainable_variables))
    assert np.isfinite(logs["loss"]).all() and "d_joint" in logs


def test_the_target_reconstruction_is_scored_against_the_target_rows():
    model = cvae()
    x, y = batch()
    terms = model.losses_of(x, y, training=False)
    decoded = keras.ops.convert_to_numpy(terms["decoded"][VECTOR.output_name])
    target = y[VECTOR.output_name]
    assert float(terms["reconstruction_loss"]) == pytest.approx(np.mean((decoded - target) ** 2), rel=1e-5)
    swapped = {VECTOR.output_name: np.concatenate([target[4:], target[:4]])}  # the seed's bug: background as target
    assert float(model.losses_of(x, swapped, training=False)["reconstruction_loss"]) != pytest.approx(
        float(terms["reconstruction_loss"]), rel=1e-3)
    # background rows are decoded from [0, z]: their salient half of the code is zero
    s = model.encode(x)[VECTOR.name]
    z = model.encode_background(x)[VECTOR.name]
    background = model.decode(keras.ops.concatenate([keras.ops.zeros_like(s[4:]), z[4:]], axis=-1), VECTOR)
    np.testing.assert_allclose(decoded[4:], keras.ops.convert_to_numpy(background), rtol=1e-5, atol=1e-6)


def test_resume_restores_both_optimizers(tmp_path):
    from ml4ge import training

    x, y = batch(16)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    settings = TrainingSettings(epochs=2, patience=5)
    first = cvae()
    first.fit(data, validation_data=data, epochs=2, verbose=0,
              callbacks=training.make_callbacks(tmp_path, settings, write_outputs=False))
    second = cvae()
    assert training.fit(second, data, data, tmp_path, settings, write_outputs=False).epoch == []
    for optimizer in ("optimizer", "discriminator_optimizer"):
        ours, theirs = getattr(first, optimizer), getattr(second, optimizer)
        assert int(theirs.iterations) == int(ours.iterations) == 4
        for a, b in zip(ours.variables, theirs.variables):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_the_rae_variant_has_no_sampling_and_penalises_the_code_norm():
    model = cvae(family="cvae_rae")
    x, y = batch()
    assert not any("sample" in layer.name for layer in model.layers)
    first, second = (model.losses_of(x, y, training=True) for _ in range(2))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(first["decoded"][VECTOR.output_name]),
                                  keras.ops.convert_to_numpy(second["decoded"][VECTOR.output_name]))
    s, z = (keras.ops.convert_to_numpy(model.encode(x)[VECTOR.name]),
            keras.ops.convert_to_numpy(model.encode_background(x)[VECTOR.name]))
    norms = 0.5 * np.sum(s[:4] ** 2, -1).mean() + 0.5 * np.sum(z[:4] ** 2, -1).mean() + 0.5 * np.sum(z[4:] ** 2,
                                                                                                   -1).mean()
    assert float(model.losses_of(x, y, training=False)["kl_loss"]) == pytest.approx(norms, rel=1e-5)


@pytest.mark.parametrize("family", ["cvae", "cvae_rae"])
def test_save_and_load_in_safe_mode(tmp_path, family):
    model = cvae(family=family)
    x, y = batch()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "cvae.keras")
    loaded = keras.saving.load_model(tmp_path / "cvae.keras", safe_mode=True, compile=False)
    assert type(loaded) is type(model) and loaded.spec == model.spec and loaded.family == family
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded.encoder_of(VECTOR)(x[VECTOR.input_name])),
                               keras.ops.convert_to_numpy(model.encode(x)[VECTOR.name]), rtol=1e-6)


# Data and command line -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def maps_root(tmp_path_factory):
    root = write_maps_package(tmp_path_factory.mktemp("maps"), PACKAGE)
    sys.path.insert(0, str(root))
    return root


@pytest.fixture(scope="module")
def cohort(maps_root):
    return write_cohort(maps_root, PACKAGE, 16, seed=4)


def ages(tensors):
    """``{sample id: normalized age}`` read by ml4ge's own pipeline."""
    import importlib

    from ml4ge.pipeline import iterate_batches

    age = importlib.import_module(f"{PACKAGE}.brain").age
    found = {}
    for ids, inputs, _ in iterate_batches(sorted(tensors.glob("*.hd5")), [age], [], 8, num_workers=0):
        found |= dict(zip(ids, inputs[age.input_name].ravel().tolist()))
    return found


@pytest.fixture(scope="module")
def groups(cohort, tmp_path_factory):
    """The older half of the cohort as targets, the younger as background (CSV files)."""
    by_age = sorted(ages(cohort).items(), key=lambda item: item[1])
    folder = tmp_path_factory.mktemp("groups")
    target, background = folder / "target.csv", folder / "background.csv"
    pd.DataFrame({"sample_id": [i for i, _ in by_age[8:]]}).to_csv(target, index=False)
    pd.DataFrame({"sample_id": [i for i, _ in by_age[:8]]}).to_csv(background, index=False)
    return target, background, by_age[7][1]


def test_batches_hold_target_rows_then_as_many_background_rows(cohort, groups, maps_root):
    import importlib

    from ml4ge.splits import read_ids

    maps = importlib.import_module(f"{PACKAGE}.brain")
    split = split_groups(sorted(cohort.glob("*.hd5")), read_ids(groups[0]), read_ids(groups[1]))
    target = TensorDataset(split["target"][:7], [maps.age], [], 3, shuffle=True, num_workers=0)
    background = TensorDataset(split["background"], [maps.age], [], 3, shuffle=True, num_workers=0)
    threshold = groups[2]
    with HalfAndHalf(target, background) as data:
        sizes = []
        for x, _ in data.dataset():
            rows = x[maps.age.input_name].numpy().ravel()
            n = len(rows) // 2
            sizes.append(len(rows))
            assert len(rows) == 2 * n and (rows[:n] > threshold).all() and (rows[n:] <= threshold).all()
    assert sizes == [6, 6, 2]  # 7 targets: 3 + 3 + 1, the last pair cut to one row each
    with pytest.raises(ValueError, match="in both"):
        split_groups([], ["a", "b"], ["b"])
    with pytest.raises(ValueError, match="no background sample"):
        split_groups(split["target"], read_ids(groups[0]), read_ids(groups[1]), "valid")


def train_argv(tensors, folder, run_id, *extra):
    return ["--mode", "train", "--tensors", str(tensors), "--output_folder", str(folder), "--id", run_id,
            "--tensormap_prefix", PACKAGE, "--input_tensors", "brain.t1", "--output_tensors", "brain.t1",
            "--batch_size", "4", "--valid_ratio", "0.25", "--test_ratio", "0.25", *TINY_MODEL, *extra]


@pytest.mark.parametrize("bad", [["--family", "cvae"], ["--family", "vae", "--target_csv", "T", "--background_csv",
                                                        "B"], ["--family", "cvae", "--target_csv", "T",
                                                               "--background_csv", "B", "--batch_size", "1"],
                                 ["--family", "cvae", "--gamma", "-1", "--target_csv", "T", "--background_csv", "B"],
                                 ["--family", "cvae", "--strategy", "mirrored", "--target_csv", "T",
                                  "--background_csv", "B"]])
def test_bad_cvae_flags_are_refused(cohort, groups, tmp_path, bad):
    bad = [{"T": str(groups[0]), "B": str(groups[1])}.get(item, item) for item in bad]
    with pytest.raises(SystemExit) as exit_info:
        main(train_argv(cohort, tmp_path, "bad", *bad))
    assert exit_info.value.code == 2


@pytest.mark.slow
def test_train_cvae_then_infer_encoders_writes_salient_means(cohort, groups, tmp_path):
    argv = train_argv(cohort, tmp_path, "cvae", "--family", "cvae", "--target_csv", str(groups[0]),
                      "--background_csv", str(groups[1]), "--salient_size", "3", "--background_size", "5",
                      "--gamma", "0.5", "--epochs", "2")
    assert main(argv) == 0
    run = tmp_path / "cvae"
    log = pd.read_csv(run / "training_log.csv")
    columns = ["loss", "val_loss", "reconstruction_loss", "kl_loss", "tc_loss", "discriminator_loss", "d_joint",
               "d_marginals", "beta"]
    assert np.isfinite(log[columns].to_numpy()).all()
    infer = ["--mode", "infer_encoders", "--tensors", str(cohort), "--output_folder", str(tmp_path), "--id",
             "cvae_latents", "--tensormap_prefix", PACKAGE, "--input_tensors", "brain.t1", "--model_file",
             str(run / "cvae.keras"), "--num_workers", "0"]
    assert main(infer) == 0
    table = pd.read_csv(tmp_path / "cvae_latents" / "hidden_t1_tiny_cvae_latents.tsv", sep="\t")
    assert table.shape == (16, 4) and np.isfinite(table.iloc[:, 1:].to_numpy()).all()
    background = pd.read_csv(tmp_path / "cvae_latents" / "hidden_t1_tiny_background_cvae_latents.tsv", sep="\t")
    assert background.shape == (16, 6) and list(background["sample_id"]) == list(table["sample_id"])


@pytest.mark.slow
def test_the_salient_space_finds_subtypes_planted_in_the_targets_only():
    """Vectors: 4 shared factors in every sample, and in the targets one of two planted patterns (subtypes A, B).
    The salient means separate the subtypes (GMM clusters vs subtype, NMI); the background means do not."""
    from sklearn.metrics import normalized_mutual_info_score
    from sklearn.mixture import GaussianMixture

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    d, n = 30, 300
    shared, patterns = rng.normal(size=(4, d)), np.zeros((2, d))
    patterns[0, :5], patterns[1, 5:10] = 1.5, 1.5
    subtype = rng.integers(0, 2, n)

    def vectors(planted=None):
        x = rng.normal(size=(n, 4)) @ shared + 0.3 * rng.normal(size=(n, d))
        return (x if planted is None else x + patterns[planted]).astype("float32")

    target, background = vectors(subtype), vectors()
    v = TensorMap("v", (d,))
    architecture = Architecture("cvae", ("dense_encode",), (), ("dense_decode",), ModelConfig(dense=DenseConfig((32,))),
                                (), VAEConfig(salient_size=2, background_size=4, alpha=float(d)))
    model = compile_model(build_family(architecture, [v], [v]), [v], learning_rate=2e-3)
    x = np.stack([target.reshape(-1, 10, d), background.reshape(-1, 10, d)], axis=1).reshape(-1, d)  # 10 + 10
    model.fit({v.input_name: x}, {v.output_name: x}, batch_size=20, epochs=60, verbose=0, shuffle=False)

    def nmi(codes):
        codes = keras.ops.convert_to_numpy(codes)
        return np.mean([normalized_mutual_info_score(subtype, GaussianMixture(2, random_state=k).fit_predict(codes))
                        for k in range(5)])

    salient = nmi(model.encode({v.input_name: target})[v.name])
    shared_space = nmi(model.encode_background({v.input_name: target})[v.name])
    assert salient > 0.8 and shared_space < 0.2, (salient, shared_space)
