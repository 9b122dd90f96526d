import math

import pytest
import torch
from torch import nn

from cnnlab import registry
from cnnlab.errors import ConfigError
from cnnlab.layers.activations import ElementwisePReLU
from cnnlab.models.build import build_model, count_parameters


def net(model="nin", act="relu", norm="none", init="default", **kwargs):
    return build_model({"name": model}, {"name": act}, {"name": norm}, {"name": init}, **kwargs)


def conv_params(c_in, c_out, k):
    return c_in * c_out * k * k + c_out


def test_nin_matches_the_nin_lab_reports_table1():
    # Table 1 layer by layer: 5x5 192, 1x1 160, 1x1 96 | 5x5 192, 1x1 192, 1x1 192 | 3x3 192, 1x1
    # 192, 1x1 10. About 0.97M in all.
    expected = sum(
        conv_params(*layer)
        for layer in [
            (3, 192, 5),
            (192, 160, 1),
            (160, 96, 1),
            (96, 192, 5),
            (192, 192, 1),
            (192, 192, 1),
            (192, 192, 3),
            (192, 192, 1),
            (192, 10, 1),
        ]
    )
    assert expected == 966_986
    assert count_parameters(net("nin")) == expected


def test_nin_outputs_one_logit_per_class():
    assert net("nin")(torch.randn(4, 3, 32, 32)).shape == (4, 10)
    assert net("nin", num_classes=100)(torch.randn(2, 3, 32, 32)).shape == (2, 100)


def test_base_cnn_matches_the_keras_hyperparameter_slides_summary_table():
    assert count_parameters(net("base_cnn")) == 1_250_858


@pytest.mark.parametrize("model", registry.names("model"))
def test_models_take_grey_28px_images(model):
    m = net(model, in_channels=1, image_size=28)
    assert m(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("model", registry.names("model"))
def test_bn_follows_every_convolution_but_the_class_scores(model):
    with_bn = net(model, norm="bn", num_classes=7)  # 7: the class-score conv stands out
    convs = sum(isinstance(m, nn.Conv2d) and m.out_channels != 7 for m in with_bn.modules())
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in with_bn.modules())
    assert convs == norms > 0
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net(model, norm="none").modules())


@pytest.mark.parametrize("model", ["nin", "nin9"])
def test_nin_class_scores_are_plain_unless_the_tables_form_is_asked_for(model):
    x = torch.randn(4, 3, 32, 32)
    plain = net(model, act="sigmoid", norm="bn")
    assert type(plain.features[-1]) is nn.Conv2d  # the logits come straight from the conv
    with torch.no_grad():
        plain.features[-1].bias.fill_(3.0)
    assert plain(x).min() > 1  # unbounded: a sigmoid would keep them in (0, 1)
    tabled = build_model(
        {"name": model, "final_norm_act": True},
        {"name": "sigmoid"},
        {"name": "bn"},
        {"name": "xavier"},
    )
    kinds = [type(m) for m in tabled.features[-1]]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.Sigmoid]
    out = tabled(x)
    assert out.min() > 0 and out.max() < 1


@pytest.mark.parametrize("model", registry.names("model"))
def test_model_dropout_option_takes_effect(model):
    """Every model builds its dropout at the configured rate, and it changes the output."""
    x = torch.randn(4, 3, 32, 32)

    def outputs(rate):
        torch.manual_seed(0)
        m = build_model(
            {"name": model, "dropout": rate}, {"name": "relu"}, {"name": "none"}, {"name": "he"}
        ).train()
        return m, m(x), m(x)

    m, a, b = outputs(0.3)
    rates = [d.p for d in m.modules() if isinstance(d, nn.Dropout)]
    if model == "timm":  # timm applies its drop_rate functionally before the classifier
        rates = [m.drop_rate]
    assert rates and all(p == 0.3 for p in rates)
    assert not torch.allclose(a, b)  # two passes drop different units
    _, a, b = outputs(0.0)
    assert torch.allclose(a, b)


def test_cnn_deep_has_two_hidden_dense_layers_after_six_convs():
    m = net("cnn_deep", act="relu")
    convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
    dense = [d.out_features for d in m.modules() if isinstance(d, nn.Linear)]
    assert len(convs) == 6 and dense == [512, 512, 10]
    assert sum(isinstance(d, nn.Dropout) for d in m.modules()) == 4  # one every two layers


def test_prelu_per_element_reproduces_the_keras_hyperparameter_slides_summary_table():
    m = build_model(
        {"name": "base_cnn"},
        {"name": "prelu", "per": "element"},
        {"name": "none"},
        {"name": "xavier"},
    )
    slopes = [a.weight.numel() for a in m.modules() if isinstance(a, ElementwisePReLU)]
    assert slopes == [32_768, 28_800, 14_400, 10_816, 512]
    total = count_parameters(m)
    assert total == 1_338_154
    # The table's percentages: the first PReLU 2.4%, the big dense layer 88.2%.
    assert round(100 * slopes[0] / total, 1) == 2.4
    assert round(100 * 1_180_160 / total, 1) == 88.2
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(("per", "slopes"), [("channel", 32), ("layer", 1)])
def test_prelu_per_channel_or_layer(per, slopes):
    m = build_model(
        {"name": "base_cnn"}, {"name": "prelu", "per": per}, {"name": "none"}, {"name": "he"}
    )
    first = next(a for a in m.modules() if isinstance(a, nn.PReLU))
    assert first.weight.numel() == slopes


@pytest.mark.parametrize("model", registry.names("model"))
def test_activation_choice_reaches_every_layer(model):
    m = net(model, act="elu")
    assert any(isinstance(x, nn.ELU) for x in m.modules())
    assert not any(isinstance(x, nn.ReLU) for x in m.modules())


def test_he_init_has_std_sqrt_2_over_n():
    m = net("nin", init="he")
    conv = m.features[5][0]  # the second 5x5 conv: n = 5*5*96
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (25 * 96)), rel=0.02)
    assert conv.bias.abs().max().item() == 0


def test_xavier_uniform_has_glorot_variance():
    m = net("base_cnn", init="xavier")
    fc = m.classifier[1][0]  # 2304 -> 512
    expected = math.sqrt(2 / (2304 + 512))
    assert fc.weight.std().item() == pytest.approx(expected, rel=0.02)


def test_default_init_leaves_pytorch_init_alone():
    torch.manual_seed(0)
    a = net("base_cnn", init="default")
    torch.manual_seed(0)
    b = net("base_cnn", init="he")
    torch.manual_seed(0)
    c = net("base_cnn", init="default")
    first = lambda m: m.features[0][0].weight  # noqa: E731
    assert torch.equal(first(a), first(c)) and not torch.equal(first(a), first(b))


@pytest.mark.parametrize(
    ("preset", "params"),
    [
        ("resnet10", 4_903_242),
        ("resnet16", 4_909_642),
        ("resnet24", 4_935_242),
        ("resnet48", 4_994_378),
    ],
)
def test_resnet_presets_match_the_resnet_reports_table1(preset, params, make_cfg):
    cfg = make_cfg([f"model={preset}", "norm=bn"])
    m = build_model(cfg.model, cfg.activation, cfg.norm, cfg.init)
    assert count_parameters(m) == params


@pytest.mark.parametrize(
    "order", ["original", "bn_after_add", "relu_before_add", "relu_preact", "preact"]
)
def test_resnet_block_orders_run_and_differ(order):
    m = build_model(
        {"name": "resnet", "blocks": [1, 1], "channels": [16, 32], "order": order},
        {"name": "relu"},
        {"name": "bn"},
        {"name": "default"},
    )
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    block = m.features[-1] if not order.endswith("preact") else m.features[-3]
    kinds = [type(x).__name__ for x in block.branch]
    assert (
        kinds[0]
        == {
            "original": "Conv2d",
            "bn_after_add": "Conv2d",
            "relu_before_add": "Conv2d",
            "relu_preact": "ReLU",
            "preact": "BatchNorm2d",
        }[order]
    )


def test_resnet_projects_the_shortcut_only_where_the_shape_changes():
    m = build_model(
        {"name": "resnet", "blocks": [2, 1], "channels": [16, 32]},
        {"name": "relu"},
        {"name": "bn"},
        {"name": "default"},
    )
    blocks = [b for b in m.features if type(b).__name__ == "BasicBlock"]
    assert [isinstance(b.shortcut, nn.Identity) for b in blocks] == [True, True, False]


MODELS = [m for m in registry.names("model") if m != "timm"]


@pytest.mark.parametrize("activation", registry.names("activation"))
@pytest.mark.parametrize("model", MODELS)
def test_every_model_trains_with_every_activation(model, activation):
    spec = {"name": model}
    if model == "resnet":  # small, and the block order that takes maxout
        spec |= {"blocks": [1, 1], "channels": [8, 16], "order": "relu_before_add"}
    m = build_model(spec, {"name": activation}, {"name": "bn"}, {"name": "auto"}, num_classes=7)
    out = m(torch.randn(2, 3, 32, 32))
    out.sum().backward()
    assert out.shape == (2, 7)
    assert all(p.grad is not None for p in m.parameters())


@pytest.mark.parametrize("order", ["original", "bn_after_add", "relu_preact", "preact"])
def test_resnet_refuses_maxout_where_nothing_can_widen_for_it(order):
    with pytest.raises(ConfigError, match="order=relu_before_add"):
        build_model(
            {"name": "resnet", "order": order}, {"name": "maxout"}, {"name": "bn"}, {"name": "he"}
        )


def test_differential_dropout_sets_one_rate_per_depth():
    m = build_model(
        {"name": "cnn_deep", "dropout": [0.1, 0.2, 0.3, 0.5]},
        {"name": "relu"},
        {"name": "none"},
        {"name": "he"},
    )
    assert [d.p for d in m.modules() if isinstance(d, nn.Dropout)] == [0.1, 0.2, 0.3, 0.5]


def test_wrong_number_of_dropout_rates_is_refused():
    with pytest.raises(ConfigError, match="nin has 2 dropout layers; model.dropout gave 3 rates"):
        build_model(
            {"name": "nin", "dropout": [0.1, 0.2, 0.3]},
            {"name": "relu"},
            {"name": "none"},
            {"name": "he"},
        )


def timm_net(**options):
    return build_model(
        {"name": "timm", **options}, {"name": "elu"}, {"name": "bn"}, {"name": "auto"}
    )


def test_timm_model_with_small_stem_keeps_4x4_maps_and_cnnlab_layers():
    m = timm_net(arch="resnet18")
    assert m.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 512, 4, 4)
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    # timm's own resnet18 with a 3x3 instead of a 7x7 first conv, and a 10-class head.
    assert count_parameters(m) == 11_181_642 - 64 * 3 * (49 - 9)
    assert any(isinstance(x, nn.ELU) for x in m.modules())
    assert not any(isinstance(x, nn.ReLU) for x in m.modules())


def test_timm_init_auto_keeps_timms_own_and_an_explicit_init_replaces_it():
    conv = lambda m: m.layer2[0].conv1.weight  # noqa: E731  3x3, 64 -> 128 channels
    own = build_model(
        {"name": "timm", "layers": "timm"}, {"name": "relu"}, {"name": "bn"}, {"name": "auto"}
    )
    assert conv(own).std().item() == pytest.approx(math.sqrt(2 / (9 * 128)), rel=0.05)  # fan_out
    assert own.layer1[0].bn2.weight.abs().max() == 0  # timm zero-inits each block's last BN
    he = build_model(
        {"name": "timm", "layers": "timm"}, {"name": "relu"}, {"name": "bn"}, {"name": "he"}
    )
    assert conv(he).std().item() == pytest.approx(math.sqrt(2 / (9 * 64)), rel=0.05)  # fan_in


def test_timm_model_can_keep_its_own_stem_and_layers():
    m = timm_net(arch="resnet18", stem="imagenet", layers="timm")
    assert m.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 512, 1, 1)
    assert any(isinstance(x, nn.ReLU) for x in m.modules())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"arch": "resnet_nonexistent"}, "model.arch=resnet_nonexistent: no such timm model"),
        ({"arch": "convnext_atto"}, "model.stem=imagenet"),
    ],
)
def test_timm_mistakes_fail_in_one_line(options, message):
    with pytest.raises(ConfigError, match=message):
        timm_net(**options)


def test_a_timm_name_as_model_name_points_to_model_arch():
    with pytest.raises(ConfigError, match="use model=timm model.arch=resnet18"):
        build_model({"name": "resnet18"}, {"name": "relu"}, {"name": "bn"}, {"name": "he"})


def test_timm_refuses_a_prelu_it_cannot_give_one_slope_per_channel():
    prelu = {"name": "prelu", "per": "channel"}
    with pytest.raises(ConfigError, match="activation.per=layer or activation.per=element"):
        build_model({"name": "timm"}, prelu, {"name": "bn"}, {"name": "auto"})
    per_layer = build_model(
        {"name": "timm"}, {**prelu, "per": "layer"}, {"name": "bn"}, {"name": "auto"}
    )
    assert all(a.weight.numel() == 1 for a in per_layer.modules() if isinstance(a, nn.PReLU))
