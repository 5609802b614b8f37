"""The course report's two networks, layer for layer, and the training-time augmentation.

Both builders return an uncompiled Functional ``keras.Model`` that takes raw uint8-range
pixels (N, 48, 48, 1) and outputs seven class probabilities. Normalisation is the model's
first layer (``Rescaling(1/255)``, no parameters), so a saved model can never be fed
un-normalised pixels. Parameter counts (tests assert them):

- CNN: 3,532,743 total, 3,529,927 trainable, 2,816 non-trainable;
- DNN: 3,533,188 total, 3,524,914 trainable, 8,274 non-trainable.
"""

import math
import random

import keras
from keras import layers

from ferkit.config import DEFAULTS, NETWORK_DEFAULTS
from ferkit.data import IMAGE_SIZE, NUM_CLASSES
from ferkit.runs import TRAINING_SUFFIX

INPUT_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)


def _conv_bn_prelu(tensor, filters, name):
    tensor = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv")(tensor)
    tensor = layers.BatchNormalization(name=f"{name}_bn")(tensor)
    # One slope per activation (shared_axes=None): that is where the large PReLU counts come from.
    return layers.PReLU(name=f"{name}_prelu")(tensor)


def _dropout(rate, name):
    """Dropout with a seed of its own. Unseeded, Keras' PyTorch backend draws the masks from
    torch's global generator instead of the layer's seed state, which training sets from
    (seed, epoch, layer) at every epoch (``training._reseed``): a resumed run then no longer
    ended as the uninterrupted one. With a seed every backend uses that state. The seed is
    drawn as Keras draws an unseeded layer's (one draw of Python's generator), so the weight
    initialisers after it draw what they drew before: a seed trains the same network as
    before on TensorFlow and JAX. A rate of 0 has no generator, and Keras draws none."""
    seed = random.randint(1, int(1e9)) if rate > 0 else None
    return layers.Dropout(rate, seed=seed, name=name)


def _dense_bn_prelu(tensor, units, dropout, name):
    tensor = layers.Dense(units, name=f"{name}_dense")(tensor)
    tensor = layers.BatchNormalization(name=f"{name}_bn")(tensor)
    tensor = layers.PReLU(name=f"{name}_prelu")(tensor)
    return _dropout(dropout, f"{name}_dropout")(tensor)


def _inputs_and_rescaled():
    inputs = keras.Input(shape=INPUT_SHAPE, name="pixels")
    return inputs, layers.Rescaling(1.0 / 255, name="rescale")(inputs)


def _classifier(tensor):
    tensor = layers.Dense(NUM_CLASSES, name="logits")(tensor)
    # float32 softmax keeps the probabilities exact under mixed precision.
    return layers.Activation("softmax", dtype="float32", name="probabilities")(tensor)


def build_cnn(
    dropout_conv=NETWORK_DEFAULTS["cnn"]["dropout_conv"],
    dropout_dense=NETWORK_DEFAULTS["cnn"]["dropout_dense"],
):
    """The VGG-style PReLU/BatchNorm CNN (3,532,743 parameters)."""
    inputs, tensor = _inputs_and_rescaled()
    tensor = _conv_bn_prelu(tensor, 64, "block1a")
    tensor = _conv_bn_prelu(tensor, 64, "block1b")
    tensor = layers.MaxPooling2D(2, name="block1_pool")(tensor)  # (24, 24, 64)
    tensor = _dropout(dropout_conv, "block1_dropout")(tensor)
    tensor = _conv_bn_prelu(tensor, 128, "block2a")
    tensor = _conv_bn_prelu(tensor, 128, "block2b")
    tensor = layers.MaxPooling2D(2, name="block2_pool")(tensor)  # (12, 12, 128)
    tensor = _dropout(dropout_conv, "block2_dropout")(tensor)
    tensor = _conv_bn_prelu(tensor, 128, "block3a")
    tensor = _conv_bn_prelu(tensor, 128, "block3b")
    # The report drops out before pooling in the last block; kept as it was.
    tensor = _dropout(dropout_conv, "block3_dropout")(tensor)
    tensor = layers.MaxPooling2D(2, name="block3_pool")(tensor)  # (6, 6, 128)
    tensor = layers.Flatten(name="flatten")(tensor)  # (4608,)
    tensor = _dense_bn_prelu(tensor, 512, dropout_dense, "fc1")
    tensor = _dense_bn_prelu(tensor, 256, dropout_dense, "fc2")
    return keras.Model(inputs, _classifier(tensor), name="cnn")


def build_dnn(dropout_dense=NETWORK_DEFAULTS["dnn"]["dropout_dense"]):
    """The parameter-matched fully connected network (3,533,188 parameters)."""
    inputs, tensor = _inputs_and_rescaled()
    tensor = layers.Flatten(name="flatten")(tensor)  # (2304,)
    for index in range(6):
        tensor = _dense_bn_prelu(tensor, 600, dropout_dense, f"fc{index + 1}")
    tensor = _dense_bn_prelu(tensor, 537, dropout_dense, "fc7")
    return keras.Model(inputs, _classifier(tensor), name="dnn")


BUILDERS = {"cnn": build_cnn, "dnn": build_dnn}


def build_augmentation(
    rotation_range=DEFAULTS["rotation_range"],
    width_shift_range=DEFAULTS["width_shift_range"],
    height_shift_range=DEFAULTS["height_shift_range"],
    zoom_range=DEFAULTS["zoom_range"],
    horizontal_flip=DEFAULTS["horizontal_flip"],
    random_erasing=DEFAULTS["random_erasing"],
    seed=None,
):
    """ImageDataGenerator's augmentation as one Keras layer, active only in training.

    Arguments keep ImageDataGenerator's meaning and units: rotation in degrees, shifts as a
    fraction of the size (or pixels when >= 1), zoom as ``[1 - z, 1 + z]`` drawn
    independently for height and width, edges filled with the nearest pixel. Returns a
    ``RandomAffine`` layer, or None when every transform is off. With ``random_erasing``
    (a probability) a ``RandomErasing`` layer follows it, the two as one Sequential layer.
    """
    size = float(IMAGE_SIZE)
    height_shift = height_shift_range / size if height_shift_range >= 1 else height_shift_range
    width_shift = width_shift_range / size if width_shift_range >= 1 else width_shift_range
    stages = []
    if horizontal_flip or rotation_range or height_shift or width_shift or zoom_range:
        affine = RandomAffine(
            rotation_range=rotation_range,
            width_shift=width_shift,
            height_shift=height_shift,
            zoom_range=zoom_range,
            horizontal_flip=horizontal_flip,
            seed=seed,
            name="augmentation" if not random_erasing else "affine",
        )
        stages.append(affine)
    if random_erasing:
        # Its own seed stream, so erasing does not change which transforms are drawn.
        erasing_seed = None if seed is None else seed + 7919
        stages.append(RandomErasing(random_erasing, seed=erasing_seed, name="erasing"))
    if len(stages) < 2:
        return stages[0] if stages else None
    return keras.Sequential(stages, name="augmentation")


def affine_transforms(angle, shift_x, shift_y, zoom_x, zoom_y, flip, height, width):
    """(N, 8) projective transforms for ``keras.ops.image.affine_transform``, one per image.

    Each maps an output pixel (x = column, y = row) to where it is read in the input, as
    ImageDataGenerator.apply_transform does: rotation by ``angle`` degrees after a shift of
    (shift_x, shift_y) pixels after a zoom of (zoom_x, zoom_y) about the centre, and the
    result mirrored left-right where ``flip`` is 1 (tests compare the two pixel for pixel):

        input = centre + R(angle) @ Z @ F @ (output - centre) + R(angle) @ shift
    """
    ops = keras.ops
    radians = angle * (math.pi / 180.0)
    cos, sin = ops.cos(radians), ops.sin(radians)
    mirror = 1.0 - 2.0 * flip  # -1 mirrors x about the centre
    centre_x, centre_y = (width - 1) / 2.0, (height - 1) / 2.0
    a0, a1 = cos * zoom_x * mirror, -sin * zoom_y
    b0, b1 = sin * zoom_x * mirror, cos * zoom_y
    a2 = centre_x - a0 * centre_x - a1 * centre_y + cos * shift_x - sin * shift_y
    b2 = centre_y - b0 * centre_x - b1 * centre_y + sin * shift_x + cos * shift_y
    zeros = ops.zeros_like(a0)
    return ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)  # (N, 8)


@keras.saving.register_keras_serializable(package="ferkit")
class RandomAffine(layers.Layer):
    """Random flip, rotation, shift and zoom composed into one affine map per image.

    Keras' RandomFlip, RandomRotation, RandomTranslation and RandomZoom resample the batch
    once each; composing them first resamples it once, which is what ImageDataGenerator
    did too (one interpolation, so less blur) and is 3x faster (bench/RESULTS.md). Unlike
    Keras' four layers it does not switch XLA off for the whole training step on JAX.
    Runs in float32 under mixed precision: pixels are still 0-255 here.
    """

    def __init__(
        self,
        rotation_range=10.0,
        width_shift=0.1,
        height_shift=0.1,
        zoom_range=0.1,
        horizontal_flip=True,
        seed=None,
        **kwargs,
    ):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.rotation_range = float(rotation_range)
        self.width_shift = float(width_shift)
        self.height_shift = float(height_shift)
        self.zoom_range = float(zoom_range)
        self.horizontal_flip = bool(horizontal_flip)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        # TensorFlow's XLA has no kernel for its image transform; JAX's is plain jnp code,
        # so a JAX training step (on a GPU) stays one compiled function.
        self.supports_jit = keras.backend.backend() != "tensorflow"

    def call(self, images, training=True):
        if not training:
            return images
        shape = keras.ops.shape(images)  # (N, height, width, channels)
        height, width = images.shape[1], images.shape[2]

        def uniform(limit):
            return keras.random.uniform(
                (shape[0],), -limit, limit, dtype="float32", seed=self.seed_generator
            )

        if self.horizontal_flip:
            flip = keras.ops.cast(uniform(1.0) < 0, "float32")  # half of the images
        else:
            flip = keras.ops.zeros((shape[0],), dtype="float32")
        transforms = affine_transforms(
            angle=uniform(self.rotation_range),
            shift_x=uniform(self.width_shift) * width,
            shift_y=uniform(self.height_shift) * height,
            zoom_x=1.0 + uniform(self.zoom_range),
            zoom_y=1.0 + uniform(self.zoom_range),
            flip=flip,
            height=height,
            width=width,
        )
        return keras.ops.image.affine_transform(
            images, transforms, interpolation="bilinear", fill_mode="nearest"
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "rotation_range": self.rotation_range,
            "width_shift": self.width_shift,
            "height_shift": self.height_shift,
            "zoom_range": self.zoom_range,
            "horizontal_flip": self.horizontal_flip,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="ferkit")
class RandomErasing(layers.Layer):
    """Random erasing (Zhong et al., 2020): with probability ``rate`` a face gets a rectangle
    of uniform noise in 0-255, covering ``area`` of it (a fraction, drawn uniformly) with a
    height-to-width ``aspect`` drawn log-uniformly: torchvision's ranges.

    Hiding part of a face makes the network use all of it (mouth, eyes and brows) rather
    than the one region that is most telling in training. A rectangle taller or wider than
    the face is cut to it. Runs in float32 on 0-255 pixels, on the device, like RandomAffine.
    """

    def __init__(self, rate=0.5, area=(0.02, 0.33), aspect=(0.3, 3.3), seed=None, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.area = tuple(float(value) for value in area)
        self.aspect = tuple(float(value) for value in aspect)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training or self.rate == 0:
            return images
        ops = keras.ops
        shape = ops.shape(images)  # (N, height, width, channels)
        height, width = images.shape[1], images.shape[2]

        def uniform(low, high, size=None):
            size = (shape[0],) if size is None else size
            return keras.random.uniform(size, low, high, dtype="float32", seed=self.seed_generator)

        erased = uniform(0.0, 1.0) < self.rate  # (N,)
        area = uniform(*self.area) * (height * width)
        aspect = ops.exp(uniform(math.log(self.aspect[0]), math.log(self.aspect[1])))
        box_height = ops.clip(ops.round(ops.sqrt(area * aspect)), 1, height)
        box_width = ops.clip(ops.round(ops.sqrt(area / aspect)), 1, width)
        top = ops.floor(uniform(0.0, 1.0) * (height - box_height + 1))
        left = ops.floor(uniform(0.0, 1.0) * (width - box_width + 1))
        rows = ops.arange(height, dtype="float32")[None, :, None]  # (1, height, 1)
        columns = ops.arange(width, dtype="float32")[None, None, :]  # (1, 1, width)
        inside_rows = (rows >= top[:, None, None]) & (rows < (top + box_height)[:, None, None])
        inside_columns = (columns >= left[:, None, None]) & (
            columns < (left + box_width)[:, None, None]
        )
        mask = inside_rows & inside_columns & erased[:, None, None]  # (N, height, width)
        noise = uniform(0.0, 255.0, shape)
        return ops.where(mask[..., None], noise, images)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "rate": self.rate,
            "area": list(self.area),
            "aspect": list(self.aspect),
            "seed": self.seed,
        }


def symmetric_beta(shape, alpha, seed):
    """Draws from Beta(alpha, alpha) with no loop in the graph: G1 / (G1 + G2) for two
    Gamma(alpha) draws, each by Marsaglia and Tsang's method with all its tries made at once.

    ``keras.random.beta`` rejects and retries in a while loop on JAX (seven in its compiled
    form), whose turns depend on the draws, so a GPU reads each turn's condition back to the
    host; the mixup runs on an H200 took 3.8 times as long per epoch as those without
    (bench/RESULTS.md).
    """
    log_gammas = _log_gamma((2, *shape), float(alpha), seed)  # G1 and G2 in one draw
    return keras.ops.sigmoid(log_gammas[0] - log_gammas[1])  # = G1 / (G1 + G2)


# Each Marsaglia-Tsang try is kept with probability above 0.95 for a shape of 1 or more, so
# all eight rejected happens less than once in 10**10 draws; such a draw takes d (its v = 1),
# close to the median.
GAMMA_TRIES = 8


def _log_gamma(shape, alpha, seed):
    """log of a Gamma(alpha) draw, in log space so that small alphas do not underflow."""
    ops = keras.ops
    # Below a shape of 1, draw Gamma(alpha + 1) and multiply by U ** (1 / alpha).
    boosted = alpha + 1 if alpha < 1 else alpha
    d = boosted - 1 / 3
    c = 1 / math.sqrt(9 * d)
    tries = (*shape, GAMMA_TRIES)
    normal = keras.random.normal(tries, seed=seed)
    # 1 - U lies in (0, 1], so its log is finite.
    log_uniform = ops.log(1 - keras.random.uniform(tries, seed=seed))
    v = (1 + c * normal) ** 3
    log_v = ops.log(ops.maximum(v, 1e-30))
    kept = (v > 0) & (log_uniform < 0.5 * normal**2 + d - d * v + d * log_v)
    first = ops.argmax(ops.cast(kept, "int32"), axis=-1)[..., None]  # (..., 1)
    log_v = ops.squeeze(ops.take_along_axis(log_v, first, axis=-1), -1)
    log_v = ops.where(ops.any(kept, axis=-1), log_v, 0.0)
    log_gamma = math.log(d) + log_v
    if alpha < 1:
        log_gamma += ops.log(1 - keras.random.uniform(shape, seed=seed)) / alpha
    return log_gamma


@keras.saving.register_keras_serializable(package="ferkit")
class MixUp(layers.Layer):
    """mixup (Zhang et al., 2018): each face blended with another face of its batch, and its
    one-hot label with that face's label in the same proportion, drawn from Beta(alpha, alpha)
    per face. Takes and returns ``[images, labels]``; passes both through outside training.
    """

    def __init__(self, alpha=0.2, seed=None, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.alpha = float(alpha)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=True):
        images, labels = inputs
        if not training or self.alpha == 0:
            return images, labels
        ops = keras.ops
        count = ops.shape(images)[0]
        share = symmetric_beta((count,), self.alpha, self.seed_generator)
        partner = keras.random.shuffle(ops.arange(count), seed=self.seed_generator)
        image_share = ops.reshape(share, (-1, 1, 1, 1))  # (N, 1, 1, 1) against (N, 48, 48, 1)
        mixed_images = image_share * images + (1 - image_share) * ops.take(images, partner, 0)
        label_share = share[:, None]  # (N, 1) against (N, 7)
        mixed_labels = label_share * labels + (1 - label_share) * ops.take(labels, partner, 0)
        return mixed_images, mixed_labels

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "seed": self.seed}


@keras.saving.register_keras_serializable(package="ferkit")
class MixedTargetCrossentropy(keras.losses.Loss):
    """Cross-entropy for a model trained with ``with_mixup``: its output (N, 14) holds the
    probabilities and then the mixed labels it was trained towards; ``y_true`` (the labels
    before mixing) is not needed."""

    def __init__(self, label_smoothing=0.0, name="mixed_target_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        probabilities, targets = split_mixup_output(y_pred)
        return keras.losses.categorical_crossentropy(
            keras.ops.stop_gradient(targets), probabilities, label_smoothing=self.label_smoothing
        )

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


@keras.saving.register_keras_serializable(package="ferkit")
def own_label_accuracy(y_true, y_pred):
    """Accuracy of a ``with_mixup`` model against each face's own label (exact outside
    training, where nothing is mixed)."""
    probabilities, _ = split_mixup_output(y_pred)
    hits = keras.ops.argmax(probabilities, axis=-1) == keras.ops.argmax(y_true, axis=-1)
    return keras.ops.cast(hits, "float32")


def split_mixup_output(output):
    classes = output.shape[-1] // 2
    return output[:, :classes], output[:, classes:]


def with_mixup(model, augmentation, alpha, seed=None):
    """The model that is trained with mixup: inputs ``[pixels, one-hot labels]``, the
    augmentation, then MixUp, then ``model``; its output is the probabilities followed by the
    mixed labels, for ``MixedTargetCrossentropy``.

    Augmentation runs inside the model, which otherwise never sees the labels; taking them as
    a second input keeps the mixing on the device, in one graph, on every backend.
    """
    pixels = keras.Input(shape=INPUT_SHAPE, name="pixels")
    labels = keras.Input(shape=(model.output_shape[-1],), name="labels")
    images = augmentation(pixels) if augmentation is not None else pixels
    mixed_images, mixed_labels = MixUp(alpha, seed=seed, name="mixup")([images, labels])
    probabilities = model(mixed_images)
    output = layers.Concatenate(dtype="float32", name="with_targets")([probabilities, mixed_labels])
    return keras.Model([pixels, labels], output, name=f"{model.name}{TRAINING_SUFFIX}")


CUSTOM_OBJECTS = {
    "RandomAffine": RandomAffine,
    "RandomErasing": RandomErasing,
    "MixUp": MixUp,
    "MixedTargetCrossentropy": MixedTargetCrossentropy,
    "own_label_accuracy": own_label_accuracy,
}


def inner_model(training_model):
    """The model that is saved inside a training model (``with_augmentation``,
    ``with_mixup``), as a checkpoint holds one; any other model as it is."""
    if not training_model.name.endswith(TRAINING_SUFFIX):
        return training_model
    try:
        return training_model.get_layer(training_model.name.removesuffix(TRAINING_SUFFIX))
    except ValueError:
        return training_model


def with_augmentation(model, augmentation):
    """The model that is trained: augmentation in front of ``model``, sharing its weights.

    Only ``model`` is saved, so a saved model never contains the augmentation.
    """
    if augmentation is None:
        return model
    inputs = keras.Input(shape=INPUT_SHAPE, name="pixels")
    return keras.Model(inputs, model(augmentation(inputs)), name=f"{model.name}{TRAINING_SUFFIX}")


def speed_up_prelu(model):
    """Compute every PReLU in ``model`` as ``x * where(x > 0, 1, alpha)``.

    Keras computes ``relu(x) - alpha * relu(-x)``: five passes over the activations forwards
    and more backwards. Multiplying by the slope is the same function with the same
    gradients in three, 1.65x faster forwards and backwards on a (128, 48, 48, 64) bf16 map
    on this CPU, and PReLU was half of the CNN's training step once batch normalisation was
    fused (bench/RESULTS.md). The layers stay Keras' own, so saved models are unchanged.
    Returns the number of layers changed.
    """
    changed = 0
    for layer in all_layers(model):
        if isinstance(layer, layers.PReLU):
            layer.call = _slope_call(layer)
            changed += 1
    return changed


def all_layers(model):
    """Every layer of ``model``, and of the models nested in it."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from all_layers(layer)


def _slope_call(layer):
    def call(inputs):
        alpha = keras.ops.cast(layer.alpha, inputs.dtype)
        return inputs * keras.ops.where(inputs > 0, keras.ops.ones_like(alpha), alpha)

    return call


def count_parameters(model):
    """(total, trainable, non-trainable) parameter counts."""
    trainable = sum(int(keras.ops.size(weight)) for weight in model.trainable_weights)
    non_trainable = sum(int(keras.ops.size(weight)) for weight in model.non_trainable_weights)
    return trainable + non_trainable, trainable, non_trainable
