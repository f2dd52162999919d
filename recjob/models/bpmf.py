"""bpmf: Bayesian matrix factorisation with biases and implicit feedback, Gibbs-sampled (``recjob.bpmf``); not
Keras. It reads the train split through the same Petastorm reader in one pass, runs a fixed number of sweeps
(nothing stops early: the average of the kept samples does not overfit as the sweeps go on) and exports the
posterior average as factors. The epoch log has one entry per sweep."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from recjob import feed
from recjob.models.base import ITEM_IN, USER_IN, Fitted, ModelKind

FILE = "bpmf.npz"


@dataclass(frozen=True)
class Settings:
    """bpmf's own settings (train.bpmf.*): the Gibbs sampler's."""

    burn_in: int = 50  # sweeps before the first kept sample
    samples: int = 50  # posterior samples averaged
    thin: int = 5  # sweeps between kept samples
    implicit: bool = True  # the rated items / raters as side information in the priors (SVD++-like)
    cg_iterations: int = 50  # cap on each conjugate-gradient solve for the implicit links
    export_rank: int = 32  # the sample average is exported as this many factors (0: samples x factors)
    noise_prior: float = 0.1  # weight (x n ratings) of the noise prior at the bias model's error


class Bpmf(ModelKind):
    name = "bpmf"
    Settings = Settings

    def check(self, own, cfg):
        problems = [f"train.bpmf.{k} must be >= 1" for k in ("samples", "thin", "cg_iterations")
                    if getattr(own, k) < 1]
        problems += [f"train.bpmf.{k} must be >= 0" for k in ("burn_in", "export_rank", "noise_prior")
                     if getattr(own, k) < 0]
        return problems
    summary = "Bayesian MF with biases and implicit feedback, Gibbs sampling (not Keras): predicts ratings"
    predicts_ratings = True
    # rank 10 as in its usual MovieLens set-up (on ML-100k 20 and 32 are no better, 5 worse: docs/models.md)
    defaults = {"factors": 10, "l2": 0.0, "bias_l2": 0.0}

    def fit(self, data, cfg, workdir):
        """The epoch log has per sweep the train RMSE of the sample, the validation RMSE of the sample alone
        and of the average of the samples kept so far; the result the validation (RMSE, MAE) of the exported
        factors, exactly as they are scored (float32)."""
        from recjob import (
            bpmf,  # SciPy: only where a bpmf model is fitted, not wherever the registry is read
        )

        users, items, ratings = feed.read_ratings(data.train_url)
        v_users, v_items, v_ratings = feed.read_ratings(data.validation_url)
        total, kept = np.zeros(len(v_ratings)), 0

        def on_sweep(state: dict, keep: bool) -> dict:
            nonlocal kept
            pred = bpmf.predict(state, v_users, v_items)
            out = {"val_rmse_sample": math.sqrt(float(np.mean(np.square(pred - v_ratings))))}
            if keep:
                total[:] += pred
                kept += 1
            out["val_rmse"] = math.sqrt(float(np.mean(np.square(total / kept - v_ratings)))) if kept else math.nan
            return out

        own = cfg.params
        f = bpmf.sample(users, items, ratings, data.n_users, data.n_items, cfg.factors, own.burn_in, own.samples,
                        own.thin, cfg.seed, own.implicit, own.cg_iterations, own.noise_prior, own.export_rank,
                        on_sweep)
        epoch_log = f.pop("sweep_log")
        with open(os.path.join(workdir, FILE), "wb") as fh:
            fh.write(bpmf.save(f))
        err = bpmf.predict(f, v_users, v_items) - v_ratings
        return Fitted(factors=f, epoch_log=epoch_log, best_epoch=len(epoch_log),
                      predict=lambda x: bpmf.predict(f, np.asarray(x[USER_IN]), np.asarray(x[ITEM_IN])),
                      result={"val_rmse": math.sqrt(float(np.mean(np.square(err)))), "val_mae": float(np.mean(np.abs(err)))})


KIND = Bpmf()
