"""Optimizers, schedules and regularisers from the real configs behave as the studies describe."""

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models.build import build_model
from cnnlab.registry import build
from cnnlab.run.assemble import build_module
from cnnlab.run.train import run
from cnnlab.training.regularizers import Regularizer, weights
from cnnlab.training.schedules import build_schedule

from conftest import FAST


def plain(node):
    return OmegaConf.to_container(node, resolve=True)


@pytest.mark.parametrize(
    ("option", "cls", "settings"),
    [
        ("sgd", torch.optim.SGD, {"momentum": 0.0, "nesterov": False}),
        ("momentum", torch.optim.SGD, {"momentum": 0.9, "nesterov": False}),
        ("nesterov", torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
        ("adam", torch.optim.Adam, {"betas": (0.9, 0.999), "eps": 1e-8}),
        ("adamw", torch.optim.AdamW, {"weight_decay": 0.01}),
        ("adagrad", torch.optim.Adagrad, {"lr": 0.01}),
        ("adadelta", torch.optim.Adadelta, {"lr": 1.0, "rho": 0.9}),
        ("rmsprop", torch.optim.RMSprop, {"alpha": 0.9}),
    ],
)
def test_optimizer_options_build_the_named_optimizer(option, cls, settings, make_cfg):
    cfg = make_cfg(
        [f"optimizer={option}", "optimizer.lr=0.05"] if option == "sgd" else [f"optimizer={option}"]
    )
    opt = build(plain(cfg.optimizer))(params=[nn.Parameter(torch.zeros(2))])
    assert type(opt) is cls
    group = opt.param_groups[0]
    for key, value in settings.items():
        if isinstance(value, tuple):  # a list or tuple, not an OmegaConf ListConfig
            assert type(group[key]) in (list, tuple) and tuple(group[key]) == value
        else:
            assert group[key] == value
    if option == "sgd":
        assert group["lr"] == 0.05


def test_weight_decay_can_skip_biases_and_norms():
    net = build_model({"name": "base_cnn"}, {"name": "relu"}, {"name": "bn"}, {"name": "he"})
    decay, rest = Regularizer(decay_norm_and_bias=False).param_groups(net)
    assert rest["weight_decay"] == 0.0 and "weight_decay" not in decay
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim == 1 for p in rest["params"])
    assert len(decay["params"]) + len(rest["params"]) == len(list(net.parameters()))


def lrs(make_cfg, option, epochs, *overrides, steps_per_epoch=1):
    """The learning rate at the start of each epoch under the real scheduler config."""
    cfg = make_cfg(
        [
            f"scheduler={option}",
            "optimizer=sgd",
            "optimizer.lr=1.0",
            f"trainer.max_epochs={epochs}",
            *overrides,
        ]
    )
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    total = epochs * steps_per_epoch
    schedule = build_schedule(opt, plain(cfg.scheduler), total, steps_per_epoch)
    seen = []
    for _ in range(epochs):
        seen.append(opt.param_groups[0]["lr"])
        for _ in range(steps_per_epoch if schedule["interval"] == "step" else 1):
            opt.step()
            if schedule["interval"] == "step":
                schedule["scheduler"].step()
        if schedule["interval"] == "epoch":
            sched = schedule["scheduler"]
            sched.step(1.0) if "monitor" in schedule else sched.step()
    return seen


def test_step_divides_by_10_every_20_epochs(make_cfg):
    seen = lrs(make_cfg, "step", 45)
    assert seen[19] == 1.0 and seen[20] == pytest.approx(0.1) and seen[40] == pytest.approx(0.01)


def test_multistep_divides_at_81_and_122(make_cfg):
    seen = lrs(make_cfg, "multistep", 130)
    assert seen[80] == 1.0 and seen[81] == pytest.approx(0.1) and seen[122] == pytest.approx(0.01)


def test_exponential_multiplies_by_0_9_per_epoch(make_cfg):
    assert lrs(make_cfg, "exponential", 4) == pytest.approx([1.0, 0.9, 0.81, 0.729])


def test_cosine_restarts_every_20_epochs(make_cfg):
    seen = lrs(make_cfg, "cosine_restarts", 41)
    assert seen[0] == 1.0 and seen[19] < 0.01 and seen[20] == 1.0 and seen[40] == 1.0


def test_plateau_halves_after_3_epochs_without_improvement(make_cfg):
    seen = lrs(make_cfg, "plateau", 7)  # the monitored loss is stuck at 1.0
    assert seen[:5] == [1.0] * 5 and seen[5] == 0.5


def test_onecycle_is_stepped_per_batch_and_fills_total_steps(make_cfg):
    seen = lrs(make_cfg, "onecycle", 10, steps_per_epoch=10)
    assert max(seen) == pytest.approx(1.0, rel=0.05) and seen.index(max(seen)) == 3
    assert seen[0] < 0.05 and seen[-1] < seen[3]


def test_warmup_scales_the_schedule_without_shifting_it(make_cfg):
    seen = lrs(make_cfg, "exponential", 6, "scheduler.warmup_epochs=2")
    assert seen == pytest.approx([0.1, 0.55 * 0.9, 0.81, 0.729, 0.6561, 0.59049])
    assert lrs(make_cfg, "none", 4, "scheduler.warmup_epochs=2") == pytest.approx([0.1, 0.55, 1, 1])


def test_warmup_with_plateau_is_refused(make_cfg):
    with pytest.raises(ConfigError, match="warmup_epochs"):
        lrs(make_cfg, "plateau", 3, "scheduler.warmup_epochs=1")


def test_plateau_without_validation_is_refused(make_cfg):
    cfg = make_cfg(["scheduler=plateau", "data=fake", "data.val_split=0"])
    with pytest.raises(ConfigError, match="needs data.val_split > 0"):
        run(cfg)


def test_l1_l2_penalty_is_lambda_times_the_norms():
    net = build_model({"name": "base_cnn"}, {"name": "relu"}, {"name": "bn"}, {"name": "he"})
    kernels = [p for n, p in net.named_parameters() if n.endswith("weight") and p.ndim > 1]
    l1 = sum(w.abs().sum() for w in kernels).item()
    l2 = sum(w.pow(2).sum() for w in kernels).item()
    assert len(weights(net)) == len(kernels) == 6
    assert Regularizer(l1=1e-4).penalty(net).item() == pytest.approx(1e-4 * l1, rel=1e-5)
    assert Regularizer(l2=1e-3).penalty(net).item() == pytest.approx(1e-3 * l2, rel=1e-5)
    assert Regularizer(l1=1e-4, l2=1e-3).penalty(net).item() == pytest.approx(
        1e-4 * l1 + 1e-3 * l2, rel=1e-5
    )
    assert Regularizer().penalty(net) is None


def test_penalties_and_decay_reach_only_conv_and_dense_kernels():
    """Not a ViT's position embedding or class token, not a PReLU's slopes (3-d per element)."""
    vit = build_model(
        {
            "name": "timm",
            "arch": "vit_tiny_patch16_224",
            "stem": "imagenet",
            "layers": "timm",
            "extra": {"img_size": 32, "patch_size": 8, "depth": 2},
        },
        {"name": "relu"},
        {"name": "none"},
        {"name": "he"},
    )
    prelu = build_model(
        {"name": "base_cnn"}, {"name": "prelu", "per": "element"}, {"name": "none"}, {"name": "he"}
    )
    for net, extra in ((vit, [vit.pos_embed, vit.cls_token]), (prelu, list(prelu.parameters()))):
        kernels = {id(w) for w in weights(net)}
        layers = [m for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
        assert kernels == {id(m.weight) for m in layers}
        extra = [p for p in extra if p.ndim > 1 and id(p) not in kernels]
        assert extra  # there are other tensors of 2+ dimensions, and they are left alone
        decay, rest = Regularizer(decay_norm_and_bias=False).param_groups(net)
        assert {id(p) for p in decay["params"]} == kernels
        assert all(any(p is q for q in rest["params"]) for p in extra)
    before = vit.pos_embed.detach().clone()
    Regularizer(max_norm=1e-3).constrain(vit)
    assert torch.equal(vit.pos_embed, before)


def test_max_norm_rescales_only_rows_above_c():
    layer = nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 4, 0, 0], [0.3, 0.4, 0, 0], [0, 0, 6, 8]]))
    Regularizer(max_norm=2.0).constrain(layer)
    assert layer.weight.norm(dim=1).tolist() == pytest.approx([2.0, 0.5, 2.0], rel=1e-5)


def test_training_with_max_norm_keeps_every_unit_within_c(make_cfg, tmp_path):
    cfg = make_cfg(
        [
            "data=fake",
            "model=base_cnn",
            "regularizer=max_norm",
            "regularizer.max_norm=0.5",
            "trainer.max_epochs=1",
            *FAST,
        ]
    )
    run(cfg)
    module = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    for name, w in module["state_dict"].items():
        if w.ndim > 1 and name.startswith("net."):  # the network's kernels (not the mean/std)
            assert w.flatten(1).norm(dim=1).max() <= 0.5 + 1e-5, name


def test_l2_regulariser_adds_its_penalty_to_the_training_loss(make_cfg):
    cfg = make_cfg(
        ["data=fake", "model=base_cnn", "regularizer=l2", "norm=none", "model.dropout=0"]
    )
    module = build_module(cfg)
    x, y = torch.randn(4, 3, 32, 32), torch.arange(4)
    module.log = lambda *a, **k: None  # outside a Trainer
    plain_loss = module.loss(module(x), y)
    assert module.training_step((x, y), 0).item() == pytest.approx(
        (plain_loss + Regularizer(l2=1e-3).penalty(module.net)).item(), rel=1e-5
    )


def test_warmup_state_round_trips_through_a_checkpoint(make_cfg):
    cfg = make_cfg(["scheduler=cosine", "scheduler.warmup_epochs=3", "trainer.max_epochs=10"])

    def fresh():
        opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
        return opt, build_schedule(opt, plain(cfg.scheduler), 10, 1)["scheduler"]

    opt, schedule = fresh()
    for _ in range(4):
        opt.step()
        schedule.step()
    state = schedule.state_dict()
    assert "optimizer" not in state and isinstance(state["main"], dict)
    resumed_opt, resumed = fresh()
    resumed_opt.load_state_dict(opt.state_dict())
    resumed.load_state_dict(state)
    for _ in range(3):
        for o, s in ((opt, schedule), (resumed_opt, resumed)):
            o.step()
            s.step()
        assert resumed_opt.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
