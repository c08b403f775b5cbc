#!/usr/bin/python3
"""CPU timing of the authors' UniAD code (their public repository zhiyuanyou/UniAD).

Usage (docs/benchmarks.md, group compare):
    /usr/bin/python3 time_authors.py --repo DIR --threads 2 --rounds 5

DIR is a checkout of the authors' repository (nothing of it is in this one).
The printed keys are those of the UniAD.Core benchmark group `compare`, which
runs this script alternately with the library and prints the ratios.

The model is built by the authors' own ModelHelper from the ``net`` section of
experiments/MVTec-AD/config.yaml (after their update_config), with the
backbone's ``pretrained`` set to False (random weights, nothing downloaded).
Their files are used unmodified; the few things needed to run them on a
CPU-only Debian machine are patched from here (see ``install_shims``).

stdout carries only ``key value`` lines; everything else goes to stderr.
"""

import argparse
import os
import statistics
import sys
import time
import types


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def out(key, value):
    if isinstance(value, float):
        value = "%.3f" % value
    print("%s %s" % (key, value), flush=True)


class AttrDict(dict):
    """Minimal stand-in for easydict.EasyDict (not packaged in Debian 12):
    a dict whose keys are also attributes, converted recursively."""

    def __init__(self, d=None, **kwargs):
        super().__init__()
        for k, v in dict(d or {}, **kwargs).items():
            self[k] = v

    @classmethod
    def _conv(cls, v):
        if isinstance(v, dict) and not isinstance(v, AttrDict):
            return cls(v)
        if isinstance(v, (list, tuple)):
            return type(v)(cls._conv(x) for x in v)
        return v

    def __setitem__(self, k, v):
        super().__setitem__(k, self._conv(v))

    def __getattr__(self, k):
        try:
            return self[k]
        except KeyError:
            raise AttributeError(k)

    def __setattr__(self, k, v):
        self[k] = v

    def __delattr__(self, k):
        try:
            del self[k]
        except KeyError:
            raise AttributeError(k)


def install_shims(torch):
    """Patches applied from this script only (their files stay byte-identical)."""
    notes = []
    # 1. einops is not packaged in Debian 12: provide rearrange() for the two
    #    patterns models/reconstructions/uniad.py uses, with einops' semantics
    #    (first one: permute + reshape -> copy; second: reshape + permute -> view).
    try:
        import einops  # noqa F401

        notes.append("einops: real package")
    except ImportError:
        m = types.ModuleType("einops")

        def rearrange(t, pattern, **axes):
            p = " ".join(pattern.split())
            if p == "b c h w -> (h w) b c":
                b, c, h, w = t.shape
                return t.permute(2, 3, 0, 1).reshape(h * w, b, c)
            if p == "(h w) b c -> b c h w":
                n, b, c = t.shape
                h = axes["h"]
                w = axes.get("w", n // h)
                assert h * w == n
                return t.reshape(h, w, b, c).permute(2, 3, 0, 1)
            raise NotImplementedError("einops shim: pattern %r" % pattern)

        m.rearrange = rearrange
        sys.modules["einops"] = m
        notes.append("einops: shim (2 patterns)")
    # 2. uniad.py calls .cuda() unconditionally (add_jitter's noise, the
    #    neighbour mask of generate_mask).  No GPU here: make Tensor.cuda a no-op.
    if not torch.cuda.is_available():
        torch.Tensor.cuda = lambda self, *a, **k: self
        notes.append("Tensor.cuda -> identity (no GPU)")
    return notes


def forbid_downloads(modules):
    def _no_download(url, *a, **k):
        raise RuntimeError("download attempted (%s); pretrained must stay False" % url)

    for mod in modules:
        if hasattr(mod, "load_state_dict_from_url"):
            mod.load_state_dict_from_url = _no_download


# Where Debian's libopenblas0-pthread puts its libblas.so.3; UNIAD_OPENBLAS_DIR
# overrides it (e.g. a package extracted with dpkg-deb -x instead of installed).
DEFAULT_OPENBLAS = os.environ.get(
    "UNIAD_OPENBLAS_DIR", "/usr/lib/x86_64-linux-gnu/openblas-pthread"
)


def select_blas(args):
    """Debian's python3-torch links libblas.so.3, which by default resolves to
    the reference (netlib) BLAS: ~10x slower sgemm, and the transformer's
    Linear layers all go through it.  ``--blas auto`` (default) uses the
    OpenBLAS under DEFAULT_OPENBLAS when present,
    by re-executing this script with LD_LIBRARY_PATH pointing at it; the
    system's BLAS alternative is left untouched.  ``--blas system`` keeps the
    machine's default libblas.so.3; ``--blas DIR`` uses DIR/libblas.so.3."""
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    if args.blas == "system":
        return "system"
    d = DEFAULT_OPENBLAS if args.blas == "auto" else os.path.abspath(args.blas)
    if not os.path.exists(os.path.join(d, "libblas.so.3")):
        if args.blas == "auto":
            return "system (no local OpenBLAS at %s)" % d
        raise SystemExit("no libblas.so.3 in %s" % d)
    ld = [x for x in os.environ.get("LD_LIBRARY_PATH", "").split(":") if x]
    if d not in ld:
        env = dict(os.environ, LD_LIBRARY_PATH=":".join([d] + ld))
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable] + sys.argv, env)
    return d


def mapped_blas():
    try:
        with open("/proc/self/maps") as f:
            libs = {l.split()[-1] for l in f if "blas" in l or "lapack" in l}
        return sorted(x for x in libs if x.startswith("/"))
    except OSError:
        return []


def median_time(fn, warmup, rounds):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), ts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repo", required=True,
                    help="a checkout of the authors' repository zhiyuanyou/UniAD")
    ap.add_argument("--config", default=None,
                    help="default: REPO/experiments/MVTec-AD/config.yaml")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--save-recon", default=None, metavar="DIR",
                    help="keep the config's save_recon (eval writes one .npy per "
                    "image into DIR, as their evaluation does); default: disabled")
    ap.add_argument("--blas", default="auto",
                    help="auto (OpenBLAS of libopenblas0-pthread, or UNIAD_OPENBLAS_DIR, if present; else system) | system | DIR")
    args = ap.parse_args()
    blas = select_blas(args)

    repo = os.path.abspath(args.repo)
    cfg_path = args.config or os.path.join(repo, "experiments/MVTec-AD/config.yaml")
    sys.path.insert(0, repo)

    import torch
    import torch.nn.functional as F
    import yaml

    torch.set_num_threads(args.threads)
    notes = install_shims(torch)

    from models.model_helper import ModelHelper
    from utils.criterion_helper import build_criterion
    from utils.lr_helper import get_scheduler
    from utils.misc_helper import set_random_seed, update_config
    from utils.optimizer_helper import get_optimizer
    import models.backbones.efficientnet.utils as eff_utils
    import models.backbones.resnet as resnet_mod
    import utils.misc_helper as misc_helper

    if not os.path.abspath(misc_helper.__file__).startswith(repo + os.sep):
        raise RuntimeError("utils resolved outside the repo: %s" % misc_helper.__file__)
    forbid_downloads([eff_utils, resnet_mod])

    out("torch", "%s threads %d" % (torch.__version__, torch.get_num_threads()))
    for n in notes:
        log("patch:", n)
    log("blas: %s; mapped: %s; OPENBLAS_NUM_THREADS=%s"
        % (blas, mapped_blas(), os.environ.get("OPENBLAS_NUM_THREADS")))

    # ---- config, as in their train_val.main() ---------------------------------
    with open(cfg_path) as f:
        config = AttrDict(yaml.load(f, Loader=yaml.FullLoader))
    config.net[0].kwargs.pretrained = False  # random weights, no download
    if args.save_recon is None:
        config.net[2].kwargs.save_recon = None
    else:
        config.net[2].kwargs.save_recon = AttrDict(save_dir=args.save_recon)
    config = update_config(config)
    log("net config after update_config:")
    for sub in config.net:
        log("  ", sub["name"], sub["type"], dict(sub["kwargs"]))
    if config.get("random_seed", None):
        set_random_seed(config.random_seed, config.get("reproduce", None))

    model = ModelHelper(config.net)
    model.cpu()  # sets model.device, which their forward() compares against

    layers = [m["name"] for m in config.net]
    frozen_layers = config.get("frozen_layers", [])
    active_layers = list(set(layers) ^ set(frozen_layers))
    parameters = [{"params": getattr(model, l).parameters()} for l in active_layers]
    optimizer = get_optimizer(parameters, config.trainer.optimizer)
    lr_scheduler = get_scheduler(optimizer, config.trainer.lr_scheduler)  # noqa F841
    criterion = build_criterion(config.criterion)
    max_norm = config.trainer.get("clip_max_norm", None)
    n_train = sum(p.numel() for g in optimizer.param_groups for p in g["params"])
    log("active layers %s; trainable params %d; clip_max_norm %s; optimizer %s %s"
        % (active_layers, n_train, max_norm, config.trainer.optimizer.type,
           dict(config.trainer.optimizer.kwargs)))

    avgpool_size = [16, 16]
    for m in config.evaluator.metrics.get("auc", []):
        if m["name"] == "max":
            avgpool_size = list(m.get("kwargs", {}).get("avgpool_size", avgpool_size))

    H, W = config.dataset.input_size
    B = args.batch
    g = torch.Generator().manual_seed(0)
    img_b = torch.randn(B, 3, H, W, generator=g)
    img_1 = img_b[:1].clone()

    def make_input(img):
        inp = {"image": img}
        if args.save_recon is not None:
            inp["clsname"] = ["bench"] * img.shape[0]
            inp["filename"] = ["bench/good/%03d.png" % i for i in range(img.shape[0])]
        return inp

    inp_b, inp_1 = make_input(img_b), make_input(img_1)

    # ---- a) / b) scoring ------------------------------------------------------
    model.eval()

    def score(inp):
        with torch.no_grad():
            outputs = model(inp)
            pred = outputs["pred"]  # B x 1 x H x W (already upsampled x16)
            s = F.avg_pool2d(pred, avgpool_size, stride=1).flatten(1).max(dim=1)[0]
        return s, pred

    s, pred = score(inp_b)
    log("pred shape %s, finite %s, mean %.4g, score[0] %.4g"
        % (tuple(pred.shape), bool(torch.isfinite(pred).all()),
           float(pred.mean()), float(s[0])))

    t, ts = median_time(lambda: score(inp_b), args.warmup, args.rounds)
    log("score batch%d rounds (s): %s" % (B, ["%.4f" % x for x in ts]))
    out("score-batch%d-ms-per-image" % B, 1000.0 * t / B)

    t, ts = median_time(lambda: score(inp_1), args.warmup, args.rounds)
    log("latency batch1 rounds (s): %s" % ["%.4f" % x for x in ts])
    out("latency-batch1-ms", 1000.0 * t)

    # ---- c) training step, as in their train_one_epoch() ----------------------
    model.train()
    for layer in frozen_layers:
        module = getattr(model, layer)
        module.eval()
        for param in module.parameters():
            param.requires_grad = False

    def compute_loss(outputs):
        loss = 0
        for name, criterion_loss in criterion.items():
            weight = criterion_loss.weight
            loss += weight * criterion_loss(outputs)
        return loss

    def step(forward):
        t0 = time.perf_counter()
        outputs = forward()
        loss = compute_loss(outputs)
        loss.item()  # their losses.update(reduced_loss.item())
        t1 = time.perf_counter()
        optimizer.zero_grad()
        loss.backward()
        t2 = time.perf_counter()
        if max_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        optimizer.step()
        t3 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2, t3 - t0

    def bench_steps(forward):
        for _ in range(args.warmup):
            step(forward)
        rs = [step(forward) for _ in range(args.rounds)]
        return [statistics.median(r[i] for r in rs) for i in range(4)], rs

    (f, b, o, tot), rs = bench_steps(lambda: model(inp_b))
    log("train rounds (fwd, bwd, opt, total s): %s"
        % [tuple("%.4f" % x for x in r) for r in rs])
    out("train-step-batch%d-ms-per-image" % B, 1000.0 * tot / B)
    out("train-forward-ms", 1000.0 * f)
    out("train-backward-ms", 1000.0 * b)
    out("train-optimizer-ms", 1000.0 * o)

    # recon only: backbone + neck run once (no_grad), the neck's output
    # feature_align is the reconstruction's input at every step
    with torch.no_grad():
        feats = model.backbone(inp_b)
        feature_align = model.neck(feats)["feature_align"]
    log("feature_align %s" % (tuple(feature_align.shape),))
    recon_in = {"feature_align": feature_align}
    (f, b, o, tot), rs = bench_steps(lambda: model.reconstruction(recon_in))
    log("recon-only rounds (fwd, bwd, opt, total s): %s"
        % [tuple("%.4f" % x for x in r) for r in rs])
    out("train-step-recon-only-batch%d-ms-per-image" % B, 1000.0 * tot / B)


if __name__ == "__main__":
    main()
