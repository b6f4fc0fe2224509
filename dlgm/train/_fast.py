"""``Trainer(fast=True)``: the step compiled by ``torch.compile``, and on CUDA one CUDA graph."""

from __future__ import annotations

import torch

from ..errors import TrainingError


class _FastStep:
    """``Trainer.step`` with ``fast=True``: the same update as the plain path, faster.

    - The minibatch gather, binarisation, input noise and the free energy (forward and
      backward) are one ``torch.compile``-d function, so their elementwise work is fused.
    - The data, the epoch's permutation, the learning rate and every random draw stay on the
      device: a step makes no host sync (losses are read once per report, as in ``run``).
    - On CUDA, after a few eager warm-up steps the whole update of a full minibatch (gather,
      forward, backward, weight prior, clipping, optimiser) is captured once in a CUDA graph
      and replayed for every later step. A short last minibatch runs eagerly.

    The random numbers are drawn outside the graph, from the trainer's own stream and in the
    plain path's order, into static buffers: a fast run and a plain run of the same seed draw
    the same numbers, and their results differ only by floating-point rounding (the compiled
    kernels sum in another order). Replacing the optimiser's state (NaN recovery, resume)
    calls ``reset``, which captures the graph again at the next step.
    """

    WARMUP = 3  # eager steps on a side stream before capture (lazy inits, autotuning)

    def __init__(self, trainer):
        self.t = trainer
        self.compiled = torch.compile(self._forward, fullgraph=True, dynamic=False)
        self.use_graph = trainer.device.type == "cuda"
        # On CPU, RMSprop's update compiled to one loop over each tensor is ~4x faster than
        # eager (Adam uses its fused kernel instead; on CUDA the graph already removes the
        # launch overhead).
        self.opt_step = trainer.opt.step
        if not self.use_graph and trainer.settings["optimizer"] == "rmsprop":
            self.opt_step = torch.compile(trainer.opt.step)
        self.static: dict | None = None  # the full minibatch's input buffers
        self.graph = None
        self.graph_out: dict | None = None
        self.warmed = 0
        self._perm: tuple = (None, None)  # (trainer.perm, its copy on the device)

    def reset(self) -> None:
        self.graph, self.graph_out, self.warmed = None, None, 0

    # The compiled part. ``x`` is the whole training set; every optional input is None or a
    # tensor, fixed for a run, so the function compiles once per minibatch size.
    def _forward(self, x, idx, u_bin, u_noise, eps, xi_noise, kl_weight):
        s = self.t.settings
        xb = x[idx]
        if u_bin is not None:
            xb = (u_bin < xb).to(xb.dtype)
        x_rec = xb
        if u_noise is not None:
            hit = u_noise < s["input_noise_p"]
            x_rec = torch.where(hit, 1.0 - xb if s["input_noise"] == "bitflip" else 0.0, xb)
        if xi_noise is not None:
            xi_noise = s["sample_noise"] * xi_noise
        out = self.t.model.free_energy(
            xb,
            x_rec=x_rec,
            eps=eps,
            xi_noise=xi_noise,
            kl_weight=kl_weight,
            free_bits=s["free_bits"] or None,
        )
        out["x"] = xb
        return out

    def _buffers(self, n: int) -> dict:
        t, s = self.t, self.t.settings
        dev, shape = t.device, (s["n_samples"], n, t.model.latent_dim)
        noisy = s["input_noise"] != "none" and s["input_noise_p"] > 0

        def empty(*size):
            return torch.empty(size, device=dev)

        return {
            "idx": torch.empty(n, dtype=torch.long, device=dev),
            "u_bin": empty(n, t.x.shape[1]) if s["binarize"] == "dynamic" else None,
            "u_noise": empty(n, t.x.shape[1]) if noisy else None,
            "eps": empty(*shape),
            "xi_noise": empty(*shape) if s["sample_noise"] > 0 else None,
            # a tensor the graph reads, refilled before every step (a KL warm-up's beta)
            "kl_weight": empty() if s["kl_warmup"] else None,
        }

    def _draw(self, b: dict, idx) -> None:
        """Fill ``b`` in place, in ``Trainer._draw_noise``'s order, from the same stream."""
        g = self.t.dev_gen
        b["idx"].copy_(idx)
        if b["kl_weight"] is not None:
            b["kl_weight"].fill_(self.t.kl_weight())
        for key, draw in (
            ("u_bin", torch.rand),
            ("u_noise", torch.rand),
            ("eps", torch.randn),
            ("xi_noise", torch.randn),
        ):
            if b[key] is not None:
                draw(b[key].shape, generator=g, device=b[key].device, out=b[key])

    def _update(self, b: dict) -> dict:
        t = self.t
        t.opt.zero_grad(set_to_none=True)
        try:
            out = self.compiled(
                t.x, b["idx"], b["u_bin"], b["u_noise"], b["eps"], b["xi_noise"], b["kl_weight"]
            )
        except Exception as e:  # the compiler's own failures (no C++ compiler, no Triton)
            if "torch._dynamo" in type(e).__module__ or "torch._inductor" in type(e).__module__:
                raise TrainingError(
                    f"fast=True needs a working torch.compile ({e!s:.300}); train without --fast"
                ) from e
            raise
        out["loss"].backward()
        t._clip_and_step()
        out["eps"] = b["eps"]
        return out

    def _device_perm(self):
        if self._perm[0] is not self.t.perm:  # a new epoch: one copy per epoch
            self._perm = (self.t.perm, self.t.perm.to(self.t.device))
        return self._perm[1]

    def step(self) -> dict:
        t = self.t
        idx = self._device_perm()[t._advance()]
        full = len(idx) == t.settings["batch_size"]
        if full and self.static is None:
            self.static = self._buffers(len(idx))
        b = self.static if full else self._buffers(len(idx))
        self._draw(b, idx)
        if not (self.use_graph and full):
            return self._update(b)
        if self.graph is None and self.warmed < self.WARMUP:
            self.warmed += 1
            side = torch.cuda.Stream(t.device)
            side.wait_stream(torch.cuda.current_stream(t.device))
            with torch.cuda.stream(side):
                out = self._update(b)
            torch.cuda.current_stream(t.device).wait_stream(side)
            return out
        if self.graph is None:  # capture (records, runs nothing), then replay below
            self.graph = torch.cuda.CUDAGraph()
            t.opt.zero_grad(set_to_none=True)
            with torch.cuda.graph(self.graph):
                self.graph_out = self._update(b)
        self.graph.replay()
        return self.graph_out
