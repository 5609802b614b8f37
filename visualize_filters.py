"""Show what a CNN's filters respond to: images grown by gradient ascent to maximise each
filter's mean activation, or (--image) the filters' activation maps for one face.

    python visualize_filters.py models/cnn_quick_seed1                  # middle conv layer
    python visualize_filters.py models/cnn_quick_seed1 --layer block3b_conv --filters 25
    python visualize_filters.py models/cnn_quick_seed1 --layer 0 --steps 100 --step-size 2
    python visualize_filters.py models/cnn_quick_seed1 --image 12       # a validation face
    python visualize_filters.py models/cnn_a --data data/test.csv --image 3 --out maps.pdf

--layer takes a conv layer's name or its position among the conv layers (0 first, -1 last).
The figure goes to <run>/figures/filters_<layer>.png (or activations_<layer>_<image>.png,
with --data's file name, usage and blur after <image>; a checkpoint's epoch-NNNN at the end).
"""

import numpy as np

from ferkit import cli, plots, runs
from ferkit import config as configuration
from ferkit.errors import FerError


def main():
    parser = cli.ArgumentParser(description=__doc__, formatter_class=cli.RawHelp)
    parser.add_argument("model", metavar="RUN", help="run folder or .keras file")
    parser.add_argument("--layer", help="conv layer name or position (default: the middle one)")
    ascent = configuration.FILTER_ASCENT
    parser.add_argument(
        "--filters", type=int, default=ascent["filters"], metavar="N", help="first N (%(default)s)"
    )
    # Left None when not given: they mean nothing with --image (plots.check_ascent_options).
    parser.add_argument("--steps", type=int, help=f"ascent steps ({ascent['steps']})")
    parser.add_argument("--step-size", type=float, help=f"RMS pixels ({ascent['step_size']})")
    parser.add_argument("--seed", type=int, help="of the starting noise (0)")
    parser.add_argument("--image", type=int, metavar="I", help="activation maps of this face")
    plots.add_data_arguments(parser)
    plots.add_out_arguments(parser)
    args = parser.parse_args()
    plots.check_ascent_options(args)
    runs.checked_model_path(args.model)
    saved = runs.saved_layers(args.model)
    if saved is not None:  # a .keras file: its layers are known before Keras starts
        names = [name for kind, name in saved if kind == "Conv2D"]
        plots.conv_layer_name(names, args.layer, runs.model_path(args.model))
    # A bad or existing --out is refused now, not after the work.
    plots.figure_path(
        args.model, "filters", args.out, args.force, args.data, args.labels, run_data=args.run_data
    )
    plots.check_face_options(args)
    if args.image is not None:
        faces, _, described = plots.figure_images(args.model, args, labelled_only=False)
        if not 0 <= args.image < len(faces):
            raise FerError(f"--image {args.image}: {described} has images 0-{len(faces) - 1}")
    from ferkit import explain  # here, not at the top: it starts Keras (seconds)

    model = runs.load_model(args.model, unsafe=args.unsafe)
    layer = explain.choose_conv_layer(model, args.layer, runs.model_path(args.model))
    filters = list(range(min(args.filters, layer.output.shape[-1])))
    run = plots.run_name(args.model)
    if args.image is None:
        images, start, final = explain.gradient_ascent(
            model, layer, filters, args.steps, args.step_size, args.seed
        )
        panels = [
            plots.Panel(image, f"{number}: {value:.3g}", vmin=None, vmax=None)
            for number, image, value in zip(filters, images, final)
        ]
        title = (
            f"{run}: {layer.name}, inputs maximising each filter's mean activation\n"
            f"({args.steps} steps of {args.step_size:g} from grey noise; title: filter: activation)"
        )
        name = f"filters_{layer.name}"
        print(
            f"{layer.name}: mean activation of filters 0-{filters[-1]} went from "
            f"{np.mean(start):.4g} (grey noise) to {np.mean(final):.4g}"
        )
    else:
        maps = explain.activation_maps(model, layer, faces[args.image], filters)
        panels = [plots.Panel(faces[args.image], "face")] + [
            plots.Panel(activation, f"{number}: {activation.mean():.3g}", "viridis", None, None)
            for number, activation in zip(filters, maps)
        ]
        title = f"{run}: {layer.name} activation maps of face {args.image} of {described}"
        name = f"activations_{layer.name}_{args.image}{plots.data_suffix(args)}"
    path = plots.figure_path(
        args.model, name, args.out, args.force, args.data, args.labels, run_data=args.run_data
    )
    plots.save(plots.grid_figure(plots.square_rows(panels), title), path)
    print(f"wrote {path}")


if __name__ == "__main__":
    cli.run(main)
