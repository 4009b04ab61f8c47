"""--graphs: the captured-step contract of every model (emulated capture on the CPU), the runner's
keys / warm-up / static buffers, the errors the emulation must raise, and real CUDA graphs (gpu)."""
import json

import pytest
import torch
from torch import nn

from ssgan_fast.data import TensorLoader, make_split, open_dataset
from ssgan_fast.engine.amp import Amp
from ssgan_fast.engine.graphs import CaptureError, StepGraphs, capture_blocker
from ssgan_fast.models.base import GANModel
from ssgan_fast.train import main as train_main

TINY = {
    "sphericgan": ["--set", "model.ch=4", "--set", "model.c_ch=4", "--set", "model.z_dim=8", "--set",
                   "model.latent_dim=8", "--set", "model.num_prototypes=4", "--set", "model.prior_samples=200"],
    "medgan": ["--set", "model.ch=4", "--set", "model.c_ch=4", "--set", "model.z_dim=8"],
    "triplegan": ["--set", "model.ch=4", "--set", "model.c_ch=4", "--set", "model.z_dim=8"],
    "cvaegan": ["--set", "model.ch=4", "--set", "model.c_ch=4", "--set", "model.z_dim=8"],
    "aam-acgan": ["--set", "model.ch=4", "--set", "model.z_dim=8", "--set", "model.n_dis=2"],
    "aam-stargan": ["--set", "model.ch=4", "--set", "model.g_repeat=1", "--set", "model.n_critic=2", "--set",
                    "model.num_sources=6"],
    "lcpgan": ["--set", "model.ch=4", "--set", "model.c_ch=4", "--set", "model.z_dim=8", "--set",
               "model.head_dim=16", "--set", "model.c_warmup=3"],
}
VARIANTS = {  # the other code paths of the steps
    "lcpgan-stylegan2-ada": ["--model", "lcpgan", *TINY["lcpgan"], "--set", "model.base=stylegan2", "--set",
                             "model.ada=true", "--set", "model.w_dim=16", "--set", "model.map_layers=2", "--set",
                             "model.clip_loss=true", "--set", "model.r1_every=2", "--set", "model.style_mix=0.5",
                             "--set", "model.pl_weight=1", "--set", "model.pl_every=3"],
    "medgan-ring2d": ["--model", "medgan", "--data", "ring2d", "--set", "model.hidden=16"],
    "triplegan-ring2d": ["--model", "triplegan", "--data", "ring2d", "--set", "model.hidden=16"],
    "cvaegan-semi": ["--model", "cvaegan", *TINY["cvaegan"], "--set", "model.semi_supervised=true"],
}


def _losses(run):
    return [json.loads(line) for line in (run / "losses.jsonl").read_text().splitlines()]


def _train(tmp_path, name, model, *extra):
    spec = ["--model", model, *TINY[model]] if model in TINY else VARIANTS[model]
    argv = [*spec, "--size", "8", "--batch", "4", "--steps", "9", "--no-progress", "--no-final-eval",
            "--out", str(tmp_path), "--name", name, "--set", "train.log_every=1", "--set", "train.sample_every=0",
            *extra]
    assert train_main(argv) == 0
    return _losses(tmp_path / name)


@pytest.mark.parametrize("model,amp", [(m, a) for m in sorted(TINY) for a in (None, "bf16")] +
                         [(v, None) for v in sorted(VARIANTS)])
def test_every_model_is_capturable_and_replays_exactly(model, amp, tmp_path, caplog):
    """Emulated capture: no host sync, the same ops / shapes / scalars at every replay of a key, nothing
    rebound; and the graphed run's losses equal the eager run's bit for bit (static buffers, outputs)."""
    a = ["--amp", amp] if amp else []
    eager = _train(tmp_path, "eager", model, *a)
    caplog.set_level("INFO", logger="ssgan_fast")
    graphed = _train(tmp_path, "graphed", model, *a, "--graphs", "--set", "train.graphs_mode=emulate",
                     "--set", "train.graphs_warmup=1")
    assert "captured the train step" in caplog.text
    assert "(graphs: captured (" in caplog.text  # the fit result's status, logged at the end
    assert graphed == eager


def _runner(model, warmup=1):
    ds = open_dataset("ring2d")
    loader = TensorLoader(ds, make_split(ds.labels, ds.num_classes, labels_per_class=4), 3, 5, seed=0)
    return StepGraphs(model, Amp(None, "cpu"), loader, "cpu", mode="emulate", warmup=warmup)


class _Toy(GANModel):
    """A 2-D model with one linear layer; `flaw` breaks the capture contract in one way."""
    name = "toy"

    def __init__(self, flaw=None):
        super().__init__(None, {})
        self.net = nn.Linear(2, 1)
        self.register_buffer("count", torch.zeros(()))
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        self.flaw, self.keys = flaw, []

    def optimizers(self):
        return {"net": self.opt}

    def generator_modules(self):
        return ["net"]

    def noise(self, n, generator=None, device=None):
        return torch.randn(n, 2, generator=generator, device=device)

    def sample(self, labels, noise, modules=None):
        return noise

    def graph_key(self, step):
        self.keys.append(step)
        return step % 2 if self.flaw == "keyed" else ()

    def train_step(self, batch, step, amp=None):
        x = torch.cat([batch["x_l"], batch["x_u"]])
        loss = self.net(x + 0.01 * torch.randn_like(x)).pow(2).mean()
        if self.flaw == "item" and loss.item() > -1:
            loss = loss * 1.0
        if self.flaw == "mask":
            loss = loss + x[x[:, 0] > 0].sum() * 0
        if self.flaw in ("branch", "keyed") and step % 2:
            loss = loss * 2
        if self.flaw == "lr":
            self.opt.param_groups[0]["lr"] = 1e-3 * (step + 1)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.flaw == "rebind":
            self.count = self.count + 1
        else:
            self.count.add_(1)
        return {"loss": loss.detach()}


@pytest.mark.parametrize("flaw,msg", [
    ("item", "_local_scalar_dense"),
    ("mask", "boolean mask"),
    ("branch", "differs from the captured one"),
    ("lr", r"optimizer setting net\[0\]\.lr changed"),
    ("rebind", "rebinds buffer count"),
])
def test_emulation_catches_what_a_real_graph_would_break(flaw, msg):
    g = _runner(_Toy(flaw))
    with pytest.raises(CaptureError, match=msg) as e:
        for s in range(4):
            g(s)
    if flaw in ("item", "mask"):  # named with the offending source line
        assert "test_graphs.py" in str(e.value)


def test_keys_warmup_static_outputs_and_reset():
    m = _Toy("keyed")
    g = _runner(m, warmup=2)
    outs = [g(s) for s in range(10)]
    assert g.captures == 2 and set(g.graphs) == {0, 1}
    assert g.eager_steps == 4  # two warm-up steps per key
    n, first = outs[4]  # key 0 captured at step 4: later key-0 steps return the same static tensors, updated
    assert n == 8 and outs[6][1]["loss"] is first["loss"] and outs[8][1]["loss"] is first["loss"]
    assert outs[5][1]["loss"] is not first["loss"]
    assert float(m.count) == 10
    g.reset()
    g(10)
    assert g.captures == 3  # re-captured without another warm-up


def test_static_buffers_get_each_new_batch():
    m = _Toy()
    seen = []
    real = m.train_step

    def spy(batch, step, amp=None):
        seen.append((batch["x_l"].data_ptr(), batch["x_l"].clone()))
        return real(batch, step, amp)
    m.train_step = spy
    g = _runner(m)
    for s in range(4):
        g(s)
    assert len({p for p, _ in seen}) == 1  # always the static buffer
    assert not torch.equal(seen[2][1], seen[3][1])  # holding a new batch each step


def test_capture_blockers():
    class Scaled:
        scaler = object()
    assert "GradScaler" in capture_blocker(Scaled())
    assert "torchrun" in capture_blocker(Amp(None, "cpu"), world_size=2)
    assert capture_blocker(Amp("bf16", "cpu")) is None


@pytest.mark.parametrize("argv,msg", [
    (["--graphs"], "CUDA device"),
    (["--graphs", "--set", "train.graphs_mode=emulate", "--compile"], "pick one"),
    (["--graphs", "--set", "train.graphs_mode=fast"], "graphs_mode must be cuda or emulate"),
])
def test_cli_rejects_graph_misuse(argv, msg, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train_main(["--device", "cpu", "--out", str(tmp_path), "--steps", "1", *argv])
    assert e.value.code == 2 and msg in capsys.readouterr().err


def test_bare_amp_flag_means_bf16(tmp_path):
    from ssgan_fast.train import build_parser, resolve
    args = build_parser().parse_args(["--amp", "--graphs", "--device", "cpu", "--set", "train.graphs_mode=emulate"])
    cfg = resolve(args)
    assert cfg.amp == "bf16" and cfg.graphs
    assert build_parser().parse_args(["--amp", "fp16"]).amp == "fp16"
    assert resolve(build_parser().parse_args(["--device", "cpu"])).amp is None


# --------------------------------------------------------------------------- real CUDA graphs

@pytest.mark.gpu
def test_cuda_graph_replays_match_eager_on_a_deterministic_model():
    """No RNG in the step: the graphed and the eager run must agree (fused capturable Adam included)."""
    from ssgan_fast.engine.graphs import prepare_optimizers

    class Det(_Toy):
        def train_step(self, batch, step, amp=None):
            x = torch.cat([batch["x_l"], batch["x_u"]])
            loss = self.net(x).pow(2).mean()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            return {"loss": loss.detach()}
    ds = open_dataset("ring2d")
    runs = []
    for graphed in (False, True):
        torch.manual_seed(0)
        m = Det().cuda()
        m.opt = torch.optim.Adam(m.net.parameters(), lr=1e-2)
        prepare_optimizers(m.optimizers(), "cuda", graphs=graphed)
        loader = TensorLoader(ds, make_split(ds.labels, ds.num_classes, labels_per_class=4), 3, 5, device="cuda",
                              seed=0)
        if graphed:
            g = StepGraphs(m, Amp(None, "cuda"), loader, "cuda", warmup=2)
            runs.append([float(g(s)[1]["loss"]) for s in range(12)])
            assert g.captures == 1 and g.disabled is None
        else:
            runs.append([float(m.train_step(next(loader), s)["loss"]) for s in range(12)])
    torch.testing.assert_close(torch.tensor(runs[1]), torch.tensor(runs[0]), rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("amp", [None, "bf16"])
@pytest.mark.parametrize("model", sorted(TINY))
def test_cuda_graphs_train_every_model(model, amp, tmp_path, caplog):
    a = ["--amp", amp] if amp else []
    caplog.set_level("INFO", logger="ssgan_fast")
    out = _train(tmp_path, "g", model, "--device", "cuda", "--graphs", *a)
    assert "captured the train step in a CUDA graph" in caplog.text and "running eager" not in caplog.text
    assert all(all(v == v and abs(v) != float("inf") for k, v in r.items() if "/" in k) for r in out)
