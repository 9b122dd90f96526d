"""Activations, inits and norms do what the studies say, not just run."""

import math

import pytest
import torch
from torch import nn
from torch.autograd import gradcheck

from cnnlab import registry
from cnnlab.errors import ConfigError
from cnnlab.layers.activations import Maxout, RandomizedReLU, Swish
from cnnlab.models.build import build_model


def act(name, channels=4, **options):
    return registry.create("activation", name, channels, **options)


@pytest.mark.parametrize("name", registry.names("activation"))
def test_every_activation_keeps_the_shape_it_promises(name):
    a = act(name, 6)
    x = torch.randn(3, 6 * getattr(a, "expansion", 1), 5, 5)
    assert a(x).shape == (3, 6, 5, 5)


def test_selu_uses_the_79_to_90_slides_constants():
    lam, alpha = 1.0507009873554804934193349852946, 1.6732632423543772848170429916717
    x = torch.linspace(-5, 5, 101, dtype=torch.float64)
    expected = lam * torch.where(x > 0, x, alpha * torch.exp(x) - alpha)
    assert torch.allclose(act("selu")(x), expected, atol=1e-12)


def test_prelu_learns_one_slope_per_channel():
    a = act("prelu", 16)
    assert a.weight.shape == (16,) and torch.all(a.weight == 0.25)


def test_rrelu_draws_slopes_in_training_and_uses_the_mean_at_test():
    a = act("rrelu", lower=3.0, upper=8.0)
    x = -torch.ones(10_000)
    slopes = -a.train()(x)
    assert slopes.min() >= 1 / 8 and slopes.max() <= 1 / 3 and slopes.std() > 0.01
    assert torch.allclose(-a.eval()(x), torch.full_like(x, 2 / 11))


def test_maxout_takes_the_max_of_each_group_of_pieces():
    x = torch.tensor([[1.0, 5.0, -2.0, -1.0, 0.0, 3.0]])  # 3 outputs x 2 pieces
    assert torch.equal(Maxout(2)(x), torch.tensor([[5.0, -1.0, 3.0]]))


def test_maxout_widens_the_layer_before_it():
    nin = {"name": "nin", "final_norm_act": True}  # an activation after every conv
    relu = build_model(nin, {"name": "relu"}, {"name": "bn"}, {"name": "he"})
    maxout = build_model(nin, {"name": "maxout", "pieces": 3}, {"name": "bn"}, {"name": "he"})
    widths = lambda m: [c.out_channels for c in m.modules() if isinstance(c, nn.Conv2d)]  # noqa: E731
    assert widths(maxout) == [3 * w for w in widths(relu)]
    assert maxout(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(
    "layer",
    [Maxout(3), RandomizedReLU(3.0, 8.0).eval(), Swish(1.5)],
    ids=["maxout", "rrelu", "swish"],
)
def test_custom_layers_pass_gradcheck(layer):
    x = torch.randn(2, 6, 3, 3, dtype=torch.float64, requires_grad=True)
    assert gradcheck(layer, (x,), eps=1e-6, atol=1e-5)


def test_rrelu_gradient_in_training_is_the_drawn_slope():
    x = (-0.1 - torch.rand(1000, dtype=torch.float64)).requires_grad_()
    torch.manual_seed(0)
    y = RandomizedReLU(3.0, 8.0).train()(x)
    y.sum().backward()
    assert torch.allclose(x.grad, (y / x).detach())  # d(x / a)/dx = 1 / a = y / x


def weight_std(init: dict, shape=(256, 512, 3, 3)) -> float:
    conv = nn.Conv2d(shape[1], shape[0], shape[2])
    registry.factory("init", init)()(conv)
    return conv.weight.std().item()


FAN_IN, FAN_OUT = 512 * 9, 256 * 9


@pytest.mark.parametrize(
    ("init", "std"),
    [
        ({"name": "he"}, math.sqrt(2 / FAN_IN)),
        ({"name": "he", "mode": "fan_out"}, math.sqrt(2 / FAN_OUT)),
        ({"name": "he", "distribution": "uniform"}, math.sqrt(2 / FAN_IN)),
        ({"name": "xavier", "distribution": "normal"}, math.sqrt(2 / (FAN_IN + FAN_OUT))),
        ({"name": "xavier"}, math.sqrt(2 / (FAN_IN + FAN_OUT))),
        ({"name": "lecun"}, math.sqrt(1 / FAN_IN)),
        ({"name": "small_normal"}, 0.001),
    ],
    ids=lambda v: (
        v["name"] + "-" + "-".join(map(str, list(v.values())[1:])) if isinstance(v, dict) else ""
    ),
)
def test_init_std_matches_its_formula(init, std):
    assert weight_std(init) == pytest.approx(std, rel=0.01)


def test_unknown_init_option_value_is_refused():
    with pytest.raises(
        ConfigError, match="init.distribution=gauss: expected one of uniform, normal"
    ):
        registry.factory("init", {"name": "he", "distribution": "gauss"})()


def test_auto_init_follows_the_activation():
    def first_conv_std(activation):
        m = build_model({"name": "nin9"}, {"name": activation}, {"name": "none"}, {"name": "auto"})
        conv = next(c for c in m.modules() if isinstance(c, nn.Conv2d) and c.in_channels == 92)
        return conv.weight.std().item()

    fan_in = 92 * 9
    assert first_conv_std("selu") == pytest.approx(math.sqrt(1 / fan_in), rel=0.03)
    assert first_conv_std("relu") == pytest.approx(math.sqrt(2 / fan_in), rel=0.03)


def test_selu_networks_get_alpha_dropout():
    m = build_model({"name": "nin"}, {"name": "selu"}, {"name": "none"}, {"name": "auto"})
    kinds = {type(x) for x in m.modules() if isinstance(x, nn.Dropout | nn.AlphaDropout)}
    assert kinds == {nn.AlphaDropout}


@pytest.mark.parametrize(("norm", "groups"), [("group", None), ("layer", 1)])
def test_group_and_layer_norm_follow_every_conv(norm, groups):
    nin = {"name": "nin", "final_norm_act": True}  # a norm after every conv, the last too
    m = build_model(nin, {"name": "relu"}, {"name": norm}, {"name": "he"})
    convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
    norms = [n for n in m.modules() if isinstance(n, nn.GroupNorm)]
    assert len(norms) == len(convs)
    for n in norms:
        assert n.num_channels % n.num_groups == 0
        assert groups is None or n.num_groups == groups


def test_max_norm_projection_passes_gradcheck():
    # The constraint is a projection of the weights; its gradient is what SGD sees next step.
    x = (torch.rand(4, 5, dtype=torch.float64) + 0.1).requires_grad_()
    assert gradcheck(lambda t: torch.renorm(t, 2, 0, 0.5), (x,))


def test_zca_whitening_passes_gradcheck():
    from cnnlab.data.preprocess import Whitening
    from cnnlab.data.stats import zca

    found = zca(torch.rand(200, 2, 2, 2), eps=0.1)
    white = Whitening(channels=2, size=2)
    white.mean.copy_(found["mean"])
    white.matrix.copy_(found["matrix"])
    white = white.double()
    x = torch.rand(3, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    assert gradcheck(white, (x,))
