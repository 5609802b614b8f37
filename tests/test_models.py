"""The two networks' exact parameter counts, their interface, and the augmentation."""

import keras
import numpy as np
import pytest

from ferkit import models


@pytest.mark.parametrize(
    "builder, counts",
    [
        (models.build_cnn, (3_532_743, 3_529_927, 2_816)),
        (models.build_dnn, (3_533_188, 3_524_914, 8_274)),
    ],
)
def test_parameter_counts(builder, counts):
    assert models.count_parameters(builder()) == counts


@pytest.mark.parametrize("builder", [models.build_cnn, models.build_dnn])
def test_uncompiled_functional_model_from_pixels_to_probabilities(builder):
    model = builder()
    assert isinstance(model, keras.Model) and not isinstance(model, keras.Sequential)
    assert not model.compiled
    assert model.input_shape == (None, 48, 48, 1) and model.output_shape == (None, 7)
    # The model normalises its own input: its first layer divides by 255.
    rescale = model.layers[1]
    assert isinstance(rescale, keras.layers.Rescaling)
    assert rescale.scale == pytest.approx(1 / 255) and rescale.offset == 0
    probabilities = model.predict(np.full((2, 48, 48, 1), 200, np.uint8), verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_dropout_rates_are_options():
    model = models.build_cnn(dropout_conv=0.1, dropout_dense=0.4)
    rates = {layer.name: layer.rate for layer in model.layers if "dropout" in layer.name}
    assert rates["block1_dropout"] == 0.1 and rates["fc2_dropout"] == 0.4


@pytest.mark.parametrize("builder", [models.build_cnn, models.build_dnn])
def test_every_dropout_layer_has_a_seed_of_its_own(builder):
    # Unseeded, Keras on PyTorch draws the masks from torch's global generator, which
    # training's per-epoch reseeding cannot reach: a resumed run ended differently.
    dropouts = [layer for layer in builder().layers if isinstance(layer, keras.layers.Dropout)]
    seeds = [layer.seed for layer in dropouts]
    assert len(dropouts) in (5, 7) and None not in seeds and len(set(seeds)) == len(seeds)


def test_augmentation_units_match_image_data_generator():
    augmentation = models.build_augmentation(
        rotation_range=18, width_shift_range=4, height_shift_range=0.2, zoom_range=0.15
    )
    assert augmentation.rotation_range == 18  # degrees, as ImageDataGenerator
    assert augmentation.width_shift == pytest.approx(4 / 48)  # pixels when >= 1
    assert augmentation.height_shift == pytest.approx(0.2)
    assert augmentation.zoom_range == pytest.approx(0.15)
    assert models.build_augmentation(0, 0, 0, 0, horizontal_flip=False) is None


@pytest.mark.parametrize(
    "theta, tx, ty, zx, zy, flip",
    [(7.0, 3.2, -2.1, 1.08, 0.93, True), (-9.0, -4.5, 1.7, 0.91, 1.05, False), (90, 0, 0, 1, 1, 0)],
)
def test_affine_transform_is_image_data_generators_pixel_for_pixel(theta, tx, ty, zx, zy, flip):
    tensorflow = pytest.importorskip("tensorflow")  # the legacy generator lives in tf.keras
    image = np.random.default_rng(0).integers(0, 255, (48, 48, 1)).astype("float64")
    parameters = dict(theta=theta, tx=tx, ty=ty, zx=zx, zy=zy, flip_horizontal=flip)
    generator = tensorflow.keras.preprocessing.image.ImageDataGenerator()
    expected = generator.apply_transform(image.copy(), parameters)
    # ImageDataGenerator's tx (drawn from height_shift_range) moves images sideways and its
    # zx scales columns: the generator's own axis convention, here by name.
    transforms = models.affine_transforms(
        *(np.array([value], dtype="float32") for value in (theta, tx, ty, zx, zy, float(flip))),
        height=48,
        width=48,
    )
    changed = keras.ops.image.affine_transform(
        image[None].astype("float32"), transforms, interpolation="bilinear", fill_mode="nearest"
    )
    np.testing.assert_allclose(keras.ops.convert_to_numpy(changed)[0], expected, atol=0.01)


def test_augmentation_flips_about_half_the_images_and_nothing_else_when_alone():
    augmentation = models.build_augmentation(0, 0, 0, 0, horizontal_flip=True, seed=3)
    images = np.random.default_rng(0).integers(0, 255, (64, 48, 48, 1)).astype("float32")
    changed = keras.ops.convert_to_numpy(augmentation(images, training=True))
    mirrored = np.array([np.allclose(c, i[:, ::-1], atol=1e-3) for c, i in zip(changed, images)])
    kept = np.array([np.allclose(c, i, atol=1e-3) for c, i in zip(changed, images)])
    assert np.all(mirrored | kept) and 16 < mirrored.sum() < 48


def test_augmentation_changes_images_only_in_training():
    augmentation = models.build_augmentation(seed=1)
    images = np.random.default_rng(0).integers(0, 255, (4, 48, 48, 1)).astype("float32")
    unchanged = augmentation(images, training=False)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(unchanged), images)
    changed = keras.ops.convert_to_numpy(augmentation(images, training=True))
    assert changed.shape == images.shape and not np.allclose(changed, images)


def erased_boxes(changed, images):
    """Per image, the bounding box (top, left, height, width) of the changed pixels, or None,
    and whether the changed pixels fill it."""
    boxes = []
    for after, before in zip(changed[..., 0], images[..., 0]):
        rows, columns = np.nonzero(after != before)
        if len(rows) == 0:
            boxes.append((None, True))
            continue
        top, left = rows.min(), columns.min()
        height, width = rows.max() - top + 1, columns.max() - left + 1
        boxes.append(((top, left, height, width), len(rows) == height * width))
    return boxes


def test_random_erasing_puts_one_rectangle_of_noise_in_each_face():
    erasing = models.RandomErasing(rate=1.0, seed=2)
    # Pixels of 300 cannot be noise (0-255): every erased pixel is seen as changed.
    images = np.full((64, 48, 48, 1), 300.0, dtype="float32")
    changed = keras.ops.convert_to_numpy(erasing(images, training=True))
    for box, filled in erased_boxes(changed, images):
        top, left, height, width = box
        assert filled and 0.02 * 48 * 48 * 0.6 <= height * width <= 0.33 * 48 * 48 * 1.3
    erased = changed[changed != 300]
    assert erased.min() >= 0 and erased.max() <= 255 and erased.std() > 50  # noise, not a fill


def test_random_erasing_rate_and_inference():
    images = np.full((200, 48, 48, 1), 300.0, dtype="float32")
    erasing = models.RandomErasing(rate=0.3, seed=5)
    changed = keras.ops.convert_to_numpy(erasing(images, training=True))
    count = sum(box is not None for box, _ in erased_boxes(changed, images))
    assert 35 <= count <= 85  # 60 expected
    unchanged = erasing(images, training=False)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(unchanged), images)


def test_random_erasing_follows_the_affine_augmentation_only_when_asked():
    assert isinstance(models.build_augmentation(random_erasing=0.0), models.RandomAffine)
    both = models.build_augmentation(horizontal_flip=False, random_erasing=1.0, seed=1)
    assert [type(layer) for layer in both.layers] == [models.RandomAffine, models.RandomErasing]
    alone = models.build_augmentation(0, 0, 0, 0, horizontal_flip=False, random_erasing=0.5)
    assert isinstance(alone, models.RandomErasing)


def test_mixup_blends_each_face_and_its_label_in_the_same_proportion():
    # Face i is flat with value 10 * i and has class i: a blend names both partners.
    images = np.repeat(np.arange(7, dtype="float32") * 10, 48 * 48).reshape(7, 48, 48, 1)
    labels = np.eye(7, dtype="float32")
    mixup = models.MixUp(alpha=0.4, seed=3)
    shares = []
    for _ in range(4):
        mixed_images, mixed_labels = (
            keras.ops.convert_to_numpy(value) for value in mixup([images, labels], training=True)
        )
        np.testing.assert_allclose(mixed_labels.sum(axis=1), 1.0, atol=1e-6)
        for face, (image, label) in enumerate(zip(mixed_images, mixed_labels)):
            others = [c for c in range(7) if c != face and label[c] > 1e-6]
            assert len(others) <= 1  # one partner (or itself)
            partner = others[0] if others else face
            share = label[face]
            np.testing.assert_allclose(
                image, share * 10 * face + (1 - share) * 10 * partner, atol=1e-3
            )
            shares.append(share)
    assert np.std(shares) > 0.05  # drawn per face, not once for the batch
    unchanged = mixup([images, labels], training=False)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(unchanged[0]), images)


@pytest.mark.parametrize("alpha", [0.2, 2.0])
def test_symmetric_beta_draws_follow_the_beta_distribution(alpha):
    scipy_stats = pytest.importorskip("scipy.stats")
    draws = models.symmetric_beta((50_000,), alpha, keras.random.SeedGenerator(1))
    draws = np.sort(keras.ops.convert_to_numpy(draws).astype("float64"))
    # Within float32's reach of 0 and 1 (mixup's shares near the ends round to them).
    grid = np.linspace(0.001, 0.999, 999)
    empirical = np.searchsorted(draws, grid, side="right") / len(draws)
    exact = scipy_stats.beta(alpha, alpha).cdf(grid)
    assert np.abs(empirical - exact).max() < 0.01  # 1% Kolmogorov bound for 50,000: 0.0073


def test_mixup_draws_its_shares_without_keras_rejection_sampling(monkeypatch):
    # keras.random.beta/gamma retry in data-dependent loops on JAX, which stall a GPU.
    def refused(*args, **kwargs):
        raise AssertionError("a rejection-loop sampler was called")

    monkeypatch.setattr(keras.random, "beta", refused)
    monkeypatch.setattr(keras.random, "gamma", refused)
    images = np.zeros((4, 48, 48, 1), "float32")
    labels = np.eye(7, dtype="float32")[:4]
    mixed_images, mixed_labels = models.MixUp(alpha=0.2, seed=1)([images, labels], training=True)
    assert keras.ops.convert_to_numpy(mixed_labels).shape == (4, 7)


def test_training_model_wraps_the_network_and_shares_its_weights():
    model = models.build_dnn()
    training_model = models.with_augmentation(model, models.build_augmentation())
    assert training_model.get_layer("dnn") is model
    assert not any("random" in type(layer).__name__.lower() for layer in model.layers)


def test_faster_prelu_computes_keras_values_and_gradients():
    inputs = keras.Input((6, 6, 3))
    keras_model = keras.Model(inputs, keras.layers.PReLU()(inputs))
    faster_model = keras.Model.from_config(keras_model.get_config())
    keras_model.layers[1].alpha.assign(np.random.default_rng(2).uniform(0, 0.5, (6, 6, 3)))
    faster_model.set_weights(keras_model.get_weights())
    assert models.speed_up_prelu(faster_model) == 1
    assert type(faster_model.layers[1]) is keras.layers.PReLU  # saved as Keras' own
    # ...but computed by the slope's call, not the class's (Keras' own passed all below).
    assert "call" in vars(faster_model.layers[1]) and "call" not in vars(keras_model.layers[1])
    images = np.random.default_rng(0).normal(size=(4, 6, 6, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(faster_model(images)),
        keras.ops.convert_to_numpy(keras_model(images)),
        atol=1e-6,
    )
    if keras.config.backend() != "tensorflow":
        return  # gradients below use TensorFlow's tape
    import tensorflow as tf

    weights = tf.constant(np.random.default_rng(1).normal(size=(4, 6, 6, 3)), "float32")
    gradients = []
    for model in (keras_model, faster_model):
        tensor = tf.constant(images)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            loss = tf.reduce_sum(model(tensor) * weights)
        gradients.append(tape.gradient(loss, [tensor, model.layers[1].alpha]))
    for expected, got in zip(*gradients):
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-5)
