"""Where the network looks, stage by stage: captum's Grad-CAM (Selvaraju et al. 2017) at the last
layer of every spatial resolution, as the ResNet report's fig. 13 shows it."""

from collections import Counter

import matplotlib.pyplot as plt
import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

from cnnlab.callbacks.confusion import class_names
from cnnlab.callbacks.publish import Observer, hooked, publish, show_image
from cnnlab.options import Images


def stages(model: nn.Module, net: nn.Module, images: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of each stage of ``net`` (inside ``model``): the last module to output a
    given spatial size (over 1x1) in a forward pass of ``images``, but not a container passing on
    its last layer's tensor, nor a module called twice (its gradient would be ambiguous)."""
    done: list[tuple[str, nn.Module, tuple[int, int]]] = []
    calls: Counter[str] = Counter()
    last = [None]

    def recorder(name: str):
        def hook(module, inputs, output) -> None:
            calls[name] += 1
            if isinstance(output, torch.Tensor) and output.ndim == 4 and output is not last[0]:
                done.append((name, module, tuple(output.shape[2:])))
            last[0] = output

        return hook

    with hooked(model, [(m, recorder(n)) for n, m in net.named_modules() if n]):
        model(images[:1])
    by_size: dict[tuple[int, int], tuple[str, nn.Module]] = {}
    for name, module, size in done:
        if calls[name] == 1 and min(size) > 1:
            by_size[size] = (name, module)  # first seen sizes first, each its last module
    return list(by_size.values())


def grad_cam(
    model: nn.Module, net: nn.Module, images: torch.Tensor
) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """Grad-CAM of each stage of ``net`` for the class ``model`` predicts for each image: the stage
    labels, the maps (images, stages, H, W) at the images' size (bilinear), non-negative (the ReLU
    of the weighted sum, as the paper), and the predicted classes."""
    inplace = [m for m in model.modules() if getattr(m, "inplace", None) is True]
    for m in inplace:
        m.inplace = False  # an in-place ReLU would overwrite the output whose gradient is read
    try:
        with torch.inference_mode(False), hooked(model, [], grad=True):
            x = images.clone()  # a normal tensor, also from a test batch made in inference mode
            predicted = model(x).argmax(1)
            maps, labels = [], []
            for name, module in stages(model, net, x):
                cam = LayerGradCam(model, module).attribute(x, predicted, relu_attributions=True)
                size = cam.shape[-2:]
                maps.append(LayerAttribution.interpolate(cam, x.shape[-2:], "bilinear")[:, 0])
                labels.append(f"{name} ({type(module).__name__}, {size[0]}x{size[1]})")
    finally:
        for m in inplace:
            m.inplace = True
    cams = torch.stack(maps, 1).detach().clamp(min=0) if maps else x.new_zeros(len(x), 0)
    return labels, cams, predicted.detach()


class GradCamGrid(Observer):
    """``figures/grad_cam.png`` after testing: the first ``images`` test images (rows) and the
    Grad-CAM of the predicted class at every stage, each map scaled to its own maximum."""

    def __init__(self, images: Images = 8) -> None:
        self.images = images
        self.batch: tuple[torch.Tensor, torch.Tensor] | None = None

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if batch_idx == 0 and dataloader_idx == 0:
            self.batch = (batch[0][: self.images].clone(), batch[1][: self.images].clone())

    def on_test_end(self, trainer, pl_module) -> None:
        if self.batch is None or not trainer.is_global_zero:
            return
        images, labels = self.batch
        self.batch = None
        with torch.inference_mode(False):
            stage_names, cams, predicted = grad_cam(pl_module, pl_module.net, images.clone())
        names = class_names(pl_module, pl_module.num_classes)
        tensors = (t.cpu() for t in (images, labels, predicted, cams))
        publish(trainer, grad_cam_figure(*tensors, stage_names, names), "grad_cam")


def grad_cam_figure(images, labels, predicted, cams, stage_names, names) -> plt.Figure:
    """Rows of [image, map of each stage over the image]; images in [0, 1] (N, C, H, W)."""
    n, columns = len(images), 1 + len(stage_names)
    fig, axes = plt.subplots(n, columns, figsize=(2 * columns, 2.1 * n), squeeze=False)
    for i in range(n):
        wrong = predicted[i] != labels[i]
        show_image(axes[i, 0], images[i])
        title = f"true: {names[labels[i]]}\npredicted: {names[predicted[i]]}"
        axes[i, 0].set_title(title, fontsize=8, color="red" if wrong else "black")
        for ax, cam, stage in zip(axes[i, 1:], cams[i], stage_names, strict=True):
            show_image(ax, images[i].mean(0, keepdim=True))  # in grey
            peak = cam.max()
            scaled = cam / peak if peak > 0 else cam
            ax.imshow(scaled.numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            if i == 0:
                ax.set_title(stage.replace(" (", "\n("), fontsize=7)
    for ax in axes.flat:
        ax.set(xticks=[], yticks=[])
    fig.tight_layout()
    return fig
