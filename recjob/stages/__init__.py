"""The pipeline's stages, one module each, in the order of ``recjob.names.STAGES``. Each module's
``run(cfg, spark, ds)`` reads its inputs, transforms them and writes its outputs (``recjob.progress.stage_timer``
logs what it read, wrote and how long it took). Stages never import each other."""
