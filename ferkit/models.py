"""The course report's two networks, layer for layer, and the training-time augmentation.

Both builders return an uncompiled Functional ``keras.Model`` that takes raw uint8-range
pixels (N, 48, 48, 1) and outputs seven class probabilities. Normalisation is the model's
first layer (``Rescaling(1/255)``, no parameters), so a saved model can never be fed
un-normalised pixels. Parameter counts (tests assert them):

- CNN: 3,532,743 total, 3,529,927 trainable, 2,816 non-trainable;
- DNN: 3,533,188 total, 3,524,914 trainable, 8,274 non-trainable.
"""

import keras
from keras import layers

from ferkit.data import IMAGE_SIZE, NUM_CLASSES

INPUT_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)


def _conv_bn_prelu(tensor, filters, name):
    tensor = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv")(tensor)
    tensor = layers.BatchNormalization(name=f"{name}_bn")(tensor)
    # One slope per activation (shared_axes=None): that is where the large PReLU counts come from.
    return layers.PReLU(name=f"{name}_prelu")(tensor)


def _dense_bn_prelu(tensor, units, dropout, name):
    tensor = layers.Dense(units, name=f"{name}_dense")(tensor)
    tensor = layers.BatchNormalization(name=f"{name}_bn")(tensor)
    tensor = layers.PReLU(name=f"{name}_prelu")(tensor)
    return layers.Dropout(dropout, name=f"{name}_dropout")(tensor)


def _inputs_and_rescaled():
    inputs = keras.Input(shape=INPUT_SHAPE, name="pixels")
    return inputs, layers.Rescaling(1.0 / 255, name="rescale")(inputs)


def _classifier(tensor):
    tensor = layers.Dense(NUM_CLASSES, name="logits")(tensor)
    # float32 softmax keeps the probabilities exact under mixed precision.
    return layers.Activation("softmax", dtype="float32", name="probabilities")(tensor)


def build_cnn(dropout_conv=0.25, dropout_dense=0.5):
    """The VGG-style PReLU/BatchNorm CNN (3,532,743 parameters)."""
    inputs, tensor = _inputs_and_rescaled()
    tensor = _conv_bn_prelu(tensor, 64, "block1a")
    tensor = _conv_bn_prelu(tensor, 64, "block1b")
    tensor = layers.MaxPooling2D(2, name="block1_pool")(tensor)  # (24, 24, 64)
    tensor = layers.Dropout(dropout_conv, name="block1_dropout")(tensor)
    tensor = _conv_bn_prelu(tensor, 128, "block2a")
    tensor = _conv_bn_prelu(tensor, 128, "block2b")
    tensor = layers.MaxPooling2D(2, name="block2_pool")(tensor)  # (12, 12, 128)
    tensor = layers.Dropout(dropout_conv, name="block2_dropout")(tensor)
    tensor = _conv_bn_prelu(tensor, 128, "block3a")
    tensor = _conv_bn_prelu(tensor, 128, "block3b")
    # The report drops out before pooling in the last block; kept as it was.
    tensor = layers.Dropout(dropout_conv, name="block3_dropout")(tensor)
    tensor = layers.MaxPooling2D(2, name="block3_pool")(tensor)  # (6, 6, 128)
    tensor = layers.Flatten(name="flatten")(tensor)  # (4608,)
    tensor = _dense_bn_prelu(tensor, 512, dropout_dense, "fc1")
    tensor = _dense_bn_prelu(tensor, 256, dropout_dense, "fc2")
    return keras.Model(inputs, _classifier(tensor), name="cnn")


def build_dnn(dropout_dense=0.3):
    """The parameter-matched fully connected network (3,533,188 parameters)."""
    inputs, tensor = _inputs_and_rescaled()
    tensor = layers.Flatten(name="flatten")(tensor)  # (2304,)
    for index in range(6):
        tensor = _dense_bn_prelu(tensor, 600, dropout_dense, f"fc{index + 1}")
    tensor = _dense_bn_prelu(tensor, 537, dropout_dense, "fc7")
    return keras.Model(inputs, _classifier(tensor), name="dnn")


BUILDERS = {"cnn": build_cnn, "dnn": build_dnn}


def build_augmentation(
    rotation_range=10.0,
    width_shift_range=0.1,
    height_shift_range=0.1,
    zoom_range=0.1,
    horizontal_flip=True,
    seed=None,
):
    """ImageDataGenerator's augmentation as Keras layers, active only in training.

    Arguments keep ImageDataGenerator's meaning and units: rotation in degrees, shifts as a
    fraction of the size (or pixels when >= 1), zoom as ``[1 - z, 1 + z]`` drawn
    independently for height and width, edges filled with the nearest pixel. Returns a
    Sequential model, or None when every transform is off.
    """
    size = float(IMAGE_SIZE)
    height_shift = height_shift_range / size if height_shift_range >= 1 else height_shift_range
    width_shift = width_shift_range / size if width_shift_range >= 1 else width_shift_range
    steps = []
    if horizontal_flip:
        steps.append(layers.RandomFlip("horizontal", seed=seed, name="flip"))
    if rotation_range:
        # Keras takes the angle as a fraction of a full turn.
        steps.append(
            layers.RandomRotation(
                rotation_range / 360.0, fill_mode="nearest", seed=seed, name="rotation"
            )
        )
    if height_shift or width_shift:
        steps.append(
            layers.RandomTranslation(
                height_shift, width_shift, fill_mode="nearest", seed=seed, name="shift"
            )
        )
    if zoom_range:
        steps.append(
            layers.RandomZoom(zoom_range, zoom_range, fill_mode="nearest", seed=seed, name="zoom")
        )
    if not steps:
        return None
    return keras.Sequential(steps, name="augmentation")


def with_augmentation(model, augmentation):
    """The model that is trained: augmentation in front of ``model``, sharing its weights.

    Only ``model`` is saved, so a saved model never contains the augmentation.
    """
    if augmentation is None:
        return model
    inputs = keras.Input(shape=INPUT_SHAPE, name="pixels")
    return keras.Model(inputs, model(augmentation(inputs)), name=f"{model.name}_training")


def count_parameters(model):
    """(total, trainable, non-trainable) parameter counts."""
    trainable = sum(int(keras.ops.size(weight)) for weight in model.trainable_weights)
    non_trainable = sum(int(keras.ops.size(weight)) for weight in model.non_trainable_weights)
    return trainable + non_trainable, trainable, non_trainable
