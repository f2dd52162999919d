"""bpmf: Bayesian matrix factorisation with biases and implicit feedback, Gibbs-sampled (``recjob.bpmf``); not
Keras. It reads the train split through the same Petastorm reader in one pass, runs a fixed number of sweeps
(nothing stops early: the average of the kept samples does not overfit as the sweeps go on) and exports the
posterior average as factors. The epoch log has one entry per sweep."""
from __future__ import annotations

import math
import os

import numpy as np

from recjob import feed
from recjob.models.base import ITEM_IN, USER_IN, Fitted, ModelKind

FILE = "bpmf.npz"


class Bpmf(ModelKind):
    name = "bpmf"
    summary = "Bayesian MF with biases and implicit feedback, Gibbs sampling (not Keras): predicts ratings"
    predicts_ratings = True
    # rank 10 as in its usual MovieLens set-up (on ML-100k 20 and 32 were no better, 5 worse; README "Models")
    defaults = {"factors": 10, "l2": 0.0, "bias_l2": 0.0}

    def fit(self, data, cfg, workdir):
        """The epoch log has per sweep the train RMSE of the sample, the validation RMSE of the sample alone
        and of the average of the samples kept so far; the result the validation (RMSE, MAE) of the exported
        factors, exactly as they are scored (float32)."""
        from recjob import bpmf  # SciPy: only where a bpmf model is fitted, not wherever the registry is read

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

        f = bpmf.sample(users, items, ratings, data.n_users, data.n_items, cfg.factors, cfg.mcmc_burn_in,
                        cfg.mcmc_samples, cfg.mcmc_thin, cfg.seed, cfg.bpmf_implicit, cfg.mcmc_cg_iterations,
                        cfg.bpmf_noise_prior, cfg.bpmf_export_rank, on_sweep)
        epoch_log = f.pop("sweep_log")
        with open(os.path.join(workdir, FILE), "wb") as fh:
            fh.write(bpmf.save(f))
        err = bpmf.predict(f, v_users, v_items) - v_ratings
        return Fitted(factors=f, epoch_log=epoch_log, best_epoch=len(epoch_log),
                      predict=lambda x: bpmf.predict(f, np.asarray(x[USER_IN]), np.asarray(x[ITEM_IN])),
                      result={"val_rmse": math.sqrt(float(np.mean(np.square(err)))), "val_mae": float(np.mean(np.abs(err)))})


KIND = Bpmf()
