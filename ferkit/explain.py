"""What a trained model looks at: saliency maps (plain and SmoothGrad), filters drawn by
gradient ascent, and activation maps.

Everything works on raw 0-255 pixels (N, 48, 48, 1), the models' own input. Gradients come
from ``backend.value_and_gradient``: Keras has no backend-neutral gradient, so the fenced
backend module asks the backend's own autodiff.
"""

import keras
import numpy as np
from keras import layers, ops

from ferkit import backend, plots
from ferkit import config as configuration
from ferkit.data import IMAGE_SIZE, NUM_CLASSES
from ferkit.errors import FerError

PIXEL_RANGE = 255.0


def score_model(model):
    """The model up to its pre-softmax class scores (layer 'logits') where it has one.

    Saliency uses the score, not the probability: a probability's gradient also pushes the
    other classes down, and near 1.0 it vanishes.
    """
    try:
        logits = model.get_layer("logits")
    except ValueError:
        return model
    return keras.Model(model.input, logits.output, name=f"{model.name}_scores")


def class_gradients(scores, images, classes):
    """(score of ``classes[i]``, its gradient with respect to image i's pixels)."""
    choose = ops.convert_to_tensor(np.eye(scores.output_shape[-1], dtype=np.float32)[classes])

    def chosen_score(tensor):
        # float32: a mixed-precision model computes its scores in bfloat16.
        return ops.sum(ops.cast(scores(tensor, training=False), "float32") * choose, axis=-1)

    return backend.value_and_gradient(chosen_score, images)


def saliency(
    model, images, classes, samples=0, noise=configuration.SMOOTHGRAD_NOISE, seed=0, batch_size=64
):
    """Saliency maps (N, 48, 48, 1) in [0, 1]: |d score / d pixel|, each map scaled to its max.

    With ``samples`` > 0 this is SmoothGrad: the mean of the maps of ``samples`` copies with
    Gaussian noise of standard deviation ``noise`` x 255 added, which removes most of the
    pixel-level speckle of a single gradient.
    """
    images = np.asarray(images, dtype=np.float32)
    classes = np.asarray(classes, dtype=np.int64)
    if samples < 0 or noise < 0:
        raise FerError("--smoothgrad and --noise must not be negative")
    scores = score_model(model)
    rng = np.random.default_rng(seed)
    maps = np.zeros_like(images)
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        chosen = classes[start : start + batch_size]
        if samples == 0:
            maps[start : start + len(batch)] = np.abs(class_gradients(scores, batch, chosen)[1])
            continue
        for _ in range(samples):
            noisy = batch + rng.normal(0.0, noise * PIXEL_RANGE, batch.shape).astype(np.float32)
            maps[start : start + len(batch)] += np.abs(class_gradients(scores, noisy, chosen)[1])
    return normalise(maps)


def normalise(maps):
    """Each map divided by its own maximum; an all-zero map stays zero."""
    # (N, pixels) for each map's maximum, then (N, 1, 1[, 1]) to divide the (N, 48, 48[, 1]) maps.
    peaks = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, *([1] * (maps.ndim - 1)))
    return np.divide(maps, peaks, out=np.zeros_like(maps), where=peaks > 0)


def mask_low_saliency(images, maps, keep=0.25):
    """The images with all but their ``keep`` most salient pixels set to black."""
    if not 0 < keep <= 1:
        raise FerError(f"--keep must be in (0, 1], got {keep}")
    flat = maps.reshape(len(maps), -1)  # (N, pixels): one quantile per map
    thresholds = np.quantile(flat, 1 - keep, axis=1).reshape(-1, *([1] * (maps.ndim - 1)))
    return np.where(maps >= thresholds, images, 0).astype(images.dtype)


def pick_per_class(labels, predictions, count):
    """Positions of up to ``count`` correctly, then ``count`` wrongly classified images of
    each class in turn, in their order in the data."""
    picked = []
    for label in range(NUM_CLASSES):
        picked += list(np.flatnonzero((labels == label) & (predictions == label))[:count])
        picked += list(np.flatnonzero((labels == label) & (predictions != label))[:count])
    return [int(index) for index in picked]


def conv_layers(model):
    return [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]


def choose_conv_layer(model, which=None, source="model"):
    """A Conv2D layer by name, by position among the conv layers (0 first, -1 last), or by
    default the middle one: early layers only find edges, the last ones are hard to read."""
    names = [layer.name for layer in conv_layers(model)]
    return model.get_layer(plots.conv_layer_name(names, which, source))


def feature_model(model, layer):
    return keras.Model(model.input, layer.output, name=f"{model.name}_{layer.name}")


def check_filters(layer, filters):
    available = layer.output.shape[-1]
    bad = [index for index in filters if not 0 <= index < available]
    if bad:
        raise FerError(f"{layer.name} has filters 0-{available - 1}, not {bad[0]}")
    return list(filters)


def gradient_ascent(model, layer, filters, steps=50, step_size=3.0, seed=0):
    """Images (F, 48, 48, 1) that excite each filter: start from grey with a little noise and
    follow the gradient of the filter's mean activation. Returns (images, start values,
    final values).

    Each step is the gradient divided by its root mean square, so ``step_size`` is in pixel
    units whatever the layer's scale; the pixels stay within 0-255, inputs the model knows.
    """
    filters = check_filters(layer, filters)
    features = feature_model(model, layer)
    choose = ops.convert_to_tensor(np.eye(layer.output.shape[-1], dtype=np.float32)[filters])

    def mean_activation(tensor):
        activations = ops.cast(features(tensor, training=False), "float32")
        return ops.sum(ops.mean(activations, axis=(1, 2)) * choose, axis=-1)

    rng = np.random.default_rng(seed)
    images = np.clip(128 + rng.normal(0, 10, (len(filters), IMAGE_SIZE, IMAGE_SIZE, 1)), 0, 255)
    images = images.astype(np.float32)
    start = None
    for _ in range(steps):
        values, gradients = backend.value_and_gradient(mean_activation, images)
        start = values if start is None else start
        scale = np.sqrt(np.mean(gradients**2, axis=(1, 2, 3), keepdims=True)) + 1e-12
        images = np.clip(images + step_size * gradients / scale, 0, 255).astype(np.float32)
    final = ops.convert_to_numpy(mean_activation(ops.convert_to_tensor(images)))
    if start is None:
        start = final
    return images, np.asarray(start), np.asarray(final)


def activation_maps(model, layer, image, filters):
    """The chosen filters' activation maps (F, H, W) for one image (48, 48, 1)."""
    filters = check_filters(layer, filters)
    batch = np.asarray(image, dtype=np.float32)[None]
    activations = ops.convert_to_numpy(feature_model(model, layer)(batch, training=False))
    return np.moveaxis(activations[0].astype(np.float32)[..., filters], -1, 0)
