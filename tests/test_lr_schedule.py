"""The learning-rate schedule of the training configs: warm-up, poly decay, and the same rates after a resume."""

import pytest
import torch
from ignite.engine import Engine

from unetkit.training import StepLRSchedule


def _rates(schedule_args, steps, start=0):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.02, momentum=0.99)
    seen = []
    engine = Engine(lambda e, b: seen.append(opt.param_groups[0]["lr"]))
    StepLRSchedule(opt, **schedule_args).attach(engine)
    if start:  # what unetkit's resume does: the step counter restored, the optimizer reloaded mid-schedule
        opt.param_groups[0]["lr"] = 123.0
        engine.state.max_epochs, engine.state.epoch_length = 1, start + steps
        engine.state.iteration = start
        engine.run(range(start + steps), max_epochs=1, epoch_length=start + steps)
        return seen
    engine.run(range(steps), max_epochs=1)
    return seen


def test_poly_decay_reaches_almost_zero_at_the_last_step():
    rates = _rates(dict(max_steps=10, power=0.9), 10)
    assert rates[0] == pytest.approx(0.02)
    assert rates == sorted(rates, reverse=True)
    assert rates[-1] == pytest.approx(0.02 * 0.1 ** 0.9)


def test_warmup_ramps_linearly_then_decays():
    rates = _rates(dict(max_steps=100, power=1.0, warmup=4), 6)
    decay = [1 - k / 100 for k in range(6)]
    assert rates == pytest.approx([0.02 * decay[0] * 1 / 4, 0.02 * decay[1] * 2 / 4, 0.02 * decay[2] * 3 / 4,
                                   0.02 * decay[3], 0.02 * decay[4], 0.02 * decay[5]])


def test_a_resumed_run_gets_the_rates_of_an_uninterrupted_one():
    whole = _rates(dict(max_steps=20, power=0.9, warmup=5), 20)
    second_half = _rates(dict(max_steps=20, power=0.9, warmup=5), 10, start=10)
    assert second_half == pytest.approx(whole[10:])


def test_power_zero_without_warmup_is_a_constant_rate():
    assert _rates(dict(max_steps=5, power=0.0), 5) == [0.02] * 5


def test_bad_settings_are_refused():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match="max_steps >= 1"):
        StepLRSchedule(opt, max_steps=0)
